"""The ``objenc`` command line, run in-process on a store under ``tmp_path``."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from slixmpp_objenc.cli import main
from slixmpp_objenc.core import (
    Identity,
    certificate_fingerprint,
    format_fingerprint,
    generate_identity,
    load_certificate,
    validate_peer_certificate,
)
from slixmpp_objenc.core.certificates import ID_ON_XMPPADDR
from slixmpp_objenc.core.devices import load_device
from slixmpp_objenc.core.publication import (
    PUBLICATION_SETTING,
    Publication,
    PublicationStatus,
    publication_record,
)
from slixmpp_objenc.keyring import Keyring
from slixmpp_objenc.store import SQLiteStorage, TrustState, account_store_path

REPO_ROOT = Path(__file__).resolve().parents[2]
ME = "romeo@montague.net"
PEER = "juliet@capulet.net"
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


# -- helpers ---------------------------------------------------------------------


def _utf8string(text: str) -> bytes:
    raw = text.encode()
    assert len(raw) < 0x80
    return bytes([0x0C, len(raw)]) + raw


def make_certificate(key: rsa.RSAPrivateKey, jids: list[str], serial: int = 1) -> bytes:
    """A self-signed certificate naming ``jids``; deterministic for a key and serial."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, jids[0])])
    start = datetime.now(UTC) - timedelta(days=1)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.OtherName(ID_ON_XMPPADDR, _utf8string(jid)) for jid in jids]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


def fingerprint_of(pem: bytes) -> str:
    return certificate_fingerprint(load_certificate(pem))


