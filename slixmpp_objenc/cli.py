"""The ``objenc`` command: an account's key, certificate and peer certificates.

It works on the very store the plugin uses, one SQLite file per account at
``account_store_path(data_dir, bare_jid)``, through the same
:class:`~slixmpp_objenc.keyring.Keyring` and the same JID normalization
(slixmpp's stringprep). No network: a running client keeps its own view in
memory and sees changes made here when it next starts.

User errors (a bad certificate, an unknown fingerprint, a store that must not
be opened, an unreadable file) end in one line on stderr and exit status 1;
usage errors exit with status 2, as argparse does.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import string
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from .core import (
    CertificateError,
    Identity,
    ObjEncError,
    format_fingerprint,
    generate_identity,
    validate_peer_certificate,
    xmpp_addresses,
)
from .core.algorithms import MIN_RSA_BITS
from .core.certificates import DEFAULT_KEY_SIZE
from .core.devices import load_device
from .core.publication import PUBLICATION_SETTING, read_publication_record
from .core.timestamps import utcnow
from .core.trust import Observation
from .glue.directory import normalize_jid
from .keyring import Keyring, is_identity
from .store import PeerRecord, SQLiteStorage, TrustState, account_store_path, default_data_dir

__all__ = ["main"]

PROG = "objenc"
SHORT_GROUPS = 4
"""Groups of four hex digits in the short form of a fingerprint (64 bits)."""


class UserError(Exception):
    """A request that cannot be carried out; the message is shown as is."""


@dataclass(frozen=True, slots=True)
class Account:
    """The account the command works on, and where its store lives."""

    jid: str
    store: Path


# -- formatting ----------------------------------------------------------------


def _full(fingerprint: str) -> str:
    """Grouped upper-case hex on one line."""
    return format_fingerprint(fingerprint).replace("\n", " ")


def _short(fingerprint: str) -> str:
    """The first groups of the grouped form; also usable as a prefix for ``trust``."""
    return " ".join(_full(fingerprint).split(" ")[:SHORT_GROUPS])


def _when(value: datetime, *, seconds: bool = False) -> str:
    pattern = "%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M"
    return value.astimezone(UTC).strftime(pattern)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        text = str(exc.args[0])
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.splitlines())


# -- the store -----------------------------------------------------------------


async def _with_keyring(
    account: Account, action: Callable[[Keyring], Awaitable[int]], *, create: bool = False
) -> int:
    """Open the account's store, load a keyring from it, run ``action``, close the store.

    Without ``create``, a missing store is an error rather than a new empty file.
    """
    if not create and not account.store.exists():
        raise UserError(
            f"no store for {account.jid} at {account.store} "
            f"(run '{PROG} --jid {account.jid} keygen' first, or check --data-dir)"
        )
    storage = SQLiteStorage(account.store)
    await storage.open()
    try:
        keyring = Keyring(storage, normalize=normalize_jid)
        await keyring.load()
        return await action(keyring)
    finally:
        await storage.close()


async def _publication(keyring: Keyring, identity: Identity) -> str:
    """Whether our certificate is on our PEP node, as a running client last saw it."""
    recorded = read_publication_record(await keyring.storage.get_setting(PUBLICATION_SETTING))
    if recorded is None:
        return "unknown: no client has connected with this store yet"
    state, at = recorded
    ours = {identity.fingerprint} | (
        {keyring.device.keys.fingerprint} if keyring.device.keys else set()
    )
    if state.fingerprint and state.fingerprint not in ours:
        return "unknown for this certificate: the last one a client published differs"
    return f"{state.meaning} (as of {at})"


def _active_identity(account: Account, keyring: Keyring) -> Identity:
    identity = keyring.identity
    if identity is None:
        raise UserError(
            f"no identity for {account.jid} in {account.store} "
            f"(run '{PROG} --jid {account.jid} keygen')"
        )
    return identity


def _normalize_prefix(text: str) -> str:
    prefix = "".join(ch for ch in text if ch != ":" and not ch.isspace()).lower()
    if not prefix:
        raise UserError("empty fingerprint")
    if any(ch not in string.hexdigits for ch in prefix):
        raise UserError(f"{text!r} is not a hexadecimal fingerprint")
    return prefix


def _resolve(keyring: Keyring, jid: str, fingerprint: str) -> PeerRecord:
    """The one certificate held for ``jid`` whose fingerprint starts with the prefix."""
    prefix = _normalize_prefix(fingerprint)
    held = keyring.records(jid)
    if not held:
        raise UserError(f"no certificate is held for {jid}")
    matches = [r for r in held if r.fingerprint.startswith(prefix)]
    if not matches:
        raise UserError(f"no certificate held for {jid} has a fingerprint starting {fingerprint}")
    if len(matches) > 1:
        candidates = ", ".join(sorted(_short(r.fingerprint) for r in matches))
        raise UserError(
            f"fingerprint prefix {fingerprint} is ambiguous for {jid}: it matches "
            f"{len(matches)} certificates ({candidates}); give more digits"
        )
    return matches[0]


# -- the commands ----------------------------------------------------------------


async def _keygen(account: Account, args: argparse.Namespace) -> int:
    existed = account.store.exists()

    async def action(keyring: Keyring) -> int:
        current = keyring.identity
        if current is not None and not args.force:
            raise UserError(
                f"{account.jid} already has an identity ({_short(current.fingerprint)}) "
                f"in {account.store}; use --force to add a new active one"
            )
        identity = await asyncio.to_thread(
            generate_identity, account.jid, key_size=args.key_size, normalize=normalize_jid
        )
        await keyring.add_identity(identity, active=True)
        print(
            f"Created this device's keys for {account.jid}: an Ed25519 identity with "
            "X25519 and ML-KEM-768 encryption keys (what contacts use), and an "
            f"RSA-{args.key_size} certificate for contacts on the draft's profile only"
        )
        print(f"Store: {account.store}{'' if existed else ' (new)'}")
        if current is not None:
            print(
                f"The previous identity ({_short(current.fingerprint)}) is kept, inactive; "
                "a running client uses the new one after it restarts."
            )
        device = await keyring.device.ensure(account.jid)
        print("Fingerprint (SHA-256) of this device's identity, what contacts pin and verify:")
        print(format_fingerprint(device.fingerprint))
        print(f"RSA certificate (draft's profile): {_full(identity.fingerprint)}")
        return 0

    return await _with_keyring(account, action, create=True)


async def _show(account: Account, args: argparse.Namespace) -> int:
    async def action(keyring: Keyring) -> int:
        identity = _active_identity(account, keyring)
        if args.pem:
            sys.stdout.write(identity.certificate_pem().decode("ascii"))
            return 0
        certificate = identity.certificate
        names = xmpp_addresses(certificate)
        try:
            validate_peer_certificate(certificate, normalize=normalize_jid)
            status = "usable"
        except CertificateError as exc:
            status = f"NOT USABLE: {exc}"
        print(f"Account:     {account.jid}")
        print(f"Store:       {account.store}")
        print(f"JIDs:        {', '.join(names) if names else '(none)'}")
        if account.jid not in names:
            print(f"Warning:     the certificate does not name {account.jid}")
        print(f"RSA key:     {identity.private_key.key_size} bits (the draft's profile only)")
        print(f"Valid from:  {_when(certificate.not_valid_before_utc, seconds=True)}")
        print(f"Valid until: {_when(certificate.not_valid_after_utc, seconds=True)}")
        print(f"Status:      {status}")
        print(f"On PEP:      {await _publication(keyring, identity)}")
        inactive = len(keyring.identities) - 1
        if inactive:
            print(f"Inactive:    {inactive} older identit{'y' if inactive == 1 else 'ies'}")
        device = keyring.device.keys
        if device is not None:
            print("Device:      Ed25519 identity, X25519 encryption key (authenticated profile)")
            print(f"RSA:         {_full(identity.fingerprint)} (the draft's profile)")
            print("Fingerprint (SHA-256) of this device's identity, what contacts pin and verify:")
            print(format_fingerprint(device.fingerprint))
        else:
            print("Fingerprint (SHA-256):")
            print(format_fingerprint(identity.fingerprint))
        return 0

    return await _with_keyring(account, action)


async def _peers(account: Account, args: argparse.Namespace) -> int:
    async def action(keyring: Keyring) -> int:
        if args.peer is not None:
            peer = _peer_jid(args.peer)
            records = keyring.records(peer)
        else:
            records = keyring.all_records()
        own = account.jid
        ours = ""
        if keyring.identity is not None and args.peer in (None, own):
            ours = f"Our certificate on PEP: {await _publication(keyring, keyring.identity)}"
        if not records:
            suffix = f" for {_peer_jid(args.peer)}" if args.peer is not None else ""
            print(f"No peer certificates held{suffix}.")
            if ours:
                print(ours)
            return 0
        # our own account's other devices first, then contacts
        records.sort(key=lambda r: (r.jid != own, r.jid, r.first_seen, r.fingerprint))
        show = _full if args.full else _short
        rows = [
            (
                f"{r.jid} (own device)" if r.jid == own else r.jid,
                r.trust.value,
                r.source,
                "Ed25519" if is_identity(r.cert_pem) else "RSA",
                _label(keyring, r),
                _when(r.first_seen),
                _when(r.last_seen),
                show(r.fingerprint),
            )
            for r in records
        ]
        header = (
            "JID",
            "TRUST",
            "SOURCE",
            "KEY",
            "LABEL",
            "FIRST SEEN (UTC)",
            "LAST SEEN (UTC)",
            "FINGERPRINT",
        )
        for line in _table(header, rows):
            print(line)
        held = [r for r in records if r.jid == own and r.trust.pending]
        if held:
            print(
                f"{len(held)} certificate(s) on your own account's node are not used until "
                f"you decide: '{PROG} trust {own} FINGERPRINT' if it is a device of yours, "
                f"'{PROG} distrust {own} FINGERPRINT' if not (then change your password)."
            )
        if ours:
            print(ours)
        return 0

    return await _with_keyring(account, action)


def _label(keyring: Keyring, record: PeerRecord) -> str:
    """A device's label as its identity signed it (cleaned: printable, short), or '-'."""
    peer = keyring.validated(record)
    return (peer.label if peer is not None else None) or "-"


