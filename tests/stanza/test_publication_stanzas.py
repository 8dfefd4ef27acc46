"""Publishing our certificate on servers that differ (XEP-0060 sections 7.1.5,
8.1.3, 8.2), on slixmpp's mock stream: what the server answers is ours to
script, so a hostile or unusual server is a few lines each.

The servers scripted here are the ones users run: Prosody 0.12 (takes our
publish-options), ejabberd 23.01 (refuses ``pubsub#max_items`` as a
publish-option with ``resource-constraint`` and creates nodes with
``max_items=1``), and servers that refuse or lie.
"""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from typing import Any

from test_pep_stanzas import PepTestCase

from slixmpp_objenc.core.publication import NODE_MAX_ITEMS, PUBLICATION_SETTING
from slixmpp_objenc.plugin import NODE_CERTS

NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_OWNER = NS_PUBSUB + "#owner"
NS_DATA = "jabber:x:data"
ME = "tester@localhost/resource"


def fields_of(element: ET.Element) -> dict[str, str]:
    return {
        f.get("var", ""): f.findtext(f"{{{NS_DATA}}}value") or ""
        for f in element.iter(f"{{{NS_DATA}}}field")
    }


def kind(iq: ET.Element) -> str:
    """What a request of ours asks for, in this file's words."""
    if iq.find(f"{{{NS_OWNER}}}pubsub/{{{NS_OWNER}}}configure") is not None:
        return "configure" if iq.get("type") == "set" else "read-configuration"
    pubsub = iq.find(f"{{{NS_PUBSUB}}}pubsub")
    assert pubsub is not None, ET.tostring(iq)
    if pubsub.find(f"{{{NS_PUBSUB}}}create") is not None:
        return "create-node"
    if pubsub.find(f"{{{NS_PUBSUB}}}retract") is not None:
        return "retract"
    if pubsub.find(f"{{{NS_PUBSUB}}}publish") is not None:
        options = pubsub.find(f"{{{NS_PUBSUB}}}publish-options")
        return "publish-with-options" if options is not None else "publish"
    raise AssertionError(ET.tostring(iq))


