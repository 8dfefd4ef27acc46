"""``objenc seal`` and ``objenc open``: files and text sealed for XMPP
identities (:mod:`slixmpp_objenc.objects`) on the account's store.

Exit status: 0; **1** for an object that does not open, with one message
whatever the reason ("this object could not be opened"); **2** for usage and
local errors (a recipient unknown, untrusted, awaiting a decision or not
verified; no store or keys; a file that cannot be read or written).

Nothing is left on failure. ``--output FILE`` is written to a temporary file
in its directory and renamed at the end. Plaintext for stdout is spooled (in
memory up to :data:`SPOOL_IN_MEMORY`, then in a nameless temporary file in
``$TMPDIR``, deleted when closed) and copied out only once the object opened
completely. A sealed object goes to stdout as it is made: it holds nothing
secret, and one cut short never opens. Both stream in bounded memory.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import IO

from .cli import (
    PROG,
    Account,
    Command,
    UserError,
    _one_line,
    _peer_jid,
    _short,
    _when,
    _with_keyring,
)
from .core import InvalidEnvelope, ObjEncError
from .keyring import Keyring
from .objects import (
    ObjectDevice,
    OpenedObject,
    SealedObject,
    atomic_output,
    open_object,
    open_object_to_path,
    seal_object,
)
from .store import TrustState

__all__ = ["REFUSED", "SPOOL_IN_MEMORY", "add_object_commands"]

REFUSED = "this object could not be opened"
"""The one message for every object that does not open (no oracle)."""
SPOOL_IN_MEMORY = 8 * 1024 * 1024
"""Bytes of plaintext for stdout kept in memory before spooling to a temporary file."""
_COPY = 1024 * 1024

Add = Callable[[str, Command, str], argparse.ArgumentParser]


def add_object_commands(add: Add) -> None:
    """Register ``seal`` and ``open`` with the ``objenc`` parser's ``add``."""
    seal = add("seal", _seal, "seal a file or text for XMPP accounts' devices (armored)")
    seal.add_argument("file", nargs="?", type=Path, metavar="FILE", help="default stdin")
    seal.add_argument(
        "--to",
        action="append",
        required=True,
        metavar="JID",
        help="a recipient (repeat for several): every usable device of it, and our own",
    )
    seal.add_argument(
        "--require-verified",
        action="store_true",
        help="refuse unless every recipient device is verified",
    )
    seal.add_argument(
        "--hybrid",
        action="store_true",
        help="post-quantum hybrid (ML-KEM-768): every recipient device must have a key",
    )
    seal.add_argument(
        "--legacy",
        action="store_true",
        help="seal in the draft's profile (RSA, unauthenticated) for a recipient without an "
        "identity",
    )
    seal.add_argument("--binary", action="store_true", help="binary instead of armored text")
    seal.add_argument(
        "--output", "-o", type=Path, metavar="FILE", help="default stdout; written atomically"
    )
    opening = add("open", _open, "open an object sealed for this account (plaintext to stdout)")
    opening.add_argument("file", nargs="?", type=Path, metavar="FILE", help="default stdin")
    opening.add_argument(
        "--output",
        "-o",
        type=Path,
        metavar="FILE",
        help="default stdout; written atomically, only once the object opened",
    )
    opening.add_argument(
        "--legacy",
        action="store_true",
        help="also open the draft's profile (RSA): it proves no one wrote it",
    )
    opening.add_argument(
        "--accept-untrusted",
        action="store_true",
        help="also open objects from a sender device that awaits your decision",
    )


async def _seal(account: Account, args: argparse.Namespace) -> int:
    return await _guarded(account, lambda: _seal_now(account, args))


async def _open(account: Account, args: argparse.Namespace) -> int:
    return await _guarded(account, lambda: _open_now(account, args))


async def _guarded(account: Account, run: Callable[[], Awaitable[int]]) -> int:
    """``run()``, its errors turned into this command's exit statuses."""
    try:
        return await run()
    except InvalidEnvelope:
        print(f"{PROG}: error: {REFUSED}", file=sys.stderr)
        return 1
    except (UserError, ObjEncError, KeyError, ValueError, OSError, sqlite3.Error) as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 2


