"""slixmpp-objenc: end-to-end object encryption for XMPP (draft-miller-3923bis-02).

Load it into a slixmpp client::

    xmpp.register_plugin("objenc", module=slixmpp_objenc,
                         pconfig={"key_file": "me.key", "cert_file": "me.pem"})
    xmpp.plugin["objenc"].add_peer_certificate(open("romeo.pem", "rb").read())

The wire format itself lives in :mod:`slixmpp_objenc.core`, which does not
import slixmpp.
"""

from __future__ import annotations

from slixmpp.plugins.base import register_plugin

from .core import (
    CertificateError,
    EncryptionError,
    Identity,
    InvalidEnvelope,
    ObjEncError,
    PeerCertificate,
    StaleStanza,
    generate_identity,
)
from .core.publication import Publication, PublicationStatus
from .events import (
    BadTimestampEvent,
    DecryptionFailedEvent,
    EncryptionFailedEvent,
    EncryptionInfo,
    PeerRejectedEvent,
    UnsupportedEvent,
)
from .objects import (
    OpenedObject,
    SealedObject,
    open_object,
    open_object_to_path,
    seal_object,
)
from .plugin import ObjEnc
from .stanza import E2E, BadTimestamp, Data, DecryptionFailed, Key, Plain

register_plugin(ObjEnc)
objenc = ObjEnc

__all__ = [
    "E2E",
    "BadTimestamp",
    "BadTimestampEvent",
    "CertificateError",
    "Data",
    "DecryptionFailed",
    "DecryptionFailedEvent",
    "EncryptionError",
    "EncryptionFailedEvent",
    "EncryptionInfo",
    "Identity",
    "InvalidEnvelope",
    "Key",
    "ObjEnc",
    "ObjEncError",
    "OpenedObject",
    "PeerCertificate",
    "PeerRejectedEvent",
    "Plain",
    "Publication",
    "PublicationStatus",
    "SealedObject",
    "StaleStanza",
    "UnsupportedEvent",
    "generate_identity",
    "objenc",
    "open_object",
    "open_object_to_path",
    "seal_object",
]
__version__ = "0.1.0"
