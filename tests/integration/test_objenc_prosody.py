"""The plugin between two real clients through a real server (Prosody 0.12 and ejabberd 23.01)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from slixmpp import ClientXMPP, Iq
from slixmpp.exceptions import IqError
from slixmpp.xmlstream import ElementBase, register_stanza_plugin, tostring

from slixmpp_objenc.core import Identity, Recipient, generate_identity, seal
from slixmpp_objenc.core.constants import NS_OBJENC
from slixmpp_objenc.store import MemoryStorage
from slixmpp_objenc.testing import XmppServer

WAIT = 15.0
PLUGINS = ["xep_0030", "xep_0199", "xep_0198", "objenc"]
NS_ECHO = "urn:example:objenc:echo"


class EchoQuery(ElementBase):
    name = "query"
    namespace = NS_ECHO
    plugin_attrib = "echo"
    interfaces = {"text"}  # noqa: RUF012
    sub_interfaces = {"text"}  # noqa: RUF012


register_stanza_plugin(Iq, EchoQuery)


@dataclass
class Peer:
    client: ClientXMPP
    identity: Identity
    events: dict[str, asyncio.Queue[Any]] = field(default_factory=dict)
    raw_in: list[str] = field(default_factory=list)

    @property
    def jid(self) -> str:
        return str(self.client.boundjid.full)

    @property
    def plugin(self) -> Any:
        return self.client.plugin["objenc"]

    def watch(self, *names: str) -> None:
        for name in names:
            queue: asyncio.Queue[Any] = asyncio.Queue()
            self.events[name] = queue
            self.client.add_event_handler(name, queue.put_nowait)

    async def next(self, name: str) -> Any:
        return await asyncio.wait_for(self.events[name].get(), WAIT)

    def nothing_in(self, name: str) -> bool:
        return self.events[name].empty()


Connector = Callable[..., Awaitable[ClientXMPP]]


async def make_peer(connect_client: Connector, account: Any) -> Peer:
    jid, password = await account()
    identity = generate_identity(jid, key_size=2048)
    client = await connect_client(
        jid,
        password,
        plugins=PLUGINS,
        pconfig={"objenc": {"identity": identity, "storage": MemoryStorage(), "pep": False}},
    )
    peer = Peer(client, identity)
    plugin = peer.plugin

    def capture(stanza: Any) -> Any:
        peer.raw_in.append(str(stanza))
        return stanza

    # see the wire stanza before the plugin opens it
    client.del_filter("in", plugin.inbound.receive)
    client.add_filter("in", capture)
    client.add_filter("in", plugin.inbound.receive)
    peer.watch(
        "message",
        "message_error",
        "objenc_decrypted",
        "objenc_decryption_failed",
        "objenc_bad_timestamp",
        "objenc_unsupported",
        "presence_available",
    )
    return peer


@pytest.fixture
async def pair(connect_client: Connector, account: Any) -> tuple[Peer, Peer]:
    alice = await make_peer(connect_client, account)
    bob = await make_peer(connect_client, account)
    alice.plugin.add_peer_certificate(bob.identity.certificate_pem())
    bob.plugin.add_peer_certificate(alice.identity.certificate_pem())
    return alice, bob


def raw_envelope(
    sender: Peer,
    recipient: Peer,
    body: str,
    *,
    timestamp: datetime | None = None,
    tamper: bool = False,
    outer_id: str = "raw1",
) -> str:
    """An outer <message/> sealed by the core directly (for attacks the plugin won't make)."""
    inner = (
        f"<message xmlns='jabber:client' from='{sender.jid}' to='{recipient.jid}' "
        f"type='chat' id='in-{outer_id}'><body>{body}</body></message>"
    )
    e2e = seal(
        inner.encode(),
        [Recipient(recipient.identity.certificate.public_key())],
        timestamp=timestamp or datetime.now(UTC),
    )
    if tamper:
        data = e2e.find(f"{{{NS_OBJENC}}}data")
        assert data is not None
        raw = bytearray(base64.b64decode(data.text or ""))
        raw[-1] ^= 0x01
        data.text = base64.b64encode(bytes(raw)).decode()
    return f"<message to='{recipient.jid}' type='chat' id='{outer_id}'>{tostring(e2e)}</message>"


async def test_message_is_encrypted_on_the_wire_and_delivered(pair: tuple[Peer, Peer]) -> None:
    alice, bob = pair
    alice.client.send_message(mto=bob.jid, mbody="Wherefore art thou", mtype="chat")
    msg = await bob.next("message")
    assert msg["body"] == "Wherefore art thou"
    assert str(msg["from"]) == alice.jid
    info = bob.plugin.encryption_info(msg)
    # these peers exchanged only their RSA certificates by hand: the draft's
    # profile, which proves nothing about the sender (issue 12)
    assert info is not None and not info.authenticated and info.sender_fingerprint is None
    wire = [s for s in bob.raw_in if NS_OBJENC in s]
    assert wire and all("Wherefore" not in s for s in bob.raw_in)


async def test_iq_round_trip_through_iq_send(pair: tuple[Peer, Peer]) -> None:
    alice, bob = pair

    def answer(iq: Iq) -> None:
        assert bob.plugin.encryption_info(iq) is not None
        reply = iq.reply()
        reply["echo"]["text"] = "echo: " + iq["echo"]["text"]
        reply.send()

    from slixmpp.xmlstream.handler import Callback
    from slixmpp.xmlstream.matcher import StanzaPath

    bob.client.register_handler(Callback("echo", StanzaPath("iq@type=get/echo"), answer))
    iq = alice.client.make_iq_get(ito=bob.jid)
    iq["echo"]["text"] = "a secret question"
    result = await iq.send(timeout=WAIT)
    assert result["echo"]["text"] == "echo: a secret question"
    assert alice.plugin.encryption_info(result) is not None
    assert all("secret question" not in s for s in bob.raw_in)
    assert all("secret question" not in s for s in alice.raw_in)


async def test_directed_presence(pair: tuple[Peer, Peer]) -> None:
    alice, bob = pair
    alice.client.send_presence(pto=bob.jid, pstatus="meet me in the orchard")
    while True:
        presence = await bob.next("presence_available")
        if str(presence["from"]) == alice.jid and presence["status"]:
            break
    assert presence["status"] == "meet me in the orchard"
    assert bob.plugin.encryption_info(presence) is not None
    assert all("orchard" not in s for s in bob.raw_in)


async def test_tampered_stanza_gets_decryption_failed_error(pair: tuple[Peer, Peer]) -> None:
    alice, bob = pair
    alice.client.send_raw(raw_envelope(alice, bob, "tampered", tamper=True, outer_id="t1"))
    failed = await bob.next("objenc_decryption_failed")
    assert failed.reason == "undecryptable"
    error = await alice.next("message_error")
    assert error["id"] == "t1"
    assert error["error"]["condition"] == "bad-request"
    assert error.xml.find(".//{urn:ietf:params:xml:xmpp-e2e}decryption-failed") is not None
    assert bob.nothing_in("message")


async def test_stale_timestamp_gets_bad_timestamp_error(pair: tuple[Peer, Peer]) -> None:
    alice, bob = pair
    old = datetime.now(UTC) - timedelta(minutes=10)
    alice.client.send_raw(raw_envelope(alice, bob, "yesterday", timestamp=old, outer_id="s1"))
    stale = await bob.next("objenc_bad_timestamp")
    assert stale.reason == "old" and stale.stanza["body"] == "yesterday"
    error = await alice.next("message_error")
    assert error["id"] == "s1" and error["error"]["condition"] == "not-acceptable"
    assert error.xml.find(".//{urn:ietf:params:xml:xmpp-e2e}bad-timestamp") is not None
    assert bob.nothing_in("message")


async def test_replay_is_refused(pair: tuple[Peer, Peer]) -> None:
    alice, bob = pair
    wire = raw_envelope(alice, bob, "only once", outer_id="r1")
    alice.client.send_raw(wire)
    assert (await bob.next("message"))["body"] == "only once"
    alice.client.send_raw(wire)
    stale = await bob.next("objenc_bad_timestamp")
    assert stale.reason == "replay"
    assert bob.nothing_in("message")


async def test_service_unavailable_fails_iq_send(pair: tuple[Peer, Peer]) -> None:
    alice, bob = pair
    iq = alice.client.make_iq_get(ito=f"{bob.client.boundjid.bare}/no-such-resource")
    iq["echo"]["text"] = "anyone?"
    with pytest.raises(IqError) as caught:
        await iq.send(timeout=WAIT)
    assert caught.value.condition == "service-unavailable"
    unsupported = await alice.next("objenc_unsupported")
    assert unsupported.jid.startswith(bob.client.boundjid.bare)


async def test_server_stores_only_ciphertext(
    pair: tuple[Peer, Peer], server: XmppServer, account: Any
) -> None:
    alice, bob = pair
    carol_jid, _ = await account("carol")  # never online: offline storage
    carol = generate_identity(carol_jid, key_size=2048)
    alice.plugin.add_peer_certificate(carol.certificate_pem())
    secret_online = "online-secret-7f3a"
    secret_offline = "offline-secret-9c1d"
    alice.client.send_message(mto=bob.jid, mbody=secret_online, mtype="chat")
    assert (await bob.next("message"))["body"] == secret_online
    alice.client.send_message(mto=carol_jid, mbody=secret_offline, mtype="chat")
    # a ping round trip makes sure the server has handled (and stored) both
    await alice.client.plugin["xep_0199"].ping(jid=server.domain, timeout=WAIT)
    await asyncio.sleep(0.5)
    await server.wait_for_disk()  # ejabberd: its Mnesia files lag up to 3 s
    stored = server.stored_files_text()
    # ejabberd's files are binary (Mnesia, SQLite), each with every user's data
    bob_archive = server.user_store_bytes(bob.jid, "archive").decode("utf-8", "replace")
    carol_offline = server.user_store_bytes(carol_jid, "offline").decode("utf-8", "replace")
    assert NS_OBJENC in bob_archive  # MAM archived the encrypted message (<store/> hint)...
    assert NS_OBJENC in carol_offline  # ...and the offline store holds carol's
    assert secret_online not in stored  # ...but never their plaintext
    assert secret_offline not in stored


async def test_stream_management_counts_wire_stanzas(pair: tuple[Peer, Peer]) -> None:
    """Inbound failures and successes each count once: the server agrees on h."""
    alice, bob = pair
    sm = bob.client.plugin["xep_0198"]
    assert sm.enabled_in
    before = sm.handled
    seen = len(bob.raw_in)
    alice.client.send_message(mto=bob.jid, mbody="one", mtype="chat")
    await bob.next("message")
    alice.client.send_raw(raw_envelope(alice, bob, "bad", tamper=True, outer_id="c1"))
    await bob.next("objenc_decryption_failed")
    alice.client.send_message(mto=bob.jid, mbody="two", mtype="chat")
    await bob.next("message")
    wire = [s for s in bob.raw_in[seen:] if s.startswith(("<message", "<presence", "<iq"))]
    assert sum(NS_OBJENC in s for s in wire) == 3
    assert (sm.handled - before) % 2**32 == len(wire)
    # Prosody closes the stream if a client acknowledges more than it was sent;
    # an ack round trip followed by a ping proves the count was accepted.
    sm.send_ack()
    await bob.client.plugin["xep_0199"].ping(timeout=WAIT)


async def test_plain_client_is_unaffected(
    connect_client: Connector, account: Any, pair: tuple[Peer, Peer]
) -> None:
    """Stanzas to a contact whose certificate we do not hold go as they are."""
    alice, _ = pair
    plain = await connect_client()
    got: asyncio.Queue[Any] = asyncio.Queue()
    plain.add_event_handler("message", got.put_nowait)
    alice.client.send_message(mto=plain.boundjid.full, mbody="hello in the clear", mtype="chat")
    msg = await asyncio.wait_for(got.get(), WAIT)
    assert msg["body"] == "hello in the clear"
    assert msg.xml.find(f"{{{NS_OBJENC}}}e2e") is None
