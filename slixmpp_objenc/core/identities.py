"""The authenticated profile's keys: an Ed25519 identity certificate per device
and an X25519 encryption certificate it issues (RFC 8410 keys in X.509).

* **Identity certificate**: self-signed, Ed25519 (RFC 8410 section 3), the
  bare JID as ``id-on-xmppAddr`` (as the RSA certificate of the draft's
  profile), ``basicConstraints cA=TRUE, pathLen=0`` and ``keyUsage
  keyCertSign`` (RFC 5280 section 4.2.1.9: it signs one thing, the device's
  encryption certificates). Trust states, TOFU, key-change events and the
  6-character check are about this certificate: its fingerprint is the
  device's.
* **Encryption certificate**: an X25519 key (RFC 8410 section 4: ``keyUsage
  keyAgreement`` only), issued and signed by the identity key, naming the
  same JID, ``cA=FALSE``. It is replaced (rotated) without any prompt: what a
  contact pins is the identity, and an encryption certificate is used only
  if it chains to an identity certificate held for that JID.

Every check raises :class:`CertificateError` with the reason, whatever the
input (``cryptography`` parses and verifies; nothing here parses DER).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, cast

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey, MLKEM768PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.x509.oid import NameOID

from .certificates import (
    ID_ON_XMPPADDR,
    LABEL_OID,
    MAX_CERTIFICATE_SIZE,
    Normalizer,
    _der_utf8string,
    canonical_jid,
    certificate_fingerprint,
    check_validity,
    checked_addresses,
    clean_label,
    load_certificate,
    normalize_bare_jid,
)
from .errors import CertificateError
from .rotation import DEFAULT_RETENTION, DEFAULT_ROTATE_EVERY
from .timestamps import utcnow

__all__ = [
    "BACKDATE",
    "ENCRYPTION_VALIDITY",
    "IDENTITY_VALIDITY",
    "DeviceKeys",
    "PeerIdentity",
    "check_issued",
    "generate_device_keys",
    "issue_certificate",
    "issue_encryption_certificate",
    "validate_encryption_certificate",
    "validate_identity_certificate",
]

IDENTITY_VALIDITY: Final = timedelta(days=3650)
ENCRYPTION_VALIDITY: Final = DEFAULT_ROTATE_EVERY + DEFAULT_RETENTION
"""The default policy's rotation plus retention (37 days, PROTOCOL.md 13.10): a
certificate is replaced after ``rotate_every``, and past this no sender uses it,
so a server that withholds the next one cannot stretch a stolen key's use."""
BACKDATE: Final = timedelta(minutes=5)
"""``notBefore`` is set this much before issuance, for clocks slightly behind."""
_BACKDATE: Final = BACKDATE


@dataclass(frozen=True, slots=True)
class DeviceKeys:
    """A device's own keys: its identity and its current encryption key."""

    identity_key: Ed25519PrivateKey
    identity_certificate: x509.Certificate
    encryption_key: X25519PrivateKey
    encryption_certificate: x509.Certificate
    kem_key: MLKEM768PrivateKey | None = None
    """The ML-KEM-768 key issued with the encryption key (the hybrid wrap,
    PROTOCOL.md 13.11), rotated with it; ``None`` before one was made."""
    kem_certificate: x509.Certificate | None = None
    """Its certificate, issued by the identity (``core.hybrid``)."""
    fingerprint: str = field(init=False)
    """The device's fingerprint: SHA-256 of the identity certificate's DER."""
    encryption_fingerprint: str = field(init=False)
    """SHA-256 of the encryption certificate's DER (its id on the wire)."""
    kem_fingerprint: str | None = field(init=False)
    """SHA-256 of the ML-KEM certificate's DER, if there is one."""

    def __post_init__(self) -> None:
        if (self.kem_key is None) != (self.kem_certificate is None):
            raise ValueError("an ML-KEM key goes with its certificate")
        object.__setattr__(self, "fingerprint", certificate_fingerprint(self.identity_certificate))
        object.__setattr__(
            self, "encryption_fingerprint", certificate_fingerprint(self.encryption_certificate)
        )
        kem = self.kem_certificate
        object.__setattr__(
            self, "kem_fingerprint", None if kem is None else certificate_fingerprint(kem)
        )


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    """A peer device's checked identity certificate."""

    certificate: x509.Certificate
    public_key: Ed25519PublicKey
    jids: frozenset[str]
    fingerprint: str


