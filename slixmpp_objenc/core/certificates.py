"""X.509 certificates for draft section 8: self-signed, naming the account's
bare JID as ``id-on-xmppAddr`` (RFC 6120 section 13.7.1.4).

A peer certificate is only ever used for the JIDs it names, and only when it
names them in their canonical form: the core never decides JID equivalence
itself, it takes a :data:`Normalizer` (the plugin and the command line pass
one built on slixmpp's stringprep, the same nodeprep/nameprep Prosody
applies), and an address the normalizer rejects or changes is refused.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.x509.oid import NameOID

from .algorithms import MIN_RSA_BITS
from .errors import CertificateError
from .timestamps import utcnow

__all__ = [
    "ID_ON_XMPPADDR",
    "LABEL_OID",
    "MAX_CERTIFICATES_PER_JID",
    "MAX_CERTIFICATE_SIZE",
    "MAX_LABEL",
    "MAX_RSA_BITS",
    "EncryptionKey",
    "Identity",
    "KemKey",
    "Normalizer",
    "PeerCertificate",
    "canonical_jid",
    "certificate_fingerprint",
    "clean_label",
    "encryption_label",
    "format_fingerprint",
    "generate_identity",
    "load_certificate",
    "load_private_key",
    "normalize_bare_jid",
    "validate_peer_certificate",
    "xmpp_addresses",
]

ID_ON_XMPPADDR: Final = x509.ObjectIdentifier("1.3.6.1.5.5.7.8.5")
DEFAULT_KEY_SIZE: Final = 3072
DEFAULT_VALIDITY: Final = timedelta(days=3650)
MAX_CERTIFICATE_SIZE: Final = 16 * 1024
"""Largest certificate accepted, in DER bytes. Ours (RSA-3072) are ~1 KiB and an
RSA-16384 certificate with a few extensions ~3 KiB: 16 KiB leaves room for
any honest one while a contact's capped set stays far under an envelope."""
MAX_RSA_BITS: Final = 16384
"""Largest RSA key accepted: OpenSSL refuses public-key operations on larger
moduli (``OPENSSL_RSA_MAX_MODULUS_BITS``), so such a key could never be used."""
_UTF8STRING_TAG: Final = 0x0C

Normalizer = Callable[[str], str]
"""Turns a JID into its canonical bare form (stringprep: nodeprep, nameprep);
raises ``ValueError`` for an invalid JID. The plugin passes slixmpp's; the
core's default, :func:`normalize_bare_jid`, is exact for ASCII only."""


def _der_utf8string(text: str) -> bytes:
    """DER of an ASN.1 UTF8String: the value inside the otherName."""
    raw = text.encode("utf-8")
    n = len(raw)
    if n < 0x80:
        length = bytes([n])
    else:
        octets = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(octets)]) + octets
    return bytes([_UTF8STRING_TAG]) + length + raw


def _parse_der_utf8string(der: bytes) -> str:
    """Inverse of :func:`_der_utf8string`; ``ValueError`` on anything else."""
    if len(der) < 2 or der[0] != _UTF8STRING_TAG:
        raise ValueError("not a UTF8String")
    first = der[1]
    if first < 0x80:
        length, offset = first, 2
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or len(der) < 2 + count:
            raise ValueError("bad DER length")
        length, offset = int.from_bytes(der[2 : 2 + count], "big"), 2 + count
    if len(der) != offset + length:
        raise ValueError("trailing or missing bytes")
    return der[offset:].decode("utf-8")


def normalize_bare_jid(jid: str) -> str:
    """A bare JID in the form used for comparisons: no resource, lower case.

    The core's default :data:`Normalizer`: an approximation of
    nodeprep/nameprep that is exact for ASCII addresses. The plugin and the
    command line pass slixmpp's stringprep instead.
    """
    bare = jid.split("/", 1)[0].strip()
    return bare.lower()


def canonical_jid(jid: str, normalize: Normalizer = normalize_bare_jid) -> str:
    """``normalize(jid)``, with every failure of the normalizer (and an empty
    result) as :class:`ValueError`."""
    try:
        bare = normalize(jid)
    except Exception as exc:  # an injected normalizer may raise anything
        raise ValueError(f"invalid JID {jid!r}: {exc}") from exc
    if not bare:
        raise ValueError(f"invalid JID {jid!r}")
    return bare


