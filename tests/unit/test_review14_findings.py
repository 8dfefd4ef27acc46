"""Review of issue 14 (objects outside XMPP): the six attacks a fresh reviewer
found succeeding, each now shown failing (the test names say what the attack
was): a forged draft-rsa object opened with exit 0 (F1), a swapped temporary
renamed into place (F2), plaintext left by a killed open (F3), an object from
a device awaiting a decision opened (F4), a co-recipient's forgery released to
the caller before the trailer refused it (F5), a key replaced by an introduced
one still speaking (F6).
"""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli_objects import JULIET, ROMEO, Cli, cli, hold  # noqa: F401 - the fixture
from test_objects import Stores, pair, stores  # noqa: F401 - the fixture

from slixmpp_objenc.core import validate_peer_certificate
from slixmpp_objenc.core.armor import armor
from slixmpp_objenc.core.envelope import Recipient
from slixmpp_objenc.core.objects import seal_object_stream
from slixmpp_objenc.glue.directory import normalize_jid
from slixmpp_objenc.objects import open_object_to_path
from slixmpp_objenc.store import TrustState, account_store_path

FORGED = b"Romeo: the wedding is off. Burn this. -- J.\n"


# -- F1: profile downgrade to draft-rsa: anyone forges, `open` exits 0 ------------------


def test_f1_a_forged_draft_rsa_object_opens_with_exit_0(cli: Cli) -> None:  # noqa: F811
    # the attacker: Romeo's RSA certificate is public (PEP, 'objenc export --rsa')
    rsa_pem = cli.root / "romeo-rsa.pem"
    cli.ok(ROMEO, "export", "--rsa", str(rsa_pem))
    peer = validate_peer_certificate(rsa_pem.read_bytes(), normalize=normalize_jid)
    stream = seal_object_stream([FORGED], [Recipient(peer.public_key, peer.fingerprint)])
    forged = cli.file("forged.asc", "".join(armor(stream)).encode())
    # Romeo only ever exchanged authenticated objects with anyone (no --legacy anywhere)
    target = cli.root / "letter.txt"
    code = cli(ROMEO, "open", forged, "-o", str(target))
    assert code != 0, f"opened (exit 0): {cli.err!r}, wrote {target.read_bytes()!r}"
    assert not target.exists()


# -- F2: atomic_output trusts the temporary's *name* until the rename ------------------


async def test_f2_a_swapped_temporary_is_renamed_into_place(
    stores: Stores,  # noqa: F811
    tmp_path: Path,
) -> None:
    juliet, romeo = await pair(stores)
    genuine = os.urandom(200_000)
    sealed = await juliet.seal(genuine, [ROMEO], armored=False)
    shared = tmp_path / "shared"  # a shared disk, a group-writable project directory...
    shared.mkdir()
    target = shared / "contract.pdf"

    def carried() -> Iterator[bytes]:
        for i in range(0, len(sealed), 4096):
            if i == 8192:  # the attacker, while Romeo opens: swap the temporary
                for part in shared.glob(".contract.pdf.*.part"):
                    part.rename(shared / "stolen")  # Romeo's plaintext keeps going there
                    part.write_bytes(FORGED)
            yield sealed[i : i + 4096]

    opened = await open_object_to_path(romeo.keyring, carried(), target)
    assert opened.sender_jid == JULIET and opened.authenticated  # reported as Juliet's...
    assert target.read_bytes() == genuine  # ...fails today: the attacker's text is there


# -- F3: a killed `open -o` leaves unverified plaintext beside the target ----------------


_CHILD = textwrap.dedent(
    """
    import asyncio, os, sys
    from slixmpp_objenc.glue.directory import normalize_jid
    from slixmpp_objenc.keyring import Keyring
    from slixmpp_objenc.objects import open_object_to_path
    from slixmpp_objenc.store import SQLiteStorage

    store, sealed, target = sys.argv[1:4]
    data = open(sealed, "rb").read()

    def pieces():
        for i in range(0, len(data), 65536):
            if i >= 4 * 65536:
                os._exit(9)  # SIGKILL, power loss, OOM killer: no handler runs
            yield data[i : i + 65536]

    async def main():
        storage = SQLiteStorage(store)
        await storage.open()
        keyring = Keyring(storage, normalize=normalize_jid)
        await keyring.load()
        await open_object_to_path(keyring, pieces(), target)

    asyncio.run(main())
    """
)


