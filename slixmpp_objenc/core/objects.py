"""Objects outside XMPP: files and text sealed for XMPP devices with the same
profiles, keys, certificates and trust as stanzas, in a second container
(docs/PROTOCOL.md, "Objects"; the text form is :mod:`.armor`). Pure and
streaming: a few chunks in memory at a time. Big-endian integers; ids are
SHA-256 of a certificate's DER::

    header  = "OBJENC" 00 01 || u32 header length || u8 n || profile (n bytes)
              || u64 created (ms) || u32 chunk_size || object_id (32)
              [auth-1, auth-pq-1: || sender identity id || sender encryption id
               || u16 n || identity DER || u16 n || encryption DER]  (0, 0: none)
              || u16 wrap_count                                     = prefix
              || wraps (auth-1: 176 bytes each, auth-pq-1: 1296, draft-rsa: 34 + |ct|)
    chunk i = AES-256-GCM(K, P || u32 i || last, plaintext_i, aad = H)
    trailer = one HMAC-SHA256(M_j, SHA-256(header || chunks)) per wrap (auth only)

``H = SHA-256(header)``; ``K || P = HKDF-SHA256(R, salt = object_id, info =
OBJECT_LABEL || " payload" || 0x00 || H, L = 39)``; chunks hold ``chunk_size``
bytes, the last 0 to ``chunk_size - 1`` (STREAM: truncation, reordering,
duplication, splicing fail). An authenticated wrap seals ``R || M_j`` (HPKE
Auth; auth-pq-1 AuthPSK with :mod:`.hybrid`'s PSK), ``info`` an object's
(never a stanza's), ``aad = SHA-256(prefix)``. ``M_j``, known only to the
sender and device ``j``, makes the trailer prove the whole object the
sender's (a co-recipient knows ``R``). draft-rsa wraps ``R`` as the draft does.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Final, TypeVar

from cryptography.hazmat.primitives import constant_time, hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .algorithms import MIN_RSA_BITS, hmac_sha256, oaep_padding
from .auth_envelope import MAX_INTRODUCED, MAX_WRAPS, AuthRecipient, AuthSender
from .authenticated import CONTENT_KEY_SIZE, WRAP_SUITE, Wrap, _ids
from .certificates import MAX_RSA_BITS, Identity
from .envelope import Recipient
from .errors import EncryptionError, InvalidEnvelope
from .hpke import open_auth, seal_auth
from .hybrid import ENC_SIZE, KEM_CIPHERTEXT_SIZE, Encapsulate, HybridWrap, _require_psk, hybrid_psk
from .timestamps import to_ms, utcnow

__all__ = [
    "AUTH_PROFILE",
    "DEFAULT_CHUNK_SIZE",
    "DRAFT_PROFILE",
    "HYBRID_PROFILE",
    "MAX_CHUNK_SIZE",
    "MAX_HEADER_SIZE",
    "MIN_CHUNK_SIZE",
    "OBJECT_LABEL",
    "OBJECT_MAGIC",
    "ObjectHeader",
    "ObjectSenderResolver",
    "open_object_stream",
    "seal_object_stream",
]

OBJECT_MAGIC: Final = b"OBJENC\x00\x01"
OBJECT_LABEL: Final = b"urn:ietf:params:xml:ns:xmpp-objenc:0#object-1"  # wrap info, payload HKDF
AUTH_PROFILE: Final = "auth-1"
HYBRID_PROFILE: Final = "auth-pq-1"
DRAFT_PROFILE: Final = "draft-rsa"
PROFILES: Final = (AUTH_PROFILE, HYBRID_PROFILE, DRAFT_PROFILE)
DEFAULT_CHUNK_SIZE: Final = 64 * 1024
MIN_CHUNK_SIZE: Final = 64
MAX_CHUNK_SIZE: Final = 4 * 1024 * 1024  # an opener buffers one chunk
MAX_HEADER_SIZE: Final = 256 * 1024
"""64 RSA-16384 wraps and two introduced certificates fit (about 166 KB)."""
ID_SIZE: Final = 32
OBJECT_ID_SIZE: Final = 32
TAG_KEY_SIZE: Final = 32
WRAP_CT_SIZE: Final = CONTENT_KEY_SIZE + TAG_KEY_SIZE + 16  # R || M_j and AES-128-GCM's tag
TRAILER_TAG_SIZE: Final = 32
GCM_TAG_SIZE: Final = 16
NONCE_PREFIX_SIZE: Final = 7
MAX_CHUNKS: Final = 2**32

_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")
_U64: Final = struct.Struct(">Q")
_FIXED_START: Final = len(OBJECT_MAGIC) + 4
_AUTH_WRAP_SIZE: Final = 2 * ID_SIZE + ENC_SIZE + WRAP_CT_SIZE
_HYBRID_WRAP_SIZE: Final = 3 * ID_SIZE + ENC_SIZE + WRAP_CT_SIZE + KEM_CIPHERTEXT_SIZE
_RSA_CT_SIZES: Final = range((MIN_RSA_BITS + 7) // 8, (MAX_RSA_BITS + 7) // 8 + 1)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_CREATED_MS: Final = to_ms(datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC))


@dataclass(frozen=True, slots=True)
class ObjectHeader:
    """An object's header, as :func:`open_object_stream` gives it: in the
    authenticated profiles the sender's (our wrap opened under their key)."""

    profile: str
    created: datetime
    """Set by the sender; proven only as the sender's claim."""
    chunk_size: int
    object_id: bytes
    sender_identity_id: bytes | None
    """The sender device's identity id (authenticated profiles), else ``None``."""
    sender_encryption_id: bytes | None
    introduction: tuple[bytes, bytes] | None
    """The sender's identity and encryption certificates (DER), if carried; their
    ids are the two above (checked), the certificates themselves are not."""
    wrap_count: int
    digest: bytes
    """``H``: SHA-256 of the whole header."""

    @property
    def authenticated(self) -> bool:
        return self.profile != DRAFT_PROFILE

    @property
    def hybrid(self) -> bool:
        return self.profile == HYBRID_PROFILE