async def _set_trust(account: Account, args: argparse.Namespace, trust: TrustState) -> int:
    peer = _peer_jid(args.peer)

    async def action(keyring: Keyring) -> int:
        record = _resolve(keyring, peer, args.fingerprint)
        updated = await keyring.set_trust(peer, record.fingerprint, trust)
        if record.trust is updated.trust:
            change = f"already {updated.trust.value}"
        else:
            change = f"{record.trust.value} -> {updated.trust.value}"
        print(f"{peer}: {_full(record.fingerprint)}: {change}")
        return 0

    return await _with_keyring(account, action)


async def _trust(account: Account, args: argparse.Namespace) -> int:
    return await _set_trust(
        account, args, TrustState.VERIFIED if args.verified else TrustState.TOFU
    )


async def _distrust(account: Account, args: argparse.Namespace) -> int:
    return await _set_trust(account, args, TrustState.REVOKED)


async def _export(account: Account, args: argparse.Namespace) -> int:
    async def action(keyring: Keyring) -> int:
        # never a key: our device's two certificates, or the RSA one
        rsa = _active_identity(account, keyring).certificate_pem()
        pem = rsa if args.rsa else keyring.device.bundle_pem() or rsa
        if args.file is None or str(args.file) == "-":
            sys.stdout.write(pem.decode("ascii"))
        else:
            args.file.write_bytes(pem)
            print(f"Wrote the certificate of {account.jid} to {args.file}")
        return 0

    return await _with_keyring(account, action)