async def _seal_now(account: Account, args: argparse.Namespace) -> int:
    recipients = [_peer_jid(jid) for jid in args.to]
    to_stdout = _stdout(args.output)
    if to_stdout and args.binary and sys.stdout.isatty():
        raise UserError("a binary object is not written to a terminal: use --output or redirect")

    async def action(keyring: Keyring) -> int:
        seal = functools.partial(
            seal_object,
            keyring,
            sender_jid=account.jid,
            armored=not args.binary,
            require_verified=args.require_verified,
            hybrid=args.hybrid,
            allow_legacy=args.legacy,
        )
        with _input(args.file) as source:
            if to_stdout:
                out: IO[bytes] | IO[str] = sys.stdout.buffer if args.binary else sys.stdout
                sys.stdout.flush()
                sealed = await seal(source, recipients, out=out)
                out.flush()
            else:
                with atomic_output(args.output) as file:
                    sealed = await seal(source, recipients, out=file)
        _report_sealed(sealed)
        return 0

    return await _with_keyring(account, action)


async def _open_now(account: Account, args: argparse.Namespace) -> int:
    async def action(keyring: Keyring) -> int:
        with _input(args.file) as source:
            options = {"allow_legacy": args.legacy, "allow_untrusted": args.accept_untrusted}
            if not _stdout(args.output):
                opened = await open_object_to_path(keyring, source, args.output, **options)
                _tell(opened)
                return 0
            with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
                opened = await open_object(keyring, source, out=spool, hold_back=False, **options)
                _tell(opened)  # before the plaintext: never glued to its last line
                spool.seek(0)
                try:
                    shutil.copyfileobj(spool, sys.stdout.buffer, _COPY)
                    sys.stdout.buffer.flush()
                except BrokenPipeError:  # `objenc open | head`: the reader had enough
                    with contextlib.suppress(OSError):
                        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0

    return await _with_keyring(account, action)


def _tell(opened: OpenedObject) -> None:
    """Who wrote it, on standard error, before any plaintext goes out."""
    for line in describe(opened):
        print(line, file=sys.stderr)
    sys.stderr.flush()


def describe(opened: OpenedObject) -> list[str]:
    """Who wrote an object, for people: what :class:`OpenedObject` proves."""
    dated = f"dated {_when(opened.created)} UTC by the sender's clock"
    if not opened.authenticated:
        return [
            "unauthenticated (draft's profile: anyone holding your certificate "
            "could have written it)",
            dated,
        ]
    profile = "authenticated, post-quantum hybrid" if opened.hybrid else "authenticated"
    if opened.this_device or opened.sender_fingerprint is None:
        return [f"from {opened.sender_jid}, this device ({profile})", dated]
    device = f"device {_short(opened.sender_fingerprint)}"
    if opened.label:
        device += f" ({opened.label})"
    trust = opened.trust.value if opened.trust is not None else "unknown"
    if opened.trust is TrustState.UNTRUSTED:
        trust += f", awaiting your decision ('{PROG} peers')"
    return [f"from {opened.sender_jid}, {device}, {trust} ({profile})", dated]


def _report_sealed(sealed: SealedObject) -> None:
    contacts: dict[str, int] = {}
    own = 0
    for device in sealed.devices:
        if device.own:
            own += 1
        else:
            contacts[device.jid] = contacts.get(device.jid, 0) + 1
    whom = [f"{jid} ({_devices(n)})" for jid, n in contacts.items()]
    if own:
        whom.append(f"your own account ({_devices(own)})")
    print(f"sealed ({sealed.profile}) for {', '.join(whom)}", file=sys.stderr)
    for device in sealed.left_out:
        print(f"left out: {_left(device)}", file=sys.stderr)


def _devices(count: int) -> str:
    return f"{count} device{'' if count == 1 else 's'}"


def _left(device: ObjectDevice) -> str:
    return f"{device.jid}, device {_short(device.fingerprint)}: it {device.reason}"


def _stdout(output: Path | None) -> bool:
    return output is None or str(output) == "-"


@contextlib.contextmanager
def _input(path: Path | None) -> Iterator[IO[bytes]]:
    """The file to read (stdin for none or ``-``), opened in binary."""
    if path is None or str(path) == "-":
        yield sys.stdin.buffer
        return
    with path.open("rb") as file:
        yield file