ObjectSenderResolver = Callable[[ObjectHeader], X25519PublicKey | None]
"""``header -> X25519 key`` of the sender device the header names: an
encryption certificate with id ``sender_encryption_id`` that chains to an
identity held with id ``sender_identity_id`` (from the store, or from
``introduction`` checked against a held identity), usable for ``created``;
``None`` for a device not held, revoked or not to be trusted. Whoever
resolves reports the sender as that identity's JID and trust state."""


@dataclass(frozen=True, slots=True)
class _RsaWrap:
    certificate_id: bytes
    ct: bytes


_AnyWrap = Wrap | HybridWrap | _RsaWrap
_T = TypeVar("_T")


def _info(profile: str, *ids: bytes) -> bytes:
    """``OBJECT_LABEL || 0x00 || profile || 0x00 || ids``: an object's HPKE
    ``info``; a stanza's starts with another label, so neither opens as the other."""
    return OBJECT_LABEL + b"\x00" + profile.encode("ascii") + b"\x00" + _ids(*ids)


def _parse_header(header: bytes) -> tuple[ObjectHeader, bytes, list[_AnyWrap]]:
    """``(header, prefix, wraps)``; ``ValueError`` for anything non-canonical."""
    offset = 0

    def take(size: int) -> bytes:
        nonlocal offset
        if offset + size > len(header):
            raise ValueError("short header")
        offset += size
        return header[offset - size : offset]

    def number(form: struct.Struct) -> int:
        value: int = form.unpack(take(form.size))[0]
        return value

    if take(len(OBJECT_MAGIC)) != OBJECT_MAGIC or number(_U32) != len(header):
        raise ValueError("not an object header")
    profile = take(take(1)[0]).decode("ascii")
    created_ms, chunk_size, object_id = number(_U64), number(_U32), take(OBJECT_ID_SIZE)
    if profile not in PROFILES or created_ms > _MAX_CREATED_MS:
        raise ValueError("unknown profile or date")
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError("chunk size out of range")
    sender: tuple[bytes | None, bytes | None] = (None, None)
    introduction: tuple[bytes, bytes] | None = None
    if profile != DRAFT_PROFILE:
        sender = take(ID_SIZE), take(ID_SIZE)
        introduction = take(number(_U16)), take(number(_U16))
        digests = tuple(hashlib.sha256(der).digest() for der in introduction)
        sizes = sorted(map(len, introduction))
        if sizes == [0, 0]:
            introduction = None
        elif digests != sender or sizes[0] == 0 or sizes[1] > MAX_INTRODUCED:
            raise ValueError("malformed introduction")
    count = number(_U16)
    if not 1 <= count <= MAX_WRAPS:
        raise ValueError("wrap count out of range")
    prefix = header[:offset]
    wraps: list[_AnyWrap] = []
    for _ in range(count):
        if profile == AUTH_PROFILE:
            wraps.append(Wrap(take(ID_SIZE), take(ID_SIZE), take(ENC_SIZE), take(WRAP_CT_SIZE)))
        elif profile == HYBRID_PROFILE:
            ids = take(ID_SIZE), take(ID_SIZE), take(ID_SIZE)
            enc, ct = take(ENC_SIZE), take(WRAP_CT_SIZE)
            wraps.append(HybridWrap(*ids, enc, ct, take(KEM_CIPHERTEXT_SIZE)))
        else:
            certificate_id, size = take(ID_SIZE), number(_U16)
            if size not in _RSA_CT_SIZES:
                raise ValueError("RSA ciphertext size out of range")
            wraps.append(_RsaWrap(certificate_id, take(size)))
    if offset != len(header):
        raise ValueError("trailing bytes in the header")
    created = _EPOCH + timedelta(milliseconds=created_ms)
    digest = hashlib.sha256(header).digest()
    parsed = ObjectHeader(
        profile, created, chunk_size, object_id, *sender, introduction, count, digest
    )
    return parsed, prefix, wraps


