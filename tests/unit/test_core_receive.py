"""decide() (core/receive.py) on real envelopes sealed with the core's seal():
the draft's four cases (an error answering ours, delivered, bad timestamp,
decryption failed), keys not ready or missing, plaintext refused or passed,
other mechanisms, our own server's delay stamp, carbons and archive results
(PROTOCOL.md sections 4, 5, 6 and 7). The clock is fixed: every timestamp is
deterministic."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from slixmpp_objenc.core import Identity, Recipient, ReplayGuard, format_timestamp, seal
from slixmpp_objenc.core.addressing import simple_address
from slixmpp_objenc.core.exchanges import Exchanges
from slixmpp_objenc.core.receive import (
    PARK,
    PASS,
    PLAINTEXT_REFUSED,
    UNAVAILABLE,
    Admission,
    ArchiveUnreadable,
    BadTimestamp,
    DecryptionFailed,
    Delivered,
    ErrorAnswer,
    ForeignEncryption,
    InboundContext,
    Received,
    Verdict,
    condition_only,
    decide,
    own_server_delay,
)
from slixmpp_objenc.core.rules import ErrorBudget, ErrorReply, ReplyPolicy
from slixmpp_objenc.core.timestamps import to_ms

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
OWN = simple_address("romeo@example.net/orchard")
OWN_BARE = OWN.bare
CONTACT = "juliet@capulet.net"
JULIET = f"{CONTACT}/balcony"
ROOM = "chamber@conference.capulet.net"
OMEMO = "eu.siacs.conversations.axolotl"

NS_OBJENC = "urn:ietf:params:xml:ns:xmpp-objenc:0"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_E2E_ERRORS = "urn:ietf:params:xml:xmpp-e2e"
NS_DELAY = "urn:xmpp:delay"
NS_FORWARD = "urn:xmpp:forward:0"
BODY = "{jabber:client}body"
DELAY = f"{{{NS_DELAY}}}delay"
FORWARDED = f"{{{NS_FORWARD}}}forwarded"

DECRYPTION_FAILED = ErrorReply(JULIET, "outer-1", "bad-request", "decryption-failed")
BAD_TIMESTAMP = ErrorReply(JULIET, "outer-1", "not-acceptable", "bad-timestamp")


def stanza(text: str) -> ET.Element:
    """One stanza in ``jabber:client``, parsed from text inside a wrapper."""
    return ET.fromstring(f"<wrapper xmlns='jabber:client'>{text}</wrapper>")[0]


def wire(element: ET.Element) -> ET.Element:
    """What the receiver gets: the element after a trip through serialization."""
    return ET.fromstring(ET.tostring(element))


def attributes(**values: str | None) -> str:
    """`` name='value'`` for each value given (a trailing ``_`` is dropped)."""
    return "".join(f" {k.rstrip('_')}='{v}'" for k, v in values.items() if v is not None)


def inner_bytes(
    kind: str = "message",
    type_: str | None = "chat",
    from_: str | None = JULIET,
    to: str | None = OWN_BARE,
    id_: str | None = "inner-1",
    payload: str = "<body>Wherefore art thou, Romeo?</body>",
) -> bytes:
    """S': the stanza the sender encrypts, with its namespace on the root."""
    attrs = attributes(from_=from_, to=to, id_=id_, type_=type_)
    return f"<{kind} xmlns='jabber:client'{attrs}>{payload}</{kind}>".encode()


def envelope(identity: Identity, inner: bytes, timestamp: datetime = NOW) -> ET.Element:
    """An ``<e2e/>`` sealed by the core for ``identity``'s certificate."""
    recipient = Recipient(identity.private_key.public_key(), identity.fingerprint)
    return seal(inner, [recipient], timestamp=timestamp)


def outer(
    e2e: ET.Element | None,
    kind: str = "message",
    type_: str | None = "chat",
    from_: str | None = JULIET,
    to: str | None = OWN.full,
    id_: str | None = "outer-1",
    extra: str = "",
) -> ET.Element:
    """The stanza on the wire: ``extra`` children, then the ``<e2e/>``."""
    element = stanza(
        f"<{kind}{attributes(from_=from_, to=to, id_=id_, type_=type_)}>{extra}</{kind}>"
    )
    if e2e is not None:
        element.append(e2e)
    return wire(element)


def received(element: ET.Element) -> Received:
    """As the glue hands it in: the outer ``from`` parsed (empty when absent)."""
    return Received(element, simple_address(element.get("from", "")))


def context(
    identities: Sequence[Identity],
    *,
    sticky: Collection[str] = (),
    rooms: Collection[str] = (),
    handled: Collection[str] = (),
    ready: bool = True,
    refuse_plaintext: bool = True,
    replies: ReplyPolicy | None = None,
    max_envelope_size: int = 256 * 1024,
) -> InboundContext:
    ctx = InboundContext(
        own=OWN,
        identities=lambda: identities,
        replay_guard=ReplayGuard(),
        exchanges=Exchanges(),
        clock=lambda: NOW,
        parse=simple_address,
        sticky=lambda bare: bare in sticky,
        is_room=lambda bare: bare in rooms,
        handles_mechanism=lambda namespace: namespace in handled,
        ready=lambda: ready,
        refuse_plaintext=refuse_plaintext,
        max_envelope_size=max_envelope_size,
    )
    if replies is not None:
        ctx.replies = replies
    return ctx


