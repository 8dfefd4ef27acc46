"""``objenc seal`` and ``objenc open``, run in-process on stores under
``tmp_path`` made and linked with the command line itself (keygen, export,
import): round trips through files, stdin and stdout, what each says on
stderr, exit statuses (0; 1 for a refused object, one message; 2 for local
errors), and that nothing is written when an object does not open."""

from __future__ import annotations

import asyncio
import io
import os
import sys
from pathlib import Path

import pytest

from slixmpp_objenc.cli import main
from slixmpp_objenc.cli_objects import REFUSED, SPOOL_IN_MEMORY
from slixmpp_objenc.core import format_fingerprint
from slixmpp_objenc.core.devices import load_device
from slixmpp_objenc.glue.directory import normalize_jid
from slixmpp_objenc.keyring import Keyring
from slixmpp_objenc.store import SQLiteStorage, TrustState, account_store_path

JULIET = "juliet@capulet.lit"
ROMEO = "romeo@montague.lit"
MERCUTIO = "mercutio@verona.lit"
SECRET = b"Wherefore art thou Romeo?\n" * 1000
UNAUTHENTICATED = (
    "unauthenticated (draft's profile: anyone holding your certificate could have written it)"
)


class Cli:
    """Runs ``objenc --jid JID --data-dir DIR ...``; keeps stdout (bytes) and stderr."""

    def __init__(self, root: Path, capsys: pytest.CaptureFixture[bytes]) -> None:
        self.root = root
        self.capsys = capsys
        self.out = b""
        self.err = ""

    def __call__(self, jid: str, *args: str, store: str = "data") -> int:
        self.capsys.readouterr()
        code = main(["--jid", jid, "--data-dir", str(self.root / store), *args])
        out, err = self.capsys.readouterr()
        self.out, self.err = out, err.decode()
        return code

    def ok(self, jid: str, *args: str, store: str = "data") -> None:
        assert self(jid, *args, store=store) == 0, self.err

    def device(self, jid: str, store: str = "data") -> str:
        """The fingerprint of the device in a store."""
        self.ok(jid, "export", str(self.root / "device.pem"), store=store)
        return load_device((self.root / "device.pem").read_bytes()).fingerprint

    def link(self, a: str, b: str, *, a_store: str = "data", b_store: str = "data") -> None:
        """Each holds the other's device, as 'objenc import' does (tofu)."""
        for src, src_store, dst, dst_store in ((a, a_store, b, b_store), (b, b_store, a, a_store)):
            pem = self.root / f"{src}.{src_store}.pem"
            self.ok(src, "export", str(pem), store=src_store)
            self.ok(dst, "import", str(pem), store=dst_store)

    def file(self, name: str, data: bytes) -> str:
        path = self.root / name
        path.write_bytes(data)
        return str(path)


@pytest.fixture
def cli(tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> Cli:
    made = Cli(tmp_path, capsysbinary)
    for jid in (JULIET, ROMEO):
        made.ok(jid, "keygen", "--key-size", "2048")
    made.link(JULIET, ROMEO)
    return made


def short(fingerprint: str) -> str:
    return " ".join(format_fingerprint(fingerprint).split()[:4])


def hold(store: Path, jid: str, pem: bytes, trust: TrustState) -> None:
    """What the plugin records for a certificate (any trust state)."""

    async def run() -> None:
        storage = SQLiteStorage(store)
        await storage.open()
        try:
            keyring = Keyring(storage, normalize=normalize_jid)
            await keyring.load()
            await keyring.observe(load_device(pem), source="pep", trust=trust, jid=jid)
        finally:
            await storage.close()

    asyncio.run(run())


# -- round trips -------------------------------------------------------------------------


def test_seal_armored_to_stdout_then_open_to_stdout(cli: Cli) -> None:
    source = cli.file("letter.txt", SECRET)
    cli.ok(JULIET, "seal", "--to", ROMEO, source)
    assert cli.out.startswith(b"-----BEGIN OBJENC OBJECT-----\nFormat: objenc-object-1; ")
    assert cli.err == f"sealed (auth-1) for {ROMEO} (1 device), your own account (1 device)\n"
    sealed = cli.file("letter.asc", cli.out)
    cli.ok(ROMEO, "open", sealed)
    assert cli.out == SECRET
    first, dated = cli.err.splitlines()
    assert first == f"from {JULIET}, device {short(cli.device(JULIET))}, tofu (authenticated)"
    assert dated.startswith("dated ") and dated.endswith(" UTC by the sender's clock")
    cli.ok(JULIET, "open", sealed)  # our own copy
    assert cli.out == SECRET and cli.err.startswith(f"from {JULIET}, this device (authenticated)")


def test_stdin_binary_and_output_files(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(SECRET)))
    sealed = cli.root / "letter.bin"
    cli.ok(JULIET, "seal", "--to", ROMEO, "--binary", "--output", str(sealed))
    assert cli.out == b"" and sealed.read_bytes().startswith(b"OBJENC\x00\x01")
    plain = cli.root / "letter.txt"
    cli.ok(ROMEO, "open", str(sealed), "-o", str(plain))
    assert cli.out == b"" and plain.read_bytes() == SECRET
    assert cli.err.startswith(f"from {JULIET}, device ")
    # from stdin, armored, to stdout
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(SECRET)))
    cli.ok(JULIET, "seal", "--to", ROMEO, "-")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"Hi!\n\n" + cli.out)))
    cli.ok(ROMEO, "open")
    assert cli.out == SECRET