# -- sealing ------------------------------------------------------------------------


def _rsa_target(recipient: AuthRecipient | Recipient) -> tuple[bytes, rsa.RSAPublicKey]:
    key, key_id = recipient.public_key, getattr(recipient, "key_id", None) or ""
    if not isinstance(key, rsa.RSAPublicKey) or not re.fullmatch("[0-9a-f]{64}", key_id):
        raise EncryptionError("draft-rsa seals for RSA Recipients named by key_id (64 hex)")
    if not MIN_RSA_BITS <= key.key_size <= MAX_RSA_BITS:
        raise EncryptionError(f"recipient RSA key outside {MIN_RSA_BITS}..{MAX_RSA_BITS} bits")
    return bytes.fromhex(key_id), key


def _auth_target(recipient: AuthRecipient | Recipient, hybrid: bool) -> AuthRecipient:
    if not isinstance(recipient, AuthRecipient):
        raise EncryptionError("a sender seals for authenticated devices (AuthRecipient)")
    if hybrid and recipient.kem_key is None:
        raise EncryptionError("hybrid: a recipient device has no ML-KEM key")
    return recipient


def _hpke_params(
    profile: str, ids: list[bytes], kem: tuple[bytes, bytes, bytes] | None
) -> tuple[bytes, bytes, bytes]:
    """A wrap's ``(info, psk, psk_id)``; ``kem = (ss, kem_ct, recipient ML-KEM
    id)`` for auth-pq-1 (the stanzas' :func:`.hybrid.hybrid_psk`)."""
    if kem is None:
        return _info(profile, *ids), b"", b""
    psk, psk_id = hybrid_psk(*kem)
    _require_psk(psk, psk_id)  # never a silent Auth mode
    return _info(profile, *ids, kem[2]), psk, psk_id


