"""Zero configuration through a real server (Prosody and ejabberd): keys made on first start, found
over PEP, pinned on first use, kept across restarts; a substituted key is
caught; the 6-character verification works and exposes a man in the middle."""

from __future__ import annotations

import asyncio
import base64
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from objenc_peers import befriend, publication_settled, queue_of, tap
from slixmpp import ClientXMPP
from slixmpp.xmlstream import StanzaBase, tostring

from slixmpp_objenc import EncryptionError, PublicationStatus
from slixmpp_objenc.core import Recipient, generate_identity, open_envelope, seal
from slixmpp_objenc.core.constants import NS_OBJENC
from slixmpp_objenc.core.verification import SasInitiator, SasResponder
from slixmpp_objenc.plugin import NODE_CERTS
from slixmpp_objenc.stanza import Certificate
from slixmpp_objenc.store import TrustState
from slixmpp_objenc.testing import disconnect_client

WAIT = 20.0
PLUGINS = ["xep_0030", "xep_0199", "objenc"]
E2E = f"{{{NS_OBJENC}}}e2e"

Connector = Callable[..., Awaitable[ClientXMPP]]


async def connect(
    connect_client: Connector, jid: str, password: str, data_dir: Path, **config: Any
) -> ClientXMPP:
    client = await connect_client(
        jid,
        password,
        plugins=PLUGINS,
        pconfig={"objenc": {"data_dir": str(data_dir), "key_size": 2048, **config}},
    )
    plugin = client.plugin["objenc"]
    await plugin.ready()
    state = await publication_settled(client)
    assert state.status is not PublicationStatus.FAILING, state
    return client


async def test_first_contact_restart_and_substituted_key(
    connect_client: Connector, account: Any, tmp_path: Path
) -> None:
    alice_jid, alice_pw = await account("alice")
    bob_jid, bob_pw = await account("bob")
    alice = await connect(connect_client, alice_jid, alice_pw, tmp_path / "alice")
    bob = await connect(connect_client, bob_jid, bob_pw, tmp_path / "bob")
    await befriend(alice, bob)
    alice_fp = alice.plugin["objenc"].fingerprint
    bob_fp = bob.plugin["objenc"].fingerprint
    store_file = next((tmp_path / "alice").glob("*.sqlite3"))
    assert store_file.stat().st_mode & 0o777 == 0o600

    # first contact: nothing configured, certificates found over PEP
    bob_messages = queue_of(bob, "message")
    wire = tap(alice)
    sent, received = wire.sent, wire.received
    alice.send_message(mto=bob_jid, mbody="first contact, encrypted", mtype="chat")
    msg = await asyncio.wait_for(bob_messages.get(), WAIT)
    assert msg["body"] == "first contact, encrypted"
    info = bob.plugin["objenc"].encryption_info(msg)
    assert info is not None and info.recipient_fingerprint == bob_fp
    # what first contact costs on alice's stream: at most one PEP fetch (none if
    # the directed presence of the subscription above already triggered it),
    # whose result arrives before the encrypted message leaves
    protocol_out = [
        x for x in sent if (NODE_CERTS in x or NS_OBJENC in x) and not x.startswith("<presence")
    ]
    protocol_in = [x for x in received if NODE_CERTS in x and x.startswith("<iq")]
    assert protocol_out[-1].startswith("<mes") and NS_OBJENC in protocol_out[-1]
    fetches = [x for x in protocol_out if x.startswith("<iq")]
    assert len(fetches) <= 1 and len(protocol_in) == len(fetches)
    assert all("first contact" not in x for x in sent)
    record = alice.plugin["objenc"].keyring.record(bob_jid, bob_fp)
    assert record is not None and record.trust is TrustState.TOFU and record.source == "pep"

    # and back: bob discovers alice the same way
    alice_messages = queue_of(alice, "message")
    bob.send_message(mto=alice_jid, mbody="and back", mtype="chat")
    assert (await asyncio.wait_for(alice_messages.get(), WAIT))["body"] == "and back"

    # restart both: same keys, no new discovery needed
    await alice.plugin["objenc"].close()
    await bob.plugin["objenc"].close()
    # until the server has closed them: ejabberd routes to a session it still
    # holds open, and the old client object would take bob's next message
    await disconnect_client(alice)
    await disconnect_client(bob)
    alice = await connect(connect_client, alice_jid, alice_pw, tmp_path / "alice")
    bob = await connect(connect_client, bob_jid, bob_pw, tmp_path / "bob")
    assert alice.plugin["objenc"].fingerprint == alice_fp
    assert bob.plugin["objenc"].fingerprint == bob_fp
    assert alice.plugin["objenc"].keyring.record(bob_jid, bob_fp) is not None
    bob_messages = queue_of(bob, "message")
    alice.send_message(mto=bob_jid, mbody="after restart", mtype="chat")
    assert (await asyncio.wait_for(bob_messages.get(), WAIT))["body"] == "after restart"

    # a substituted certificate appears for bob on his PEP node
    changed = queue_of(alice, "objenc_key_changed")
    failed = queue_of(alice, "objenc_encryption_failed")
    mallory = generate_identity(bob_jid, key_size=2048)
    payload = Certificate()
    payload["value"] = base64.b64encode(mallory.certificate.public_bytes(Encoding.DER)).decode()
    await bob.plugin["xep_0060"].publish(None, NODE_CERTS, id=mallory.fingerprint, payload=payload)
    event = await asyncio.wait_for(changed.get(), WAIT)
    assert event.jid == bob_jid and event.new_fingerprint == mallory.fingerprint
    assert bob_fp in event.old_fingerprints
    # held: neither plaintext nor the new key until alice decides
    sent.clear()
    alice.send_message(mto=bob_jid, mbody="held back", mtype="chat")
    await asyncio.sleep(1.5)
    assert not any("held back" in s or NS_OBJENC in s for s in sent)
    assert bob_messages.empty()
    await alice.plugin["objenc"].reject_key_change(bob_jid, mallory.fingerprint)
    msg = await asyncio.wait_for(bob_messages.get(), WAIT)
    assert msg["body"] == "held back"  # released, encrypted to the pinned key only
    assert failed.empty()