def ms(value: datetime) -> datetime:
    """``value`` truncated to the millisecond, as timestamps travel."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


@pytest.fixture
def romeo(identity_2048: Identity) -> Identity:
    """Our identity: the envelopes in this file are sealed for it."""
    return identity_2048


@pytest.fixture
def ctx(romeo: Identity) -> InboundContext:
    return context([romeo])


def delivered(verdict: Verdict) -> Delivered:
    assert isinstance(verdict, Delivered), verdict
    return verdict


# ------------------------------------------------------------------- case 1: errors answering ours


def error_stanza(
    conditions: str, *, kind: str = "message", from_: str | None = JULIET, id_: str = "outer-1"
) -> ET.Element:
    attrs = attributes(type_="error", from_=from_, to=OWN.full, id_=id_)
    return stanza(f"<{kind}{attrs}><error type='cancel'>{conditions}</error></{kind}>")


SERVICE_UNAVAILABLE = f"<service-unavailable xmlns='{NS_STANZAS}'/>"
REJECTED_DECRYPTION = (
    f"<bad-request xmlns='{NS_STANZAS}'/><decryption-failed xmlns='{NS_E2E_ERRORS}'/>"
)
REJECTED_TIMESTAMP = (
    f"<not-acceptable xmlns='{NS_STANZAS}'/><bad-timestamp xmlns='{NS_E2E_ERRORS}'/>"
)


@pytest.mark.parametrize(
    ("conditions", "unsupported", "rejected"),
    [
        (SERVICE_UNAVAILABLE, True, ()),
        (REJECTED_DECRYPTION, False, ("decryption-failed",)),
        (REJECTED_TIMESTAMP, False, ("bad-timestamp",)),
        (
            f"<bad-request xmlns='{NS_STANZAS}'/><bad-timestamp xmlns='{NS_E2E_ERRORS}'/>"
            f"<decryption-failed xmlns='{NS_E2E_ERRORS}'/>",
            False,
            ("decryption-failed", "bad-timestamp"),
        ),
        (f"<item-not-found xmlns='{NS_STANZAS}'/>", False, ()),
    ],
    ids=["service-unavailable", "decryption-failed", "bad-timestamp", "both", "other"],
)
@pytest.mark.parametrize("kind", ["message", "iq", "presence"])
def test_error_answer_maps_our_outer_id_back(
    ctx: InboundContext, kind: str, conditions: str, unsupported: bool, rejected: tuple[str, ...]
) -> None:
    ctx.exchanges.sent("outer-1", "inner-1", JULIET)
    verdict = decide(received(error_stanza(conditions, kind=kind)), ctx)
    assert verdict == ErrorAnswer("inner-1", JULIET, unsupported, rejected)


def test_error_answer_is_taken_once(ctx: InboundContext) -> None:
    ctx.exchanges.sent("outer-1", "inner-1", JULIET)
    error = received(error_stanza(SERVICE_UNAVAILABLE))
    assert isinstance(decide(error, ctx), ErrorAnswer)
    assert ctx.exchanges.sent_to("outer-1") is None
    assert decide(error, ctx) is PASS


def test_error_answer_without_an_error_element(ctx: InboundContext) -> None:
    ctx.exchanges.sent("outer-1", "inner-1", JULIET)
    bare_error = stanza(f"<message{attributes(type_='error', from_=JULIET, id_='outer-1')}/>")
    assert decide(received(bare_error), ctx) == ErrorAnswer("inner-1", JULIET, False, ())


def test_error_answer_from_another_resource_of_the_peer(ctx: InboundContext) -> None:
    for sender in (f"{CONTACT}/garden", CONTACT):  # the peer's server answers from its bare JID
        ctx.exchanges.sent("outer-1", "inner-1", JULIET)
        error = error_stanza(SERVICE_UNAVAILABLE, from_=sender)
        assert decide(received(error), ctx) == ErrorAnswer("inner-1", sender, True, ())


@pytest.mark.parametrize("sender", ["tybalt@capulet.net/street", "capulet.net", OWN.full])
def test_error_answer_from_the_wrong_peer_passes(ctx: InboundContext, sender: str) -> None:
    ctx.exchanges.sent("outer-1", "inner-1", JULIET)
    assert decide(received(error_stanza(REJECTED_DECRYPTION, from_=sender)), ctx) is PASS
    assert ctx.exchanges.sent_to("outer-1") == ("inner-1", JULIET)  # still to be answered


def test_error_with_an_id_we_never_sent_passes(ctx: InboundContext) -> None:
    ctx.exchanges.sent("outer-1", "inner-1", JULIET)
    assert decide(received(error_stanza(SERVICE_UNAVAILABLE, id_="outer-2")), ctx) is PASS
    assert decide(received(error_stanza(SERVICE_UNAVAILABLE, id_="")), ctx) is PASS


def test_error_reply_carrying_an_empty_e2e_is_never_opened(ctx: InboundContext) -> None:
    """Error replies carry an empty <e2e/>: they are answers, never case 4 themselves."""
    error = error_stanza(REJECTED_DECRYPTION)
    error.append(ET.Element(f"{{{NS_OBJENC}}}e2e"))
    assert decide(received(error), ctx) is PASS  # not ours: no reply, no failure
    ctx.exchanges.sent("outer-1", "inner-1", JULIET)
    assert decide(received(error), ctx) == ErrorAnswer(
        "inner-1", JULIET, False, ("decryption-failed",)
    )


def test_error_answer_from_our_own_server(ctx: InboundContext) -> None:
    """An error with no 'from' comes from our own server (it could not route the
    stanza): mapped back like the peer's own (PROTOCOL.md 7)."""
    ctx.exchanges.sent("outer-1", "inner-1", JULIET)
    verdict = decide(received(error_stanza(SERVICE_UNAVAILABLE, from_=None)), ctx)
    assert isinstance(verdict, ErrorAnswer) and verdict.inner_id == "inner-1"


# ------------------------------------------------------------------------------- case 2: delivered


def test_delivered_message(romeo: Identity, ctx: InboundContext) -> None:
    timestamp = NOW - timedelta(seconds=3, microseconds=123_456)
    e2e = envelope(romeo, inner_bytes(), timestamp)
    verdict = delivered(decide(received(outer(e2e)), ctx))

    # the inner stanza, addressed as the server stamped the outer one
    assert verdict.inner.tag == "{jabber:client}message"
    assert verdict.inner.get("from") == JULIET
    assert verdict.inner.get("to") == OWN.full
    assert verdict.inner.get("id") == "inner-1"
    assert verdict.inner.get("type") == "chat"
    assert verdict.inner.findtext(BODY) == "Wherefore art thou, Romeo?"
    assert verdict.inner.find(f"{{{NS_OBJENC}}}e2e") is None
    assert verdict.envelope.timestamp == ms(timestamp)
    assert verdict.envelope.stanza_bytes == inner_bytes()
    assert verdict.recipient_fingerprint == romeo.fingerprint
    assert verdict.sender_bare == CONTACT
    assert verdict.delay is None
    assert verdict.forwarded is None
    assert verdict.original is None
    # what the replay guard admitted, to persist
    assert verdict.admission == Admission(
        JULIET, to_ms(ms(timestamp)), to_ms(NOW), verdict.envelope.digest
    )
    # one envelope marks nothing (issue 9, kind 6): no such field to act on
    assert not hasattr(verdict, "require_encryption")
    # answers to the inner id must be encrypted; the outer id means nothing
    assert ctx.exchanges.answers_encrypted(JULIET, "inner-1")
    assert not ctx.exchanges.answers_encrypted(JULIET, "outer-1")
    assert not ctx.exchanges.answers_encrypted(f"{CONTACT}/garden", "inner-1")


@pytest.mark.parametrize(
    ("kind", "outer_type", "inner_type"),
    [
        ("message", "", None),
        ("message", "", "normal"),
        ("message", "normal", None),
        ("message", "headline", "headline"),
        ("iq", "get", "get"),
        ("iq", "set", "set"),
        ("iq", "result", "result"),
        ("presence", None, None),
        ("presence", None, "available"),
        ("presence", "unavailable", "unavailable"),
    ],
)
def test_delivered_for_each_kind_and_type(
    romeo: Identity, ctx: InboundContext, kind: str, outer_type: str | None, inner_type: str | None
) -> None:
    e2e = envelope(romeo, inner_bytes(kind, inner_type, payload=""))
    verdict = delivered(decide(received(outer(e2e, kind, outer_type)), ctx))
    assert verdict.inner.tag == f"{{jabber:client}}{kind}"
    assert (verdict.inner.get("from"), verdict.inner.get("to")) == (JULIET, OWN.full)
    assert verdict.inner.get("type") == inner_type
    assert ctx.exchanges.answers_encrypted(JULIET, "inner-1")


def test_delivered_without_inner_id_records_no_exchange(
    romeo: Identity, ctx: InboundContext
) -> None:
    e2e = envelope(romeo, inner_bytes(id_=None))
    verdict = delivered(decide(received(outer(e2e)), ctx))
    assert verdict.inner.get("id") is None
    assert not ctx.exchanges.answers_encrypted(JULIET, "")
    assert not ctx.exchanges.answers_encrypted(JULIET, "outer-1")


