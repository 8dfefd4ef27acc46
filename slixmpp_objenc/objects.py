"""Objects outside XMPP on an account's store: files and text sealed for the
devices of XMPP identities, opened with the keys, certificates and trust of
stanzas (docs/PROTOCOL.md "Objects"; container :mod:`.core.objects`, text
form :mod:`.core.armor`). No slixmpp: applications and ``objenc`` share it.

**For whom** (:func:`plan_object`): every usable device of each recipient
JID and, as for stanzas, our account's other usable devices and this one
(``own_copies``). A JID is refused (:class:`EncryptionError`, nothing read
or written) when none of its certificates is usable, when one awaits a
decision (``untrusted``), or with ``require_verified`` when one is not
``verified`` (our own other devices that are not are left out). One object,
one profile: ``auth-1`` (``hybrid``: ``auth-pq-1``, every recipient device
with an ML-KEM key) when every recipient device is an identity; if one is
RSA only the draft's ``draft-rsa`` (no sender authentication) can reach it,
refused unless ``allow_legacy``, and then for RSA devices only. Our devices
that cannot open the profile are left out and reported.

**Who wrote it** (:func:`open_object`): the object names its sender
device's ids, no JID. The sender is the identity held with that fingerprint,
under any JID (none, revoked under one, or a device of ours not accepted:
refused), with the stanzas' rules (``resolve_sender``, ``superseded_at``
against ``created``; PROTOCOL.md 13.7, 13.10); a newer encryption
certificate the object introduces counts for it if it chains to the held
identity (it is not stored). Held under several JIDs: the least trusted is
reported. Every failure is the one opaque :class:`InvalidEnvelope`.

**Streaming**: pieces in, a few chunks in memory. The header (at most 256
KiB) is read and the keys used on the event loop, the chunks in a worker
thread. Plaintext is complete and the sender's only once opening returned:
:func:`open_object_to_path` renames a temporary file at the end.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Final, TypeVar, cast

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding

from .core import CertificateError, EncryptionError, PeerCertificate, Recipient, format_fingerprint
from .core.armor import armor
from .core.auth_envelope import MAX_WRAPS, AuthRecipient
from .core.devices import validate_device
from .core.objects import (
    AUTH_PROFILE,
    DEFAULT_CHUNK_SIZE,
    DRAFT_PROFILE,
    HYBRID_PROFILE,
    ObjectHeader,
    open_object_stream,
    seal_object_stream,
)
from .core.opening import SUPERSEDED_SLACK
from .core.timestamps import utcnow
from .held_certificates import encryption_valid, newer_encryption
from .keyring import Keyring
from .objects_io import ObjectSource, atomic_output, object_bytes
from .objects_io import pieces as read_pieces
from .store import PeerRecord, TrustState

__all__ = [
    "ObjectDevice",
    "ObjectPlan",
    "ObjectSource",
    "OpenedObject",
    "SealedObject",
    "atomic_output",
    "open_object",
    "open_object_to_path",
    "plan_object",
    "seal_object",
]

HOLD_IN_MEMORY: Final = 8 * 1024 * 1024
"""Plaintext held back in memory by :func:`open_object`, at most; beyond, on disk."""
PIECE: Final = 256 * 1024
"""Bytes read from a file at once."""
_LEAST_TRUSTED_LAST: Final = ("verified", "tofu", "unpublished", "untrusted")
_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True, slots=True)
class ObjectDevice:
    """A device an object is sealed for, or left out."""

    jid: str
    fingerprint: str
    """Its identity's (or RSA certificate's) SHA-256 fingerprint, hex."""
    own: bool
    """A device of our own account (this one included)."""
    reason: str = ""
    """For a device left out: why."""


@dataclass(frozen=True, slots=True)
class ObjectPlan:
    """Whom an object is sealed for, and how (:func:`plan_object`)."""

    profile: str
    """``auth-1``, ``auth-pq-1`` or ``draft-rsa``."""
    devices: tuple[ObjectDevice, ...]
    left_out: tuple[ObjectDevice, ...]
    """Our own devices that cannot open this profile (or, with
    ``require_verified``, are not verified), and with ``allow_legacy`` the
    identities of recipients that also have an RSA device."""
    targets: tuple[AuthRecipient, ...] | tuple[Recipient, ...]
    """What :func:`~.core.objects.seal_object_stream` seals for, in ``devices``' order."""


