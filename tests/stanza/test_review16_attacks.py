"""Review 16: a hostile server against e3cf19c (archive results judged as
plaintext, the final dot, condition-only errors, nothing beside a wrapper) and
f89d9f1 (/objenc hybrid|revoke|label|rotate), through the plugin's real filters."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from slixmpp.exceptions import IqError
from test_hostile_plaintext import ALICE_FULL, HostileTestCase

from slixmpp_objenc.core.constants import NS_OBJENC

E2E = f"{{{NS_OBJENC}}}e2e"
ME = "tester@localhost"
ALICE_JID = "alice@example.org"
TO = f"to='{ME}/resource'"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def fwd(inner: str) -> str:
    return f"<forwarded xmlns='urn:xmpp:forward:0'>{inner}</forwarded>"


def alice_plain(
    body: str = "Pay 100 to X", to: str = f"{ME}/laptop", kind_type: str = "chat"
) -> str:
    return (
        f"<message xmlns='jabber:client' from='{ALICE_FULL}' to='{to}' type='{kind_type}'>"
        f"<body>{body}</body></message>"
    )


class WrapperCase(HostileTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.xmpp.register_plugin("xep_0280")
        self.xmpp.register_plugin("xep_0313")
        self.carbons: list[Any] = []
        self.xmpp.add_event_handler("carbon_received", self.carbons.append)
        self.xmpp.add_event_handler("carbon_sent", self.carbons.append)

    def carbon_bodies(self) -> list[str]:
        out = []
        for c in self.carbons:
            for name in ("carbon_received", "carbon_sent"):
                try:
                    body = c[name]["body"]
                except Exception:
                    body = ""
                if body:
                    out.append(body)
        return out

    def message_bodies(self) -> list[str]:
        return [m["body"] for m in self.delivered_messages() if m["body"]]


class TestCarbonLikeWrappers(WrapperCase):
    def test_control_a_plaintext_carbon_of_alice_is_refused(self) -> None:
        self.recv(
            f"<message xmlns='jabber:client' from='{ME}' {TO} type='chat'>"
            f"<received xmlns='urn:xmpp:carbons:2'>{fwd(alice_plain())}</received></message>"
        )
        assert self.carbon_bodies() == []
        assert len(self.refused) == 1

    def test_a_plaintext_carbon_in_an_error_typed_wrapper_is_refused(self) -> None:
        sent = (
            f"<message xmlns='jabber:client' from='{ME}/laptop' to='{ALICE_JID}' "
            "type='chat'><body>I agree to pay</body></message>"
        )
        for wrapper, inner in (("received", alice_plain()), ("sent", sent)):
            self.recv(
                f"<message xmlns='jabber:client' from='{ME}' {TO} type='error'>"
                f"<{wrapper} xmlns='urn:xmpp:carbons:2'>{fwd(inner)}</{wrapper}></message>"
            )
        assert self.carbon_bodies() == []

    def test_result_and_received_together_are_forged(self) -> None:
        self.recv(
            f"<message xmlns='jabber:client' from='{ME}' {TO} type='chat'>"
            f"<result xmlns='urn:xmpp:mam:2' id='r'>{fwd(alice_plain('in result'))}</result>"
            f"<received xmlns='urn:xmpp:carbons:2'>{fwd(alice_plain('in carbon'))}</received>"
            "</message>"
        )
        assert self.carbon_bodies() == []
        assert self.message_bodies() == []

    def test_a_result_from_alice_with_an_outer_body_is_refused(self) -> None:
        for kind_type in ("chat", "normal", "headline", "groupchat"):
            self.assert_refused(
                f"<message xmlns='jabber:client' from='{ALICE_FULL}' {TO} type='{kind_type}'>"
                f"<body>outer</body><result xmlns='urn:xmpp:mam:2' id='r'>"
                f"{fwd(alice_plain())}</result></message>"
            )

    def test_a_result_from_alices_dotted_or_bare_jid_is_refused(self) -> None:
        for frm in ("alice@example.org", "alice@example.org.", "alice@example.org./x"):
            self.assert_refused(
                f"<message xmlns='jabber:client' from='{frm}' {TO} type='chat'>"
                f"<body>outer</body><result xmlns='urn:xmpp:mam:2' id='r'>"
                f"{fwd(alice_plain())}</result></message>"
            )


# -- the final dot and our own node (authenticated profile) -----------------------------

from test_auth_review import (  # noqa: E402
    KEY,
    OWN_EVIL_DEVICE,
    ReviewCase,
    device_item,
    rsa_item,
)
from testkit import TESTER  # noqa: E402

from slixmpp_objenc.core.identities import generate_device_keys  # noqa: E402
from slixmpp_objenc.store import TrustState  # noqa: E402

SECOND_OWN = generate_device_keys(ME)


class OwnNodeCase(ReviewCase):
    authenticated_profile = True

    def own_node_with_a_second_device(self) -> str:
        own = device_item(self.tester, vouched_by=TESTER)
        self.discover(ME, [own, rsa_item(TESTER)])
        assert not self.plugin.keyring.own_first_contact
        self.notify(ME)
        self.answer_fetch(ME, [own, device_item(SECOND_OWN)])
        self.run_coro(self.plugin.accept_key_change(ME, SECOND_OWN.fingerprint))
        assert self.trust(ME, SECOND_OWN.fingerprint) is TrustState.TOFU
        return own

    def keys_of_next_message(self) -> set[str]:
        self.xmpp.send_message(mto=ALICE_JID, mbody="for alice", mtype="chat")
        return {k.get("identity-sha256") or "" for k in self.sent_message().iter(KEY)}

    def dotted_own_node(self, own: str) -> None:
        """The server notifies a change of 'tester@localhost.': it is our own node
        (RFC 7622 3.2), read under its one spelling."""
        self.notify(f"{ME}.")
        self.answer_fetch(ME, [own, device_item(SECOND_OWN), device_item(OWN_EVIL_DEVICE)])


class TestDottedOwnNode(OwnNodeCase):
    def test_control_an_intruder_on_our_node_is_held_as_our_own(self) -> None:
        own = self.own_node_with_a_second_device()
        self.notify(ME)
        self.answer_fetch(ME, [own, device_item(SECOND_OWN), device_item(OWN_EVIL_DEVICE)])
        assert self.trust(ME, OWN_EVIL_DEVICE.fingerprint) is TrustState.UNTRUSTED
        assert len(self.events["objenc_own_device_held"]) >= 1

    def test_an_intruder_on_our_dotted_node_is_never_pinned(self) -> None:
        own = self.own_node_with_a_second_device()
        self.pin_alice()
        self.dotted_own_node(own)
        assert self.trust(ME, OWN_EVIL_DEVICE.fingerprint) is TrustState.UNTRUSTED  # held
        assert self.events["objenc_key_changed"] == []
        assert OWN_EVIL_DEVICE.fingerprint not in self.keys_of_next_message()

    def test_a_dotted_read_of_our_node_does_not_unpublish_our_devices(self) -> None:
        own = self.own_node_with_a_second_device()
        self.notify(f"{ME}.")
        self.answer_fetch(ME, [own, device_item(SECOND_OWN)])
        assert self.trust(ME, SECOND_OWN.fingerprint) is TrustState.TOFU


# -- the final dot, draft profile ------------------------------------------------------


class TestDottedSpellings(WrapperCase):
    def test_inner_addressed_to_our_dotted_jid_is_delivered(self) -> None:
        inner = (
            f"<message xmlns='jabber:client' from='{ALICE_FULL}' to='{ME}./resource' "
            "type='chat'><body>dotted to</body></message>"
        )
        self.recv(self.alice_seals(inner))
        assert self.message_bodies() == ["dotted to"]

    def test_outer_from_alices_dotted_full_jid_is_still_alice(self) -> None:
        inner = (
            f"<message xmlns='jabber:client' from='{ALICE_FULL}' to='{ME}/resource' "
            "type='chat'><body>dotted from</body></message>"
        )
        self.recv(
            self.alice_seals(
                inner, outer_attrs=f"from='alice@example.org./phone' to='{ME}/resource'"
            )
        )
        assert self.message_bodies() == ["dotted from"]

    def test_inner_claiming_another_domain_with_a_dot_is_forged(self) -> None:
        inner = (
            "<message xmlns='jabber:client' from='alice@example.org.evil/phone' "
            f"to='{ME}/resource' type='chat'><body>x</body></message>"
        )
        self.recv(self.alice_seals(inner))
        assert self.message_bodies() == []

    def test_sending_to_alices_dotted_bare_jid_is_encrypted_to_her(self) -> None:
        self.xmpp.send_message(mto="alice@example.org./phone", mbody="secret", mtype="chat")
        outer, inner = self.sent_to_alice()
        assert b"secret" in inner and b"secret" not in ET.tostring(outer)

    def test_a_carbon_from_our_dotted_bare_jid_is_not_shown_as_a_carbon(self) -> None:
        self.recv(
            f"<message xmlns='jabber:client' from='{ME}.' {TO} type='chat'>"
            f"<received xmlns='urn:xmpp:carbons:2'>{fwd(alice_plain())}</received></message>"
        )
        assert self.carbon_bodies() == []
        assert self.message_bodies() == []

    def test_require_encryption_for_a_dotted_spelling_covers_the_contact(self) -> None:
        self.run_coro(self.plugin.require_encryption("bob@example.org.", True))
        self.assert_refused(
            f"<message xmlns='jabber:client' from='bob@example.org/x' {TO} type='chat'>"
            "<body>x</body></message>"
        )
        self.assert_refused(
            f"<message xmlns='jabber:client' from='bob@example.org./x' {TO} type='chat'>"
            "<body>x</body></message>"
        )


# -- condition-only errors -----------------------------------------------------------


def alice_error(error: str, extra: str = "", frm: str = ALICE_FULL) -> str:
    return (
        f"<message xmlns='jabber:client' from='{frm}' {TO} type='error' id='e9'>"
        f"{error}{extra}</message>"
    )


class TestConditionOnly(HostileTestCase):
    def passes(self, stanza: str) -> bool:
        before = len(self.refused)
        self.recv(stanza)
        return len(self.refused) == before

    def test_content_inside_or_beside_conditions_is_refused(self) -> None:
        gone = f"<gone xmlns='{STANZAS}'/>"
        text = f"<text xmlns='{STANZAS}'>t</text>"
        for error in (
            f"<error type='cancel'><gone xmlns='{STANZAS}'>xmpp:x@y</gone></error>",
            f"<error type='cancel'><redirect xmlns='{STANZAS}'>xmpp:x@y</redirect></error>",
            f"<error type='cancel'><gone xmlns='{STANZAS}'><x xmlns='urn:e'/></gone></error>",
            f"<error type='cancel'>{gone}{text}</error>",
            f"<error type='cancel'>{gone}<x xmlns='urn:e:x'>t</x></error>",
            f"<error type='cancel'>{gone}</error><error type='cancel'>{gone}{text}</error>",
            f"<error type='cancel'>{gone}</error><body>Pay</body>",
            f"<error type='cancel'>{gone}</error><e2e xmlns='{NS_OBJENC}'>x</e2e>",
            f"<error type='cancel'><gone xmlns='{STANZAS}x'/></error>",
            "<error type='cancel'><gone xmlns='urn:ietf:params:xml:ns:xmpp-stanza'/></error>",
            f"<error xmlns='urn:other' type='cancel'><gone xmlns='{STANZAS}'/></error>",
        ):
            assert not self.passes(alice_error(error)), error

    def test_whitespace_only_condition_text_passes(self) -> None:
        assert self.passes(
            alice_error(f"<error type='cancel'><gone xmlns='{STANZAS}'> \n</gone></error>")
        )

    def test_text_directly_in_error_or_after_a_condition_or_in_attributes_is_refused(
        self,
    ) -> None:
        refused = 0
        for error in (
            f"<error type='cancel'>Pay 100 to X<gone xmlns='{STANZAS}'/></error>",
            f"<error type='cancel'><gone xmlns='{STANZAS}'/>Pay 100 to X</error>",
            f"<error type='cancel'><gone xmlns='{STANZAS}' text='Pay 100 to X'/></error>",
            f"<error type='cancel' by='Pay 100 to X'><gone xmlns='{STANZAS}'/></error>",
        ):
            refused += not self.passes(alice_error(error))
        assert refused == 4

    def test_a_second_error_element_does_not_carry_text_to_the_application(self) -> None:
        iq = self.xmpp.make_iq_get(queryxmlns="urn:example:balance", ito=ALICE_FULL)
        future = iq.send(timeout=3)
        self.sent_to_alice()
        self.recv(
            f"<iq xmlns='jabber:client' from='alice@example.org' {TO} type='error' "
            f"id='{iq['id']}'><error type='cancel'>"
            f"<item-not-found xmlns='{STANZAS}'/></error>"
            f"<error type='auth'><not-authorized xmlns='{STANZAS}'/>"
            f"<text xmlns='{STANZAS}'>Session expired: log in at evil.example</text>"
            "<query xmlns='urn:example:balance'><amount>0</amount></query></error></iq>"
        )
        with pytest.raises(IqError) as caught:
            self.xmpp.loop.run_until_complete(asyncio.wait_for(future, 2))
        assert caught.value.iq["error"]["text"] == ""
        assert caught.value.iq["error"]["condition"] == "item-not-found"
        raw = ET.tostring(caught.value.iq.xml)
        assert b"evil.example" not in raw and b"amount" not in raw, raw

    def test_the_first_error_stripped_keeps_no_address(self) -> None:
        iq = self.xmpp.make_iq_get(queryxmlns="urn:example:balance", ito=ALICE_FULL)
        future = iq.send(timeout=3)
        self.sent_to_alice()
        self.recv(
            f"<iq xmlns='jabber:client' from='alice@example.org' {TO} type='error' "
            f"id='{iq['id']}'><error type='cancel' by='evil@x'>"
            f"<redirect xmlns='{STANZAS}' a='b'>xmpp:evil@x</redirect>"
            f"<text xmlns='{STANZAS}'>go</text></error></iq>"
        )
        with pytest.raises(IqError) as caught:
            self.xmpp.loop.run_until_complete(asyncio.wait_for(future, 2))
        raw = ET.tostring(caught.value.iq.xml)
        assert b"xmpp:evil" not in raw and b">go<" not in raw, raw


# -- fetch_archive() through slixmpp's real MAM collector --------------------------------

from datetime import timedelta  # noqa: E402

from slixmpp.xmlstream import tostring  # noqa: E402
from testkit import TESTER as _TESTER  # noqa: E402

from slixmpp_objenc.core import Recipient, seal  # noqa: E402


class TestFetchArchive(WrapperCase):
    def sealed_by_alice(self, body: str, when: Any) -> str:
        inner = (
            f"<message xmlns='jabber:client' from='{ALICE_FULL}' to='{ME}/resource' "
            f"type='chat'><body>{body}</body></message>"
        )
        e2e = seal(inner.encode(), [Recipient(_TESTER.certificate.public_key())], timestamp=when)
        return (
            f"<message xmlns='jabber:client' from='{ALICE_FULL}' to='{ME}/resource' "
            f"type='chat'>{tostring(e2e)}</message>"
        )

    def result(
        self, queryid: str, frm: str | None, forwarded: str, stamp: Any, extra: str = ""
    ) -> str:
        attr = f"from='{frm}' " if frm is not None else ""
        return (
            f"<message xmlns='jabber:client' {attr}{TO}>{extra}"
            f"<result xmlns='urn:xmpp:mam:2' queryid='{queryid}' id='a{stamp.second}'>"
            "<forwarded xmlns='urn:xmpp:forward:0'>"
            f"<delay xmlns='urn:xmpp:delay' stamp='{stamp.strftime('%Y-%m-%dT%H:%M:%SZ')}'/>"
            f"{forwarded}</forwarded></result></message>"
        )

    def fetch(self, results: list[tuple[str | None, str, str]]) -> list[Any]:
        task = asyncio.ensure_future(self.plugin.fetch_archive(max_items=10))
        self.wait_for_send_queue()
        self.xmpp.loop.run_until_complete(asyncio.sleep(0.05))
        raw = self.xmpp.socket.next_sent(timeout=1)
        assert raw is not None and b"urn:xmpp:mam:2" in raw, raw
        query = ET.fromstring(raw)
        qid = query.get("id", "")
        base = self.now - timedelta(hours=1)
        for i, (frm, kind, extra) in enumerate(results):
            when = base + timedelta(seconds=i + 1)
            forwarded = (
                self.sealed_by_alice(f"m{i}", when) if kind == "sealed" else alice_plain(f"m{i}")
            )
            self.recv(self.result(qid, frm, forwarded, when, extra))
        self.recv(
            f"<iq xmlns='jabber:client' type='result' {TO} id='{qid}'>"
            "<fin xmlns='urn:xmpp:mam:2' complete='true'/></iq>"
        )
        return self.xmpp.loop.run_until_complete(asyncio.wait_for(task, 2))

    def test_our_own_archive_still_opens_with_or_without_from(self) -> None:
        archived = self.fetch(
            [
                (None, "sealed", ""),
                (ME, "sealed", ""),
                ("Tester@LOCALHOST", "sealed", ""),
                (f"{ME}.", "sealed", ""),
            ]
        )
        assert [a.stanza["body"] for a in archived] == ["m0", "m1", "m2", "m3"]
        assert all(a.info is not None and a.error is None for a in archived)

    def test_beside_an_opened_result_nothing_is_delivered(self) -> None:
        archived = self.fetch([(ME, "sealed", "<body>server words</body>")])
        assert [a.stanza["body"] for a in archived] == ["m0"]
        assert self.message_bodies() == []

    def test_a_result_from_elsewhere_is_not_opened(self) -> None:
        """A result from our domain or our own full JID is not our archive: it
        passes unopened (info None, error None, like plaintext history)."""
        archived = self.fetch([("localhost", "sealed", ""), (f"{ME}/resource", "sealed", "")])
        assert all(a.info is None for a in archived)

    def test_plaintext_in_our_archive_is_history(self) -> None:
        """Decided (PROTOCOL.md 5.4): the archive may hold plaintext from before, so a
        hostile server can put 'alice's' plaintext in history; it is marked unencrypted."""
        archived = self.fetch([(ME, "plain", ""), ("localhost", "plain", "")])
        assert [(a.stanza["body"], a.info) for a in archived] == [("m0", None), ("m1", None)]