def test_delivered_inner_addresses_replaced_by_the_outer(
    romeo: Identity, ctx: InboundContext
) -> None:
    # inner from/to name other resources: the bare JIDs agree, the outer ones win
    inner = inner_bytes(from_=f"{CONTACT}/crypt", to=f"{OWN_BARE}/elsewhere")
    verdict = delivered(decide(received(outer(envelope(romeo, inner), to=None)), ctx))
    assert verdict.inner.get("from") == JULIET
    assert verdict.inner.get("to") is None  # no outer 'to': none inside either


def test_delivered_with_a_later_identity(
    romeo: Identity, identities_2048: list[Identity], outsider_2048: Identity
) -> None:
    ctx = context([outsider_2048, *identities_2048[1:3], romeo])
    e2e = envelope(romeo, inner_bytes())
    # our active identity first, then older ones: at most three are tried
    assert decide(received(outer(e2e)), ctx) == DecryptionFailed("undecryptable", DECRYPTION_FAILED)
    ctx = context([outsider_2048, identities_2048[1], romeo])
    verdict = delivered(decide(received(outer(e2e, id_="outer-2")), ctx))
    assert verdict.recipient_fingerprint == romeo.fingerprint


def test_delivered_when_several_keys_are_on_the_wire(
    romeo: Identity, identities_2048: list[Identity], ctx: InboundContext
) -> None:
    others = [Recipient(i.private_key.public_key(), i.fingerprint) for i in identities_2048[1:]]
    mine = Recipient(romeo.private_key.public_key(), romeo.fingerprint)
    e2e = seal(inner_bytes(), [*others, mine], timestamp=NOW)
    assert delivered(decide(received(outer(e2e)), ctx)).recipient_fingerprint == romeo.fingerprint


def test_delivered_within_the_skew(romeo: Identity, ctx: InboundContext) -> None:
    for n, offset in enumerate((timedelta(minutes=-5), timedelta(minutes=5))):
        e2e = envelope(romeo, inner_bytes(from_=f"{CONTACT}/d{n}"), NOW + offset)
        delivered(decide(received(outer(e2e, from_=f"{CONTACT}/d{n}")), ctx))


def test_delivered_from_our_own_other_device(romeo: Identity, ctx: InboundContext) -> None:
    """Our other client encrypts to us too (PROTOCOL.md 3, step 9): opened like a contact's."""
    phone = f"{OWN_BARE}/phone"
    e2e = envelope(romeo, inner_bytes("iq", "get", from_=phone, payload=""))
    verdict = delivered(decide(received(outer(e2e, "iq", "get", from_=phone)), ctx))
    assert verdict.sender_bare == OWN_BARE
    assert ctx.exchanges.answers_encrypted(phone, "inner-1")


# --------------------------------------------------------------------------- case 3: bad timestamp


@pytest.mark.parametrize(
    ("offset", "reason"),
    [
        (timedelta(minutes=-5, milliseconds=-1), "old"),
        (timedelta(hours=-3), "old"),
        (timedelta(minutes=5, milliseconds=1), "future"),
        (timedelta(days=1), "future"),
    ],
)
def test_bad_timestamp_old_or_future(
    romeo: Identity, ctx: InboundContext, offset: timedelta, reason: str
) -> None:
    e2e = envelope(romeo, inner_bytes(), NOW + offset)
    verdict = decide(received(outer(e2e)), ctx)
    assert isinstance(verdict, BadTimestamp)
    assert (verdict.reason, verdict.timestamp, verdict.reply) == (
        reason,
        NOW + offset,
        BAD_TIMESTAMP,
    )
    # the decrypted stanza, addressed as the outer one, for the event; never delivered
    assert verdict.inner is not None
    assert verdict.inner.findtext(BODY) == "Wherefore art thou, Romeo?"
    assert verdict.inner.get("to") == OWN.full
    assert not ctx.exchanges.answers_encrypted(JULIET, "inner-1")


def test_bad_timestamp_decreasing(romeo: Identity, ctx: InboundContext) -> None:
    first = envelope(romeo, inner_bytes(id_="inner-1"), NOW)
    second = envelope(romeo, inner_bytes(id_="inner-2"), NOW - timedelta(seconds=1))
    delivered(decide(received(outer(first, id_="outer-0")), ctx))
    verdict = decide(received(outer(second)), ctx)
    assert isinstance(verdict, BadTimestamp)
    assert (verdict.reason, verdict.timestamp, verdict.reply) == (
        "decreasing",
        NOW - timedelta(seconds=1),
        BAD_TIMESTAMP,
    )
    assert not ctx.exchanges.answers_encrypted(JULIET, "inner-2")
    # the rule is per full JID: another client of the contact is not held to it
    third = envelope(romeo, inner_bytes(from_=f"{CONTACT}/garden"), NOW - timedelta(seconds=2))
    delivered(decide(received(outer(third, from_=f"{CONTACT}/garden")), ctx))


def test_bad_timestamp_replay_has_no_reply(romeo: Identity, ctx: InboundContext) -> None:
    element = outer(envelope(romeo, inner_bytes()))
    delivered(decide(received(element), ctx))
    verdict = decide(received(element), ctx)
    assert isinstance(verdict, BadTimestamp)
    assert (verdict.reason, verdict.reply) == ("replay", None)
    assert verdict.inner is not None
    # also when resent from another resource (the digest is the envelope's)
    again = outer(element.find(f"{{{NS_OBJENC}}}e2e"), from_=f"{CONTACT}/garden")
    assert isinstance(verdict := decide(received(again), ctx), BadTimestamp)
    assert verdict.reason == "replay"


def test_bad_timestamp_no_reply_to_an_iq_result(romeo: Identity, ctx: InboundContext) -> None:
    e2e = envelope(romeo, inner_bytes("iq", "result", payload=""), NOW - timedelta(hours=1))
    verdict = decide(received(outer(e2e, "iq", "result")), ctx)
    assert isinstance(verdict, BadTimestamp)
    assert (verdict.reason, verdict.reply) == ("old", None)


def test_bad_timestamp_reply_switched_off(romeo: Identity) -> None:
    ctx = context([romeo], replies=ReplyPolicy(ErrorBudget(10), bad_timestamp=False))
    e2e = envelope(romeo, inner_bytes(), NOW - timedelta(hours=1))
    verdict = decide(received(outer(e2e)), ctx)
    assert isinstance(verdict, BadTimestamp)
    assert (verdict.reason, verdict.reply) == ("old", None)


# ----------------------------------------------------------------------- case 4: decryption failed


def tampered_data(e2e: ET.Element) -> ET.Element:
    data = e2e.find(f"{{{NS_OBJENC}}}data")
    assert data is not None and data.text
    flipped = "B" if data.text[20] == "A" else "A"
    data.text = data.text[:20] + flipped + data.text[21:]
    return e2e