@dataclass(frozen=True, slots=True)
class SealedObject:
    """What :func:`seal_object` did."""

    profile: str
    devices: tuple[ObjectDevice, ...]
    left_out: tuple[ObjectDevice, ...]
    size: int
    """Bytes (binary) or characters (armored) of the object."""
    data: bytes | str | None = None
    """The object itself when no ``out`` was given (armored: text)."""


@dataclass(frozen=True, slots=True)
class OpenedObject:
    """What :func:`open_object` proved about an object it opened."""

    profile: str
    created: datetime
    """The sender's date (its clock): bound to the object, checked against nothing."""
    authenticated: bool
    """Whether the sender device is proven (``auth-1``, ``auth-pq-1``); the
    draft's profile proves no one: anyone holding our certificate could have
    written it, and the four fields below are then ``None``/``False``."""
    hybrid: bool
    sender_jid: str | None
    sender_fingerprint: str | None
    """The sender device's identity fingerprint (hex)."""
    trust: TrustState | None
    """Its trust state as held (``None`` for this very device)."""
    this_device: bool
    label: str | None
    """The sender device's label, as its identity signed it."""
    size: int
    """Bytes of plaintext written."""


# -- sealing ------------------------------------------------------------------------


def plan_object(
    keyring: Keyring,
    recipients: Sequence[str],
    *,
    sender_jid: str,
    require_verified: bool = False,
    hybrid: bool = False,
    allow_legacy: bool = False,
    own_copies: bool = True,
) -> ObjectPlan:
    """Whom an object to ``recipients`` is sealed for (see the module notes);
    :class:`EncryptionError` with the reason when it must not be sealed."""
    own_bare, mine = _bare(keyring, sender_jid), keyring.device.certificate()
    if mine is not None and own_bare not in mine.jids:
        raise EncryptionError(f"this store's device is not one of {own_bare}")
    if isinstance(recipients, str):
        raise EncryptionError("recipients is a list of JIDs, not one JID as a string")
    jids = list(dict.fromkeys(_bare(keyring, jid) for jid in recipients))
    if not jids:
        raise EncryptionError("no recipient: name at least one JID")
    contacts = [(jid, peer) for jid in jids for peer in _devices(keyring, jid, own_bare, mine)]
    for jid, peer in contacts if require_verified else ():
        if (trust := _trust(keyring, jid, peer, mine)) not in (None, TrustState.VERIFIED):
            raise EncryptionError(
                f"{jid}: device {_short(peer.fingerprint)} is {trust}, not verified"
            )
    legacy = ", ".join(sorted({jid for jid, peer in contacts if not peer.authenticated}))
    if legacy and hybrid:
        raise EncryptionError(f"hybrid: {legacy} has devices of the draft's profile (RSA)")
    if legacy and not allow_legacy:
        raise EncryptionError(
            f"{legacy} has devices of the draft's profile (RSA): one object has one profile, "
            "and the draft's authenticates no one (anyone holding a recipient's certificate "
            "could have written it); allow it (--legacy) to seal for RSA devices only"
        )
    profile = DRAFT_PROFILE if legacy else HYBRID_PROFILE if hybrid else AUTH_PROFILE
    candidates = [(jid, peer, _unfit(peer, profile), False) for jid, peer in contacts]
    if own_copies:
        candidates += _own_copies(keyring, own_bare, mine, profile, require_verified)
    chosen: dict[str, tuple[str, PeerCertificate]] = {}
    left: dict[str, ObjectDevice] = {}
    for jid, peer, why, own_copy in candidates:
        if why is None:
            chosen.setdefault(peer.fingerprint, (jid, peer))
        elif profile == HYBRID_PROFILE and not own_copy:
            raise EncryptionError(f"hybrid: device {_short(peer.fingerprint)} of {jid} {why}")
        else:
            left.setdefault(
                peer.fingerprint, ObjectDevice(jid, peer.fingerprint, jid == own_bare, why)
            )
    reached = {jid for jid, _, why, _ in candidates if why is None}
    if unreached := [jid for jid in jids if jid not in reached]:
        raise EncryptionError(f"{', '.join(unreached)}: no device opens the draft's profile")
    if len(chosen) > MAX_WRAPS:
        raise EncryptionError(f"{len(chosen)} devices: an object is sealed for at most {MAX_WRAPS}")
    devices = tuple(ObjectDevice(jid, fp, jid == own_bare) for fp, (jid, _) in chosen.items())
    peers = [peer for _, peer in chosen.values()]
    targets: tuple[AuthRecipient, ...] | tuple[Recipient, ...] = (
        tuple(map(_rsa_recipient, peers)) if legacy else tuple(map(_auth_recipient, peers))
    )
    left_out = tuple(device for fp, device in left.items() if fp not in chosen)
    return ObjectPlan(profile, devices, left_out, targets)