async def test_sticky_encryption_refuses_plaintext(
    connect_client: Connector, account: Any, tmp_path: Path
) -> None:
    alice_jid, alice_pw = await account("alice")
    carol_jid, _ = await account("carol")
    alice = await connect(connect_client, alice_jid, alice_pw, tmp_path / "alice")
    plugin = alice.plugin["objenc"]
    carol = generate_identity(carol_jid, key_size=2048)
    plugin.add_peer_certificate(carol.certificate_pem())
    await plugin.set_trust(carol_jid, carol.fingerprint, TrustState.REVOKED)
    failed = queue_of(alice, "objenc_encryption_failed")
    sent = tap(alice).sent
    alice.send_message(mto=carol_jid, mbody="never in the clear", mtype="chat")
    event = await asyncio.wait_for(failed.get(), WAIT)
    assert isinstance(event.error, EncryptionError)
    assert not any("never in the clear" in s for s in sent)
    # an iq to a sticky contact fails at once with a clear error
    iq = alice.make_iq_get(queryxmlns="urn:example:q", ito=f"{carol_jid}/phone")
    with pytest.raises(Exception, match=r"policy-violation|not sent"):
        await iq.send(timeout=WAIT)
    # and encryption can be required before any certificate is known
    dave_jid, _ = await account("dave")
    await plugin.require_encryption(dave_jid)
    alice.send_message(mto=dave_jid, mbody="required", mtype="chat")
    await asyncio.wait_for(failed.get(), WAIT)
    assert not any("required" in s for s in sent)


async def test_short_authentication_string(
    connect_client: Connector, account: Any, tmp_path: Path
) -> None:
    alice_jid, alice_pw = await account("alice")
    bob_jid, bob_pw = await account("bob")
    alice = await connect(connect_client, alice_jid, alice_pw, tmp_path / "alice")
    bob = await connect(connect_client, bob_jid, bob_pw, tmp_path / "bob")
    await befriend(alice, bob)
    await alice.plugin["objenc"].discover(bob_jid)
    await bob.plugin["objenc"].discover(alice_jid)
    bob_sas = queue_of(bob, "objenc_sas")
    result = await alice.plugin["objenc"].start_verification(bob.boundjid.full)
    theirs = await asyncio.wait_for(bob_sas.get(), WAIT)
    assert len(result.sas) == 6 and result.sas == theirs.sas
    await alice.plugin["objenc"].confirm_verification(result.sid, matched=True)
    await bob.plugin["objenc"].confirm_verification(theirs.sid, matched=True)
    bob_fp, alice_fp = bob.plugin["objenc"].fingerprint, alice.plugin["objenc"].fingerprint
    assert alice.plugin["objenc"].keyring.record(bob_jid, bob_fp).trust is TrustState.VERIFIED
    assert bob.plugin["objenc"].keyring.record(alice_jid, alice_fp).trust is TrustState.VERIFIED
    messages = queue_of(bob, "message")
    alice.send_message(mto=bob_jid, mbody="verified now", mtype="chat")
    msg = await asyncio.wait_for(messages.get(), WAIT)
    assert bob.plugin["objenc"].encryption_info(msg).sender_trust is TrustState.VERIFIED