def xmpp_addresses(certificate: x509.Certificate) -> list[str]:
    """The ``id-on-xmppAddr`` values in the subjectAltName, as written."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    addresses = []
    for name in san.value.get_values_for_type(x509.OtherName):
        if name.type_id != ID_ON_XMPPADDR:
            continue
        try:
            addresses.append(_parse_der_utf8string(name.value))
        except (ValueError, UnicodeDecodeError):
            continue
    return addresses


def certificate_fingerprint(certificate: x509.Certificate) -> str:
    """Lowercase hex SHA-256 of the certificate's DER: its name on the wire and in stores."""
    return certificate.fingerprint(hashes.SHA256()).hex()


def format_fingerprint(fingerprint: str) -> str:
    """Grouped upper-case hex for people: ``AB12 CD34 ...``, 8 groups a line."""
    groups = [fingerprint[i : i + 4].upper() for i in range(0, len(fingerprint), 4)]
    lines = [" ".join(groups[i : i + 8]) for i in range(0, len(groups), 8)]
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Identity:
    """Our own private key and the certificate that carries its public half."""

    private_key: rsa.RSAPrivateKey
    certificate: x509.Certificate
    fingerprint: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fingerprint", certificate_fingerprint(self.certificate))
        if self.certificate.public_key() != self.private_key.public_key():
            raise CertificateError("private key does not match certificate")

    def private_key_pem(self, password: bytes | None = None) -> bytes:
        """PKCS#8 PEM, encrypted when a password is given."""
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password)
            if password
            else serialization.NoEncryption()
        )
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )

    def certificate_pem(self) -> bytes:
        """The certificate as PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)


def generate_identity(
    jid: str,
    *,
    key_size: int = DEFAULT_KEY_SIZE,
    valid_for: timedelta = DEFAULT_VALIDITY,
    now: datetime | None = None,
    normalize: Normalizer = normalize_bare_jid,
) -> Identity:
    """A fresh RSA key and a self-signed certificate naming the bare JID in its
    canonical form (``normalize``)."""
    if key_size < MIN_RSA_BITS:
        raise CertificateError(f"RSA keys under {MIN_RSA_BITS} bits are refused")
    try:
        bare = canonical_jid(jid, normalize)
    except ValueError as exc:
        raise CertificateError(f"no JID to put in the certificate: {exc}") from exc
    start = (now or utcnow()) - timedelta(minutes=5)
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, bare)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + valid_for)
        .add_extension(
            x509.SubjectAlternativeName([x509.OtherName(ID_ON_XMPPADDR, _der_utf8string(bare))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return Identity(key, certificate)


def load_private_key(pem: bytes, password: bytes | None = None) -> rsa.RSAPrivateKey:
    """An RSA private key from PEM; refuses other key types and short keys."""
    try:
        key = serialization.load_pem_private_key(pem, password=password)
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"cannot load private key: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CertificateError("private key is not RSA")
    if key.key_size < MIN_RSA_BITS:
        raise CertificateError(f"RSA key of {key.key_size} bits is under {MIN_RSA_BITS}")
    return key


def load_certificate(pem: bytes) -> x509.Certificate:
    """An X.509 certificate from PEM (or DER); :class:`CertificateError` for anything
    else, including input over twice :data:`MAX_CERTIFICATE_SIZE` (never parsed)."""
    if isinstance(pem, str):
        pem = pem.encode("utf-8", "replace")
    if not isinstance(pem, bytes | bytearray | memoryview):
        raise CertificateError(f"cannot load certificate from {type(pem).__name__}")
    pem = bytes(pem)
    if len(pem) > 2 * MAX_CERTIFICATE_SIZE:  # PEM is 4/3 of DER, plus lines and armour
        raise CertificateError(f"certificate of {len(pem)} bytes is over the size limit")
    try:
        if pem.lstrip().startswith(b"-----"):
            return x509.load_pem_x509_certificate(pem)
        return x509.load_der_x509_certificate(pem)
    except Exception as exc:  # any parsing failure of cryptography
        raise CertificateError(f"cannot load certificate: {exc}") from exc


LABEL_OID: Final = x509.ObjectIdentifier("2.5.4.13")
"""X.520 ``description``: a device's label in its encryption certificate's subject
(signed by the identity, so no server can change it; renewed at each rotation)."""
MAX_LABEL: Final = 32
"""Characters of a device label, at most."""
_LABEL_QUOTES: Final = frozenset("\"'`\\")
"""Dropped from labels: shown quoted, a label must not close its own quotes."""


def clean_label(label: str | None) -> str | None:
    """A device label as it may be shown: printable, single spaces, at most
    :data:`MAX_LABEL` characters (longer ones cut); ``None`` for nothing left.
    Applied when issuing and again when reading: a contact chooses its labels."""
    if not label or not isinstance(label, str):
        return None
    text = "".join(
        c if c.isprintable() and c not in _LABEL_QUOTES else " " for c in label[: MAX_LABEL * 4]
    )
    text = " ".join(text.split())[:MAX_LABEL].strip()
    return text or None


def encryption_label(certificate: x509.Certificate) -> str | None:
    """The label an encryption certificate gives its device (one ``description``
    in the subject), cleaned; ``None`` without one, or with several."""
    try:
        found = certificate.subject.get_attributes_for_oid(LABEL_OID)
    except ValueError:
        return None
    if len(found) != 1 or not isinstance(found[0].value, str):
        return None
    return clean_label(found[0].value)


@dataclass(frozen=True, slots=True)
class KemKey:
    """A checked ML-KEM-768 certificate (the hybrid wrap), issued by the identity
    together with the encryption certificate it goes with, and rotated with it."""

    certificate: x509.Certificate
    public_key: MLKEM768PublicKey
    fingerprint: str

    def pem(self) -> bytes:
        """The certificate as PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True, slots=True)