class Cli:
    """Runs ``objenc --jid ME --data-dir DIR ...`` and captures what it printed."""

    def __init__(self, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.data_dir = data_dir
        self.capsys = capsys
        self.out = ""
        self.err = ""

    @property
    def store(self) -> Path:
        return account_store_path(self.data_dir, ME)

    def __call__(self, *args: str, jid: str = ME) -> int:
        self.capsys.readouterr()
        code = main(["--jid", jid, "--data-dir", str(self.data_dir), *args])
        self.out, self.err = self.capsys.readouterr()
        return code

    def keygen(self, *args: str) -> int:
        return self("keygen", "--key-size", "2048", *args)

    def write(self, name: str, pem: bytes) -> str:
        path = self.data_dir.parent / name
        path.write_bytes(pem)
        return str(path)


def load_keyring(store: Path) -> Keyring:
    """What the plugin would load from the store (it uses the same Keyring)."""

    async def load() -> Keyring:
        storage = SQLiteStorage(store)
        await storage.open()
        try:
            keyring = Keyring(storage)
            await keyring.load()
            return keyring
        finally:
            await storage.close()

    return asyncio.run(load())


@pytest.fixture(scope="module")
def peer() -> Identity:
    return generate_identity(PEER, key_size=2048)


@pytest.fixture(scope="module")
def peer_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(tmp_path / "data", capsys)


@pytest.fixture
def keyed(cli: Cli) -> Cli:
    assert cli.keygen() == 0, cli.err
    return cli


# -- keygen ----------------------------------------------------------------------


@posix_only
def test_keygen_creates_a_private_store_and_prints_the_fingerprint(cli: Cli) -> None:
    assert not cli.store.exists()
    assert cli.keygen() == 0, cli.err
    assert stat.S_IMODE(cli.store.stat().st_mode) == 0o600
    assert stat.S_IMODE(cli.data_dir.stat().st_mode) == 0o700
    keyring = load_keyring(cli.store)
    identity, device = keyring.identity, keyring.device.keys
    assert identity is not None and device is not None
    assert identity.private_key.key_size == 2048
    # what contacts pin and verify: the device's identity, grouped; the RSA one too
    assert format_fingerprint(device.fingerprint) in cli.out
    assert format_fingerprint(identity.fingerprint).replace("\n", " ") in cli.out
    assert cli.err == ""


def test_second_keygen_refuses_and_force_adds_a_new_active_identity(keyed: Cli) -> None:
    first = load_keyring(keyed.store).identity
    assert first is not None
    assert keyed.keygen() == 1
    assert "already has an identity" in keyed.err
    assert "--force" in keyed.err
    assert "Traceback" not in keyed.err
    assert len(load_keyring(keyed.store).identities) == 1

    assert keyed.keygen("--force") == 0, keyed.err
    identities = load_keyring(keyed.store).identities
    assert len(identities) == 2
    assert identities[0].fingerprint != first.fingerprint  # the new one is active
    assert identities[1].fingerprint == first.fingerprint  # the old one is kept
    assert format_fingerprint(identities[0].fingerprint).replace("\n", " ") in keyed.out


def test_keygen_refuses_short_keys_without_creating_a_store(cli: Cli) -> None:
    assert cli("keygen", "--key-size", "1024") == 2
    assert "2048" in cli.err
    assert not cli.store.exists()


# -- show and export ---------------------------------------------------------------


def test_show_prints_the_grouped_fingerprint_and_details(keyed: Cli) -> None:
    assert keyed("show") == 0, keyed.err
    keyring = load_keyring(keyed.store)
    identity, device = keyring.identity, keyring.device.keys
    assert identity is not None and device is not None
    expected = format_fingerprint(certificate_fingerprint(device.identity_certificate))
    assert expected in keyed.out
    assert format_fingerprint(identity.fingerprint).replace("\n", " ") in keyed.out
    assert ME in keyed.out
    assert "RSA key:     2048 bits (the draft's profile only)" in keyed.out
    assert identity.certificate.not_valid_after_utc.strftime("%Y-%m-%d") in keyed.out
    assert "usable" in keyed.out

    assert keyed("show", "--pem") == 0
    assert keyed.out.encode() == identity.certificate_pem()


def test_export_writes_a_valid_certificate_and_never_the_key(keyed: Cli, tmp_path: Path) -> None:
    target = tmp_path / "romeo.pem"
    assert keyed("export", str(target)) == 0, keyed.err
    pem = target.read_bytes()
    assert b"PRIVATE KEY" not in pem
    # this device: its identity and encryption certificates
    peer = load_device(pem)
    assert peer.jids == {ME} and peer.encryption is not None
    keyring = load_keyring(keyed.store)
    assert keyring.device.keys is not None
    assert peer.fingerprint == keyring.device.keys.fingerprint
    # --rsa: the RSA certificate, for a peer of the draft's profile only
    assert keyed("export", "--rsa") == 0
    identity = keyring.identity
    assert identity is not None
    assert validate_peer_certificate(keyed.out.encode()).fingerprint == identity.fingerprint

    assert keyed("export") == 0  # to stdout
    assert keyed.out.encode() == pem
    assert "PRIVATE KEY" not in keyed.out


def test_commands_on_a_missing_store_fail_without_creating_it(cli: Cli) -> None:
    for args in (["show"], ["export"], ["peers"], ["trust", PEER, "ab"]):
        assert cli(*args) == 1, args
        assert "no store" in cli.err
        assert "keygen" in cli.err
    assert not cli.store.exists()


# -- peers: import, trust, distrust -------------------------------------------------


def test_import_then_peers_lists_it_as_tofu(keyed: Cli, peer: Identity) -> None:
    path = keyed.write("juliet.pem", peer.certificate_pem())
    assert keyed("import", path) == 0, keyed.err
    assert PEER in keyed.out
    assert "tofu" in keyed.out

    assert keyed("peers") == 0
    lines = keyed.out.splitlines()
    assert lines[0].split()[:3] == ["JID", "TRUST", "SOURCE"]
    [row, ours] = lines[1:]
    assert row.split()[:3] == [PEER, "tofu", "manual"]
    assert ours.startswith("Our certificate on PEP: unknown")
    short = " ".join(format_fingerprint(peer.fingerprint).split()[:4])
    assert row.endswith(short)

    assert keyed("peers", "--full", PEER) == 0
    assert keyed.out.splitlines()[1].endswith(
        format_fingerprint(peer.fingerprint).replace("\n", " ")
    )
    assert keyed("peers", "nobody@example.org") == 0
    assert "No peer certificates" in keyed.out


def test_import_verified(keyed: Cli, peer: Identity) -> None:
    path = keyed.write("juliet.pem", peer.certificate_pem())
    assert keyed("import", path, "--verified") == 0, keyed.err
    assert load_keyring(keyed.store).records(PEER)[0].trust is TrustState.VERIFIED


def test_trust_verified_with_a_prefix_then_distrust(keyed: Cli, peer: Identity) -> None:
    keyed("import", keyed.write("juliet.pem", peer.certificate_pem()))
    prefix = format_fingerprint(peer.fingerprint).split()[:2]  # "AB12 CD34": spaces ignored
    assert keyed("trust", PEER, " ".join(prefix), "--verified") == 0, keyed.err
    assert "tofu -> verified" in keyed.out
    [record] = load_keyring(keyed.store).records(PEER)
    assert record.trust is TrustState.VERIFIED

    colons = ":".join(peer.fingerprint[i : i + 2] for i in range(0, 12, 2)).upper()
    assert keyed("distrust", PEER, colons) == 0, keyed.err
    [record] = load_keyring(keyed.store).records(PEER)
    assert record.trust is TrustState.REVOKED

    assert keyed("trust", PEER, peer.fingerprint) == 0  # the full one; back to tofu
    [record] = load_keyring(keyed.store).records(PEER)
    assert record.trust is TrustState.TOFU
    assert keyed("peers") == 0
    assert keyed.out.splitlines()[1].split()[1] == "tofu"


def _two_certificates_sharing_a_prefix(key: rsa.RSAPrivateKey) -> tuple[bytes, bytes]:
    first = make_certificate(key, [PEER], serial=1)
    for serial in range(2, 500):
        other = make_certificate(key, [PEER], serial=serial)
        if fingerprint_of(other)[0] == fingerprint_of(first)[0]:
            return first, other
    raise AssertionError("no two fingerprints share a first digit")


def test_ambiguous_or_unknown_prefix_fails(keyed: Cli, peer_key: rsa.RSAPrivateKey) -> None:
    first, second = _two_certificates_sharing_a_prefix(peer_key)
    assert keyed("import", keyed.write("a.pem", first)) == 0, keyed.err
    assert keyed("import", keyed.write("b.pem", second)) == 0, keyed.err
    assert "also held" in keyed.out

    common = fingerprint_of(first)[0]
    assert keyed("trust", PEER, common, "--verified") == 1
    assert "ambiguous" in keyed.err
    assert "Traceback" not in keyed.err
    assert len(keyed.err.strip().splitlines()) == 1

    held = {fingerprint_of(first), fingerprint_of(second)}
    unknown = next(
        d * 8 for d in "0123456789abcdef" if not any(fp.startswith(d * 8) for fp in held)
    )
    assert keyed("distrust", PEER, unknown) == 1
    assert "no certificate held" in keyed.err
    assert keyed("trust", "nobody@example.org", common) == 1
    assert "no certificate is held" in keyed.err
    assert keyed("trust", PEER, "not-hex") == 1
    assert "hexadecimal" in keyed.err
    assert keyed("trust", PEER, "::") == 1

    # Nothing changed.
    assert {r.trust for r in load_keyring(keyed.store).records(PEER)} == {TrustState.TOFU}

    # A longer prefix picks one.
    fp = fingerprint_of(second)
    assert keyed("trust", PEER, fp[:20], "--verified") == 0, keyed.err
    trusts = {r.fingerprint: r.trust for r in load_keyring(keyed.store).records(PEER)}
    assert trusts == {fingerprint_of(first): TrustState.TOFU, fp: TrustState.VERIFIED}


def test_import_of_a_certificate_naming_two_jids_needs_jid_for(
    keyed: Cli, peer_key: rsa.RSAPrivateKey
) -> None:
    path = keyed.write("two.pem", make_certificate(peer_key, [PEER, "nurse@capulet.net"]))
    assert keyed("import", path) == 1
    assert "--jid-for" in keyed.err
    assert "Traceback" not in keyed.err
    assert load_keyring(keyed.store).all_records() == []

    assert keyed("import", path, "--jid-for", "tybalt@capulet.net") == 1
    assert "does not name" in keyed.err

    assert keyed("import", path, "--jid-for", "Nurse@Capulet.net/balcony") == 0, keyed.err
    [record] = load_keyring(keyed.store).all_records()
    assert record.jid == "nurse@capulet.net"  # bound to that JID only
    assert record.trust is TrustState.TOFU


def test_import_refuses_bad_files(keyed: Cli, tmp_path: Path) -> None:
    assert keyed("import", str(tmp_path / "missing.pem")) == 1
    assert "missing.pem" in keyed.err
    garbage = keyed.write("garbage.pem", b"not a certificate")
    assert keyed("import", garbage) == 1
    assert "cannot load certificate" in keyed.err
    weak_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    weak = keyed.write("weak.pem", make_certificate(weak_key, [PEER]))
    assert keyed("import", weak) == 1
    assert "1024" in keyed.err
    assert "Traceback" not in keyed.err
    assert load_keyring(keyed.store).all_records() == []


# -- the store ---------------------------------------------------------------------------


@posix_only
def test_a_world_readable_store_is_refused(keyed: Cli) -> None:
    os.chmod(keyed.store, 0o644)
    before = keyed.store.read_bytes()
    assert keyed("show") == 1
    assert keyed.err.startswith("objenc: error: refusing to open")
    assert str(keyed.store) in keyed.err
    assert "chmod 600" in keyed.err
    assert len(keyed.err.strip().splitlines()) == 1
    assert keyed.store.read_bytes() == before


def test_the_store_written_by_the_cli_is_what_the_plugin_loads(
    keyed: Cli, peer: Identity, tmp_path: Path
) -> None:
    keyed("import", keyed.write("juliet.pem", peer.certificate_pem()))
    assert keyed("trust", PEER, peer.fingerprint[:10], "--verified") == 0
    assert keyed("export", str(tmp_path / "me.pem")) == 0

    # The plugin opens account_store_path(data_dir, boundjid.bare) with a Keyring.
    keyring = load_keyring(account_store_path(keyed.data_dir, ME))
    device = keyring.device.keys
    assert device is not None
    assert device.fingerprint == load_device((tmp_path / "me.pem").read_bytes()).fingerprint
    [record] = keyring.records(PEER)
    assert record.fingerprint == peer.fingerprint
    assert record.trust is TrustState.VERIFIED
    assert record.source == "manual"
    assert [p.fingerprint for p in keyring.usable(PEER)] == [peer.fingerprint]
    assert keyring.sticky(PEER)


def test_the_jid_selects_the_store(keyed: Cli) -> None:
    # Resource and case do not matter: the same bare JID, the same file.
    assert keyed("show", jid="Romeo@Montague.NET/orchard") == 0, keyed.err
    assert keyed("show", jid="mercutio@example.net") == 1
    assert "no store for mercutio@example.net" in keyed.err


# -- the command line itself -----------------------------------------------------------


def test_jid_is_required_and_may_follow_the_subcommand(
    keyed: Cli, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["--data-dir", str(keyed.data_dir), "show"]) == 2
    assert "--jid" in capsys.readouterr().err
    assert main(["show", "--jid", ME, "--data-dir", str(keyed.data_dir)]) == 0
    assert ME in capsys.readouterr().out
    assert main(["--jid", ME]) == 2  # no subcommand
    assert main(["--help"]) == 0
    assert "keygen" in capsys.readouterr().out


def test_python_dash_m_help() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "slixmpp_objenc", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: objenc")
    for command in ("keygen", "show", "peers", "trust", "distrust", "export", "import"):
        assert command in result.stdout


# -- issue 9: own devices (kind 1) and one JID normalization (kind 8) ------------------


def _hold_own_devices(store: Path, device: Identity, attacker: Identity) -> None:
    """What the plugin records when our node publishes another device of ours
    (accepted) and one nobody decided on yet."""

    async def run() -> None:
        storage = SQLiteStorage(store)
        await storage.open()
        try:
            keyring = Keyring(storage)
            await keyring.load()
            for identity, trust in ((device, TrustState.TOFU), (attacker, TrustState.UNTRUSTED)):
                peer = validate_peer_certificate(identity.certificate)
                await keyring.observe(peer, source="pep", trust=trust, jid=ME)
        finally:
            await storage.close()

    asyncio.run(run())


def test_peers_marks_our_own_devices_and_what_awaits_a_decision(keyed: Cli, peer: Identity) -> None:
    device = generate_identity(ME, key_size=2048)
    attacker = generate_identity(ME, key_size=2048)
    keyed("import", keyed.write("juliet.pem", peer.certificate_pem()))
    _hold_own_devices(keyed.store, device, attacker)
    assert keyed("peers") == 0, keyed.err
    rows = keyed.out.splitlines()[1:4]
    own_rows = sorted(row.split()[:4] for row in rows[:2])  # our own devices first
    assert own_rows == [[ME, "(own", "device)", "tofu"], [ME, "(own", "device)", "untrusted"]]
    assert rows[2].split()[:2] == [PEER, "tofu"]
    assert "1 certificate(s) on your own account's node are not used" in keyed.out
    # the user decides with the usual commands
    short = " ".join(format_fingerprint(attacker.fingerprint).split()[:4])
    assert keyed("distrust", ME, short) == 0, keyed.err
    record = load_keyring(keyed.store).record(ME, attacker.fingerprint)
    assert record is not None and record.trust is TrustState.REVOKED
    assert keyed("peers", ME) == 0
    assert "not used until" not in keyed.out


def test_the_jid_is_normalized_as_slixmpp_does(cli: Cli) -> None:
    # before issue 9: 'Straße@Example.org' selected the store of 'straße@example.org'
    # and its certificate named that spelling, while the plugin (slixmpp) uses
    # 'strasse@example.org': two stores, and a certificate no one could match
    assert cli("keygen", "--key-size", "2048", jid="Straße@Example.org") == 0, cli.err
    store = account_store_path(cli.data_dir, "strasse@example.org")
    assert store.exists()
    identity = load_keyring(store).identity
    assert identity is not None
    assert validate_peer_certificate(identity.certificate).jids == {"strasse@example.org"}
    assert cli("show", jid="strasse@example.org") == 0, cli.err
    assert "usable" in cli.out and "Warning" not in cli.out
    assert cli("peers", jid="not a jid@@") == 1
    assert "is not a JID" in cli.err


def test_import_refuses_a_certificate_for_a_non_canonical_spelling(
    keyed: Cli, peer_key: rsa.RSAPrivateKey
) -> None:
    for spelling in ("Juliet@Capulet.net", "straße@example.org", "juliet@capulet.net/balcony"):
        path = keyed.write("odd.pem", make_certificate(peer_key, [spelling]))
        assert keyed("import", path) == 1, spelling
        assert "canonical" in keyed.err
    assert keyed("peers") == 0 and "No peer certificates" in keyed.out


def record_publication(store: Path, state: Publication) -> None:
    """What a connected client records after publishing."""

    async def write() -> None:
        storage = SQLiteStorage(store)
        await storage.open()
        try:
            at = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)
            await storage.set_setting(PUBLICATION_SETTING, publication_record(state, at))
        finally:
            await storage.close()

    asyncio.run(write())