def tampered_key(e2e: ET.Element) -> ET.Element:
    key = e2e.find(f"{{{NS_OBJENC}}}key")
    assert key is not None and key.text
    key.text = key.text[::-1]
    return e2e


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda romeo, other: envelope(other, inner_bytes()), id="wrong-key"),
        pytest.param(lambda romeo, other: tampered_data(envelope(romeo, inner_bytes())), id="data"),
        pytest.param(lambda romeo, other: tampered_key(envelope(romeo, inner_bytes())), id="key"),
        pytest.param(lambda romeo, other: ET.Element(f"{{{NS_OBJENC}}}e2e"), id="empty"),
    ],
)
def test_undecryptable(
    romeo: Identity,
    outsider_2048: Identity,
    ctx: InboundContext,
    make: Callable[[Identity, Identity], ET.Element],
) -> None:
    e2e = make(romeo, outsider_2048)
    verdict = decide(received(outer(e2e)), ctx)
    assert verdict == DecryptionFailed("undecryptable", DECRYPTION_FAILED)
    assert not ctx.exchanges.answers_encrypted(JULIET, "inner-1")


def test_undecryptable_over_the_size_limit(romeo: Identity) -> None:
    e2e = envelope(romeo, inner_bytes())
    assert isinstance(decide(received(outer(e2e)), context([romeo])), Delivered)
    small = context([romeo], max_envelope_size=200)
    verdict = decide(received(outer(e2e)), small)
    assert verdict == DecryptionFailed("undecryptable", DECRYPTION_FAILED)


@pytest.mark.parametrize(
    "inner",
    [
        pytest.param(inner_bytes(from_="tybalt@capulet.net/street"), id="inner-from"),
        pytest.param(inner_bytes(to="paris@example.org"), id="inner-to"),
        pytest.param(inner_bytes(from_=None), id="no-inner-from"),
        pytest.param(inner_bytes(to=None), id="no-inner-to"),
        pytest.param(inner_bytes(from_=OWN_BARE, to=JULIET), id="reflected"),
        pytest.param(inner_bytes(type_="normal"), id="type"),
        pytest.param(inner_bytes(type_="groupchat"), id="type-groupchat"),
        pytest.param(inner_bytes("iq", "chat"), id="kind"),
        pytest.param(inner_bytes(from_="a@b@capulet.net"), id="unparsable"),
    ],
)
def test_forged_inner_outer_mismatch(romeo: Identity, ctx: InboundContext, inner: bytes) -> None:
    verdict = decide(received(outer(envelope(romeo, inner))), ctx)
    # the same reply as undecryptable: no oracle
    assert verdict == DecryptionFailed("forged", DECRYPTION_FAILED)
    assert not ctx.exchanges.answers_encrypted(JULIET, "inner-1")


def test_forged_from_a_bare_jid(romeo: Identity, ctx: InboundContext) -> None:
    e2e = envelope(romeo, inner_bytes(from_=CONTACT))
    verdict = decide(received(outer(e2e, from_=CONTACT)), ctx)
    reply = ErrorReply(CONTACT, "outer-1", "bad-request", "decryption-failed")
    assert verdict == DecryptionFailed("forged", reply)


def test_forged_without_a_sender(romeo: Identity, ctx: InboundContext) -> None:
    """No 'from': our own server, which has no client to encrypt for us."""
    e2e = envelope(romeo, inner_bytes(from_=OWN_BARE))
    verdict = decide(received(outer(e2e, from_=None)), ctx)
    assert isinstance(verdict, DecryptionFailed)
    assert verdict.reason == "forged"


def test_forged_from_a_bare_jid_before_any_key_work(outsider_2048: Identity) -> None:
    ctx = context([])  # no key at all: a bare sender is still forged, not unavailable
    e2e = envelope(outsider_2048, inner_bytes(from_=CONTACT))
    assert decide(received(outer(e2e, from_=CONTACT)), ctx) == DecryptionFailed(
        "forged", ErrorReply(CONTACT, "outer-1", "bad-request", "decryption-failed")
    )


@pytest.mark.parametrize("reason", ["undecryptable", "forged"])
def test_decryption_failed_no_reply_to_an_iq_result(
    romeo: Identity, outsider_2048: Identity, ctx: InboundContext, reason: str
) -> None:
    key = outsider_2048 if reason == "undecryptable" else romeo
    e2e = envelope(key, inner_bytes("iq", "get", payload=""))  # forged: the type differs
    assert decide(received(outer(e2e, "iq", "result")), ctx) == DecryptionFailed(reason)


def test_decryption_failed_reply_switched_off(outsider_2048: Identity, romeo: Identity) -> None:
    ctx = context([romeo], replies=ReplyPolicy(ErrorBudget(10), decryption_failed=False))
    e2e = envelope(outsider_2048, inner_bytes())
    assert decide(received(outer(e2e)), ctx) == DecryptionFailed("undecryptable")


def test_decryption_failed_replies_within_the_budget(
    outsider_2048: Identity, romeo: Identity
) -> None:
    ctx = context([romeo], replies=ReplyPolicy(ErrorBudget(2, lambda: 0.0)))
    verdicts = [
        decide(received(outer(envelope(outsider_2048, inner_bytes()), from_=sender)), ctx)
        for sender in (JULIET, f"{CONTACT}/garden", JULIET)
    ]
    assert verdicts == [
        DecryptionFailed("undecryptable", DECRYPTION_FAILED),
        DecryptionFailed(
            "undecryptable", dataclasses.replace(DECRYPTION_FAILED, to=f"{CONTACT}/garden")
        ),
        DecryptionFailed("undecryptable"),  # the budget of this minute is spent
    ]


# -------------------------------------------------------------------- not ready, no key, groupchat


def test_park_while_keys_load(romeo: Identity) -> None:
    ctx = context([romeo], ready=False)
    element = outer(envelope(romeo, inner_bytes()))
    assert decide(received(element), ctx) is PARK
    assert not ctx.exchanges.answers_encrypted(JULIET, "inner-1")
    ctx.ready = lambda: True  # decided again once they are: nothing was admitted
    assert isinstance(decide(received(element), ctx), Delivered)


def test_plaintext_from_a_contact_waits_for_the_store(romeo: Identity) -> None:
    """Review: who encrypts is not known before the store is loaded, so plaintext
    from a contact waits too (it was delivered, then refused once loaded)."""
    ctx = context([romeo], ready=False)
    assert decide(received(outer(None, extra="<body>hi</body>")), ctx) is PARK
    # servers, our own account and presence are not held up
    server = outer(None, from_="capulet.net", extra="<body>hi</body>")
    assert decide(received(server), ctx) is PASS
    presence = outer(None, kind="presence", type_=None)
    assert decide(received(presence), ctx) is PASS


def test_unavailable_without_identities(romeo: Identity) -> None:
    ctx = context([])
    assert decide(received(outer(envelope(romeo, inner_bytes()))), ctx) is UNAVAILABLE


@pytest.mark.parametrize("sticky", [(), (CONTACT, ROOM)])
def test_groupchat_with_e2e_passes(romeo: Identity, sticky: tuple[str, ...]) -> None:
    ctx = context([romeo], sticky=sticky, rooms={ROOM})
    e2e = envelope(romeo, inner_bytes(type_="groupchat", from_=f"{ROOM}/juliet"))
    element = outer(e2e, type_="groupchat", from_=f"{ROOM}/juliet")
    assert decide(received(element), ctx) is PASS


