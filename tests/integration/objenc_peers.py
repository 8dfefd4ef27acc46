"""Helpers shared by the integration tests (Prosody and ejabberd): peers, events, the wire."""

from __future__ import annotations

import asyncio
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from slixmpp import JID, ClientXMPP
from slixmpp.xmlstream import StanzaBase, tostring

from slixmpp_objenc import Publication, PublicationStatus
from slixmpp_objenc.core.identities import DeviceKeys

WAIT = 20.0


def secret(label: str) -> str:
    """A unique marker: if it shows up on the wire or on disk, plaintext leaked."""
    return f"{label}-{uuid.uuid4().hex[:12]}"


async def befriend(a: ClientXMPP, b: ClientXMPP) -> None:
    """Mutual presence subscription (PEP's 'presence' access model needs it)."""
    a.send_presence(pto=b.boundjid.bare, ptype="subscribe")
    for _ in range(400):
        if (
            a.client_roster[b.boundjid.bare]["subscription"] == "both"
            and b.client_roster[a.boundjid.bare]["subscription"] == "both"
        ):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("subscriptions did not complete")


def queue_of(client: ClientXMPP, event: str) -> asyncio.Queue[Any]:
    queue: asyncio.Queue[Any] = asyncio.Queue()
    client.add_event_handler(event, queue.put_nowait)
    return queue


async def next_matching(
    queue: asyncio.Queue[Any], predicate: Callable[[Any], bool], what: str, timeout: float = WAIT
) -> Any:
    """The next item of ``queue`` for which ``predicate`` holds (others are skipped)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError(f"timed out waiting for {what}")
        try:
            item = await asyncio.wait_for(queue.get(), remaining)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}") from None
        if predicate(item):
            return item


class QueuedDevice:
    """One connected objenc client and the events queued for it since it was made;
    subclasses (dataclasses) declare ``client`` and ``queues`` with what else
    their tests keep."""

    client: ClientXMPP
    queues: dict[str, asyncio.Queue[Any]]

    @property
    def plugin(self) -> Any:
        return self.client.plugin["objenc"]

    @property
    def keys(self) -> DeviceKeys:
        """This device's keys (authenticated profile), loaded."""
        keys: DeviceKeys | None = self.plugin.keyring.device.keys
        assert keys is not None
        return keys

    async def next(self, event: str, what: str, predicate: Callable[[Any], bool] = bool) -> Any:
        return await next_matching(self.queues[event], predicate, what)

    async def body(self, body: str) -> Any:
        """The next ``message`` event with this body."""
        return await self.next("message", repr(body), lambda m: m["body"] == body)

    def drain(self, event: str) -> list[Any]:
        """Everything queued for ``event`` so far, taken out."""
        queue, items = self.queues[event], []
        while not queue.empty():
            items.append(queue.get_nowait())
        return items


async def eventually(
    predicate: Callable[[], bool], describe: Callable[[], str], timeout: float = WAIT
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out: {describe()}")
        await asyncio.sleep(0.05)


async def publication_settled(client: ClientXMPP, timeout: float = WAIT) -> Publication:
    """Wait until the client's certificate publication is no longer pending
    (contacts find it only then: four requests on ejabberd); its state."""
    plugin = client.plugin["objenc"]
    await eventually(
        lambda: plugin.publication.status is not PublicationStatus.PENDING,
        lambda: f"publication of {client.boundjid.bare}: {plugin.publication}",
        timeout,
    )
    state: Publication = plugin.publication
    return state


@dataclass
class Wire:
    """What a client really sent (after encryption) and received (before decryption)."""

    sent: list[str] = field(default_factory=list)
    received: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "\n".join(self.sent + self.received)

    def clear(self) -> None:
        self.sent.clear()
        self.received.clear()

    def stanzas_with(self, peer_bare: str) -> list[ET.Element]:
        """Parsed stanzas addressed to or coming from ``peer_bare``."""
        found = []
        for text in self.sent + self.received:
            try:
                element = ET.fromstring(text)
            except ET.ParseError:
                continue
            ends = {JID(element.get("from", "")).bare, JID(element.get("to", "")).bare}
            if peer_bare in ends:
                found.append(element)
        return found


def tap(client: ClientXMPP) -> Wire:
    """Record the wire: an 'out_sce' filter after the plugin's sealing one (the exact
    string slixmpp writes), and an 'in' filter before the plugin's ``inbound.receive``."""
    wire = Wire()

    def out(stanza: StanzaBase) -> StanzaBase:
        wire.sent.append(
            tostring(stanza.xml, xmlns=client.default_ns, stream=client, top_level=True)
        )
        return stanza

    def incoming(stanza: StanzaBase) -> StanzaBase:
        wire.received.append(str(stanza))
        return stanza

    plugin = client.plugin["objenc"]
    client.add_filter("out_sce", out)
    client.del_filter("in", plugin.inbound.receive)
    client.add_filter("in", incoming)
    client.add_filter("in", plugin.inbound.receive)
    return wire
