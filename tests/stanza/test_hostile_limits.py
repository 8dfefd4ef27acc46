"""Unbounded work from one stanza (issue 9, kind 10), through the plugin.

An inner stanza nested past 64 levels, or of more than 10,000 elements, is
refused as case 4 (``undecryptable``, the same event and error reply as any
envelope that does not open) and never delivered; one at the bounds is
delivered and the application can serialize it. Old code: the 15,000-deep
stanza was delivered and ``str(msg)`` raised ``RecursionError``.
"""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET

from slixmpp import Message
from slixmpp.xmlstream import tostring
from test_hostile import (
    ALICE_JID,
    DATA,
    DECRYPTION_FAILED_REPLY,
    ME,
    HostileTestCase,
    b64,
    outer,
)

from slixmpp_objenc.core.xmlsafe import MAX_XML_DEPTH, MAX_XML_ELEMENTS

HEAD = (
    f"<message xmlns='jabber:client' from='{ALICE_JID}' to='{ME}' type='chat' id='inner-1'>"
    "<body>{body}</body>"
)


def nested(depth: int, body: str = "deep") -> str:
    """A chat message whose innermost element is at ``depth`` (the message is 1)."""
    levels = depth - 2  # the message, and the <body/> beside the nesting
    return (
        HEAD.format(body=body)
        + "<x>" * (levels + 1)  # short, so 15,000 levels fit in an envelope
        + "</x>" * (levels + 1)
        + "</message>"
    )


def wide(elements: int, body: str = "wide") -> str:
    """A chat message of ``elements`` elements, itself included."""
    return HEAD.format(body=body) + "<x/>" * (elements - 2) + "</message>"


class TestLimits(HostileTestCase):
    def wire(self, inner: str, oid: str = "outer1") -> str:
        return outer(tostring(self.seal_e2e(inner)), oid=oid)

    def assert_undecryptable(self, inner: str) -> None:
        result = self.feed(self.wire(inner, oid="hostile"))
        self.assert_refused(result, "undecryptable")  # nothing delivered, one failure event
        assert self.events["objenc_decrypted"] == []
        [reply] = result.replies
        expected = DECRYPTION_FAILED_REPLY.format(to=ALICE_JID, id="hostile")
        self.check(Message(xml=ET.fromstring(reply)), expected, use_values=False)
        self.assert_still_serving()

    def test_an_inner_stanza_nested_15000_deep_is_refused(self) -> None:
        self.assert_undecryptable(nested(15_000))

    def test_one_level_past_the_bound_is_refused(self) -> None:
        self.assert_undecryptable(nested(MAX_XML_DEPTH + 1))

    def test_one_element_past_the_bound_is_refused(self) -> None:
        self.assert_undecryptable(wide(MAX_XML_ELEMENTS + 1))

    def test_at_the_depth_bound_it_is_delivered(self) -> None:
        result = self.feed(self.wire(nested(MAX_XML_DEPTH, body="at the bound")))
        assert [m["body"] for m in result.delivered] == ["at the bound"]
        assert result.refusals == 0
        text = str(result.delivered[0])
        assert text.count("</x>") == MAX_XML_DEPTH - 2

    def test_at_the_element_bound_it_is_delivered(self) -> None:
        result = self.feed(self.wire(wide(MAX_XML_ELEMENTS, body="many")))
        assert [m["body"] for m in result.delivered] == ["many"]
        assert result.refusals == 0
        assert sum(1 for _ in result.delivered[0].xml.iter()) == MAX_XML_ELEMENTS
        str(result.delivered[0])

    def test_the_refusal_looks_like_any_other(self) -> None:
        """Same event reason and same reply as an envelope whose MAC is wrong."""
        deep = self.feed(self.wire(nested(15_000), oid="same"))
        e2e = self.seal_e2e(nested(3))
        data = e2e.find(DATA)
        assert data is not None
        mac = bytearray(base64.b64decode(data.get("mac-hash", "")))
        mac[0] ^= 0x01
        data.set("mac-hash", b64(bytes(mac)))
        tampered = self.feed(outer(tostring(e2e), oid="same"))
        assert [e.reason for e in deep.failed] == [e.reason for e in tampered.failed]
        assert deep.replies == tampered.replies