def _seal_auth_wraps(
    secrets: list[bytes],
    aad: bytes,
    sender: AuthSender,
    recipients: list[AuthRecipient],
    hybrid: bool,
    ikms: Sequence[bytes | None],
    encapsulate: Encapsulate | None,
) -> list[bytes]:
    """``R || M_j`` sealed for each device as stanzas seal ``R``, encoded."""
    profile = HYBRID_PROFILE if hybrid else AUTH_PROFILE
    wraps: list[bytes] = []
    for r, secret, ikm in zip(recipients, secrets, ikms, strict=True):
        ids = [sender.identity_id, sender.encryption_id, r.identity_id, r.encryption_id]
        kem: tuple[bytes, bytes, bytes] | None = None
        if hybrid and r.kem_key is not None and r.kem_id is not None:
            ss, kem_ct = r.kem_key.encapsulate() if encapsulate is None else encapsulate(r.kem_key)
            kem = ss, kem_ct, r.kem_id
        try:
            info, psk, psk_id = _hpke_params(profile, ids, kem)
            enc, ct = seal_auth(
                WRAP_SUITE,
                r.public_key,
                sender.encryption_key,
                info=info,
                aad=aad,
                pt=secret,
                psk=psk,
                psk_id=psk_id,
                ikm_e=ikm,
            )
        except ValueError as exc:  # no PSK, or a small-order recipient key
            raise EncryptionError(f"cannot seal for a recipient device: {exc}") from None
        kem_id, kem_ct = (kem[2], kem[1]) if kem else (b"", b"")
        wraps.append(r.identity_id + r.encryption_id + kem_id + enc + ct + kem_ct)
    return wraps


def seal_object_stream(
    chunks: Iterable[bytes],
    recipients: Sequence[AuthRecipient] | Sequence[Recipient],
    *,
    sender: AuthSender | None = None,
    hybrid: bool = False,
    introduce: tuple[bytes, bytes] | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    created: datetime | None = None,
    random_bytes: Callable[[int], bytes] = os.urandom,
    ephemeral_ikm: list[bytes] | None = None,
    encapsulate: Encapsulate | None = None,
) -> Iterator[bytes]:
    """The object sealing the plaintext ``chunks`` (pieces of any size), in
    pieces to write in order: header, each chunk once full, final chunk and
    trailer. ``sender`` given: auth-1 (``hybrid``: auth-pq-1) for
    :class:`~.auth_envelope.AuthRecipient` devices, with ``introduce`` (the
    sender's identity and encryption certificates, DER) if asked; else
    draft-rsa for :class:`~.envelope.Recipient` (``key_id``: certificate id,
    hex). ``random_bytes`` (``object_id``, ``R``, each ``M_j``), ``created``,
    ``ephemeral_ikm`` and ``encapsulate`` are injectable for vectors only.
    :class:`EncryptionError` here, before ``chunks`` is read, for misuse: 0 or
    over 64 recipients, one of the other profile, RSA outside 2048..16384
    bits, no ML-KEM key for hybrid, an introduction of other certificates, a
    chunk size outside 64 B..4 MiB, a naive ``created``."""
    created = created or utcnow()
    if not recipients or len(recipients) > MAX_WRAPS:
        raise EncryptionError(f"an object is sealed for 1 to {MAX_WRAPS} recipient devices")
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise EncryptionError(f"chunk size outside {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE}")
    if created.tzinfo is None or not 0 <= to_ms(created) <= _MAX_CREATED_MS:
        raise EncryptionError("created must be an aware UTC datetime after 1970")
    object_id, key = _random(random_bytes, OBJECT_ID_SIZE), _random(random_bytes, 32)
    profile = DRAFT_PROFILE if sender is None else HYBRID_PROFILE if hybrid else AUTH_PROFILE
    body = bytes([len(profile)]) + profile.encode("ascii")
    body += _U64.pack(to_ms(created)) + _U32.pack(chunk_size) + object_id
    tag_keys: list[bytes] = []
    if sender is None:
        if hybrid or introduce or ephemeral_ikm or encapsulate:
            raise EncryptionError("hybrid, introductions and HPKE inputs need a sender")
        targets = [_rsa_target(r) for r in recipients]
        cts = [(cid, pk.encrypt(key, oaep_padding())) for cid, pk in targets]
        wraps = [cid + _U16.pack(len(ct)) + ct for cid, ct in cts]
        body += _U16.pack(len(wraps))
        prefix = OBJECT_MAGIC + _U32.pack(_FIXED_START + len(body) + len(b"".join(wraps))) + body
    else:
        auth = [_auth_target(r, hybrid) for r in recipients]
        if introduce is not None and (
            tuple(hashlib.sha256(der).digest() for der in introduce)
            != (sender.identity_id, sender.encryption_id)
            or max(len(der) for der in introduce) > MAX_INTRODUCED
        ):
            raise EncryptionError("the introduction is not the sender's certificates")
        ikms: list[bytes | None] = list(ephemeral_ikm) if ephemeral_ikm else [None] * len(auth)
        if len(ikms) != len(auth):
            raise ValueError("one ephemeral_ikm per recipient")
        tag_keys = [_random(random_bytes, TAG_KEY_SIZE) for _ in auth]
        identity, encryption = introduce or (b"", b"")
        body += _ids(sender.identity_id, sender.encryption_id) + _U16.pack(len(identity))
        body += identity + _U16.pack(len(encryption)) + encryption + _U16.pack(len(auth))
        size = len(auth) * (_HYBRID_WRAP_SIZE if hybrid else _AUTH_WRAP_SIZE)
        prefix = OBJECT_MAGIC + _U32.pack(_FIXED_START + len(body) + size) + body
        aad = hashlib.sha256(prefix).digest()
        secrets = [key + tag_key for tag_key in tag_keys]
        wraps = _seal_auth_wraps(secrets, aad, sender, auth, hybrid, ikms, encapsulate)
    header = prefix + b"".join(wraps)
    payload = _Payload(key, header, object_id, bool(tag_keys))
    return _sealed(header, payload, tag_keys, chunk_size, chunks)