class EncryptionKey:
    """A checked X25519 encryption certificate, issued by the identity it hangs
    off (authenticated profile, PROTOCOL.md 13): replaced without a prompt.
    With :attr:`kem`, the ML-KEM-768 certificate issued with it, if any."""

    certificate: x509.Certificate
    public_key: X25519PublicKey
    fingerprint: str
    kem: KemKey | None = None
    """The ML-KEM-768 certificate of the same issuance (checked against the same
    identity, the same ``notBefore``); ``None`` for a device without one."""

    @property
    def label(self) -> str | None:
        """The device's label ("laptop"), as its identity signed it, cleaned."""
        return encryption_label(self.certificate)

    def pem(self) -> bytes:
        """The certificate as PEM, followed by the ML-KEM certificate's when there
        is one: the bundle ``validate_device(..., encryption=...)`` takes back."""
        pem = self.certificate.public_bytes(serialization.Encoding.PEM)
        return pem if self.kem is None else pem + self.kem.pem()


@dataclass(frozen=True, slots=True)
class PeerCertificate:
    """A checked peer device certificate: usable for exactly the JIDs it names.

    Either an RSA certificate (the draft's profile) or an Ed25519 identity
    certificate (the authenticated profile), which is used only with
    :attr:`encryption`, the encryption certificate it issued."""

    certificate: x509.Certificate
    public_key: rsa.RSAPublicKey | Ed25519PublicKey
    jids: frozenset[str]
    """Normalised bare JIDs from ``id-on-xmppAddr``."""
    fingerprint: str
    encryption: EncryptionKey | None = None
    """For an identity: its current encryption certificate, checked against it."""

    @property
    def label(self) -> str | None:
        """The device's label, from its current encryption certificate, if any."""
        return self.encryption.label if self.encryption is not None else None

    @property
    def authenticated(self) -> bool:
        """Whether this is an identity of the authenticated profile."""
        return isinstance(self.public_key, Ed25519PublicKey)

    def pem(self) -> bytes:
        """The certificate as PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def expired(self, now: datetime) -> bool:
        """Whether ``now`` is outside the validity period."""
        return not (
            self.certificate.not_valid_before_utc <= now <= self.certificate.not_valid_after_utc
        )


def validate_peer_certificate(
    certificate: x509.Certificate | bytes,
    *,
    now: datetime | None = None,
    normalize: Normalizer = normalize_bare_jid,
) -> PeerCertificate:
    """Check a peer certificate for use; raise :class:`CertificateError` with the
    reason, and only that, whatever the input (PROTOCOL.md section 8).

    Refused: larger than :data:`MAX_CERTIFICATE_SIZE`; no ``id-on-xmppAddr``;
    an address that is not the canonical bare JID ``normalize`` makes of it
    (rejected, or changed: case, resource, ``ß`` for ``ss``...) or a look-alike;
    outside its validity period; a key that is not RSA, under 2048 or over
    16384 bits; a self-issued certificate whose signature does not verify
    under its own key; anything ``cryptography`` cannot parse (a duplicated
    extension, an unknown key algorithm).
    """
    try:
        return _validate(certificate, now or utcnow(), normalize)
    except CertificateError:
        raise
    except Exception as exc:  # any parsing failure of cryptography, or a bad type
        raise CertificateError(f"unusable certificate: {type(exc).__name__}: {exc}") from exc


def _validate(
    certificate: x509.Certificate | bytes, now: datetime, normalize: Normalizer
) -> PeerCertificate:
    if not isinstance(certificate, x509.Certificate):
        certificate = load_certificate(certificate)
    size = len(certificate.public_bytes(serialization.Encoding.DER))
    if size > MAX_CERTIFICATE_SIZE:
        raise CertificateError(
            f"certificate of {size} bytes is over the {MAX_CERTIFICATE_SIZE}-byte limit"
        )
    jids = checked_addresses(certificate, normalize)
    check_validity(certificate, now)
    public_key = certificate.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise CertificateError("certificate key is not RSA")
    if public_key.key_size < MIN_RSA_BITS:
        raise CertificateError(
            f"certificate RSA key of {public_key.key_size} bits is under {MIN_RSA_BITS}"
        )
    if public_key.key_size > MAX_RSA_BITS:
        raise CertificateError(
            f"certificate RSA key of {public_key.key_size} bits is over {MAX_RSA_BITS}"
        )
    if certificate.issuer == certificate.subject:
        try:
            certificate.verify_directly_issued_by(certificate)
        except Exception as exc:
            raise CertificateError("self-signed certificate signature does not verify") from exc
    return PeerCertificate(certificate, public_key, jids, certificate_fingerprint(certificate))


def checked_addresses(certificate: x509.Certificate, normalize: Normalizer) -> frozenset[str]:
    """The bare JIDs a certificate names (``id-on-xmppAddr``), each canonical
    (``normalize``) and in normal form; :class:`CertificateError` otherwise,
    or when it names none (PROTOCOL.md section 8)."""
    addresses = [a for a in xmpp_addresses(certificate) if a.strip()]
    jids = set()
    for address in addresses:
        if unicodedata.normalize("NFKC", address) != address or any(
            unicodedata.category(ch) in ("Cc", "Cf", "Zs") for ch in address
        ):
            raise CertificateError(
                f"certificate names {address!r}, which is not in normal form (look-alike)"
            )
        try:
            canonical = canonical_jid(address, normalize)
        except ValueError as exc:
            raise CertificateError(f"certificate names an invalid JID: {exc}") from exc
        if canonical != address:
            raise CertificateError(
                f"certificate names {address!r}, which is not a canonical bare JID "
                f"(it would be {canonical!r})"
            )
        jids.add(canonical)
    if not jids:
        raise CertificateError("certificate names no XMPP address (id-on-xmppAddr)")
    return frozenset(jids)


def check_validity(certificate: x509.Certificate, now: datetime) -> None:
    """:class:`CertificateError` outside the certificate's validity period."""
    if now < certificate.not_valid_before_utc:
        raise CertificateError("certificate is not yet valid")
    if now > certificate.not_valid_after_utc:
        raise CertificateError("certificate has expired")


# -- a published certificate set (PROTOCOL.md section 9) -------------------------

MAX_CERTIFICATES_PER_JID: Final = 16
"""Certificates taken from one JID's node: already held ones always, new ones
up to this many in all. Every stanza carries one ``<key/>`` per certificate of
the contact and of our account, so this also bounds a stanza's size: 16 + 16
RSA-4096 keys are ~23 KiB, a set of 1,500 would be 700 KiB. No one reads
messages on more than a handful of devices."""