def test_not_a_stanza_passes(ctx: InboundContext) -> None:
    assert decide(received(stanza(f"<stream{attributes(from_=JULIET)}/>")), ctx) is PASS


# --------------------------------------------------------------------------------------- plaintext


@pytest.mark.parametrize(
    ("kind", "type_", "from_", "refused"),
    [
        ("message", "chat", JULIET, True),
        ("message", None, JULIET, True),
        ("message", "normal", JULIET, True),
        ("message", "headline", JULIET, True),
        ("iq", "get", JULIET, True),
        ("iq", "result", JULIET, True),
        ("presence", None, JULIET, False),
        ("presence", "unavailable", JULIET, False),
        ("message", "groupchat", JULIET, True),  # not from a room we joined (issue 9, kind 2)
        ("message", "headline", CONTACT, True),  # the bare JID too, unless a PEP event
        ("iq", "get", CONTACT, True),
        ("message", "chat", "capulet.net", False),
        ("message", "chat", None, False),  # our own server
        ("message", "chat", f"{OWN_BARE}/phone", False),  # our own account
        ("message", "chat", "tybalt@capulet.net/street", False),  # not known to encrypt
        ("message", "chat", f"{ROOM}/nurse", False),  # a room we joined
    ],
)
def test_plaintext(kind: str, type_: str | None, from_: str | None, refused: bool) -> None:
    ctx = context([], sticky={CONTACT, OWN_BARE, ROOM}, rooms={ROOM})
    element = outer(
        None, kind, type_, from_, extra="<body>plain</body>" if kind == "message" else ""
    )
    assert decide(received(element), ctx) is (PLAINTEXT_REFUSED if refused else PASS)


def test_plaintext_refusal_switched_off() -> None:
    ctx = context([], sticky={CONTACT}, refuse_plaintext=False)
    assert decide(received(outer(None, extra="<body>plain</body>")), ctx) is PASS


def test_plaintext_error_from_a_sticky_contact_passes() -> None:
    """Errors are never encrypted: one we cannot map is plain, and passes."""
    ctx = context([], sticky={CONTACT})
    for kind in ("message", "iq"):
        assert decide(received(error_stanza(SERVICE_UNAVAILABLE, kind=kind)), ctx) is PASS


# --------------------------------------------------------------------- other mechanisms (XEP-0380)


def eme(namespace: str | None, name: str | None = None) -> str:
    attrs = attributes(namespace=namespace, name=name)
    return f"<encryption xmlns='urn:xmpp:eme:0'{attrs}/><body>I sent you an OMEMO message</body>"


@pytest.mark.parametrize("sticky", [(), (CONTACT,)])
def test_foreign_encryption(sticky: tuple[str, ...]) -> None:
    ctx = context([], sticky=sticky)
    element = outer(None, extra=eme(OMEMO, "OMEMO"))
    assert decide(received(element), ctx) == ForeignEncryption(OMEMO, "OMEMO")


def test_foreign_encryption_without_a_name() -> None:
    element = outer(None, extra=eme("urn:xmpp:openpgp:0"))
    assert decide(received(element), context([])) == ForeignEncryption("urn:xmpp:openpgp:0", "")


def test_foreign_encryption_handled_by_another_plugin_passes() -> None:
    ctx = context([], handled={OMEMO})
    assert decide(received(outer(None, extra=eme(OMEMO, "OMEMO"))), ctx) is PASS


def test_our_own_eme_without_e2e_is_plaintext() -> None:
    element = outer(None, extra=eme(NS_OBJENC, "Object Encryption"))
    assert decide(received(element), context([])) is PASS
    assert decide(received(element), context([], sticky={CONTACT})) is PLAINTEXT_REFUSED


def test_eme_only_counts_on_messages() -> None:
    element = outer(None, "iq", "get", extra=eme(OMEMO, "OMEMO").split("<body>")[0])
    assert decide(received(element), context([])) is PASS


def test_eme_beside_our_e2e_is_ignored(romeo: Identity, ctx: InboundContext) -> None:
    element = outer(envelope(romeo, inner_bytes()), extra=eme(NS_OBJENC, "Object Encryption"))
    assert isinstance(decide(received(element), ctx), Delivered)


# ----------------------------------------------------------------------- our own server's <delay/>


def delay(from_: str | None, stamp: datetime | str) -> str:
    text = stamp if isinstance(stamp, str) else format_timestamp(stamp)
    return f"<delay xmlns='{NS_DELAY}'{attributes(from_=from_, stamp=text)}/>"


HOUR_AGO = NOW - timedelta(hours=1)


@pytest.mark.parametrize(
    ("delays", "expected"),
    [
        ([delay("example.net", HOUR_AGO)], HOUR_AGO),  # offline storage
        ([delay(OWN_BARE, HOUR_AGO)], HOUR_AGO),  # stream-management hibernation
        ([delay("Example.NET", HOUR_AGO)], HOUR_AGO),
        ([delay(f"{OWN_BARE}/orchard", HOUR_AGO)], HOUR_AGO),
        ([delay("capulet.net", HOUR_AGO)], None),  # the contact's server
        ([delay(CONTACT, HOUR_AGO)], None),
        ([delay(JULIET, HOUR_AGO)], None),
        ([delay("tybalt@example.net", HOUR_AGO)], None),  # another account on our server
        ([delay(None, HOUR_AGO)], None),
        ([], None),
        # several: the earliest of ours, whatever the others say
        (
            [
                delay("example.net", HOUR_AGO),
                delay("capulet.net", HOUR_AGO - timedelta(days=1)),
                delay(OWN_BARE, HOUR_AGO - timedelta(minutes=1)),
                delay("example.net", HOUR_AGO + timedelta(minutes=1)),
            ],
            HOUR_AGO - timedelta(minutes=1),
        ),
        # malformed ones are ignored
        ([delay("example.net", "yesterday"), delay("example.net", HOUR_AGO)], HOUR_AGO),
        ([delay("example.net", "")], None),
        ([delay("a@b@example.net", HOUR_AGO)], None),
        ([delay("example.net", "9999-12-31T23:59:59-23:59")], None),  # out of range
        # an offset is accepted here (servers are not bound by the draft's Z)
        ([delay("example.net", "2024-05-01T13:00:00+02:00")], datetime(2024, 5, 1, 11, tzinfo=UTC)),
    ],
)
def test_own_server_delay(delays: list[str], expected: datetime | None) -> None:
    element = outer(None, extra="".join(delays))
    assert own_server_delay(element, OWN, simple_address) == expected


def test_offline_message_delivered_with_our_servers_delay(
    romeo: Identity, ctx: InboundContext
) -> None:
    sent = NOW - timedelta(hours=2)
    stamp = sent + timedelta(seconds=1)
    element = outer(envelope(romeo, inner_bytes(), sent), extra=delay("example.net", stamp))
    verdict = delivered(decide(received(element), ctx))
    assert verdict.delay == stamp
    assert verdict.admission == Admission(JULIET, to_ms(sent), to_ms(NOW), verdict.envelope.digest)
    # the outer <delay/> is copied into the inner stanza, which has none
    inner_delay = verdict.inner.find(DELAY)
    assert inner_delay is not None and inner_delay.get("from") == "example.net"