async def test_man_in_the_middle_gets_mismatching_strings(
    connect_client: Connector, account: Any, tmp_path: Path
) -> None:
    """Mallory controls the path (as a malicious server would) and substituted her
    own certificates on both sides; she re-encrypts everything in transit, so the
    conversation itself works, but the two users read different strings."""
    alice_jid, alice_pw = await account("alice")
    bob_jid, bob_pw = await account("bob")
    alice = await connect(connect_client, alice_jid, alice_pw, tmp_path / "alice", pep=False)
    bob = await connect(connect_client, bob_jid, bob_pw, tmp_path / "bob", pep=False)
    m_as_bob = generate_identity(bob_jid, key_size=2048)
    m_as_alice = generate_identity(alice_jid, key_size=2048)
    alice.plugin["objenc"].add_peer_certificate(m_as_bob.certificate_pem())
    bob.plugin["objenc"].add_peer_certificate(m_as_alice.certificate_pem())
    real = {
        alice_jid: (alice.plugin["objenc"].identity, m_as_alice),
        bob_jid: (bob.plugin["objenc"].identity, m_as_bob),
    }

    # Mallory's two verification sessions: she answers alice as "bob" and asks bob
    # as "alice", rewriting the exchange in transit. Each of her nonces is fixed
    # before she sees the other side's, which is what the commitment enforces.
    towards_alice = SasResponder({m_as_bob.fingerprint}, {real[alice_jid][0].fingerprint})
    towards_bob = SasInitiator({m_as_alice.fingerprint}, {real[bob_jid][0].fingerprint})

    def rewrite(inner: ET.Element) -> None:
        sas = inner.find(f"{{{NS_OBJENC}}}sas")
        if sas is None:
            return
        for child in list(sas):
            if child.tag.rsplit("}", 1)[-1] in ("initiator", "responder"):
                sas.remove(child)  # the sets each side announces would give her away
                continue
            name, value = child.tag.rsplit("}", 1)[-1], base64.b64decode(child.text or "")
            if name == "commit":  # alice -> bob: swap in Mallory's own commitment
                towards_alice.receive_commit(value)
                child.text = base64.b64encode(towards_bob.commit()).decode()
                sas.set("cert", m_as_alice.fingerprint)
            elif name == "nonce":  # bob -> alice: answer alice with Mallory's nonce
                reveal_for_bob = towards_bob.receive_nonce(value)
                mallory_reveals.append(reveal_for_bob)
                child.text = base64.b64encode(towards_alice._nonce).decode()
                sas.set("cert", m_as_bob.fingerprint)
            elif name == "reveal":  # alice -> bob: reveal Mallory's nonce instead
                towards_alice.receive_reveal(value)
                child.text = base64.b64encode(mallory_reveals[0]).decode()

    mallory_reveals: list[bytes] = []

    def mallory(recipient_jid: str) -> Callable[[StanzaBase], StanzaBase]:
        recipient_identity, _ = real[recipient_jid]
        substitute = m_as_bob if recipient_jid == bob_jid else m_as_alice

        def relay(stanza: StanzaBase) -> StanzaBase:
            e2e = stanza.xml.find(E2E)
            if e2e is None:
                return stanza
            opened = open_envelope(  # Mallory reads it...
                e2e, substitute.private_key, key_id=substitute.fingerprint
            )
            inner = ET.fromstring(opened.stanza_bytes)
            rewrite(inner)
            resealed = seal(  # ...and re-encrypts it for the real recipient
                tostring(inner).encode(),
                [Recipient(recipient_identity.certificate.public_key())],
                timestamp=opened.timestamp,
            )
            stanza.xml.remove(e2e)
            stanza.xml.insert(0, resealed)
            return stanza

        return relay

    alice.add_filter("out_sce", mallory(bob_jid))
    bob.add_filter("out_sce", mallory(alice_jid))

    messages = queue_of(bob, "message")
    alice.send_message(mto=bob.boundjid.full, mbody="Mallory reads this", mtype="chat")
    assert (await asyncio.wait_for(messages.get(), WAIT))["body"] == "Mallory reads this"

    bob_sas = queue_of(bob, "objenc_sas")
    result = await alice.plugin["objenc"].start_verification(bob.boundjid.full)
    theirs = await asyncio.wait_for(bob_sas.get(), WAIT)
    assert result.sas != theirs.sas  # the users hear different strings
    await alice.plugin["objenc"].confirm_verification(result.sid, matched=False)
    record = alice.plugin["objenc"].keyring.record(bob_jid, m_as_bob.fingerprint)
    assert record is not None and record.trust is TrustState.UNTRUSTED