async def test_f3_a_killed_open_leaves_unverified_plaintext(
    stores: Stores,  # noqa: F811
    tmp_path: Path,
) -> None:
    juliet, _romeo = await pair(stores)
    secret = b"the plan, in full; " * 40_000  # ~760 KB: several pieces
    sealed = tmp_path / "sealed.bin"
    sealed.write_bytes(await juliet.seal(secret, [ROMEO], armored=False))
    out = tmp_path / "out"
    out.mkdir()
    store = next(tmp_path.glob(f"*-{ROMEO}.sqlite3"))
    child = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", _CHILD, str(store), str(sealed), str(out / "plan.txt")],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        capture_output=True,
        check=False,
    )
    assert child.returncode == 9, child.stderr.decode()
    left = list(out.iterdir())
    assert left == [], f"left behind: {[(p.name, p.stat().st_size) for p in left]}"


# -- F4: a device awaiting a decision (a server-injected one) speaks, exit 0 --------------


def test_f4_an_object_from_a_device_awaiting_a_decision_opens(cli: Cli) -> None:  # noqa: F811
    # the server publishes a new device on Juliet's node; Romeo's plugin holds it for a decision
    cli.ok(JULIET, "keygen", "--key-size", "2048", store="server")
    injected = cli.root / "injected.pem"
    cli.ok(JULIET, "export", str(injected), store="server")
    romeo_store = account_store_path(cli.root / "data", ROMEO)
    hold(romeo_store, JULIET, injected.read_bytes(), TrustState.UNTRUSTED)
    # the server's device seals for Romeo (it read Romeo's node)
    romeo_pem = cli.root / "romeo.pem"
    cli.ok(ROMEO, "export", str(romeo_pem))
    cli.ok(JULIET, "import", str(romeo_pem), store="server")
    forged = str(cli.root / "forged.asc")
    cli.ok(JULIET, "seal", "--to", ROMEO, cli.file("f", FORGED), "-o", forged, store="server")
    target = cli.root / "letter.txt"
    code = cli(ROMEO, "open", forged, "-o", str(target))
    assert code != 0, f"opened (exit 0): {cli.err!r}"
    assert not target.exists()


# -- F5: open_object streams a co-recipient's forgery to `out` before refusing ------------


async def test_f5_open_object_releases_a_co_recipients_forgery(
    stores: Stores,  # noqa: F811
) -> None:
    import hashlib
    import hmac

    from test_review14_attacks import _co_recipient_secret, _forge, three

    from slixmpp_objenc.core import InvalidEnvelope
    from slixmpp_objenc.core.objects import _parse_header
    from slixmpp_objenc.objects import open_object

    juliet, romeo, mercutio = await three(stores)
    sealed = await juliet.seal(b"x" * 100, [ROMEO, "mercutio@verona.lit"], armored=False)
    size = int.from_bytes(sealed[8:12], "big")
    header_bytes = sealed[:size]
    secret = _co_recipient_secret(mercutio, juliet, header_bytes)
    forgery = FORGED * 20_000  # ~900 KB: many chunks
    chunks = _forge(header_bytes, secret[:32], forgery, 65536)
    digest = hashlib.sha256(header_bytes + b"".join(chunks)).digest()
    header, _, _ = _parse_header(header_bytes)
    mine = hmac.new(secret[32:], digest, "sha256").digest()
    forged = header_bytes + b"".join(chunks) + mine * header.wrap_count
    out = io.BytesIO()
    with pytest.raises(InvalidEnvelope):
        await open_object(romeo.keyring, forged, out=out)
    assert out.getvalue() == b"", f"{len(out.getvalue())} bytes of Mercutio's text released"


# -- F6: a newer key seen in an introduction is forgotten --------------------------------


async def test_f6_a_key_replaced_by_an_introduced_one_still_speaks(
    stores: Stores,  # noqa: F811
) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    from slixmpp_objenc.core import InvalidEnvelope
    from slixmpp_objenc.objects import open_object, plan_object

    juliet, romeo = await pair(stores)  # Romeo holds Juliet's E1, offline from now on
    await juliet.keyring.device.rotate_now(force=True)  # E2
    await juliet.keyring.device.rotate_now(force=True)  # E3
    e3_object = await juliet.seal(b"genuine, introducing E3", [ROMEO])
    assert (await romeo.open(e3_object))[0] == b"genuine, introducing E3"
    # the thief holds E2's private key (a backup of Juliet's retained keys)
    keys = juliet.keyring.device.keys
    assert keys is not None
    e2_sender = juliet.keyring.device.senders()[1]
    [e2] = [
        r for r in juliet.keyring.device._retired if r.fingerprint == e2_sender.encryption_id.hex()
    ]
    intro = (
        keys.identity_certificate.public_bytes(Encoding.DER),
        e2.certificate.public_bytes(Encoding.DER),
    )
    plan = plan_object(juliet.keyring, [ROMEO], sender_jid=JULIET, own_copies=False)
    stolen = b"".join(seal_object_stream([FORGED], plan.targets, sender=e2_sender, introduce=intro))
    with pytest.raises(InvalidEnvelope):  # dated now, after E3's notBefore
        await open_object(romeo.keyring, stolen, out=io.BytesIO())