def generate_device_keys(
    jid: str,
    *,
    now: datetime | None = None,
    normalize: Normalizer = normalize_bare_jid,
    encryption_validity: timedelta = ENCRYPTION_VALIDITY,
    label: str | None = None,
) -> DeviceKeys:
    """Fresh identity and encryption keys for a device of ``jid``, with their
    certificates (the encryption certificate valid for ``encryption_validity``,
    naming the device ``label``); :class:`CertificateError` for a JID that is not one."""
    try:
        bare = canonical_jid(jid, normalize)
    except ValueError as exc:
        raise CertificateError(f"no JID to put in the certificate: {exc}") from exc
    start = (now or utcnow()) - BACKDATE
    identity_key = Ed25519PrivateKey.generate()
    name = _name(bare)
    identity_certificate = (
        _builder(bare, name, name, start, start + IDENTITY_VALIDITY)
        .public_key(identity_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .sign(identity_key, None)
    )
    encryption_key = X25519PrivateKey.generate()
    encryption_certificate = issue_encryption_certificate(
        identity_key,
        identity_certificate,
        encryption_key.public_key(),
        now=now,
        valid_for=encryption_validity,
        label=label,
    )
    return DeviceKeys(identity_key, identity_certificate, encryption_key, encryption_certificate)


def issue_encryption_certificate(
    identity_key: Ed25519PrivateKey,
    identity_certificate: x509.Certificate,
    public_key: X25519PublicKey,
    *,
    now: datetime | None = None,
    valid_for: timedelta = ENCRYPTION_VALIDITY,
    label: str | None = None,
) -> x509.Certificate:
    """An encryption certificate for ``public_key``, signed by the identity key,
    naming the identity's JID (a new one for each rotation) and, if given, the
    device's ``label`` (:func:`clean_label`; ``description`` in the subject)."""
    return issue_certificate(
        identity_key,
        identity_certificate,
        public_key,
        _key_usage(key_agreement=True),
        now=now,
        valid_for=valid_for,
        label=label,
    )


def issue_certificate(
    identity_key: Ed25519PrivateKey,
    identity_certificate: x509.Certificate,
    public_key: X25519PublicKey | MLKEM768PublicKey,
    usage: x509.KeyUsage,
    *,
    now: datetime | None = None,
    valid_for: timedelta = ENCRYPTION_VALIDITY,
    label: str | None = None,
) -> x509.Certificate:
    """A certificate the identity issues for one of the device's keys (the X25519
    encryption key, the ML-KEM one): signed by the identity key, naming its JID,
    ``cA=FALSE``, ``keyUsage`` ``usage``, valid ``valid_for`` from ``now`` (backdated
    :data:`BACKDATE`), the device's cleaned ``label`` in the subject if given."""
    [bare] = sorted(checked_addresses(identity_certificate, lambda j: j))
    start = (now or utcnow()) - BACKDATE
    subject = _name(bare)
    cleaned = clean_label(label)
    if cleaned:
        subject = x509.Name([*subject, x509.NameAttribute(LABEL_OID, cleaned)])
    return (
        _builder(bare, subject, identity_certificate.subject, start, start + valid_for)
        .public_key(public_key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .sign(identity_key, None)
    )


def validate_identity_certificate(
    certificate: x509.Certificate | bytes,
    *,
    now: datetime | None = None,
    normalize: Normalizer = normalize_bare_jid,
) -> PeerIdentity:
    """Check a peer's identity certificate: at most :data:`MAX_CERTIFICATE_SIZE`,
    exactly one canonical ``id-on-xmppAddr`` JID, within its validity, no
    unknown critical extension, an Ed25519 key,
    self-signed (the signature verifies under its own key), allowed to sign
    certificates (``cA``, ``keyCertSign``)."""
    try:
        certificate = _loaded(certificate)
        jids = checked_addresses(certificate, normalize)
        if len(jids) != 1:
            raise CertificateError("an identity certificate names exactly one JID")
        check_validity(certificate, now or utcnow())
        _no_unknown_critical(certificate)
        public_key = certificate.public_key()
        if not isinstance(public_key, Ed25519PublicKey):
            raise CertificateError("identity certificate key is not Ed25519")
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage)
        if not constraints.value.ca or not usage.value.key_cert_sign:
            raise CertificateError("identity certificate may not sign certificates")
        try:
            certificate.verify_directly_issued_by(certificate)
        except Exception as exc:
            raise CertificateError("identity certificate is not self-signed") from exc
    except CertificateError:
        raise
    except Exception as exc:  # any parsing failure of cryptography, a missing extension
        raise CertificateError(f"unusable certificate: {type(exc).__name__}: {exc}") from exc
    return PeerIdentity(certificate, public_key, jids, certificate_fingerprint(certificate))


def validate_encryption_certificate(
    certificate: x509.Certificate | bytes,
    identity: PeerIdentity,
    *,
    now: datetime | None = None,
    normalize: Normalizer = normalize_bare_jid,
) -> X25519PublicKey:
    """The X25519 key of an encryption certificate that chains to ``identity``:
    issued and signed by its key (a certificate a server substituted does not
    verify), naming only JIDs the identity names, within its validity, no
    unknown critical extension, an X25519 key (not a small-order point) for
    key agreement only, not a CA."""

    def key_agreement_only(usage: x509.KeyUsage) -> bool:
        return usage.key_agreement and not usage.key_cert_sign

    key = check_issued(  # an X25519PublicKey: checked there
        certificate,
        identity,
        what="encryption certificate",
        key_type=X25519PublicKey,
        key_name="X25519",
        usage=key_agreement_only,
        usage_name="key agreement",
        now=now,
        normalize=normalize,
    )
    x25519 = cast(X25519PublicKey, key)
    try:  # a small-order point gives an all-zero shared secret (RFC 7748 section 6.1)
        X25519PrivateKey.generate().exchange(x25519)
    except ValueError:
        raise CertificateError("encryption certificate key is a small-order point") from None
    return x25519


def check_issued(
    certificate: x509.Certificate | bytes,
    identity: PeerIdentity,
    *,
    what: str,
    key_type: type,
    key_name: str,
    usage: Callable[[x509.KeyUsage], bool],
    usage_name: str,
    now: datetime | None = None,
    normalize: Normalizer = normalize_bare_jid,
) -> object:
    """The key of a certificate ``identity`` issued (an encryption or ML-KEM one):
    at most :data:`MAX_CERTIFICATE_SIZE`, naming only JIDs the identity names,
    within its validity, no unknown critical extension, a ``key_type`` key,
    ``usage`` accepting its ``keyUsage``, not a CA, signed by the identity key.
    :class:`CertificateError` with the reason (``what`` names the certificate).
    The key returned is a ``key_type`` instance (checked)."""
    try:
        certificate = _loaded(certificate)
        jids = checked_addresses(certificate, normalize)
        if not jids <= identity.jids:
            raise CertificateError(f"{what} names a JID its identity does not")
        check_validity(certificate, now or utcnow())
        _no_unknown_critical(certificate)
        public_key = certificate.public_key()
        if not isinstance(public_key, key_type):
            raise CertificateError(f"{what} key is not {key_name}")
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
        key_usage = certificate.extensions.get_extension_for_class(x509.KeyUsage)
        if constraints.value.ca or not usage(key_usage.value):
            raise CertificateError(f"{what} is not for {usage_name} only")
        try:
            certificate.verify_directly_issued_by(identity.certificate)
        except Exception as exc:
            raise CertificateError(f"{what} is not signed by the identity") from exc
    except CertificateError:
        raise
    except Exception as exc:  # any parsing failure of cryptography, a missing extension
        raise CertificateError(f"unusable certificate: {type(exc).__name__}: {exc}") from exc
    return public_key


_KNOWN_CRITICAL: Final = frozenset(
    {x509.BasicConstraints.oid, x509.KeyUsage.oid, x509.SubjectAlternativeName.oid}
)


def _no_unknown_critical(certificate: x509.Certificate) -> None:
    """RFC 5280 section 4.2: a critical extension we do not process refuses it."""
    for extension in certificate.extensions:
        if extension.critical and extension.oid not in _KNOWN_CRITICAL:
            raise CertificateError(f"certificate has an unknown critical extension {extension.oid}")


def _loaded(certificate: x509.Certificate | bytes) -> x509.Certificate:
    if not isinstance(certificate, x509.Certificate):
        certificate = load_certificate(certificate)
    size = len(certificate.public_bytes(serialization.Encoding.DER))
    if size > MAX_CERTIFICATE_SIZE:
        raise CertificateError(f"certificate of {size} bytes is over the limit")
    return certificate


def _name(bare: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, bare)])


def _builder(
    bare: str, subject: x509.Name, issuer: x509.Name, start: datetime, end: datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.SubjectAlternativeName([x509.OtherName(ID_ON_XMPPADDR, _der_utf8string(bare))]),
            critical=False,
        )
    )


def _key_usage(
    *, cert_sign: bool = False, key_agreement: bool = False, key_encipherment: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=key_agreement,
        key_cert_sign=cert_sign,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