def _sealed(
    header: bytes, payload: _Payload, tag_keys: list[bytes], size: int, chunks: Iterable[bytes]
) -> Iterator[bytes]:
    yield header
    buffer = bytearray()
    for piece in chunks:
        buffer += piece
        if len(buffer) >= size:  # every full chunk now, never a final one
            whole = len(buffer) // size * size
            with memoryview(buffer) as view:
                out = [payload.seal(view[i : i + size], False) for i in range(0, whole, size)]
            del buffer[:whole]
            yield b"".join(out)
    final = payload.seal(buffer, True)  # 0 to chunk_size - 1 bytes
    if payload.transcript is None:
        yield final
        return
    transcript = payload.transcript.digest()
    yield final + b"".join(hmac_sha256(tag_key, transcript) for tag_key in tag_keys)


def _random(random_bytes: Callable[[int], bytes], size: int) -> bytes:
    value = random_bytes(size)
    if len(value) != size:
        raise EncryptionError("random_bytes returned the wrong number of bytes")
    return value


class _Payload:
    """One object's chunks: ``K``, ``P``, ``H``, the counter and, with
    trailer tags, the transcript hash (header and every chunk)."""

    def __init__(self, key: bytes, header: bytes, object_id: bytes, tagged: bool) -> None:
        self.aad = hashlib.sha256(header).digest()
        hkdf = HKDF(
            algorithm=hashes.SHA256(),
            length=32 + NONCE_PREFIX_SIZE,
            salt=object_id,
            info=OBJECT_LABEL + b" payload\x00" + self.aad,
        )
        okm = hkdf.derive(key)
        self.aead, self.prefix = AESGCM(okm[:32]), okm[32:]
        self.transcript = hashlib.sha256(header) if tagged else None
        self.index = 0

    def _nonce(self, last: bool) -> bytes:
        if self.index >= MAX_CHUNKS:
            raise EncryptionError("too many chunks for one object")
        self.index += 1
        return self.prefix + _U32.pack(self.index - 1) + (b"\x01" if last else b"\x00")

    def seal(self, plaintext: bytearray | memoryview, last: bool) -> bytes:
        chunk = self.aead.encrypt(self._nonce(last), plaintext, self.aad)
        if self.transcript is not None:
            self.transcript.update(chunk)
        return chunk

    def open(self, chunk: bytes, last: bool) -> bytes:
        plaintext = self.aead.decrypt(self._nonce(last), chunk, self.aad)
        if self.transcript is not None:
            self.transcript.update(chunk)
        return plaintext


# -- opening ------------------------------------------------------------------------