def test_only_the_servers_own_delay_and_stanza_id_count(
    romeo: Identity, ctx: InboundContext
) -> None:
    """Issue 10: what only a server adds counts outside only; the same elements
    inside the envelope are the sender's claim and are dropped."""
    sent = NOW - timedelta(hours=2)
    claimed = (
        delay(CONTACT, sent)
        + f"<stanza-id xmlns='urn:xmpp:sid:0' id='fake' by='{OWN_BARE}'/><body>hi</body>"
    )
    real = (
        delay("example.net", sent)
        + f"<stanza-id xmlns='urn:xmpp:sid:0' id='real' by='{OWN_BARE}'/>"
    )
    element = outer(envelope(romeo, inner_bytes(payload=claimed), sent), extra=real)
    verdict = delivered(decide(received(element), ctx))
    assert [d.get("from") for d in verdict.inner.findall(DELAY)] == ["example.net"]
    ids = verdict.inner.findall("{urn:xmpp:sid:0}stanza-id")
    assert [i.get("id") for i in ids] == ["real"]


@pytest.mark.parametrize("server", ["capulet.net", CONTACT, None])
def test_delay_from_elsewhere_is_ignored(
    romeo: Identity, ctx: InboundContext, server: str | None
) -> None:
    sent = NOW - timedelta(hours=2)
    element = outer(envelope(romeo, inner_bytes(), sent), extra=delay(server, sent))
    verdict = decide(received(element), ctx)
    assert isinstance(verdict, BadTimestamp)
    assert verdict.reason == "old"


def test_offline_message_against_the_earliest_of_our_delays(
    romeo: Identity, ctx: InboundContext
) -> None:
    sent = NOW - timedelta(hours=2)
    delays = delay("example.net", sent + timedelta(hours=1)) + delay(OWN_BARE, sent)
    verdict = delivered(
        decide(received(outer(envelope(romeo, inner_bytes(), sent), extra=delays)), ctx)
    )
    assert verdict.delay == sent


def test_offline_message_too_far_from_our_delay(romeo: Identity, ctx: InboundContext) -> None:
    sent = NOW - timedelta(hours=2)
    stamp = sent + timedelta(minutes=6)
    element = outer(envelope(romeo, inner_bytes(), sent), extra=delay("example.net", stamp))
    verdict = decide(received(element), ctx)
    assert isinstance(verdict, BadTimestamp)
    assert verdict.reason == "old"


def test_our_delay_in_the_future(romeo: Identity, ctx: InboundContext) -> None:
    later = NOW + timedelta(hours=1)
    element = outer(envelope(romeo, inner_bytes(), later), extra=delay("example.net", later))
    verdict = decide(received(element), ctx)
    assert isinstance(verdict, BadTimestamp)
    assert verdict.reason == "future"


def test_delay_only_counts_on_messages(romeo: Identity, ctx: InboundContext) -> None:
    sent = NOW - timedelta(hours=2)
    e2e = envelope(romeo, inner_bytes("presence", None, payload=""), sent)
    element = outer(e2e, "presence", None, extra=delay("example.net", sent))
    verdict = decide(received(element), ctx)
    assert isinstance(verdict, BadTimestamp)
    assert verdict.reason == "old"


# ------------------------------------------------------------------------------ carbons (XEP-0280)


def forwarded_message(
    e2e: ET.Element | None, from_: str, to: str, type_: str = "chat", body: str = ""
) -> ET.Element:
    element = stanza(
        f"<message{attributes(from_=from_, to=to, type_=type_, id_='c1')}>{body}</message>"
    )
    if e2e is not None:
        element.append(e2e)
    return element


def carbon(direction: str, message: ET.Element, *, from_: str | None = OWN_BARE) -> ET.Element:
    element = stanza(
        f"<message{attributes(from_=from_, to=OWN.full, type_='chat')}>"
        f"<{direction} xmlns='urn:xmpp:carbons:2'><forwarded xmlns='{NS_FORWARD}'/></{direction}>"
        "</message>"
    )
    forwarded = element.find(f".//{FORWARDED}")
    assert forwarded is not None
    forwarded.append(message)
    return wire(element)


def received_carbon(
    romeo: Identity, *, from_: str | None = OWN_BARE, when: datetime = NOW
) -> ET.Element:
    """A message Juliet sent to our other client, copied to us."""
    e2e = envelope(romeo, inner_bytes(), when)
    return carbon("received", forwarded_message(e2e, JULIET, f"{OWN_BARE}/phone"), from_=from_)


def sent_carbon(romeo: Identity, *, from_: str | None = OWN_BARE) -> ET.Element:
    """A message our other client sent to Juliet, copied to us."""
    e2e = envelope(romeo, inner_bytes(from_=f"{OWN_BARE}/phone", to=CONTACT))
    return carbon("sent", forwarded_message(e2e, f"{OWN_BARE}/phone", JULIET), from_=from_)


@pytest.mark.parametrize("from_", [OWN_BARE, None])
def test_received_carbon_opened_in_place(
    romeo: Identity, ctx: InboundContext, from_: str | None
) -> None:
    element = received_carbon(romeo, from_=from_)
    verdict = delivered(decide(received(element), ctx))
    assert verdict.forwarded is element.find(f".//{FORWARDED}")
    assert verdict.original is element.find(f".//{FORWARDED}/{{jabber:client}}message")
    assert verdict.inner.findtext(BODY) == "Wherefore art thou, Romeo?"
    assert (verdict.inner.get("from"), verdict.inner.get("to")) == (JULIET, f"{OWN_BARE}/phone")
    assert verdict.sender_bare == CONTACT
    assert verdict.recipient_fingerprint == romeo.fingerprint
    # live: kept like a direct stanza, so no replay after a restart (review)
    assert verdict.admission == Admission(JULIET, to_ms(NOW), to_ms(NOW), verdict.envelope.digest)
    assert not hasattr(verdict, "require_encryption")
    assert verdict.delay is None
    # live: the replay cache applies
    again = decide(received(element), ctx)
    assert again == BadTimestamp("replay", NOW, None)


def test_sent_carbon_opened_in_place(romeo: Identity, ctx: InboundContext) -> None:
    element = sent_carbon(romeo)
    verdict = delivered(decide(received(element), ctx))
    assert verdict.original is element.find(f".//{FORWARDED}/{{jabber:client}}message")
    assert (verdict.inner.get("from"), verdict.inner.get("to")) == (f"{OWN_BARE}/phone", JULIET)
    assert verdict.sender_bare is None  # our own message
    assert verdict.admission is not None and verdict.admission.sender == f"{OWN_BARE}/phone"


def test_carbon_old_is_bad_timestamp_without_reply(romeo: Identity, ctx: InboundContext) -> None:
    element = received_carbon(romeo, when=NOW - timedelta(hours=1))
    assert decide(received(element), ctx) == BadTimestamp("old", NOW - timedelta(hours=1), None)


@pytest.mark.parametrize(
    "origin", [JULIET, CONTACT, f"{OWN_BARE}/phone", OWN.full, "example.net", "capulet.net"]
)
def test_carbon_from_another_jid_is_forged(
    romeo: Identity, ctx: InboundContext, origin: str
) -> None:
    for element in (received_carbon(romeo, from_=origin), sent_carbon(romeo, from_=origin)):
        assert decide(received(element), ctx) == DecryptionFailed("forged")
    # whatever it carries: plaintext too
    plain = carbon(
        "received", forwarded_message(None, JULIET, OWN_BARE, body="<body>x</body>"), from_=origin
    )
    assert decide(received(plain), ctx) == DecryptionFailed("forged")