async def _import(account: Account, args: argparse.Namespace) -> int:
    pem = args.file.read_bytes()
    try:
        peer = load_device(pem, now=utcnow(), normalize=normalize_jid)
    except CertificateError as exc:
        raise UserError(f"{args.file}: {exc}") from exc
    if args.jid_for is None and len(peer.jids) != 1:
        raise UserError(
            f"the certificate names {len(peer.jids)} JIDs ({', '.join(sorted(peer.jids))}); "
            "use --jid-for to choose one"
        )
    target = _peer_jid(args.jid_for) if args.jid_for is not None else None
    if target is not None and target not in peer.jids:
        raise UserError(
            f"the certificate does not name {target} (it names {', '.join(sorted(peer.jids))})"
        )
    trust = TrustState.VERIFIED if args.verified else TrustState.TOFU
    existed = account.store.exists()

    async def action(keyring: Keyring) -> int:
        before = {jid: keyring.record(jid, peer.fingerprint) for jid in peer.jids}
        sightings = await keyring.observe(peer, source="manual", trust=trust, jid=target)
        if not existed:
            print(f"Store: {account.store} (new)")
        for sighting in sightings:
            old = before.get(sighting.jid)
            if old is None:
                what = f"added as {sighting.trust.value}"
            elif old.trust is sighting.trust:
                what = f"already held, {sighting.trust.value}"
            else:
                what = f"already held, {old.trust.value} -> {sighting.trust.value}"
            print(f"{sighting.jid}: {_full(sighting.fingerprint)}: {what}")
            if sighting.observation is Observation.CHANGED and sighting.previous:
                others = ", ".join(_short(fp) for fp in sighting.previous)
                print(f"  also held for {sighting.jid}: {others} (see '{PROG} peers')")
        return 0

    return await _with_keyring(account, action, create=True)


def _peer_jid(text: str) -> str:
    try:
        return normalize_jid(text)
    except ValueError:
        raise UserError(f"{text!r} is not a JID") from None


# -- the command line ------------------------------------------------------------

Command = Callable[[Account, argparse.Namespace], Coroutine[Any, Any, int]]


def _key_size(text: str) -> int:
    try:
        bits = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of bits: {text!r}") from None
    if bits < MIN_RSA_BITS:
        raise argparse.ArgumentTypeError(f"RSA keys under {MIN_RSA_BITS} bits are refused")
    return bits