def test_a_large_object_to_stdout_spools_and_streams(cli: Cli) -> None:
    data = os.urandom(SPOOL_IN_MEMORY + 123_457)
    sealed = cli.root / "big.bin"
    cli.ok(JULIET, "seal", "--to", ROMEO, "--binary", "-o", str(sealed), cli.file("big", data))
    cli.ok(ROMEO, "open", str(sealed))
    assert cli.out == data


def test_hybrid(cli: Cli) -> None:
    sealed = str(cli.root / "x.asc")
    cli.ok(JULIET, "seal", "--to", ROMEO, "--hybrid", cli.file("p", b"pq"), "-o", sealed)
    assert cli.err.startswith("sealed (auth-pq-1)")
    cli.ok(ROMEO, "open", sealed)
    assert cli.out == b"pq"
    assert "tofu (authenticated, post-quantum hybrid)" in cli.err


def test_another_device_of_ours_opens_what_one_sealed(cli: Cli) -> None:
    cli.ok(JULIET, "keygen", "--key-size", "2048", store="phone")
    cli.link(JULIET, JULIET, b_store="phone")
    cli.ok(JULIET, "seal", "--to", ROMEO, cli.file("m", b"for Romeo"), "-o", str(cli.root / "o"))
    assert "your own account (2 devices)" in cli.err
    laptop = short(cli.device(JULIET))
    cli.ok(JULIET, "open", str(cli.root / "o"), store="phone")
    assert cli.out == b"for Romeo"
    assert f"from {JULIET}, device {laptop}, tofu (authenticated)" in cli.err


def test_the_draft_profile_needs_legacy_and_says_it_proves_no_one(cli: Cli) -> None:
    cli.ok(MERCUTIO, "keygen", "--key-size", "2048")
    rsa = cli.root / "mercutio-rsa.pem"
    cli.ok(MERCUTIO, "export", "--rsa", str(rsa))
    cli.ok(JULIET, "import", str(rsa))  # Mercutio's old client: RSA only
    source = cli.file("m", b"old ways")
    assert cli(JULIET, "seal", "--to", MERCUTIO, source) == 2
    assert "--legacy" in cli.err and cli.out == b""
    cli.ok(JULIET, "seal", "--to", MERCUTIO, "--legacy", source, "-o", str(cli.root / "o"))
    assert cli.err.startswith(f"sealed (draft-rsa) for {MERCUTIO} (1 device)")
    assert cli(MERCUTIO, "open", str(cli.root / "o")) == 1  # it proves no one: only when asked
    cli.ok(MERCUTIO, "open", "--legacy", str(cli.root / "o"))
    assert cli.out == b"old ways" and cli.err.splitlines()[0] == UNAUTHENTICATED


# -- refused objects: exit 1, one message, nothing written --------------------------------


def _damaged(armored: bytes) -> dict[str, bytes]:
    lines = armored.split(b"\n")
    body = bytearray(lines[5])
    body[10] = ord("A") if body[10] != ord("A") else ord("B")
    changed = b"\n".join([*lines[:5], bytes(body), *lines[6:]])
    return {
        "one base64 character": changed,
        "truncated": b"\n".join(lines[:-3]) + b"\n",
        "no END": armored.replace(b"-----END OBJENC OBJECT-----", b""),
        "garbage": b"not an object at all\n",
    }


