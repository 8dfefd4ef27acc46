"""Attacks a fresh security review found against issue 9's first cut, each now
failing (the review's tests, with the assertions turned around).

- a carbon's envelope replayed after a restart (carbons were admitted in
  memory only);
- a plaintext carbon hidden behind a second <forwarded/> or an empty wrapper;
- a plaintext groupchat message made to pass by adding an empty <e2e/>;
- our own encrypting client downgraded by a forged "unavailable" or by a flood
  of invented resources.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, ClassVar

import pytest
from slixmpp.xmlstream import tostring
from test_hostile import ALICE_JID, chat, outer
from test_hostile_plaintext import ALICE_FULL, OWN_LAPTOP, HostileTestCase, OwnClientsCase
from test_hostile_replay import MIN, SEC, ReplayCase, own_delay, stranger

from slixmpp_objenc.core.constants import NS_OBJENC
from slixmpp_objenc.glue.resources import MAX_OWN_RESOURCES
from slixmpp_objenc.store import SQLiteStorage


class TestCarbonWrappers(HostileTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.xmpp.register_plugin("xep_0280")
        self.carbons: list[Any] = []
        self.xmpp.add_event_handler("carbon_received", self.carbons.append)
        self.xmpp.add_event_handler("carbon_sent", self.carbons.append)
        self.failed: list[Any] = []
        self.xmpp.add_event_handler("objenc_decryption_failed", self.failed.append)

    def test_plain_carbon_refused(self) -> None:
        self.recv(
            "<message xmlns='jabber:client' from='tester@localhost' "
            "to='tester@localhost/resource' type='chat'>"
            "<received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
            f"<message xmlns='jabber:client' from='{ALICE_FULL}' to='tester@localhost/laptop' "
            "type='chat'><body>control</body></message>"
            "</forwarded></received></message>"
        )
        assert self.carbons == [] and len(self.refused) == 1

    def test_plain_carbon_behind_an_extra_forwarded_is_refused(self) -> None:
        self.recv(
            "<message xmlns='jabber:client' from='tester@localhost' "
            "to='tester@localhost/resource' type='chat'>"
            "<forwarded xmlns='urn:xmpp:forward:0'/>"
            "<received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
            f"<message xmlns='jabber:client' from='{ALICE_FULL}' to='tester@localhost/laptop' "
            "type='chat'><body>wire 1000 to mallory</body></message>"
            "</forwarded></received></message>"
        )
        assert self.carbons == [] and len(self.refused) == 1

    def test_plain_sent_carbon_behind_an_empty_received_is_dropped(self) -> None:
        self.recv(
            "<message xmlns='jabber:client' from='tester@localhost' "
            "to='tester@localhost/resource' type='chat'>"
            "<received xmlns='urn:xmpp:carbons:2'/>"
            "<sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
            "<message xmlns='jabber:client' from='tester@localhost/laptop' "
            "to='alice@example.org/phone' type='chat'><body>I agree to pay</body></message>"
            "</forwarded></sent></message>"
        )
        assert self.carbons == []
        assert [f.reason for f in self.failed] == ["forged"]


class TestGroupchatWithAnEmptyE2e(HostileTestCase):
    def test_groupchat_with_an_empty_e2e_is_refused_like_without(self) -> None:
        for extra in ("", f"<e2e xmlns='{NS_OBJENC}'/>"):
            self.assert_refused(
                f"<message xmlns='jabber:client' from='{ALICE_FULL}' "
                f"to='tester@localhost/resource' type='groupchat'>{extra}"
                "<body>wire 1000 to mallory</body></message>"
            )


class TestOwnClientNotDowngraded(OwnClientsCase):
    def assert_encrypted_to_laptop(self) -> None:
        self.xmpp.send_message(mto=OWN_LAPTOP, mbody="note to self", mtype="chat")
        self.wait_for_send_queue()
        raw = self.xmpp.socket.next_sent(timeout=1)
        assert raw is not None and b"<e2e" in raw and b"note to self" not in raw

    def test_a_forged_unavailable_does_not_downgrade_our_client(self) -> None:
        self.announce("laptop", [NS_OBJENC])
        self.recv(
            f"<presence xmlns='jabber:client' from='{OWN_LAPTOP}' "
            "to='tester@localhost/resource' type='unavailable'/>"
        )
        assert self.plugin.resources.encrypting(OWN_LAPTOP)
        self.assert_refused(
            f"<message xmlns='jabber:client' from='{OWN_LAPTOP}' "
            "to='tester@localhost/resource' type='chat'><body>wire it</body></message>"
        )
        self.assert_encrypted_to_laptop()

    def test_a_flood_of_invented_resources_does_not_evict_it(self) -> None:
        self.announce("laptop", [NS_OBJENC])
        for i in range(MAX_OWN_RESOURCES + 5):
            self.plugin.resources.encrypts(f"tester@localhost/fake{i}")
        assert self.plugin.resources.encrypting(OWN_LAPTOP)
        self.assert_encrypted_to_laptop()
        # past the bound every client of ours counts as encrypting (fail closed)
        assert self.plugin.resources.encrypting("tester@localhost/brand-new")
        assert not self.plugin.resources.encrypting("tester@localhost/resource")


def carbon(e2e_xml: str) -> str:
    return (
        "<message xmlns='jabber:client' from='tester@localhost' "
        "to='tester@localhost/resource' type='chat'>"
        "<received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
        f"<message xmlns='jabber:client' from='{ALICE_JID}' to='tester@localhost/laptop' "
        f"type='chat' id='c1'>{e2e_xml}</message></forwarded></received></message>"
    )


class TestCarbonReplayAfterRestart(ReplayCase):
    def test_a_carbons_envelope_is_not_accepted_again_after_a_restart(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "tester.sqlite3"
            self.restart(SQLiteStorage(path))
            try:
                e2e = tostring(self.seal_e2e(chat("pay 100 to bob"), timestamp=self.now))
                first = self.feed(carbon(e2e))
                assert len(first.carbons) == 1 and len(first.decrypted) == 1
                self.restart(SQLiteStorage(path))
                self.now += 30 * SEC
                direct = self.feed(outer(e2e, frm=ALICE_JID, oid="r2"))
                assert direct.delivered == [] and [e.reason for e in direct.stale] == ["replay"]
                again = self.feed(carbon(e2e))
                assert again.carbons == [] and [e.reason for e in again.stale] == ["replay"]
            finally:
                self.run_coro(self.plugin.close())

    def test_nor_days_later_with_a_forged_delay(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "tester.sqlite3"
            self.restart(SQLiteStorage(path))
            try:
                sent_at = self.now
                e2e = tostring(self.seal_e2e(chat("pay 100 to bob"), timestamp=sent_at))
                assert len(self.feed(carbon(e2e)).carbons) == 1
                for n in range(3):
                    self.now += SEC
                    self.delivered(self.feed(self.says(ALICE_JID, f"d{n}", self.now)), f"d{n}")
                self.now += 2 * 24 * 60 * MIN
                self.restart(SQLiteStorage(path))
                wire = outer(e2e, frm=ALICE_JID, oid="r3", extra=own_delay(sent_at))
                replayed = self.feed(wire)
                assert replayed.delivered == []
            finally:
                self.run_coro(self.plugin.close())


class TestStrangersAndAContactWithoutState(ReplayCase):
    """Known limit (denial of service only, documented): a contact of which no
    replay state is kept (silent for 30 days, or never wrote) takes the
    floor that folded strangers raise, so after a stranger flood its delayed
    stanza can be refused as old. Nothing is replayed or revealed."""

    guard: ClassVar[dict[str, Any]] = {"max_senders": 50}

    @pytest.mark.xfail(strict=True, reason="documented denial of service (README security table)")
    def test_flood_does_not_make_a_contacts_offline_message_old(self) -> None:
        alice_sent = self.now
        self.now += MIN
        self.flood([self.says(stranger(n), "hi", self.now) for n in range(60)])
        self.now += 11 * MIN
        self.flood([self.says(stranger(100 + n), "hi", self.now) for n in range(60)])
        late = self.says(ALICE_JID, "are you there?", alice_sent, delay=alice_sent, oid="late")
        self.delivered(self.feed(late), "are you there?")

    def test_control_without_the_flood_it_is_delivered(self) -> None:
        alice_sent = self.now
        self.now += 12 * MIN
        late = self.says(ALICE_JID, "are you there?", alice_sent, delay=alice_sent, oid="late")
        self.delivered(self.feed(late), "are you there?")