class _Parser(argparse.ArgumentParser):
    """Never exits the process: :func:`main` turns the exit into its return value."""

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            sys.stderr.write(message)
        raise _ParserExit(status)


class _ParserExit(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _build_parser() -> argparse.ArgumentParser:
    description = (
        "Manage the slixmpp-objenc key store of an XMPP account: our key and "
        "certificate, and the peer certificates we hold with their trust states."
    )
    epilog = (
        "The store is the one the plugin uses (one SQLite file per account under "
        "--data-dir). A running client keeps its own view in memory: it sees changes "
        "made here when it next starts."
    )
    parser = _Parser(prog=PROG, description=description, epilog=epilog)
    _add_account_options(parser, default=None)
    # The same options after the subcommand too (objenc peers --jid me@example.org).
    common = _Parser(add_help=False)
    _add_account_options(common, default=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, command: Command, summary: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            parents=[common],
            help=summary,
            description=summary[:1].upper() + summary[1:] + ".",
        )
        sub.set_defaults(run=command)
        return sub

    keygen = add("keygen", _keygen, "create our key and certificate for the JID")
    keygen.add_argument(
        "--key-size",
        type=_key_size,
        default=DEFAULT_KEY_SIZE,
        metavar="N",
        help=f"RSA key size in bits (default {DEFAULT_KEY_SIZE}, at least {MIN_RSA_BITS})",
    )
    keygen.add_argument(
        "--force",
        action="store_true",
        help="add a new active identity even if one exists (the old one is kept, inactive)",
    )

    show = add("show", _show, "show our active certificate and whether it is on PEP")
    show.add_argument("--pem", action="store_true", help="print the certificate as PEM")

    peers = add("peers", _peers, "list the peer certificates held")
    peers.add_argument("peer", nargs="?", metavar="JID", help="only those held for this JID")
    peers.add_argument("--full", action="store_true", help="print full fingerprints")

    trust = add("trust", _trust, "trust a held peer certificate (tofu, or verified)")
    trust.add_argument("peer", metavar="JID", help="the peer's bare JID")
    trust.add_argument(
        "fingerprint",
        metavar="FINGERPRINT",
        help="its SHA-256 fingerprint or a unique prefix (hex; colons and spaces ignored)",
    )
    trust.add_argument(
        "--verified",
        action="store_true",
        help="mark it verified (you compared the full fingerprint) instead of tofu",
    )

    distrust = add(
        "distrust",
        _distrust,
        "revoke a held peer certificate (never encrypted to again unless trusted by hand)",
    )
    distrust.add_argument("peer", metavar="JID", help="the peer's bare JID")
    distrust.add_argument(
        "fingerprint",
        metavar="FINGERPRINT",
        help="its SHA-256 fingerprint or a unique prefix (hex; colons and spaces ignored)",
    )

    export = add(
        "export",
        _export,
        "write this device's identity and encryption certificates as PEM (never a key)",
    )
    export.add_argument(
        "file", nargs="?", type=Path, metavar="FILE", help="where to write it (default stdout)"
    )
    export.add_argument(
        "--rsa", action="store_true", help="the RSA certificate instead (draft's profile)"
    )

    imp = add("import", _import, "validate a peer device's certificate(s) and hold it")
    imp.add_argument(
        "file",
        type=Path,
        metavar="FILE",
        help="an identity certificate and its encryption certificate (PEM), or an RSA one",
    )
    imp.add_argument(
        "--jid-for",
        metavar="JID",
        help="the JID to hold it for (needed when it names several)",
    )
    imp.add_argument(
        "--verified",
        action="store_true",
        help="mark it verified (you compared the full fingerprint) instead of tofu",
    )
    from .cli_objects import add_object_commands  # here: that module imports this one

    add_object_commands(add)  # seal, open
    return parser


def _add_account_options(parser: argparse.ArgumentParser, *, default: object) -> None:
    parser.add_argument(
        "--jid",
        default=default,
        help="the account's bare JID: selects its store (required)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=default,
        metavar="DIR",
        help=f"where the stores live (default {default_data_dir()})",
    )


def main(argv: list[str] | None = None) -> int:
    """Run the ``objenc`` command; returns the exit status."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
        if not args.jid:
            parser.error("the following arguments are required: --jid")
    except _ParserExit as exc:
        return exc.status
    try:
        jid = _peer_jid(args.jid)
        data_dir = args.data_dir if args.data_dir is not None else default_data_dir()
        account = Account(jid, account_store_path(data_dir, jid))
        command: Command = args.run
        return asyncio.run(command(account, args))
    except (UserError, ObjEncError, KeyError, ValueError, OSError, sqlite3.Error) as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