class PublicationCase(PepTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.states: list[Any] = []
        self.xmpp.add_event_handler("objenc_publication", self.states.append)
        self.task = asyncio.ensure_future(self.plugin.publish_certificate())
        self.seen: list[str] = []

    def expect(self, what: str) -> ET.Element:
        iq = self.next_sent()
        assert iq is not None, f"expected {what}, nothing was sent"
        self.seen.append(kind(iq))
        assert self.seen[-1] == what, self.seen
        return iq

    def ok(self, iq: ET.Element, payload: str = "") -> None:
        self.recv(f"<iq type='result' id='{iq.get('id')}' to='{ME}'>{payload}</iq>")

    def refuse(self, iq: ET.Element, condition: str, extra: str = "", kind: str = "cancel") -> None:
        self.recv(
            f"<iq type='error' id='{iq.get('id')}' to='{ME}'><error type='{kind}'>"
            f"<{condition} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>{extra}</error></iq>"
        )

    def configuration(self, iq: ET.Element, **values: str) -> None:
        fields = "".join(
            f"<field var='pubsub#{name}'><value>{value}</value></field>"
            for name, value in values.items()
        )
        self.ok(
            iq,
            f"<pubsub xmlns='{NS_OWNER}'><configure node='{NODE_CERTS}'>"
            f"<x xmlns='{NS_DATA}' type='form'><field var='FORM_TYPE' type='hidden'>"
            f"<value>{NS_PUBSUB}#node_config</value></field>{fields}</x></configure></pubsub>",
        )

    def outcome(self) -> bool:
        self.wait_(0.1)
        assert self.task.done()
        assert self.next_sent() is None, "nothing more after the outcome"
        return bool(self.task.result())


class TestServersPeopleRun(PublicationCase):
    def test_prosody_takes_the_options_and_the_node_is_checked(self) -> None:
        publish = self.expect("publish-with-options")
        assert fields_of(publish)["pubsub#access_model"] == "presence"
        self.ok(publish)
        self.configuration(
            self.expect("read-configuration"), access_model="presence", max_items="max"
        )
        assert self.outcome() is True
        state = self.plugin.publication
        assert (state.status.value, state.way) == ("published", "publish-options")
        assert state.fingerprint == self.plugin.fingerprint
        assert [s.status.value for s in self.states] == ["pending", "published"]
        assert self.events["objenc_published"] == [self.plugin.fingerprint]

    def test_ejabberd_new_node_is_created_contacts_only_with_room_for_every_device(self) -> None:
        self.refuse(
            self.expect("publish-with-options"),
            "resource-constraint",
            "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>Unknown field "
            "'pubsub#max_items' of type 'http://jabber.org/protocol/pubsub#publish-options'</text>",
            kind="wait",
        )
        self.refuse(self.expect("read-configuration"), "item-not-found")
        create = self.expect("create-node")
        submitted = fields_of(create)
        assert submitted["pubsub#access_model"] == "presence"
        assert int(submitted["pubsub#max_items"]) >= NODE_MAX_ITEMS
        self.ok(create)
        read = self.expect("read-configuration")
        self.configuration(read, access_model="presence", max_items=str(NODE_MAX_ITEMS))
        self.ok(self.expect("publish"))
        self.configuration(
            self.expect("read-configuration"), access_model="presence", max_items="16"
        )
        assert self.outcome() is True
        assert self.plugin.publication.way == "node-configuration"
        stored = asyncio.ensure_future(
            self.plugin.persistence.storage.get_setting(PUBLICATION_SETTING)
        )
        self.wait_(0.1)  # for `objenc show`, offline
        record = json.loads(stored.result())
        assert (record["status"], record["way"]) == ("published", "node-configuration")

    def test_ejabberd_node_keeping_one_item_is_reconfigured_before_publishing(self) -> None:
        self.refuse(self.expect("publish-with-options"), "resource-constraint", kind="wait")
        self.configuration(
            self.expect("read-configuration"), access_model="presence", max_items="1"
        )
        configure = self.expect("configure")
        assert int(fields_of(configure)["pubsub#max_items"]) >= NODE_MAX_ITEMS
        self.ok(configure)
        self.configuration(
            self.expect("read-configuration"), access_model="presence", max_items="16"
        )
        self.ok(self.expect("publish"))
        self.configuration(
            self.expect("read-configuration"), access_model="presence", max_items="16"
        )
        assert self.outcome() is True
        assert self.seen == [
            "publish-with-options",
            "read-configuration",
            "configure",
            "read-configuration",
            "publish",
            "read-configuration",
        ]


class TestHostileOrUnableServer(PublicationCase):
    def test_a_server_refusing_every_way_gets_no_certificate_and_the_user_is_told(self) -> None:
        self.refuse(
            self.expect("publish-with-options"),
            "conflict",
            f"<precondition-not-met xmlns='{NS_PUBSUB}#errors'/>",
        )
        self.configuration(self.expect("read-configuration"), access_model="open")
        self.refuse(self.expect("configure"), "forbidden")
        assert self.outcome() is False  # and no publish of any kind was sent
        assert "publish" not in self.seen
        state = self.plugin.publication
        assert (state.status.value, state.condition) == ("failing", "forbidden")
        assert self.states[-1] == state
        assert self.events["objenc_publish_failed"][0].condition == "forbidden"

    def test_a_configuration_that_does_not_take_is_never_published_to(self) -> None:
        self.refuse(self.expect("publish-with-options"), "not-acceptable")
        self.configuration(self.expect("read-configuration"), access_model="open")
        self.ok(self.expect("configure"))  # says yes...
        self.configuration(self.expect("read-configuration"), access_model="open")  # ...did not
        assert self.outcome() is False
        state = self.plugin.publication
        assert state.condition == "node-configuration" and "'open'" in state.text
        assert "publish" not in self.seen

    def test_a_server_that_ignores_the_options_has_our_item_taken_back(self) -> None:
        self.ok(self.expect("publish-with-options"))  # accepted, but not applied
        self.configuration(self.expect("read-configuration"), access_model="open")
        retract = self.expect("retract")
        assert self.plugin.fingerprint in ET.tostring(retract, encoding="unicode")
        self.ok(retract)
        self.refuse(self.expect("configure"), "not-allowed")
        assert self.outcome() is False
        assert self.plugin.publication.status.value == "failing"

    def test_a_server_that_hides_the_configuration_is_not_published_to(self) -> None:
        self.refuse(self.expect("publish-with-options"), "resource-constraint", kind="wait")
        self.refuse(self.expect("read-configuration"), "feature-not-implemented")
        assert self.outcome() is False
        assert "publish" not in self.seen
        assert self.plugin.publication.condition == "feature-not-implemented"


class TestConcurrentAttempts(PublicationCase):
    def test_two_attempts_never_interleave(self) -> None:
        second = asyncio.ensure_future(self.plugin.publish_certificate())
        self.refuse(self.expect("publish-with-options"), "resource-constraint", kind="wait")
        read = self.expect("read-configuration")
        assert self.next_sent() is None  # the second attempt waits for the first
        self.configuration(read, access_model="open")
        self.refuse(self.expect("configure"), "forbidden")
        self.wait_(0.1)
        assert self.task.done() and self.task.result() is False
        # then the second runs on its own, from the start
        self.ok(self.expect("publish-with-options"))
        self.configuration(self.expect("read-configuration"), access_model="presence")
        self.wait_(0.1)
        assert second.done() and second.result() is True
        assert self.plugin.publication.published


class TestConfigurationNotifications(PublicationCase):
    def notify(self, frm: str = "tester@localhost") -> None:
        self.recv(
            f"<message from='{frm}' to='{ME}'><event xmlns='{NS_PUBSUB}#event'>"
            f"<configuration node='{NODE_CERTS}'/></event></message>"
        )

    def test_a_change_while_configuring_does_not_start_another_attempt(self) -> None:
        self.refuse(self.expect("publish-with-options"), "resource-constraint", kind="wait")
        self.configuration(self.expect("read-configuration"), access_model="open")
        configure = self.expect("configure")
        self.notify()  # our own change, notified while the attempt runs
        self.ok(configure)
        self.configuration(self.expect("read-configuration"), access_model="open")
        assert self.outcome() is False  # and no new attempt: a failing state waits
        self.notify()
        assert self.next_sent() is None

    def test_a_change_after_publishing_is_checked_and_only_ours_counts(self) -> None:
        self.ok(self.expect("publish-with-options"))
        self.configuration(self.expect("read-configuration"), access_model="presence")
        assert self.outcome() is True
        self.notify("mallory@evil.example")  # not our node
        assert self.next_sent() is None
        self.notify()
        self.ok(self.expect("publish-with-options"))
        self.configuration(self.expect("read-configuration"), access_model="open")
        self.ok(self.expect("retract"))
        self.refuse(self.expect("configure"), "forbidden")
        self.wait_(0.1)
        assert self.plugin.publication.status.value == "failing"