@pytest.mark.parametrize(
    ("direction", "from_", "to"),
    [
        ("received", CONTACT, OWN_BARE),  # the forwarded 'from' is not a full JID
        ("received", JULIET, "paris@example.org"),  # a received carbon not to us
        ("sent", JULIET, f"{OWN_BARE}/phone"),  # a sent carbon not from us
        ("received", "a@b@capulet.net", OWN_BARE),  # unparsable
        ("received", JULIET, "romeo @example.net"),
    ],
)
def test_carbon_forged_addressing(
    romeo: Identity, ctx: InboundContext, direction: str, from_: str, to: str
) -> None:
    # the envelope inside is consistent with the contact writing to us: only the
    # forwarded message's addressing is wrong
    e2e = envelope(romeo, inner_bytes(from_=JULIET if "@b@" in from_ else from_, to=OWN_BARE))
    element = carbon(direction, forwarded_message(e2e, from_, to))
    assert decide(received(element), ctx) == DecryptionFailed("forged")


def test_carbon_inconsistent_inner_is_forged(romeo: Identity, ctx: InboundContext) -> None:
    e2e = envelope(romeo, inner_bytes(from_="tybalt@capulet.net/street"))
    element = carbon("received", forwarded_message(e2e, JULIET, OWN_BARE))
    assert decide(received(element), ctx) == DecryptionFailed("forged")


def test_carbon_undecryptable_has_no_reply(outsider_2048: Identity, ctx: InboundContext) -> None:
    element = received_carbon(outsider_2048)
    assert decide(received(element), ctx) == DecryptionFailed("undecryptable")


def test_carbon_without_keys(romeo: Identity) -> None:
    assert decide(received(received_carbon(romeo)), context([])) is UNAVAILABLE


@pytest.mark.parametrize(
    ("direction", "from_", "to", "refused"),
    [
        ("received", JULIET, f"{OWN_BARE}/phone", True),
        ("sent", f"{OWN_BARE}/phone", JULIET, True),
        ("sent", f"{OWN_BARE}/phone", CONTACT, True),
        ("received", "tybalt@capulet.net/street", OWN_BARE, False),
        ("sent", f"{OWN_BARE}/phone", "tybalt@capulet.net", False),
    ],
)
def test_plaintext_carbon(direction: str, from_: str, to: str, refused: bool) -> None:
    element = carbon(direction, forwarded_message(None, from_, to, body="<body>plain</body>"))
    ctx = context([], sticky={CONTACT})
    assert decide(received(element), ctx) is (PLAINTEXT_REFUSED if refused else PASS)
    switched_off = context([], sticky={CONTACT}, refuse_plaintext=False)
    assert decide(received(element), switched_off) is PASS


def test_plaintext_groupchat_carbon_refused_unless_from_a_room() -> None:
    message = forwarded_message(None, JULIET, OWN_BARE, "groupchat", "<body>x</body>")
    sticky = context([], sticky={CONTACT})
    assert decide(received(carbon("received", message)), sticky) is PLAINTEXT_REFUSED
    in_room = forwarded_message(None, f"{ROOM}/nurse", OWN_BARE, "groupchat", "<body>x</body>")
    room = context([], sticky={CONTACT, ROOM}, rooms={ROOM})
    assert decide(received(carbon("received", in_room)), room) is PASS


# ---------------------------------------------------------------------- archive results (XEP-0313)


def archive_result(
    message: ET.Element, stamp: datetime | str | None, *, from_: str | None = None
) -> ET.Element:
    delay_text = "" if stamp is None else delay(None, stamp)
    element = stanza(
        f"<message{attributes(from_=from_, to=OWN.full)}>"
        f"<result xmlns='urn:xmpp:mam:2' queryid='q1' id='a1'>"
        f"<forwarded xmlns='{NS_FORWARD}'>{delay_text}</forwarded></result></message>"
    )
    forwarded = element.find(f".//{FORWARDED}")
    assert forwarded is not None
    forwarded.append(message)
    return wire(element)


MONTH_AGO = NOW - timedelta(days=30)


def archived(
    identity: Identity, stamp: datetime | str | None, *, from_: str | None = None
) -> ET.Element:
    e2e = envelope(identity, inner_bytes(), MONTH_AGO)
    return archive_result(forwarded_message(e2e, JULIET, OWN.full), stamp, from_=from_)


@pytest.mark.parametrize("from_", [None, OWN_BARE])
def test_archive_result_opened_against_its_stamp(
    romeo: Identity, ctx: InboundContext, from_: str | None
) -> None:
    stamp = MONTH_AGO + timedelta(seconds=2)
    element = archived(romeo, stamp, from_=from_)
    verdict = delivered(decide(received(element), ctx))
    assert verdict.delay == stamp
    assert verdict.forwarded is element.find(f".//{FORWARDED}")
    assert verdict.original is element.find(f".//{FORWARDED}/{{jabber:client}}message")
    assert (verdict.inner.get("from"), verdict.inner.get("to")) == (JULIET, OWN.full)
    assert verdict.sender_bare == CONTACT
    assert verdict.admission is None
    assert not hasattr(verdict, "require_encryption")
    # history is read again on purpose: no replay check, nothing admitted
    assert isinstance(decide(received(element), ctx), Delivered)
    assert ctx.replay_guard.state().seen == []


def test_archive_result_of_our_own_message(romeo: Identity, ctx: InboundContext) -> None:
    e2e = envelope(romeo, inner_bytes(from_=OWN.full, to=CONTACT), MONTH_AGO)
    element = archive_result(forwarded_message(e2e, OWN.full, JULIET), MONTH_AGO)
    verdict = delivered(decide(received(element), ctx))
    assert verdict.sender_bare is None
    assert (verdict.inner.get("from"), verdict.inner.get("to")) == (OWN.full, JULIET)


@pytest.mark.parametrize(
    ("stamp", "reason"),
    [
        (MONTH_AGO + timedelta(hours=1), "old"),  # N well before the archive's stamp
        (MONTH_AGO - timedelta(hours=1), "future"),
        (NOW, "old"),
        (None, "old"),  # no stamp at all
        ("last month", "old"),  # no usable stamp
    ],
)
def test_archive_result_with_the_wrong_stamp(
    romeo: Identity, ctx: InboundContext, stamp: datetime | str | None, reason: str
) -> None:
    assert decide(received(archived(romeo, stamp)), ctx) == ArchiveUnreadable(reason)


def test_archive_result_unopenable(outsider_2048: Identity, ctx: InboundContext) -> None:
    element = archived(outsider_2048, MONTH_AGO)
    assert decide(received(element), ctx) == ArchiveUnreadable("undecryptable")