def test_show_and_peers_say_whether_our_certificate_is_published(keyed: Cli) -> None:
    identity = load_keyring(keyed.store).identity
    assert identity is not None
    record_publication(
        keyed.store,
        Publication(
            PublicationStatus.FAILING,
            identity.fingerprint,
            "node-configuration",
            "forbidden",
            "",
        ),
    )
    assert keyed("show") == 0, keyed.err
    [line] = [x for x in keyed.out.splitlines() if x.startswith("On PEP:")]
    assert "NOT published (forbidden)" in line and "in the clear" in line
    assert "2026-11-30T18:00:00" in line
    assert keyed("peers") == 0, keyed.err
    assert "Our certificate on PEP: NOT published (forbidden)" in keyed.out

    record_publication(
        keyed.store,
        Publication(PublicationStatus.PUBLISHED, identity.fingerprint, "publish-options"),
    )
    assert keyed("show") == 0
    assert "On PEP:      published (publish-options)" in keyed.out

    record_publication(keyed.store, Publication(PublicationStatus.PUBLISHED, "00" * 32, "x"))
    assert keyed("show") == 0
    assert "unknown for this certificate" in keyed.out


def test_a_device_exported_by_one_store_is_imported_by_another(keyed: Cli, tmp_path: Path) -> None:
    """Exchanging devices by hand gives the authenticated profile: the identity is
    held with its encryption certificate and is usable; an identity without its
    encryption certificate is refused."""
    exported = tmp_path / "romeo-device.pem"
    assert keyed("export", str(exported)) == 0, keyed.err
    assert keyed("keygen", jid=PEER) == 0, keyed.err
    assert keyed("import", str(exported), jid=PEER) == 0, keyed.err
    juliet = load_keyring(account_store_path(keyed.data_dir, PEER))
    [record] = juliet.records(ME)
    assert record.encryption_pem is not None
    [usable] = juliet.usable(ME)
    assert usable.authenticated and usable.encryption is not None
    assert juliet.has_identity(ME)

    lone = tmp_path / "identity-only.pem"
    lone.write_bytes(
        exported.read_bytes().split(b"-----END CERTIFICATE-----")[0]
        + b"-----END CERTIFICATE-----\n"
    )
    assert keyed("import", str(lone), jid=PEER) == 1
    assert "needs its encryption certificate" in keyed.err