def _bare(keyring: Keyring, jid: str) -> str:
    bare = keyring.bare(jid)
    if bare is None:
        raise EncryptionError(f"{jid!r} is not a valid JID")
    return bare


def _devices(
    keyring: Keyring, jid: str, own: str, mine: PeerCertificate | None
) -> list[PeerCertificate]:
    """A recipient JID's devices to seal for (ours: this one too), or why not."""
    if pending := keyring.pending(jid):
        raise EncryptionError(
            f"{jid}: {len(pending)} certificate(s) await your decision "
            "(objenc peers, then trust or distrust): nothing is sealed"
        )
    devices = keyring.usable(jid) + ([mine] if jid == own and mine is not None else [])
    if not devices:
        raise EncryptionError(
            f"no usable certificate for {jid}: unknown or untrusted (let the plugin "
            "discover it, or 'objenc import' its certificate)"
        )
    return devices


_Candidate = tuple[str, PeerCertificate, str | None, bool]


def _own_copies(
    keyring: Keyring, own: str, mine: PeerCertificate | None, profile: str, verified: bool
) -> list[_Candidate]:
    """Our account's devices, each with why it is left out (``None``: it is not)."""
    copies: list[_Candidate] = []
    for peer in keyring.usable(own):
        unverified = verified and _trust(keyring, own, peer, mine) not in (None, "verified")
        copies.append((own, peer, "is not verified" if unverified else _unfit(peer, profile), True))
    rsa_identity = keyring.identity
    if profile == DRAFT_PROFILE and rsa_identity is not None:
        try:
            ours = validate_device(rsa_identity.certificate, normalize=keyring.normalize)
        except CertificateError as exc:
            raise EncryptionError(f"our RSA certificate is not usable: {exc}") from exc
        copies.append((own, ours, None, True))
    elif mine is not None:
        copies.append((own, mine, _unfit(mine, profile), True))
    return copies


def _trust(
    keyring: Keyring, jid: str, peer: PeerCertificate, mine: PeerCertificate | None
) -> TrustState | None:
    if mine is not None and peer.fingerprint == mine.fingerprint:
        return None  # this very device
    record = keyring.record(jid, peer.fingerprint)
    return record.trust if record is not None else TrustState.UNTRUSTED


def _unfit(peer: PeerCertificate, profile: str) -> str | None:
    """Why ``peer`` cannot open an object of ``profile``, if it cannot."""
    if profile == DRAFT_PROFILE:
        rsa_key = isinstance(peer.public_key, rsa.RSAPublicKey)
        return None if rsa_key else "is an identity: it does not open the draft's profile"
    if not peer.authenticated or peer.encryption is None:
        return "is of the draft's profile (RSA): it does not open this one"
    if profile == HYBRID_PROFILE and peer.encryption.kem is None:
        return "has no ML-KEM key"
    return None