def open_object_stream(
    data: Iterable[bytes],
    *,
    own: Sequence[AuthSender] = (),
    rsa_identities: Sequence[Identity] = (),
    resolve_sender: ObjectSenderResolver | None = None,
) -> tuple[ObjectHeader, Iterator[bytes]]:
    """Reads ``data`` (the object, pieces of any size) through the header,
    opens the one wrap naming one of our keys (``own``: authenticated keys,
    current and retained, with ``resolve_sender``; ``rsa_identities``:
    draft-rsa), returns the header and an iterator over the plaintext, each
    piece once its chunk verified, the last once the final flag and our
    trailer tag did. The object is complete, and the sender's, only when the
    iterator ends without error: **write to a temporary file, rename it at
    the end, delete it on** :class:`InvalidEnvelope`. That one opaque error,
    from here for the header and from the iterator after, is every failure
    (not an object, a non-canonical header, no wrap or several for us, an
    unknown sender, a wrap that does not open, a chunk changed, moved,
    duplicated, spliced or missing, extra bytes); I/O errors of ``data`` pass
    through. :class:`EncryptionError`: no key, ``own`` without a resolver."""
    if not own and not rsa_identities:
        raise EncryptionError("no key to open an object with")
    if own and resolve_sender is None:
        raise EncryptionError("authenticated keys need a resolve_sender")
    pieces, buffer = iter(data), bytearray()
    for piece in pieces:
        buffer += piece
        if not OBJECT_MAGIC.startswith(bytes(buffer[: len(OBJECT_MAGIC)])):
            raise InvalidEnvelope()  # not an object: nothing more is read
        if len(buffer) < _FIXED_START:
            continue
        length = _U32.unpack_from(buffer, len(OBJECT_MAGIC))[0]
        if not _FIXED_START < length <= MAX_HEADER_SIZE:
            raise InvalidEnvelope()
        if len(buffer) >= length:
            header_bytes = bytes(buffer[:length])
            del buffer[:length]
            opening = _Opening(own, rsa_identities)
            opening.resolve = resolve_sender
            header = _opaque(partial(opening.start, header_bytes))
            return header, _opened(opening, buffer, pieces)
    raise InvalidEnvelope()  # the input ended inside the header


def _opaque(function: Callable[[], _T]) -> _T:
    """``function()``, every exception turned into the one :class:`InvalidEnvelope`."""
    try:
        return function()
    except Exception:  # noqa: S110 - every failure looks the same from outside...
        pass
    raise InvalidEnvelope()  # ...raised outside the handler: nothing travels with it


def _opened(opening: _Opening, buffer: bytearray, pieces: Iterator[bytes]) -> Iterator[bytes]:
    out = _opaque(partial(opening.chunks, buffer))  # what came with the header's end
    if out:
        yield out
    for piece in pieces:
        buffer += piece
        out = _opaque(partial(opening.chunks, buffer))
        if out:
            yield out
    final = _opaque(partial(opening.finish, buffer))
    if final:
        yield final


