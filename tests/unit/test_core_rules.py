"""The protocol's rules (core/rules.py), each called directly with plain values:
which stanzas are encrypted and to whom (PROTOCOL.md section 4), what an inner
stanza must agree with (5.3), when plaintext is refused (4, 5.4, 5.5), and
when an error is sent back, within a per-sender budget (5.2)."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from slixmpp_objenc.core import Identity, PeerCertificate, validate_peer_certificate
from slixmpp_objenc.core.addressing import Address, simple_address
from slixmpp_objenc.core.constants import NS_OBJENC
from slixmpp_objenc.core.devices import validate_device
from slixmpp_objenc.core.identities import DeviceKeys, generate_device_keys
from slixmpp_objenc.core.rules import (
    PROFILE_AUTH,
    PROFILE_BOTH,
    PROFILE_DRAFT,
    ErrorBudget,
    ErrorReply,
    PlainStanza,
    ReplyPolicy,
    candidate,
    choose_profile,
    consistent,
    error_reply,
    foreign_mechanism,
    recipients,
    refuse_forwarded_plaintext,
    refuse_plaintext,
)

OWN_BARE = "romeo@example.net"
CONTACT = "juliet@capulet.net"
ROOM = "chamber@conference.capulet.net"
OMEMO = "eu.siacs.conversations.axolotl"


def addr(jid: str) -> Address:
    return simple_address(jid)


def is_room(bare: str) -> bool:
    return bare == ROOM


def sticky_contact(bare: str) -> bool:
    """The contact, the room and our own account are known to encrypt; nobody else."""
    return bare in (CONTACT, ROOM, OWN_BARE)


def peer(identity: Identity) -> PeerCertificate:
    return validate_peer_certificate(identity.certificate)


def inner(kind: str, **attributes: str) -> ET.Element:
    """An inner stanza as open_envelope returns it: ``{jabber:client}kind``."""
    return ET.Element(f"{{jabber:client}}{kind}", attributes)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def policy(per_minute: int = 10, clock: FakeClock | None = None, **switches: bool) -> ReplyPolicy:
    return ReplyPolicy(ErrorBudget(per_minute, clock or FakeClock()), **switches)


# --------------------------------------------------------------------------------------- candidate


@pytest.mark.parametrize(
    ("kind", "kind_type", "to", "expected"),
    [
        # messages: normal (absent), chat, headline; never groupchat or error
        ("message", "", "juliet@capulet.net", CONTACT),
        ("message", "normal", "juliet@capulet.net/balcony", CONTACT),
        ("message", "chat", "juliet@capulet.net/balcony", CONTACT),
        ("message", "headline", "juliet@capulet.net", CONTACT),
        ("message", "groupchat", "juliet@capulet.net/balcony", None),
        ("message", "error", "juliet@capulet.net/balcony", None),
        # iq: any type but error, to a full JID only
        ("iq", "get", "juliet@capulet.net/balcony", CONTACT),
        ("iq", "set", "juliet@capulet.net/balcony", CONTACT),
        ("iq", "result", "juliet@capulet.net/balcony", CONTACT),
        ("iq", "error", "juliet@capulet.net/balcony", None),
        ("iq", "get", "juliet@capulet.net", None),
        ("iq", "set", "juliet@capulet.net", None),
        # presence: directed, available or unavailable only
        ("presence", "", "juliet@capulet.net/balcony", CONTACT),
        ("presence", "", "juliet@capulet.net", CONTACT),
        ("presence", "available", "juliet@capulet.net", CONTACT),
        ("presence", "unavailable", "juliet@capulet.net/balcony", CONTACT),
        ("presence", "", "", None),  # undirected
        ("presence", "unavailable", "", None),
        ("presence", "subscribe", "juliet@capulet.net", None),
        ("presence", "subscribed", "juliet@capulet.net", None),
        ("presence", "unsubscribe", "juliet@capulet.net", None),
        ("presence", "unsubscribed", "juliet@capulet.net", None),
        ("presence", "probe", "juliet@capulet.net", None),
        ("presence", "error", "juliet@capulet.net/balcony", None),
        # servers and our own account
        ("message", "chat", "capulet.net", None),
        ("message", "chat", "capulet.net/announce", None),
        ("iq", "get", "capulet.net", None),
        ("message", "chat", "romeo@example.net", None),
        ("presence", "", "romeo@example.net", None),
        # not a stanza kind this protocol knows
        ("stream", "", "juliet@capulet.net/balcony", None),
    ],
)
def test_candidate_by_kind_and_type(
    kind: str, kind_type: str, to: str, expected: str | None
) -> None:
    assert candidate(kind, kind_type, addr(to), own_bare=OWN_BARE) == expected


def test_candidate_is_the_normalised_bare_jid() -> None:
    to = addr("Juliet@Capulet.NET/Balcony")
    assert candidate("message", "chat", to, own_bare=OWN_BARE) == CONTACT


def test_candidate_never_for_a_stanza_already_sealed() -> None:
    to = addr("juliet@capulet.net/balcony")
    assert candidate("message", "chat", to, own_bare=OWN_BARE, sealed=True) is None
    assert candidate("iq", "get", to, own_bare=OWN_BARE, sealed=True) is None


def test_candidate_never_for_a_muc_join() -> None:
    to = addr(f"{ROOM}/romeo")
    assert candidate("presence", "", to, own_bare=OWN_BARE, muc_join=True) is None
    # the same flag on a presence to a contact: still a join, never encrypted
    assert candidate("presence", "", addr(CONTACT), own_bare=OWN_BARE, muc_join=True) is None
    # without it, a directed presence to the contact is encrypted
    assert candidate("presence", "", addr(CONTACT), own_bare=OWN_BARE) == CONTACT


@pytest.mark.parametrize(
    ("kind", "kind_type", "to"),
    [
        ("message", "chat", f"{ROOM}/nurse"),  # a private message to an occupant
        ("message", "normal", ROOM),
        ("iq", "get", f"{ROOM}/nurse"),
        ("presence", "", f"{ROOM}/romeo"),
        ("presence", "unavailable", f"{ROOM}/romeo"),
    ],
)
def test_candidate_never_to_a_room(kind: str, kind_type: str, to: str) -> None:
    assert candidate(kind, kind_type, addr(to), own_bare=OWN_BARE, is_room=is_room) is None
    # the same stanza, were it not a room we joined, would be encrypted
    assert candidate(kind, kind_type, addr(to), own_bare=OWN_BARE) == ROOM


def test_candidate_never_to_our_own_bare_jid() -> None:
    own = addr(OWN_BARE)
    for kind, kind_type in (("message", "chat"), ("message", ""), ("presence", "")):
        assert candidate(kind, kind_type, own, own_bare=OWN_BARE) is None


def test_candidate_our_own_other_clients() -> None:
    """Another client of ours is encrypted to once it announces the protocol
    (issue 9, kind 7); one that does not, our bare JID and our own resource never."""
    phone, laptop = addr(f"{OWN_BARE}/phone"), addr(f"{OWN_BARE}/laptop")

    def encrypting(full: str) -> bool:
        return full == phone.full

    for kind, kind_type in (("iq", "result"), ("iq", "get"), ("message", "chat")):
        assert (
            candidate(kind, kind_type, phone, own_bare=OWN_BARE, encrypting_own_resource=encrypting)
            == OWN_BARE
        )
        assert (
            candidate(
                kind, kind_type, laptop, own_bare=OWN_BARE, encrypting_own_resource=encrypting
            )
            is None
        )
        assert candidate(kind, kind_type, phone, own_bare=OWN_BARE) is None
    assert (
        candidate(
            "message", "chat", addr(OWN_BARE), own_bare=OWN_BARE, encrypting_own_resource=encrypting
        )
        is None
    )
    # still no groupchat, errors or subscriptions to it
    assert (
        candidate(
            "message", "groupchat", phone, own_bare=OWN_BARE, encrypting_own_resource=encrypting
        )
        is None
    )


# -------------------------------------------------------------------------------------- recipients


@pytest.fixture(scope="module")
def peers(identities_2048: list[Identity], outsider_2048: Identity) -> list[PeerCertificate]:
    """Five distinct peer certificates."""
    return [peer(i) for i in (*identities_2048, outsider_2048)]


def test_recipients_order_contact_then_own_devices_then_own(peers: list[PeerCertificate]) -> None:
    a, b, c, d, e = peers
    assert recipients([a, b], [c, d], e) == (a, b, c, d, e)


def test_recipients_each_certificate_once(peers: list[PeerCertificate]) -> None:
    a, b, c, d, _ = peers
    # a contact certificate that is also one of our devices, our own among our devices,
    # duplicates in the contact's list: each once, at its first place
    assert recipients([a, b, a], [c, a, d, c], d) == (a, b, c, d)
    assert recipients([a], [], a) == (a,)


def test_recipients_without_own(peers: list[PeerCertificate]) -> None:
    a, b, c, _, _ = peers
    assert recipients([a, b]) == (a, b)
    assert recipients([a], [b, c]) == (a, b, c)
    assert recipients([a], [], None) == (a,)


def test_recipients_empty_when_the_contact_has_none(peers: list[PeerCertificate]) -> None:
    _, b, c, d, _ = peers
    assert recipients([], [b, c], d) == ()
    assert recipients([]) == ()


# ---------------------------------------------------------------------------------- choose_profile


def test_choose_profile_rsa_is_the_draft(peers: list[PeerCertificate]) -> None:
    assert choose_profile(peers[:1]) == PROFILE_DRAFT
    assert choose_profile(peers) == PROFILE_DRAFT
    assert PROFILE_DRAFT == "draft-miller-3923bis-02"


def test_choose_profile_none_for_no_certificate() -> None:
    assert choose_profile([]) is None
    assert choose_profile(()) is None


def test_choose_profile_none_unless_every_key_is_rsa(peers: list[PeerCertificate]) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    odd = dataclasses.replace(peers[0], public_key=ec_key)  # type: ignore[arg-type]
    assert choose_profile([odd]) is None
    assert choose_profile([peers[1], odd, peers[2]]) is None


# -------------------------------------------------------------------------------------- consistent

SENDER = "juliet@capulet.net"
RECIPIENT = OWN_BARE
J = "juliet@capulet.net/balcony"
R = RECIPIENT


@pytest.mark.parametrize(
    ("kind", "kind_type", "inner_kind", "inner_type", "inner_from", "inner_to", "expected"),
    [
        # the rule's positive cases
        ("message", "chat", "message", "chat", J, R, True),
        ("iq", "get", "iq", "get", "juliet@capulet.net/a", "romeo@example.net/b", True),
        ("presence", "unavailable", "presence", "unavailable", SENDER, R, True),
        # bare JIDs compared after normalisation; resources never compared
        ("message", "chat", "message", "chat", "JULIET@capulet.net/x", "Romeo@Example.NET/y", True),
        # type normalisation: absent = normal (message), absent = available (presence)
        ("message", "", "message", "normal", J, R, True),
        ("message", "normal", "message", None, J, R, True),
        ("message", "", "message", None, J, R, True),
        ("presence", "", "presence", "available", J, R, True),
        ("presence", "available", "presence", None, J, R, True),
        # ... each only for its own kind
        ("message", "", "message", "available", J, R, False),
        ("presence", "", "presence", "normal", J, R, False),
        ("iq", "", "iq", "get", J, R, False),
        # kind mismatch
        ("message", "chat", "iq", "chat", J, R, False),
        ("iq", "get", "message", "get", J, R, False),
        ("presence", "", "message", None, J, R, False),
        # type mismatch
        ("message", "chat", "message", "normal", J, R, False),
        ("message", "chat", "message", "headline", J, R, False),
        ("message", "chat", "message", None, J, R, False),
        ("iq", "get", "iq", "set", J, R, False),
        ("presence", "", "presence", "unavailable", J, R, False),
        # missing inner addresses
        ("message", "chat", "message", "chat", None, R, False),
        ("message", "chat", "message", "chat", J, None, False),
        ("message", "chat", "message", "chat", "", R, False),
        ("message", "chat", "message", "chat", None, None, False),
        # the wrong bare JIDs
        ("message", "chat", "message", "chat", "tybalt@capulet.net/x", R, False),
        ("message", "chat", "message", "chat", "capulet.net", R, False),
        ("message", "chat", "message", "chat", J, "paris@example.org", False),
        ("message", "chat", "message", "chat", J, "example.net", False),
        ("message", "chat", "message", "chat", R, J, False),  # swapped: a reflection
        # unparsable addresses
        ("message", "chat", "message", "chat", "a@b@capulet.net", R, False),
        ("message", "chat", "message", "chat", J, "romeo @example.net", False),
        ("message", "chat", "message", "chat", "/balcony", R, False),
    ],
)
def test_consistent(
    kind: str,
    kind_type: str,
    inner_kind: str,
    inner_type: str | None,
    inner_from: str | None,
    inner_to: str | None,
    expected: bool,
) -> None:
    attributes = {"type": inner_type, "from": inner_from, "to": inner_to}
    element = inner(inner_kind, **{k: v for k, v in attributes.items() if v is not None})
    assert consistent(kind, kind_type, element, SENDER, RECIPIENT, simple_address) is expected


def test_consistent_uses_the_given_parser() -> None:
    def strict(jid: str) -> Address:
        raise ValueError(jid)

    element = inner("message", **{"type": "chat", "from": J, "to": R})
    assert consistent("message", "chat", element, SENDER, RECIPIENT, simple_address)
    assert not consistent("message", "chat", element, SENDER, RECIPIENT, strict)


def test_consistent_reads_the_local_name_of_the_inner_tag() -> None:
    prefixed = ET.fromstring(
        "<c:message xmlns:c='jabber:client' type='chat' "
        "from='juliet@capulet.net/balcony' to='romeo@example.net'/>"
    )
    assert consistent("message", "chat", prefixed, SENDER, RECIPIENT, simple_address)


# ------------------------------------------------------------------------------- foreign_mechanism


def test_foreign_mechanism() -> None:
    def nothing(_namespace: str) -> bool:
        return False

    def omemo(namespace: str) -> bool:
        return namespace == OMEMO

    assert foreign_mechanism(None, nothing) is False  # no <encryption/> at all
    assert foreign_mechanism(NS_OBJENC, nothing) is False  # ours
    assert foreign_mechanism(OMEMO, nothing) is True
    assert foreign_mechanism("urn:xmpp:openpgp:0", omemo) is True
    assert foreign_mechanism(OMEMO, omemo) is False  # another plugin handles it
    assert foreign_mechanism(NS_OBJENC, omemo) is False


# -------------------------------------------------------------------------------- refuse_plaintext

OWN = Address(OWN_BARE, "orchard", "romeo")


def plain(kind: str, kind_type: str, sender: str, **facts: bool) -> PlainStanza:
    return PlainStanza(kind, kind_type, addr(sender), **facts)


def refused_plain(stanza: PlainStanza, **kwargs: object) -> bool:
    options: dict[str, object] = {"own": OWN, "sticky": sticky_contact}
    options.update(kwargs)
    return refuse_plaintext(stanza, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "kind_type", "sender", "refused"),
    [
        # from any address of a contact known to encrypt, bare or full: refused
        ("message", "chat", "juliet@capulet.net/balcony", True),
        ("message", "", "juliet@capulet.net/balcony", True),
        ("message", "normal", "juliet@capulet.net/balcony", True),
        ("message", "headline", "juliet@capulet.net/balcony", True),
        ("iq", "get", "juliet@capulet.net/balcony", True),
        ("iq", "set", "juliet@capulet.net/balcony", True),
        ("iq", "result", "juliet@capulet.net/balcony", True),
        ("message", "chat", "juliet@capulet.net", True),  # the bare JID (issue 9, kind 2)
        ("message", "headline", "juliet@capulet.net", True),
        ("message", "normal", "juliet@capulet.net", True),  # e.g. "offline" from the bare JID
        ("iq", "set", "juliet@capulet.net", True),
        ("iq", "result", "juliet@capulet.net", True),  # not an answer to our request
        ("message", "groupchat", "juliet@capulet.net/balcony", True),  # not a room we joined
        ("message", "error", "juliet@capulet.net/balcony", True),  # with a body, say
        # presence never
        ("presence", "", "juliet@capulet.net/balcony", False),
        ("presence", "unavailable", "juliet@capulet.net/balcony", False),
        ("presence", "subscribe", "juliet@capulet.net", False),
        # servers (the contact's domain too), no sender
        ("message", "chat", "capulet.net", False),
        ("message", "chat", "capulet.net/announce", False),
        ("iq", "get", "", False),
        # our own account: the server on our behalf, and clients of ours not
        # known to announce the protocol
        ("message", "chat", "romeo@example.net/phone", False),
        ("iq", "set", "romeo@example.net/phone", False),
        ("message", "headline", "romeo@example.net", False),
        # a contact not known to encrypt
        ("message", "chat", "tybalt@capulet.net/street", False),
        ("iq", "get", "tybalt@capulet.net/street", False),
    ],
)
def test_refuse_plaintext(kind: str, kind_type: str, sender: str, refused: bool) -> None:
    assert refused_plain(plain(kind, kind_type, sender)) is refused


def test_refuse_plaintext_exceptions() -> None:
    # results and errors answering our own plaintext request to that JID
    for sender in ("juliet@capulet.net", "juliet@capulet.net/balcony"):
        for kind_type in ("result", "error"):
            answer = plain("iq", kind_type, sender, answers_our_request=True)
            assert refused_plain(answer) is False
    # PEP notifications from the bare JID only
    assert refused_plain(plain("message", "headline", CONTACT, pep_event=True)) is False
    assert refused_plain(plain("message", "", CONTACT, pep_event=True)) is False
    full_event = plain("message", "headline", "juliet@capulet.net/balcony", pep_event=True)
    assert refused_plain(full_event) is True
    # errors that carry only a condition
    for kind in ("message", "iq"):
        for sender in (CONTACT, "juliet@capulet.net/balcony"):
            assert refused_plain(plain(kind, "error", sender, condition_only=True)) is False
            assert refused_plain(plain(kind, "error", sender)) is True


def test_refuse_plaintext_never_from_a_room() -> None:
    for kind, kind_type in (("message", "chat"), ("message", "groupchat"), ("iq", "get")):
        occupant = plain(kind, kind_type, f"{ROOM}/nurse")
        assert refused_plain(occupant, is_room=is_room) is False
        # were it not a room we joined, the sticky JID would be refused
        assert refused_plain(occupant) is True


def test_refuse_plaintext_from_our_own_clients_that_encrypt() -> None:
    laptop = "romeo@example.net/laptop"

    def encrypting(full: str) -> bool:
        return full == laptop

    for kind, kind_type in (("message", "chat"), ("iq", "set"), ("iq", "result")):
        stanza = plain(kind, kind_type, laptop)
        assert refused_plain(stanza, encrypting_own_resource=encrypting) is True
        other = plain(kind, kind_type, "romeo@example.net/phone")  # not announcing it
        assert refused_plain(other, encrypting_own_resource=encrypting) is False
    # our own bare JID (the server on our behalf) and our own resource never
    bare = plain("message", "headline", OWN_BARE)
    assert refused_plain(bare, encrypting_own_resource=lambda _f: True) is False
    ours = plain("message", "chat", OWN.full)
    assert refused_plain(ours, encrypting_own_resource=lambda _f: True) is False
    # answers to our plaintext requests (e.g. its disco#info) pass
    answer = plain("iq", "result", laptop, answers_our_request=True)
    assert refused_plain(answer, encrypting_own_resource=encrypting) is False
    # presence never
    presence = plain("presence", "", laptop)
    assert refused_plain(presence, encrypting_own_resource=encrypting) is False


def test_refuse_plaintext_follows_stickiness() -> None:
    sender = "juliet@capulet.net/balcony"
    seen: list[str] = []

    def sticky(bare: str) -> bool:
        seen.append(bare)
        return False

    assert not refused_plain(plain("message", "chat", sender), sticky=sticky)
    assert seen == [CONTACT]  # asked about the bare JID
    assert refused_plain(plain("message", "chat", sender), sticky=lambda _b: True)


# ---------------------------------------------------------------------- refuse_forwarded_plaintext


@pytest.mark.parametrize(
    ("kind_type", "contact", "refused"),
    [
        ("chat", "juliet@capulet.net/balcony", True),
        ("", "juliet@capulet.net/balcony", True),
        ("normal", "juliet@capulet.net", True),
        ("headline", "JULIET@capulet.net/x", True),
        ("chat", "tybalt@capulet.net/street", False),  # not known to encrypt
        ("groupchat", "juliet@capulet.net/balcony", True),  # not from a room we joined
        ("error", "juliet@capulet.net/balcony", True),  # an error with content
        ("chat", "", False),  # no contact to speak of
        ("chat", "a@b@capulet.net", True),  # unparsable: refused
        ("chat", "juliet @capulet.net", True),
    ],
)
def test_refuse_forwarded_plaintext(kind_type: str, contact: str, refused: bool) -> None:
    result = refuse_forwarded_plaintext(
        kind_type, contact, parse=simple_address, sticky=sticky_contact
    )
    assert result is refused


def test_refuse_forwarded_plaintext_exceptions() -> None:
    # a condition-only error, and a room we joined
    assert not refuse_forwarded_plaintext(
        "error", CONTACT, parse=simple_address, sticky=sticky_contact, condition_only=True
    )
    assert not refuse_forwarded_plaintext(
        "groupchat", f"{ROOM}/nurse", parse=simple_address, sticky=lambda _b: True, is_room=is_room
    )


def test_refuse_forwarded_plaintext_without_a_contact() -> None:
    def everyone(_bare: str) -> bool:
        return True

    assert not refuse_forwarded_plaintext("chat", "", parse=simple_address, sticky=everyone)
    assert refuse_forwarded_plaintext("chat", CONTACT, parse=simple_address, sticky=everyone)


# ------------------------------------------------------------------------------------- error_reply

SENDER_ADDRESS = addr("juliet@capulet.net/balcony")


@pytest.mark.parametrize(
    ("failure", "condition", "e2e_condition"),
    [
        ("undecryptable", "bad-request", "decryption-failed"),
        ("forged", "bad-request", "decryption-failed"),
        ("old", "not-acceptable", "bad-timestamp"),
        ("future", "not-acceptable", "bad-timestamp"),
        ("decreasing", "not-acceptable", "bad-timestamp"),
    ],
)
def test_error_reply_conditions(failure: str, condition: str, e2e_condition: str) -> None:
    reply = error_reply("chat", failure, SENDER_ADDRESS, "outer-1", policy())
    assert reply == ErrorReply(
        "juliet@capulet.net/balcony", "outer-1", condition, e2e_condition, "modify"
    )


def test_error_reply_goes_to_the_full_jid_with_the_outer_id() -> None:
    reply = error_reply("get", "forged", addr("juliet@capulet.net"), "", policy())
    assert reply is not None
    assert (reply.to, reply.id) == (CONTACT, "")


@pytest.mark.parametrize("failure", ["replay", "unknown", ""])
def test_error_reply_none_for_a_replay_and_unknown_failures(failure: str) -> None:
    clock = FakeClock()
    budget_policy = policy(1, clock)
    assert error_reply("chat", failure, SENDER_ADDRESS, "x", budget_policy) is None
    # and nothing was spent: the one reply of the minute is still there
    assert error_reply("chat", "old", SENDER_ADDRESS, "x", budget_policy) is not None


def test_error_reply_policy_switches() -> None:
    no_decryption = policy(decryption_failed=False)
    assert error_reply("chat", "undecryptable", SENDER_ADDRESS, "x", no_decryption) is None
    assert error_reply("chat", "forged", SENDER_ADDRESS, "x", no_decryption) is None
    assert error_reply("chat", "old", SENDER_ADDRESS, "x", no_decryption) is not None

    no_timestamp = policy(bad_timestamp=False)
    for failure in ("old", "future", "decreasing"):
        assert error_reply("chat", failure, SENDER_ADDRESS, "x", no_timestamp) is None
    assert error_reply("chat", "forged", SENDER_ADDRESS, "x", no_timestamp) is not None


@pytest.mark.parametrize("kind_type", ["error", "groupchat", "result"])
@pytest.mark.parametrize("failure", ["undecryptable", "forged", "old", "future", "decreasing"])
def test_error_reply_never_to_error_groupchat_or_result(kind_type: str, failure: str) -> None:
    clock = FakeClock()
    budget_policy = policy(1, clock)
    assert error_reply(kind_type, failure, SENDER_ADDRESS, "x", budget_policy) is None
    assert error_reply("chat", failure, SENDER_ADDRESS, "x", budget_policy) is not None  # unspent


@pytest.mark.parametrize(
    "kind_type", ["", "normal", "chat", "headline", "get", "set", "unavailable"]
)
def test_error_reply_to_other_types(kind_type: str) -> None:
    assert error_reply(kind_type, "forged", SENDER_ADDRESS, "x", policy()) is not None


def test_error_reply_budget_per_sender_bare_jid() -> None:
    clock = FakeClock()
    budget_policy = policy(3, clock)
    balcony, garden = addr("juliet@capulet.net/balcony"), addr("juliet@capulet.net/garden")
    replies = [
        error_reply("chat", "forged", sender, "x", budget_policy)
        for sender in (balcony, garden, balcony)
    ]
    assert all(reply is not None for reply in replies)
    # the fourth in the same minute, from either resource: none
    assert error_reply("chat", "old", garden, "x", budget_policy) is None
    assert error_reply("chat", "undecryptable", balcony, "x", budget_policy) is None
    # another sender has its own budget
    assert error_reply("chat", "forged", addr("tybalt@capulet.net/x"), "x", budget_policy)


def test_error_reply_budget_refills_with_time() -> None:
    clock = FakeClock()
    budget_policy = policy(3, clock)  # one reply every 20 seconds
    for _ in range(3):
        assert error_reply("chat", "forged", SENDER_ADDRESS, "x", budget_policy) is not None
    assert error_reply("chat", "forged", SENDER_ADDRESS, "x", budget_policy) is None
    clock.advance(19)
    assert error_reply("chat", "forged", SENDER_ADDRESS, "x", budget_policy) is None
    clock.advance(1.5)
    assert error_reply("chat", "forged", SENDER_ADDRESS, "x", budget_policy) is not None
    assert error_reply("chat", "forged", SENDER_ADDRESS, "x", budget_policy) is None


def test_error_reply_budget_zero_never_replies() -> None:
    budget_policy = policy(0)
    assert error_reply("chat", "forged", SENDER_ADDRESS, "x", budget_policy) is None


# ------------------------------------------------------------------------------------- ErrorBudget


def test_error_budget_is_a_token_bucket() -> None:
    clock = FakeClock()
    budget = ErrorBudget(10, clock)
    assert [budget.take("juliet@capulet.net") for _ in range(11)] == [True] * 10 + [False]
    clock.advance(6)  # 10 per minute: one more token
    assert budget.take("juliet@capulet.net")
    assert not budget.take("juliet@capulet.net")


def test_error_budget_never_holds_more_than_a_minute() -> None:
    clock = FakeClock()
    budget = ErrorBudget(2, clock)
    assert budget.take("juliet@capulet.net")
    clock.advance(3600)  # an hour idle refills to the cap, not beyond
    assert [budget.take("juliet@capulet.net") for _ in range(3)] == [True, True, False]


def test_error_budget_zero_or_negative_never_allows() -> None:
    assert not ErrorBudget(0, FakeClock()).take("juliet@capulet.net")
    assert not ErrorBudget(-1, FakeClock()).take("juliet@capulet.net")


def test_error_budget_keeps_at_most_max_senders() -> None:
    clock = FakeClock()
    budget = ErrorBudget(1, clock, max_senders=2)
    assert budget.take("a@x")
    assert not budget.take("a@x")  # a's bucket is empty...
    assert budget.take("b@x")
    assert budget.take("c@x")  # ...and, the oldest of three, dropped
    assert len(budget._buckets) == 2
    assert budget.take("a@x")  # a fresh bucket for a


def test_error_budget_drops_the_least_recently_used() -> None:
    clock = FakeClock()
    budget = ErrorBudget(1, clock, max_senders=2)
    assert budget.take("a@x")
    assert budget.take("b@x")
    assert not budget.take("a@x")  # a used again: b is now the oldest
    assert budget.take("c@x")  # drops b, keeps a
    assert not budget.take("a@x")  # a's bucket survived, still empty
    assert budget.take("b@x")  # b came back with a fresh bucket


def test_error_budget_many_senders_stay_bounded() -> None:
    budget = ErrorBudget(5, FakeClock(), max_senders=100)
    for n in range(1000):
        assert budget.take(f"flood{n}@example.org")
    assert len(budget._buckets) == 100


# ------------------------------------------------------- choose_profile: the authenticated profile


@pytest.fixture(scope="module")
def device_keys() -> list[DeviceKeys]:
    return [generate_device_keys(jid) for jid in (CONTACT, CONTACT, OWN_BARE)]


@pytest.fixture(scope="module")
def identities(device_keys: list[DeviceKeys]) -> list[PeerCertificate]:
    """Identities with their encryption certificates (authenticated profile)."""
    return [
        validate_device(d.identity_certificate, encryption=d.encryption_certificate)
        for d in device_keys
    ]


def test_choose_profile_identities_with_encryption_are_the_authenticated_profile(
    identities: list[PeerCertificate],
) -> None:
    assert choose_profile(identities[:1]) == PROFILE_AUTH
    assert choose_profile(identities) == PROFILE_AUTH


def test_choose_profile_rsa_only_is_still_the_draft(peers: list[PeerCertificate]) -> None:
    assert choose_profile(peers[:2]) == PROFILE_DRAFT


def test_choose_profile_mixed_is_both(
    peers: list[PeerCertificate], identities: list[PeerCertificate]
) -> None:
    assert choose_profile([peers[0], identities[0]]) == PROFILE_BOTH
    assert choose_profile([identities[0], peers[0], identities[1], peers[1]]) == PROFILE_BOTH


def test_choose_profile_none_for_an_identity_without_encryption(
    peers: list[PeerCertificate],
    device_keys: list[DeviceKeys],
    identities: list[PeerCertificate],
) -> None:
    bare = validate_device(device_keys[0].identity_certificate)
    assert bare.authenticated and bare.encryption is None
    assert choose_profile([bare]) is None
    assert choose_profile([identities[1], bare]) is None
    assert choose_profile([peers[0], bare]) is None
    assert choose_profile([peers[0], identities[1], bare]) is None


def test_choose_profile_none_for_an_odd_key_next_to_identities(
    peers: list[PeerCertificate], identities: list[PeerCertificate]
) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    odd = dataclasses.replace(peers[0], public_key=ec_key)  # type: ignore[arg-type]
    assert choose_profile([identities[0], odd]) is None
    assert choose_profile([identities[0], peers[1], odd]) is None


def test_only_what_was_forwarded_and_what_servers_add_stand_beside_a_wrapper() -> None:
    """What a carbon or archive result carries beside its wrapper is never part of
    what was forwarded: dropped before delivery (review 15)."""
    from slixmpp_objenc.core.rules import beside_forwarded

    xml = ET.fromstring(
        "<message xmlns='jabber:client'><body>the server's words</body>"
        "<result xmlns='urn:xmpp:mam:2'/><delay xmlns='urn:xmpp:delay'/>"
        "<stanza-id xmlns='urn:xmpp:sid:0'/><x xmlns='urn:example'/></message>"
    )
    assert [c.tag for c in beside_forwarded(xml)] == [
        "{jabber:client}body",
        "{urn:example}x",
    ]