def test_archive_result_forged(romeo: Identity, ctx: InboundContext) -> None:
    e2e = envelope(romeo, inner_bytes(from_="tybalt@capulet.net/street"), MONTH_AGO)
    element = archive_result(forwarded_message(e2e, JULIET, OWN.full), MONTH_AGO)
    assert decide(received(element), ctx) == ArchiveUnreadable("forged")
    bare = archive_result(forwarded_message(e2e, CONTACT, OWN.full), MONTH_AGO)
    assert decide(received(bare), ctx) == ArchiveUnreadable("forged")


@pytest.mark.parametrize("archive", [ROOM, CONTACT, JULIET, "example.net"])
def test_another_archives_result_passes(romeo: Identity, ctx: InboundContext, archive: str) -> None:
    assert decide(received(archived(romeo, MONTH_AGO, from_=archive)), ctx) is PASS


def test_plaintext_archive_result_passes() -> None:
    message = forwarded_message(None, JULIET, OWN.full, body="<body>from before</body>")
    ctx = context([], sticky={CONTACT})
    assert decide(received(archive_result(message, MONTH_AGO)), ctx) is PASS


def test_malformed_carbon_is_dropped(ctx: InboundContext) -> None:
    """A wrapper without exactly one forwarded message, or several wrappers,
    is never delivered as a carbon (review: an empty <received/> hid a
    plaintext <sent/> carbon behind it)."""
    element = stanza(
        f"<message{attributes(from_=OWN_BARE, to=OWN.full)}>"
        "<received xmlns='urn:xmpp:carbons:2'/></message>"
    )
    assert decide(received(element), ctx) == DecryptionFailed("forged")
    two = stanza(
        f"<message{attributes(from_=OWN_BARE, to=OWN.full)}>"
        "<received xmlns='urn:xmpp:carbons:2'/><sent xmlns='urn:xmpp:carbons:2'>"
        f"<forwarded xmlns='{NS_FORWARD}'><message xmlns='jabber:client' "
        f"from='{OWN_BARE}/phone' to='{JULIET}' type='chat'><body>x</body></message>"
        "</forwarded></sent></message>"
    )
    assert decide(received(two), ctx) == DecryptionFailed("forged")


# ------------------------------------------------ issue 9: errors, requests, our own failures


def test_condition_only_errors() -> None:
    def error(inside: str, beside: str = "") -> ET.Element:
        return stanza(
            f"<message{attributes(type_='error', from_=JULIET, to=OWN.full)}>"
            f"{beside}<error type='modify'>{inside}</error></message>"
        )

    assert condition_only(error(REJECTED_DECRYPTION))
    # what a server adds says nothing; an empty <e2e/> names the protocol
    assert condition_only(
        error(
            REJECTED_DECRYPTION,
            f"<e2e xmlns='{NS_OBJENC}'/><stanza-id xmlns='urn:xmpp:sid:0' id='s' by='x'/>"
            "<delay xmlns='urn:xmpp:delay' stamp='2026-01-01T00:00:00Z'/>",
        )
    )
    assert not condition_only(error(REJECTED_DECRYPTION, "<body>pay</body>"))
    assert not condition_only(
        error(f"{SERVICE_UNAVAILABLE}<text xmlns='{NS_STANZAS}'>call me</text>")
    )
    assert not condition_only(error(f"<x xmlns='urn:example'/>{SERVICE_UNAVAILABLE}"))
    assert not condition_only(error(REJECTED_DECRYPTION, f"<e2e xmlns='{NS_OBJENC}'>AAAA</e2e>"))


def test_our_own_failure_notice_passes_once() -> None:
    ctx = context([], sticky={CONTACT})
    notice = stanza(
        f"<iq{attributes(type_='error', from_=JULIET, to=OWN.full, id_='q9')}>"
        f"<error type='cancel'><policy-violation xmlns='{NS_STANZAS}'/>"
        f"<text xmlns='{NS_STANZAS}'>objenc: not sent</text></error></iq>"
    )
    ctx.exchanges.refused_locally(JULIET, "q9")
    assert decide(received(notice), ctx) is PASS
    # the same again is not ours any more: an error with text from a contact
    assert decide(received(notice), ctx) is PLAINTEXT_REFUSED


# ------------------------------------------- review 15: what a <result/> or a condition may hide


@pytest.mark.parametrize(
    ("from_", "refused"),
    [
        (JULIET, True),  # a contact who encrypts: a <result/> child exempts nothing
        (CONTACT, True),
        (f"{OWN_BARE}/laptop", True),  # another client of ours that encrypts
        (ROOM, False),  # a room's archive: not ours to open, and rooms are not contacts
        ("tybalt@capulet.net/street", False),  # not known to encrypt
    ],
)
def test_a_result_child_does_not_exempt_plaintext(from_: str, refused: bool) -> None:
    ctx = context([], sticky={CONTACT, ROOM}, rooms={ROOM})
    ctx = dataclasses.replace(ctx, encrypting_own_resource=lambda full: full.endswith("/laptop"))
    element = stanza(
        f"<message{attributes(type_='chat', from_=from_, to=OWN.full)}><body>pay</body>"
        "<result xmlns='urn:xmpp:mam:2'/></message>"
    )
    assert decide(received(element), ctx) is (PLAINTEXT_REFUSED if refused else PASS)


def test_an_address_inside_a_condition_is_content() -> None:
    """RFC 6120 <gone/> and <redirect/> may carry an address: chosen by whoever
    sent the error, so such an error is not 'only a condition'."""
    for inside in (
        "<gone xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>xmpp:evil@example.com?message</gone>",
        "<undefined-condition xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>"
        "<amount xmlns='urn:example'>0</amount></undefined-condition>",
    ):
        element = stanza(
            f"<message{attributes(type_='error', from_=JULIET, to=OWN.full)}>"
            f"<error type='cancel'>{inside}</error></message>"
        )
        assert not condition_only(element)
        assert decide(received(element), context([], sticky={CONTACT})) is PLAINTEXT_REFUSED


@pytest.mark.parametrize("direction", ["received", "sent"])
def test_a_carbon_is_judged_as_a_carbon_whatever_its_outer_type(direction: str) -> None:
    """Review 16: an outer type='error' sent the stanza down the error branch, past
    the carbon checks, and slixmpp still raised the carbon with its body."""
    from_, to = (JULIET, OWN.full) if direction == "received" else (f"{OWN_BARE}/phone", JULIET)
    element = carbon(direction, forwarded_message(None, from_, to, body="<body>pay</body>"))
    element.set("type", "error")
    assert decide(received(element), context([], sticky={CONTACT})) is PLAINTEXT_REFUSED


@pytest.mark.parametrize(
    "error",
    [
        "<error type='cancel'>Pay 100 to X"
        "<gone xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>",
        "<error type='cancel'><gone xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>Pay</error>",
        "<error type='cancel'>"
        "<gone xmlns='urn:ietf:params:xml:ns:xmpp-stanzas' text='Pay'/></error>",
        "<error type='cancel' by='Pay 100 to X'>"
        "<gone xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>",
        "<error type='cancel'><gone xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"
        "<error type='auth'><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>Pay</text></error>",
    ],
)
def test_words_anywhere_in_an_error_are_content(error: str) -> None:
    element = stanza(
        f"<message{attributes(type_='error', from_=JULIET, to=OWN.full)}>{error}</message>"
    )
    assert not condition_only(element)
    assert decide(received(element), context([], sticky={CONTACT})) is PLAINTEXT_REFUSED
