"""Exception hierarchy.

Remote faults and local misuse are different types, so an application can
tell "the peer sent garbage" from "we are misconfigured"; every way a
ciphertext can fail to open collapses into one opaque :class:`InvalidEnvelope`
so that no error message, type or attribute becomes a decryption oracle.
"""

from __future__ import annotations

__all__ = [
    "CertificateError",
    "EncryptionError",
    "InvalidEnvelope",
    "ObjEncError",
    "StaleStanza",
]


class ObjEncError(Exception):
    """Root of every error this package raises on purpose."""


class EncryptionError(ObjEncError):
    """Local misuse: no certificate for the recipient, bad configuration.

    Raised on the sending side; never caused by what a peer sent.
    """


class CertificateError(ObjEncError):
    """A certificate cannot be used: no XMPP address, expired, weak key."""


class InvalidEnvelope(ObjEncError):
    """An ``<e2e/>`` element could not be opened.

    Deliberately carries no detail: bad base64, unknown algorithm, RSA unwrap
    failure, MAC mismatch, bad padding and unparseable content all look alike.
    """

    def __init__(self) -> None:
        super().__init__("the <e2e/> element could not be opened")


class StaleStanza(ObjEncError):
    """The envelope opened, but its timestamp fails the draft's section 6 checks.

    ``reason`` is one of ``"old"``, ``"future"``, ``"decreasing"`` or
    ``"replay"`` (an exact copy of a stanza already accepted).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"stale stanza: {reason} timestamp")
        self.reason = reason