class _Opening:
    """The keys we open with and, once :meth:`start` opened our wrap, the
    object's payload and our trailer tag's key and place."""

    def __init__(self, own: Sequence[AuthSender], rsa: Sequence[Identity]) -> None:
        self.own, self.rsa = tuple(own), tuple(rsa)
        self.resolve: ObjectSenderResolver | None = None
        self.payload: _Payload | None = None
        self.chunk_ct = self.trailer_size = self.tag_offset = 0
        self.tag_key = b""

    def start(self, header_bytes: bytes) -> ObjectHeader:
        header, prefix, wraps = _parse_header(header_bytes)
        if header.profile == DRAFT_PROFILE:
            key = self._open_rsa(wraps)
        else:
            secret = self._open_auth(header, prefix, wraps)
            key, self.tag_key = secret[:CONTENT_KEY_SIZE], secret[CONTENT_KEY_SIZE:]
            self.trailer_size = header.wrap_count * TRAILER_TAG_SIZE
        self.payload = _Payload(key, header_bytes, header.object_id, header.authenticated)
        self.chunk_ct = header.chunk_size + GCM_TAG_SIZE
        return header

    def chunks(self, buffer: bytearray) -> bytes:
        """Every chunk the buffer holds that cannot be the final one (a full
        chunk followed by at least a trailer's worth of bytes)."""
        out = []
        while len(buffer) >= self.chunk_ct + self.trailer_size:
            out.append(self._take(buffer, self.chunk_ct, last=False))
        return b"".join(out)

    def finish(self, buffer: bytearray) -> bytes:
        """The final chunk (16 to ``chunk_size + 15`` bytes) and our trailer tag."""
        size = len(buffer) - self.trailer_size
        if not GCM_TAG_SIZE <= size < self.chunk_ct:
            raise ValueError("no final chunk")
        plaintext = self._take(buffer, size, last=True)
        if self.payload is not None and self.payload.transcript is not None:
            tag = bytes(buffer[self.tag_offset : self.tag_offset + TRAILER_TAG_SIZE])
            expected = hmac_sha256(self.tag_key, self.payload.transcript.digest())
            if not constant_time.bytes_eq(tag, expected):
                raise ValueError("not the sender's object")
        return plaintext

    def _take(self, buffer: bytearray, size: int, last: bool) -> bytes:
        if self.payload is None:
            raise ValueError("no wrap opened")
        chunk = bytes(buffer[:size])
        del buffer[:size]
        return self.payload.open(chunk, last)

    def _open_auth(self, header: ObjectHeader, prefix: bytes, wraps: list[_AnyWrap]) -> bytes:
        ours = [(i, w, own) for i, w in enumerate(wraps) for own in self.own if _names(w, own)]
        sender = header.sender_identity_id, header.sender_encryption_id
        if len(ours) != 1 or self.resolve is None or sender[0] is None or sender[1] is None:
            raise ValueError("no wrap, or several, for us")
        [(index, wrap, own)] = ours
        sender_key = self.resolve(header)
        if sender_key is None or isinstance(wrap, _RsaWrap):
            raise ValueError("unknown sender")
        ids = [sender[0], sender[1], own.identity_id, own.encryption_id]
        kem: tuple[bytes, bytes, bytes] | None = None
        if isinstance(wrap, HybridWrap) and own.kem_key is not None:
            kem = own.kem_key.decapsulate(wrap.kem_ct), wrap.kem_ct, wrap.recipient_kem
        info, psk, psk_id = _hpke_params(header.profile, ids, kem)
        secret = open_auth(
            WRAP_SUITE,
            wrap.enc,
            own.encryption_key,
            sender_key,
            info=info,
            aad=hashlib.sha256(prefix).digest(),
            ct=wrap.ct,
            psk=psk,
            psk_id=psk_id,
        )
        if len(secret) != CONTENT_KEY_SIZE + TAG_KEY_SIZE:
            raise ValueError("wrong secret size")
        self.tag_offset = index * TRAILER_TAG_SIZE
        return secret

    def _open_rsa(self, wraps: list[_AnyWrap]) -> bytes:
        ours = [
            (wrap, identity)
            for wrap in wraps
            for identity in self.rsa
            if isinstance(wrap, _RsaWrap) and wrap.certificate_id.hex() == identity.fingerprint
        ]
        if len(ours) != 1:
            raise ValueError("no wrap, or several, for us")
        [(wrap, identity)] = ours
        if len(wrap.ct) != (identity.private_key.key_size + 7) // 8:
            raise ValueError("wrong RSA ciphertext size")
        key = identity.private_key.decrypt(wrap.ct, oaep_padding())
        if len(key) != CONTENT_KEY_SIZE:
            raise ValueError("wrong content key size")
        return key


def _names(wrap: _AnyWrap, own: AuthSender) -> bool:
    """An auth-1 wrap naming our two ids, or an auth-pq-1 one naming our three."""
    if isinstance(wrap, _RsaWrap):
        return False
    if (wrap.recipient_identity, wrap.recipient_encryption) != (own.identity_id, own.encryption_id):
        return False
    if isinstance(wrap, HybridWrap):
        return own.kem_key is not None and wrap.recipient_kem == own.kem_id
    return True