def _auth_recipient(peer: PeerCertificate) -> AuthRecipient:
    """As the glue's outbound one: an identity with its encryption key (and ML-KEM one)."""
    if peer.encryption is None:  # excluded by _unfit
        raise EncryptionError(f"no encryption certificate for {peer.fingerprint}")
    kem = peer.encryption.kem
    kem_id = None if kem is None else bytes.fromhex(kem.fingerprint)
    ids = bytes.fromhex(peer.fingerprint), bytes.fromhex(peer.encryption.fingerprint)
    return AuthRecipient(*ids, peer.encryption.public_key, kem_id, kem.public_key if kem else None)


def _rsa_recipient(peer: PeerCertificate) -> Recipient:
    if not isinstance(peer.public_key, rsa.RSAPublicKey):  # excluded by _unfit
        raise EncryptionError(f"{peer.fingerprint} is not an RSA certificate")
    return Recipient(peer.public_key, peer.fingerprint)


def _short(fingerprint: str) -> str:
    return " ".join(format_fingerprint(fingerprint).split()[:4])


async def seal_object(
    keyring: Keyring,
    source: ObjectSource,
    recipients: Sequence[str],
    *,
    sender_jid: str,
    out: IO[bytes] | IO[str] | None = None,
    armored: bool = True,
    require_verified: bool = False,
    hybrid: bool = False,
    allow_legacy: bool = False,
    own_copies: bool = True,
    introduce: bool = True,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> SealedObject:
    """Seal ``source`` for ``recipients`` (bare JIDs) as ``sender_jid``, our
    account (:func:`plan_object` says for which devices), and write the object
    to ``out`` as it is made: armored text (to a text or binary stream), or
    ``armored=False`` binary. Without ``out`` it is returned in
    :attr:`SealedObject.data` (small objects only). ``introduce`` (the
    default) carries our identity and encryption certificates in the header,
    so a recipient who holds our identity opens it after our key rotated
    (the header then shows them, our JID included). :class:`EncryptionError`
    before anything is read or written, for any reason not to seal; I/O
    errors of ``source`` and ``out`` pass through (what was written is then
    an object cut short: it never opens)."""
    rules = {"require_verified": require_verified, "hybrid": hybrid, "own_copies": own_copies}
    plan = plan_object(
        keyring, recipients, sender_jid=sender_jid, allow_legacy=allow_legacy, **rules
    )
    collected = None if out is not None else io.StringIO() if armored else io.BytesIO()
    target: IO[bytes] | IO[str] = out if out is not None else cast("IO[str]", collected)
    text = _is_text(target)
    if text and not armored:
        raise EncryptionError("a binary object is written to a binary stream")
    sender = None
    introduction = None
    if plan.profile != DRAFT_PROFILE:
        keys, senders = keyring.device.keys, keyring.device.senders()
        if keys is None or not senders:
            raise EncryptionError("no device keys in this store (run 'objenc keygen')")
        sender = senders[0]
        if introduce:
            introduction = (
                keys.identity_certificate.public_bytes(Encoding.DER),
                keys.encryption_certificate.public_bytes(Encoding.DER),
            )
    stream = seal_object_stream(
        read_pieces(source, max(chunk_size, PIECE)),
        plan.targets,
        sender=sender,
        hybrid=plan.profile == HYBRID_PROFILE,
        introduce=introduction,
        chunk_size=chunk_size,
    )
    pieces: Iterator[bytes | str] = armor(stream) if armored else stream
    size = sum(await _pump(pieces, _writer(target, text=text)))
    data = collected.getvalue() if collected is not None else None
    return SealedObject(plan.profile, plan.devices, plan.left_out, size, data)


def _is_text(out: IO[bytes] | IO[str]) -> bool:
    mode = getattr(out, "mode", "b")
    return isinstance(out, io.TextIOBase) or (isinstance(mode, str) and "b" not in mode)


def _writer(out: IO[bytes] | IO[str], *, text: bool) -> Callable[[bytes | str], int]:
    def write(piece: bytes | str) -> int:
        if text:
            cast("IO[str]", out).write(piece if isinstance(piece, str) else piece.decode("ascii"))
        else:
            cast("IO[bytes]", out).write(piece.encode("ascii") if isinstance(piece, str) else piece)
        return len(piece)

    return write


async def _pump(pieces: Iterator[_T], write: Callable[[_T], _R]) -> list[_R]:
    """``write`` each piece in a worker thread; what it returned for each.
    Cancelled: the thread stops at the next piece."""
    stop = threading.Event()

    def run() -> list[_R]:
        done = []
        for piece in pieces:
            if stop.is_set():
                break
            done.append(write(piece))
        return done

    try:
        return await asyncio.to_thread(run)
    finally:
        stop.set()


# -- opening ------------------------------------------------------------------------


async def open_object(
    keyring: Keyring,
    source: ObjectSource,
    *,
    out: IO[bytes],
    allow_legacy: bool = False,
    allow_untrusted: bool = False,
    hold_back: bool = True,
) -> OpenedObject:
    """Open an object (armored or binary: told by its first bytes) sealed for
    this store's device, write its plaintext to ``out`` and say who wrote it.

    Nothing reaches ``out`` until the whole object proved itself (held back in
    memory, beyond 8 MiB in a deleted temporary file): ``hold_back=False``
    streams each chunk as it opens, for callers that throw the output away on
    failure themselves (:func:`open_object_to_path`, the command line).
    :class:`InvalidEnvelope`, the one opaque error, for every object that does
    not open (not ours, tampered, cut short, from a sender not held, revoked or
    not accepted...). The draft's profile (RSA) proves no one wrote it: opened
    only with ``allow_legacy``. A sender device held for a decision
    (``untrusted``): :class:`EncryptionError` unless ``allow_untrusted``, as
    sealing to it is refused. :class:`EncryptionError` when the store has no
    keys; I/O errors of ``source`` and ``out`` pass through."""
    own, rsa_identities = keyring.device.senders(), keyring.identities
    if not allow_legacy and own:  # the draft's profile: anyone could have written it
        rsa_identities = []
    if not own and not rsa_identities:
        raise EncryptionError("no keys in this store to open an object with (run 'objenc keygen')")
    lookup = _SenderLookup(keyring)
    header, plaintext = open_object_stream(
        object_bytes(source, PIECE), own=own, rsa_identities=rsa_identities, resolve_sender=lookup
    )
    if not hold_back:
        size = sum(await _pump(plaintext, _writer(out, text=False)))
        return await _accepted(lookup, lookup.opened(header, size), allow_untrusted)
    with tempfile.SpooledTemporaryFile(max_size=HOLD_IN_MEMORY) as held:
        size = sum(await _pump(plaintext, _writer(held, text=False)))
        opened = await _accepted(lookup, lookup.opened(header, size), allow_untrusted)
        held.seek(0)
        await asyncio.to_thread(shutil.copyfileobj, held, out, PIECE)
    return opened


async def _accepted(
    lookup: _SenderLookup, opened: OpenedObject, allow_untrusted: bool
) -> OpenedObject:
    """The opened object, once its sender may speak; a newer encryption
    certificate it introduced is kept (its predecessor then speaks only for
    what is dated before it, as if read from the sender's node)."""
    if lookup.learned is not None and lookup.found is not None:
        await lookup.keyring.observe(lookup.learned, source="object", jid=lookup.found[0])
    if opened.trust is TrustState.UNTRUSTED and not allow_untrusted:
        raise EncryptionError(
            f"written by device {opened.sender_fingerprint} of {opened.sender_jid}, which "
            "awaits your decision: accept it ('objenc trust'), then open it again"
        )
    return opened


async def open_object_to_path(
    keyring: Keyring,
    source: ObjectSource,
    path: str | os.PathLike[str],
    *,
    allow_legacy: bool = False,
    allow_untrusted: bool = False,
) -> OpenedObject:
    """:func:`open_object` into the file ``path`` (mode 0600), written beside it
    and given that name only once the object opened (:func:`atomic_output`): on
    any failure nothing is left, and a file already at ``path`` stays as it was."""
    with atomic_output(path) as out:
        return await open_object(
            keyring,
            source,
            out=out,
            allow_legacy=allow_legacy,
            allow_untrusted=allow_untrusted,
            hold_back=False,
        )


class _SenderLookup:
    """The :data:`~.core.objects.ObjectSenderResolver` of one opening, on the
    keyring; remembers whom it found, for :meth:`opened`."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring
        self.found: tuple[str, PeerRecord | None] | None = None
        self.learned: PeerCertificate | None = None
        """A newer encryption certificate the object introduced, once it opened:
        kept, so the key it replaced stops speaking for later objects (§13.10)."""

    def __call__(self, header: ObjectHeader) -> X25519PublicKey | None:
        identity, encryption = header.sender_identity_id, header.sender_encryption_id
        if identity is None or encryption is None:
            return None
        keyring, fingerprint = self.keyring, identity.hex()
        keys = keyring.device.keys
        candidates: list[tuple[str, PeerRecord | None]]
        if keys is not None and fingerprint == keys.fingerprint:  # this very device
            mine = keyring.device.certificate()
            candidates = [(min(mine.jids), None)] if mine is not None and mine.jids else []
        else:
            held = [r for r in keyring.all_records() if r.fingerprint == fingerprint]
            if any(r.trust is TrustState.REVOKED for r in held):
                return None  # rejected under one JID: it speaks under none
            candidates = [(r.jid, r) for r in held]
        found = []
        for jid, record in candidates:
            key = keyring.resolve_sender(jid, identity, encryption)
            if key is None and record is not None:
                key = self._introduced(record, header)
            if key is None:
                continue
            replaced = keyring.superseded_at(jid, identity, encryption)
            if replaced is not None and header.created > replaced + SUPERSEDED_SLACK:
                continue  # a replaced key does not speak for objects after its time
            rank = _LEAST_TRUSTED_LAST.index(record.trust.value) if record else -1
            found.append((-rank, jid, record, key))
        if not found:
            return None
        _, jid, record, key = min(found, key=lambda f: (f[0], f[1]))
        self.found = jid, record
        return key

    def _introduced(self, record: PeerRecord, header: ObjectHeader) -> X25519PublicKey | None:
        """The introduced encryption certificate's key, if it chains to the held
        identity, is valid now and newer than the one held (never a rollback)."""
        mine, now = self.keyring.device.certificate(), utcnow()
        if header.introduction is None or header.sender_encryption_id is None:
            return None
        if mine is not None and record.jid in mine.jids and record.trust is TrustState.UNTRUSTED:
            return None  # a device of ours not accepted does not speak as us
        normalize = self.keyring.normalize
        try:
            peer = validate_device(
                record.cert_pem, encryption=header.introduction[1], now=now, normalize=normalize
            )
        except CertificateError:
            return None
        encryption = peer.encryption
        if (
            encryption is None
            or encryption.fingerprint != header.sender_encryption_id.hex()
            or record.jid not in peer.jids
            or not encryption_valid(peer, now)
            or newer_encryption(record.encryption_pem, peer) == record.encryption_pem
        ):
            return None
        self.learned = peer
        return encryption.public_key

    def opened(self, header: ObjectHeader, size: int) -> OpenedObject:
        if not header.authenticated or self.found is None or header.sender_identity_id is None:
            return OpenedObject(
                header.profile, header.created, False, False, None, None, None, False, None, size
            )
        jid, record = self.found
        device = self.keyring.device.certificate() if record is None else None
        peer = device if record is None else self.keyring.validated(record)
        trust = record.trust if record is not None else None
        fingerprint, label = header.sender_identity_id.hex(), peer.label if peer else None
        return OpenedObject(
            header.profile, header.created, True, header.hybrid, jid, fingerprint, trust,
            record is None, label, size,
        )  # fmt: skip