def test_a_damaged_object_is_refused_and_nothing_is_written(cli: Cli) -> None:
    cli.ok(JULIET, "seal", "--to", ROMEO, cli.file("s", SECRET))
    out_dir = cli.root / "out"
    out_dir.mkdir()
    for name, damaged in _damaged(cli.out).items():
        path = cli.file("damaged.asc", damaged)
        assert cli(ROMEO, "open", path) == 1, name
        assert cli.out == b"" and cli.err == f"objenc: error: {REFUSED}\n", name
        assert cli(ROMEO, "open", path, "--output", str(out_dir / "plain")) == 1
        assert list(out_dir.iterdir()) == [], name


def test_a_stranger_or_a_revoked_sender_is_refused_alike(cli: Cli) -> None:
    tybalt = "tybalt@capulet.lit"
    cli.ok(tybalt, "keygen", "--key-size", "2048")
    cli.ok(ROMEO, "export", str(cli.root / "romeo.pem"))
    cli.ok(tybalt, "import", str(cli.root / "romeo.pem"))  # Romeo holds nothing of Tybalt's
    stranger = str(cli.root / "t.asc")
    cli.ok(tybalt, "seal", "--to", ROMEO, cli.file("t", b"x"), "-o", stranger)
    assert cli(ROMEO, "open", stranger) == 1
    assert cli.err == f"objenc: error: {REFUSED}\n" and cli.out == b""
    cli.ok(MERCUTIO, "keygen", "--key-size", "2048")
    cli.link(MERCUTIO, ROMEO)
    revoked = str(cli.root / "m.asc")
    cli.ok(MERCUTIO, "seal", "--to", ROMEO, cli.file("m", b"x"), "-o", revoked)
    cli.ok(ROMEO, "open", revoked)
    cli.ok(ROMEO, "distrust", MERCUTIO, short(cli.device(MERCUTIO)))
    assert cli(ROMEO, "open", revoked) == 1
    assert cli.err == f"objenc: error: {REFUSED}\n" and cli.out == b""


# -- refused seals: exit 2, nothing written ---------------------------------------------


def test_unknown_pending_and_unverified_recipients(cli: Cli) -> None:
    source = cli.file("s", b"x")
    target = cli.root / "sealed.asc"
    assert cli(JULIET, "seal", "--to", MERCUTIO, source, "-o", str(target)) == 2
    assert f"no usable certificate for {MERCUTIO}: unknown or untrusted" in cli.err
    assert not target.exists() and cli.out == b""
    assert cli(JULIET, "seal", "--to", ROMEO, "--require-verified", source) == 2
    assert "is tofu, not verified" in cli.err and cli.out == b""
    cli.ok(JULIET, "trust", ROMEO, short(cli.device(ROMEO)), "--verified")
    cli.ok(JULIET, "seal", "--to", ROMEO, "--require-verified", source)
    # a new device of Romeo's awaits a decision: nothing is sealed for Romeo
    cli.ok(ROMEO, "keygen", "--key-size", "2048", store="tablet")
    cli.ok(ROMEO, "export", str(cli.root / "tablet.pem"), store="tablet")
    juliet_store = account_store_path(cli.root / "data", JULIET)
    hold(juliet_store, ROMEO, (cli.root / "tablet.pem").read_bytes(), TrustState.UNTRUSTED)
    assert cli(JULIET, "seal", "--to", ROMEO, source, "-o", str(target)) == 2
    assert "await your decision" in cli.err and not target.exists()


def test_local_errors_exit_2(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli(MERCUTIO, "open", cli.file("x", b"x")) == 2
    assert "no store for" in cli.err
    assert cli(ROMEO, "open", str(cli.root / "missing.asc")) == 2
    assert cli(JULIET, "seal", "--to", "not a jid@@", cli.file("s", b"x")) == 2
    assert "is not a JID" in cli.err
    assert cli(JULIET, "seal", cli.file("s", b"x")) == 2  # --to is required
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert cli(JULIET, "seal", "--to", ROMEO, "--binary", cli.file("s", b"x")) == 2
    assert "terminal" in cli.err


def test_help_lists_the_commands(cli: Cli) -> None:
    assert main(["--help"]) == 0
    out = cli.capsys.readouterr().out.decode()
    assert "seal" in out and "open" in out
    assert main(["seal", "--help"]) == 0
    assert "--require-verified" in cli.capsys.readouterr().out.decode()
