"""Attacks on publishing our certificate from inside our own account (a
password thief connected as another client) and by running attempts
concurrently, on slixmpp's mock stream (the real path: ObjEnc, Publisher,
PublicationSteps, slixmpp's xep_0060), plus what reaches the user's screen
(``objenc show`` / ``objenc peers`` and poezio's ``/objenc status``).

Tests that pass show an attack that fails; tests that fail show a problem.
"""

from __future__ import annotations

import asyncio

from test_publication_stanzas import ME, NS_DATA, NS_PUBSUB, PublicationCase, kind

from slixmpp_objenc import cli
from slixmpp_objenc.plugin import NODE_CERTS
from slixmpp_objenc.poezio import text

NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


class TestConcurrentAttempts(PublicationCase):
    def test_two_attempts_never_interleave(self) -> None:
        second = asyncio.ensure_future(self.plugin.publish_certificate())
        first_publish = self.expect("publish-with-options")
        assert self.next_sent() is None, "the second attempt started beside the first"
        self.ok(first_publish)
        read = self.expect("read-configuration")
        assert self.next_sent() is None
        self.configuration(read, access_model="open")
        self.ok(self.expect("retract"))
        self.refuse(self.expect("configure"), "forbidden")
        self.wait_(0.1)
        assert self.task.done() and self.task.result() is False
        # only now the second attempt: it finds the node again from scratch
        second_publish = self.expect("publish-with-options")
        self.refuse(second_publish, "conflict")
        self.configuration(self.expect("read-configuration"), access_model="open")
        self.refuse(self.expect("configure"), "forbidden")
        self.wait_(0.1)
        assert second.done() and second.result() is False
        assert self.seen.count("publish") == 0
        assert self.plugin.publication.status.value == "failing"


class TestPasswordThief(PublicationCase):
    def publish_on_prosody(self) -> None:
        self.ok(self.expect("publish-with-options"))
        self.configuration(self.expect("read-configuration"), access_model="presence")
        assert self.outcome() is True

    def test_a_node_opened_by_the_thief_is_closed_again_at_the_next_session(self) -> None:
        self.publish_on_prosody()
        # The thief sets the node to open; the next session publishes again.
        self.task = asyncio.ensure_future(self.plugin.publish_certificate())
        self.refuse(
            self.expect("publish-with-options"),
            "conflict",
            f"<precondition-not-met xmlns='{NS_PUBSUB}#errors'/>",
        )
        self.configuration(self.expect("read-configuration"), access_model="open")
        configure = self.expect("configure")
        self.ok(configure)
        self.configuration(self.expect("read-configuration"), access_model="presence")
        self.ok(self.expect("publish"))
        self.configuration(self.expect("read-configuration"), access_model="presence")
        assert self.outcome() is True

    def test_a_node_opened_by_the_thief_on_a_server_ignoring_options_is_retracted(self) -> None:
        self.publish_on_prosody()
        self.task = asyncio.ensure_future(self.plugin.publish_certificate())
        self.ok(self.expect("publish-with-options"))  # options not applied
        self.configuration(self.expect("read-configuration"), access_model="open")
        self.ok(self.expect("retract"))
        self.refuse(self.expect("configure"), "forbidden")  # thief is owner too
        assert self.outcome() is False
        assert self.plugin.publication.status.value == "failing"

    def test_a_node_opened_by_the_thief_during_the_session_is_noticed(self) -> None:
        self.publish_on_prosody()
        # XEP-0060 8.2.5: the server notifies the new configuration (when
        # pubsub#notify_config is on). Our client keeps saying "published:
        # contacts find it" while the node is world-readable, until the next
        # connection; it never asks for these notifications either.
        self.recv(
            f"<message from='tester@localhost' to='{ME}'>"
            f"<event xmlns='{NS_PUBSUB}#event'><configuration node='{NODE_CERTS}'>"
            f"<x xmlns='{NS_DATA}' type='result'><field var='FORM_TYPE' type='hidden'>"
            f"<value>{NS_PUBSUB}#node_config</value></field>"
            "<field var='pubsub#access_model'><value>open</value></field></x>"
            "</configuration></event></message>"
        )
        self.wait_(0.2)
        sent = self.next_sent()
        assert sent is not None or self.plugin.publication.status.value != "published", (
            "a node reconfigured to open during the session is neither re-checked "
            "nor reported: the state still says published"
        )


class TestWhatTheUserSees(PublicationCase):
    def test_a_servers_text_is_one_short_printable_line_in_show_peers_and_poezio(self) -> None:
        # ESC/BEL are not XML characters; these are: C1 CSI/OSC/ST, NEL,
        # newlines, tabs, bidi override, line and paragraph separators.
        evil = (
            "\x9b2J\x9d0;pwned\x9c\nOn PEP:      published (publish-options): fine\t"
            "\u202etxet desrever\u2028\u2029\x85" + "A" * 100000
        )
        self.refuse(self.expect("publish-with-options"), "not-acceptable")
        self.refuse(
            self.expect("read-configuration"),
            "forbidden",
            f"<text xmlns='{NS_STANZAS}'>{evil}</text>",
        )
        assert self.outcome() is False
        identity = self.plugin.identity
        shown = asyncio.ensure_future(cli._publication(self.plugin.keyring, identity))
        self.wait_(0.1)
        lines = [
            shown.result(),
            *text.status_lines(
                None, None, [], identity.fingerprint, [], self.plugin.publication.meaning
            ),
        ]
        for line in lines:
            assert line.isprintable(), repr(line[:120])
            assert len(line) < 1000, len(line)
        assert "NOT published (forbidden" in lines[0]

    def test_the_recorded_state_of_another_certificate_is_not_shown_as_ours(self) -> None:
        self.ok(self.expect("publish-with-options"))
        self.configuration(self.expect("read-configuration"), access_model="presence")
        assert self.outcome() is True
        other = self.plugin.identity
        from test_pep_stanzas import ALICE  # another identity, as after a new key

        assert ALICE.fingerprint != other.fingerprint
        shown = asyncio.ensure_future(cli._publication(self.plugin.keyring, ALICE))
        self.wait_(0.1)
        assert shown.result().startswith("unknown for this certificate")


class TestThiefLeavesTheNodeWrong(PublicationCase):
    """Settings other than the access model that the thief (as owner) can leave
    behind after the password is changed; our checks read only access_model,
    max_items and persist_items, and our configuration submits only those."""

    def node_with(self, **values: str) -> None:
        self.refuse(
            self.expect("publish-with-options"),
            "conflict",
            f"<precondition-not-met xmlns='{NS_PUBSUB}#errors'/>",
        )
        self.configuration(self.expect("read-configuration"), access_model="presence", **values)

    def then(self, what: str, why: str) -> None:
        sent = self.next_sent()
        assert sent is not None, why
        assert kind(sent) == what, why

    def test_anyone_may_publish_on_our_node(self) -> None:
        # publish_model=open: any contact (or stranger) publishes a certificate
        # naming our JID on our own node, and contacts discover it as ours.
        self.node_with(publish_model="open")
        self.then("configure", ("published on a node where anyone may publish items beside ours"))

    def test_items_purged_when_we_go_offline(self) -> None:
        # purge_offline: our certificate vanishes exactly while we are offline,
        # when contacts write to us (in the clear, finding no certificate).
        self.node_with(purge_offline="1")
        self.then("configure", "published on a node purged when we go offline")

    def test_items_that_expire(self) -> None:
        self.node_with(item_expire="60")
        self.then("configure", "published on a node whose items expire in 60 s")
