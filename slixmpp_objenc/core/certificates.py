"""X.509 certificates for draft section 8: self-signed, naming the account's
bare JID as ``id-on-xmppAddr`` (RFC 6120 section 13.7.1.4).

A peer certificate is only ever used for the JIDs it names.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from .algorithms import MIN_RSA_BITS
from .errors import CertificateError
from .timestamps import utcnow

__all__ = [
    "ID_ON_XMPPADDR",
    "Identity",
    "PeerCertificate",
    "certificate_fingerprint",
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
_UTF8STRING_TAG: Final = 0x0C


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

    An approximation of nodeprep/nameprep that is exact for ASCII addresses;
    the plugin layer normalises with slixmpp's JID before calling the core.
    """
    bare = jid.split("/", 1)[0].strip()
    return bare.lower()


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
) -> Identity:
    """A fresh RSA key and a self-signed certificate naming the bare JID."""
    if key_size < MIN_RSA_BITS:
        raise CertificateError(f"RSA keys under {MIN_RSA_BITS} bits are refused")
    bare = normalize_bare_jid(jid)
    if not bare:
        raise CertificateError("no JID to put in the certificate")
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
    """An X.509 certificate from PEM (or DER)."""
    try:
        if pem.lstrip().startswith(b"-----"):
            return x509.load_pem_x509_certificate(pem)
        return x509.load_der_x509_certificate(pem)
    except ValueError as exc:
        raise CertificateError(f"cannot load certificate: {exc}") from exc


@dataclass(frozen=True, slots=True)
class PeerCertificate:
    """A checked peer certificate: usable for exactly the JIDs it names."""

    certificate: x509.Certificate
    public_key: rsa.RSAPublicKey
    jids: frozenset[str]
    """Normalised bare JIDs from ``id-on-xmppAddr``."""
    fingerprint: str

    def pem(self) -> bytes:
        """The certificate as PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def expired(self, now: datetime) -> bool:
        """Whether ``now`` is outside the validity period."""
        return not (
            self.certificate.not_valid_before_utc <= now <= self.certificate.not_valid_after_utc
        )


def validate_peer_certificate(
    certificate: x509.Certificate | bytes, *, now: datetime | None = None
) -> PeerCertificate:
    """Check a peer certificate for use; raise :class:`CertificateError` with the reason.

    Refused: no ``id-on-xmppAddr``, outside its validity period, a key that is
    not RSA or under 2048 bits, or a self-issued certificate whose signature
    does not verify under its own key.
    """
    if isinstance(certificate, bytes):
        certificate = load_certificate(certificate)
    now = now or utcnow()
    addresses = [a for a in xmpp_addresses(certificate) if a.strip()]
    for address in addresses:
        if unicodedata.normalize("NFKC", address) != address or any(
            unicodedata.category(ch) in ("Cc", "Cf", "Zs") for ch in address
        ):
            raise CertificateError(
                f"certificate names {address!r}, which is not in normal form (look-alike)"
            )
    jids = frozenset(normalize_bare_jid(a) for a in addresses)
    if not jids:
        raise CertificateError("certificate names no XMPP address (id-on-xmppAddr)")
    if now < certificate.not_valid_before_utc:
        raise CertificateError("certificate is not yet valid")
    if now > certificate.not_valid_after_utc:
        raise CertificateError("certificate has expired")
    public_key = certificate.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise CertificateError("certificate key is not RSA")
    if public_key.key_size < MIN_RSA_BITS:
        raise CertificateError(
            f"certificate RSA key of {public_key.key_size} bits is under {MIN_RSA_BITS}"
        )
    if certificate.issuer == certificate.subject:
        try:
            certificate.verify_directly_issued_by(certificate)
        except Exception as exc:
            raise CertificateError("self-signed certificate signature does not verify") from exc
    return PeerCertificate(certificate, public_key, jids, certificate_fingerprint(certificate))