# -- /objenc hybrid|revoke|label|rotate (pure: no poezio) --------------------------------

from slixmpp_objenc.poezio import text as poezio_text  # noqa: E402
from slixmpp_objenc.poezio.account import OwnAccount  # noqa: E402
from slixmpp_objenc.poezio.text import CommandError, Held, parse_command  # noqa: E402

LOST = "ab12" + "0" * 60
INTRUDER = "ab12" + "f" * 60


class FakeApi:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def set_hybrid(self, jid: str, on: bool | None) -> None:
        self.calls.append(("set_hybrid", (jid, on)))

    def uses_hybrid(self, jid: str) -> bool:
        return False

    async def revoke_device(self, fingerprint: str) -> None:
        self.calls.append(("revoke_device", fingerprint))

    async def set_device_label(self, label: str | None) -> None:
        self.calls.append(("set_device_label", label))


def account(held: dict[str, list[Held]]) -> tuple[OwnAccount, FakeApi, list[str]]:
    api, said = FakeApi(), []
    own = OwnAccount(
        api, lambda: ME, lambda bare: held.get(bare, []), lambda lines, _t: said.extend(lines)
    )
    return own, api, said


def run(coro: Any) -> Any:
    return asyncio.new_event_loop().run_until_complete(coro)


class TestPoezioCommands:
    def test_revoke_never_takes_a_jid_or_a_contacts_tab(self) -> None:
        assert parse_command("revoke ab12", ALICE_JID) == poezio_text.Request(
            "revoke", None, ("ab12",)
        )
        with pytest.raises(CommandError):
            parse_command(f"revoke {ALICE_JID} ab12", None)
        with pytest.raises(CommandError):
            parse_command("revoke ab12 cd34", ALICE_JID)  # two words: refused, not guessed

    def test_revoke_resolves_only_among_our_devices_and_refuses_ambiguity(self) -> None:
        own, api, _ = account(
            {
                ME: [Held(LOST, TrustState.TOFU), Held(INTRUDER, TrustState.UNTRUSTED)],
                ALICE_JID: [Held("cd34" + "0" * 60, TrustState.TOFU)],
            }
        )
        with pytest.raises(CommandError):
            run(own.revoke(parse_command("revoke ab12", ALICE_JID), None))
        with pytest.raises(CommandError):
            run(own.revoke(parse_command("revoke cd34", ALICE_JID), None))
        run(own.revoke(parse_command("revoke 'ab12 0000'", ALICE_JID), None))
        assert api.calls == [("revoke_device", LOST)]

    def test_hybrid_acts_on_the_tab_or_the_typed_jid_only(self) -> None:
        assert parse_command("hybrid on", ALICE_JID) == poezio_text.Request(
            "hybrid", ALICE_JID, ("on",)
        )
        assert parse_command("hybrid bob@x.org off", ALICE_JID).jid == "bob@x.org"
        with pytest.raises(CommandError):
            parse_command("hybrid on", None)
        with pytest.raises(CommandError):
            parse_command("hybrid bob@x.org on off", ALICE_JID)

    def test_a_label_is_taken_whole_and_never_as_a_jid(self) -> None:
        request = parse_command("label alice@example.org 'x' revoke ab12", ALICE_JID)
        assert request == poezio_text.Request("label", None, ("alice@example.org 'x' revoke ab12",))

    def test_hybrid_for_our_own_dotted_jid_is_refused(self) -> None:
        own, _api, _ = account({})
        with pytest.raises(CommandError):
            run(own.hybrid(poezio_text.Request("hybrid", f"{ME}.", ("on",)), None))
