"""The same outer ``<message/>`` around every mechanism's payload, for wire sizes.

This project's plugin sends a ``<message/>`` with its ``<e2e/>``, an XEP-0380
``<encryption/>`` element, a fallback ``<body/>`` and ``<store/>``; OMEMO and
OpenPGP clients send the same kind of framing. Every peer's payload is put into
the same frame (same addressing, same fallback text, same hints) and serialized
by slixmpp exactly as it writes to the socket, so the sizes differ only by what
the mechanism itself adds. This project's core ``<e2e/>`` (exactly N ``<key/>``,
without the one for the sender's own device the plugin adds) goes in the same
frame too, for a like-for-like comparison.
"""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

from slixmpp import ClientXMPP
from slixmpp.xmlstream import tostring

from slixmpp_objenc.core.constants import NS_OBJENC
from slixmpp_objenc.core.rules import EME_NAME
from slixmpp_objenc.plugin import ObjEnc

from .common import ALICE_FULL, BOB, BOB_FULL

FALLBACK = str(ObjEnc.default_config["fallback_body"])
NS_EME = "urn:xmpp:eme:0"
NS_HINTS = "urn:xmpp:hints"
NS_SCE = "urn:xmpp:sce:1"
NS_OX = "urn:xmpp:openpgp:0"
EME = {
    NS_OBJENC: EME_NAME,
    "urn:xmpp:omemo:2": "OMEMO",
    "eu.siacs.conversations.axolotl": "OMEMO",
    NS_OX: "OpenPGP for XMPP",
}
STAMP = datetime(2026, 11, 22, 13, 45, tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def element_bytes(element: ET.Element) -> int:
    """An element alone, serialized the way slixmpp does (default namespaces)."""
    return len(str(tostring(element)).encode("utf-8"))


def framed_stanza_bytes(client: ClientXMPP, payload: ET.Element, namespace: str) -> int:
    """The full chat message carrying ``payload``, as slixmpp would write it."""
    msg = client.make_message(mto=BOB_FULL, mtype="chat")
    msg.xml.append(payload)
    msg.xml.append(ET.Element(f"{{{NS_HINTS}}}store"))
    msg.xml.append(
        ET.Element(f"{{{NS_EME}}}encryption", {"namespace": namespace, "name": EME[namespace]})
    )
    ET.SubElement(msg.xml, "{jabber:client}body").text = FALLBACK
    wire = tostring(msg.xml, xmlns=client.default_ns, stream=client, top_level=True)
    return len(str(wire).encode("utf-8"))


def _body(parent: ET.Element, body: str) -> None:
    ET.SubElement(parent, "{jabber:client}body").text = body


def sce_envelope(body: str) -> bytes:
    """XEP-0420 envelope for OMEMO 2 (no ``<rpad/>``, so sizes stay deterministic)."""
    envelope = ET.Element(f"{{{NS_SCE}}}envelope")
    _body(ET.SubElement(envelope, f"{{{NS_SCE}}}content"), body)
    ET.SubElement(envelope, f"{{{NS_SCE}}}time", {"stamp": STAMP})
    ET.SubElement(envelope, f"{{{NS_SCE}}}to", {"jid": BOB})
    ET.SubElement(envelope, f"{{{NS_SCE}}}from", {"jid": ALICE_FULL})
    return str(tostring(envelope)).encode("utf-8")


def signcrypt(body: str) -> bytes:
    """XEP-0373 ``<signcrypt/>`` (no ``<rpad/>``)."""
    element = ET.Element(f"{{{NS_OX}}}signcrypt")
    ET.SubElement(element, f"{{{NS_OX}}}to", {"jid": BOB})
    ET.SubElement(element, f"{{{NS_OX}}}time", {"stamp": STAMP})
    _body(ET.SubElement(element, f"{{{NS_OX}}}payload"), body)
    return str(tostring(element)).encode("utf-8")


def openpgp_element(binary: bytes) -> ET.Element:
    """XEP-0373's ``<openpgp/>``: the binary OpenPGP message, base64."""
    element = ET.Element(f"{{{NS_OX}}}openpgp")
    element.text = base64.b64encode(binary).decode("ascii")
    return element
