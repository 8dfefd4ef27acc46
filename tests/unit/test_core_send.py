"""plan() (core/send.py) against a small fake key directory: errors stripped or
sent, sealed stanzas, non-candidates, waiting (our keys, a key change,
discovery) in that order, refusals (keys not loaded, encryption known to be
needed) and the recipients of an encrypted stanza (PROTOCOL.md sections 3
and 4). reconcile() (core/trust.py) is tested in test_core_directory.py."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from slixmpp_objenc.core import Identity, PeerCertificate, validate_peer_certificate
from slixmpp_objenc.core.addressing import simple_address
from slixmpp_objenc.core.exchanges import Exchanges
from slixmpp_objenc.core.rules import PROFILE_DRAFT
from slixmpp_objenc.core.send import (
    SEND_CLEAR,
    STRIP_ERROR,
    Encrypt,
    OutboundContext,
    Outgoing,
    Refuse,
    Wait,
    plan,
)

OWN_BARE = "romeo@example.net"
CONTACT = "juliet@capulet.net"
JULIET = f"{CONTACT}/balcony"
ROOM = "chamber@conference.capulet.net"


@dataclass
class FakeDirectory:
    """A KeyDirectoryView over plain sets: what is held, pending, sticky, to discover."""

    certificates: dict[str, list[PeerCertificate]] = field(default_factory=dict)
    """Usable certificates by bare JID (each is also held)."""
    held_only: set[str] = field(default_factory=set)
    """Bare JIDs with certificates held but none usable (untrusted, revoked)."""
    pending_for: set[str] = field(default_factory=set)
    sticky_for: set[str] = field(default_factory=set)
    discover_for: set[str] = field(default_factory=set)
    devices: list[PeerCertificate] = field(default_factory=list)

    def usable(self, bare: str) -> Sequence[PeerCertificate]:
        return self.certificates.get(bare, [])

    def held(self, bare: str) -> bool:
        return bare in self.certificates or bare in self.held_only

    def pending(self, bare: str) -> bool:
        return bare in self.pending_for

    def sticky(self, bare: str) -> bool:
        return bare in self.sticky_for

    def would_discover(self, bare: str) -> bool:
        return bare in self.discover_for

    def own_devices(self) -> Sequence[PeerCertificate]:
        return self.devices


def context(
    directory: FakeDirectory,
    *,
    own: PeerCertificate | None = None,
    ready: bool = True,
    load_error: BaseException | None = None,
    rooms: set[str] | None = None,
    hold_on_key_change: bool = True,
) -> OutboundContext:
    return OutboundContext(
        own_bare=OWN_BARE,
        directory=directory,
        exchanges=Exchanges(),
        own_certificate=lambda: own,
        ready=lambda: ready,
        load_error=lambda: load_error,
        is_room=lambda bare: bare in (rooms or set()),
        hold_on_key_change=hold_on_key_change,
    )


def out(
    kind: str = "message",
    type_: str = "chat",
    to: str = JULIET,
    id_: str = "m1",
    **flags: bool,
) -> Outgoing:
    return Outgoing(kind, type_, simple_address(to), id_, **flags)


@pytest.fixture(scope="module")
def peers(identities_2048: list[Identity], outsider_2048: Identity) -> list[PeerCertificate]:
    """Five distinct peer certificates: two of the contact's, two of our other
    devices, our own (the JIDs they name do not matter to plan)."""
    return [validate_peer_certificate(i.certificate) for i in (*identities_2048, outsider_2048)]


# ------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("kind", ["message", "iq", "presence"])
def test_error_goes_in_the_clear_stripped_to_who_encrypts(kind: str) -> None:
    """Errors are never encrypted; to a contact known to encrypt they carry only
    their condition, whatever they answer (review: an error answering an
    envelope without an id went out whole)."""
    assert plan(out(kind, "error"), context(FakeDirectory())) is SEND_CLEAR
    ctx = context(FakeDirectory(sticky_for={CONTACT}))
    assert plan(out(kind, "error"), ctx) is STRIP_ERROR


@pytest.mark.parametrize("kind", ["message", "iq", "presence"])
def test_error_answering_an_encrypted_stanza_is_stripped(kind: str) -> None:
    ctx = context(FakeDirectory())
    ctx.exchanges.received(JULIET, "q1")
    assert plan(out(kind, "error", JULIET, "q1"), ctx) is STRIP_ERROR
    # another id, or the same id to another resource: not an answer to it
    assert plan(out(kind, "error", JULIET, "q2"), ctx) is SEND_CLEAR
    assert plan(out(kind, "error", f"{CONTACT}/garden", "q1"), ctx) is SEND_CLEAR


# ------------------------------------------------------------------------------------------ sealed


def test_sealed_unchanged_goes_as_it_is(peers: list[PeerCertificate]) -> None:
    # whatever the directory says: it is sealed already
    directory = FakeDirectory(pending_for={CONTACT}, discover_for={CONTACT})
    assert plan(out(sealed=True), context(directory, ready=False)) is SEND_CLEAR
    assert plan(out(sealed=True), context(FakeDirectory({CONTACT: peers[:1]}))) is SEND_CLEAR


def test_sealed_then_changed_is_refused() -> None:
    verdict = plan(out(sealed=True, changed_since_sealed=True), context(FakeDirectory()))
    assert isinstance(verdict, Refuse)
    assert "<e2e/>" in verdict.reason


def test_changed_without_sealed_is_an_ordinary_stanza(peers: list[PeerCertificate]) -> None:
    ctx = context(FakeDirectory({CONTACT: peers[:1]}))
    assert plan(out(changed_since_sealed=True), ctx) == Encrypt((peers[0],), PROFILE_DRAFT)


# ---------------------------------------------------------------------------------- non-candidates

NON_CANDIDATES = [
    pytest.param(out(type_="groupchat"), id="groupchat"),
    pytest.param(out("iq", "get", CONTACT), id="iq-to-bare"),
    pytest.param(out("presence", "subscribe", CONTACT), id="subscribe"),
    pytest.param(out("presence", "probe", CONTACT), id="probe"),
    pytest.param(out("presence", "", ""), id="undirected"),
    pytest.param(out("presence", "", f"{ROOM}/romeo", muc_join=True), id="muc-join"),
    pytest.param(out(to=f"{ROOM}/nurse"), id="room"),
    pytest.param(out(to="capulet.net"), id="server"),
    pytest.param(out(to=OWN_BARE), id="own-bare"),
]


@pytest.mark.parametrize("stanza", NON_CANDIDATES)
def test_non_candidate_goes_in_the_clear(stanza: Outgoing, peers: list[PeerCertificate]) -> None:
    everything = {CONTACT, ROOM, OWN_BARE, "capulet.net"}
    directory = FakeDirectory(
        {bare: peers[:1] for bare in everything},
        pending_for=everything,
        sticky_for=everything,
        discover_for=everything,
    )
    assert plan(stanza, context(directory, rooms={ROOM})) is SEND_CLEAR


@pytest.mark.parametrize("stanza", NON_CANDIDATES)
def test_non_candidate_answering_an_encrypted_stanza_is_refused(stanza: Outgoing) -> None:
    ctx = context(FakeDirectory(), rooms={ROOM})
    ctx.exchanges.received(stanza.to.full, stanza.id)
    verdict = plan(stanza, ctx)
    assert verdict == Refuse("an answer to an encrypted stanza")


def test_answer_to_an_encrypted_iq_from_our_other_device_is_encrypted(
    peers: list[PeerCertificate],
) -> None:
    phone = f"{OWN_BARE}/phone"
    directory = FakeDirectory({OWN_BARE: [peers[2]]}, devices=[peers[2]])
    ctx = context(directory, own=peers[4])
    ctx.exchanges.received(phone, "q1")
    # not (yet) known to announce the protocol: the answer cannot go in the clear
    assert isinstance(plan(out("iq", "result", phone, "q1"), ctx), Refuse)
    ctx.encrypting_own_resource = lambda full: full == phone  # issue 9, kind 7
    # an iq carries one <e2e/> and no copy for ourselves (never carbon-copied or archived)
    assert plan(out("iq", "result", phone, "q1"), ctx) == Encrypt((peers[2],), PROFILE_DRAFT)
    # no usable certificate of our other clients: refused, never in the clear
    empty = context(FakeDirectory({}), own=peers[4])
    empty.encrypting_own_resource = lambda full: full == phone
    assert isinstance(plan(out("message", "chat", phone, "m1"), empty), (Refuse, Wait))


# ----------------------------------------------------------------------------------------- waiting


def test_wait_for_our_keys_first() -> None:
    directory = FakeDirectory(pending_for={CONTACT}, discover_for={CONTACT})
    assert plan(out(), context(directory, ready=False)) == Wait(CONTACT, "keys")


def test_wait_for_a_key_change_before_discovery() -> None:
    directory = FakeDirectory(pending_for={CONTACT}, discover_for={CONTACT})
    assert plan(out(), context(directory)) == Wait(CONTACT, "key-change")


def test_wait_for_discovery_when_nothing_is_held() -> None:
    directory = FakeDirectory(discover_for={CONTACT})
    assert plan(out(), context(directory)) == Wait(CONTACT, "discovery")
    assert plan(out("iq", "set"), context(directory)) == Wait(CONTACT, "discovery")
    assert plan(out("presence", "", CONTACT), context(directory)) == Wait(CONTACT, "discovery")


def test_no_discovery_when_something_is_held(peers: list[PeerCertificate]) -> None:
    held = FakeDirectory(held_only={CONTACT}, discover_for={CONTACT})
    assert plan(out(), context(held)) is SEND_CLEAR  # held, none usable, not sticky
    usable = FakeDirectory({CONTACT: peers[:1]}, discover_for={CONTACT})
    assert plan(out(), context(usable)) == Encrypt((peers[0],), PROFILE_DRAFT)


def test_key_change_wait_with_usable_certificates(peers: list[PeerCertificate]) -> None:
    directory = FakeDirectory({CONTACT: peers[:1]}, pending_for={CONTACT})
    assert plan(out(), context(directory)) == Wait(CONTACT, "key-change")


def test_no_key_change_wait_unless_holding(peers: list[PeerCertificate]) -> None:
    directory = FakeDirectory({CONTACT: peers[:1]}, pending_for={CONTACT})
    ctx = context(directory, hold_on_key_change=False)
    assert plan(out(), ctx) == Encrypt((peers[0],), PROFILE_DRAFT)  # to the old keys only
    # discovery still comes after
    directory = FakeDirectory(pending_for={CONTACT}, discover_for={CONTACT})
    assert plan(out(), context(directory, hold_on_key_change=False)) == Wait(CONTACT, "discovery")


def test_wait_names_the_normalised_bare_jid() -> None:
    directory = FakeDirectory(discover_for={CONTACT})
    assert plan(out(to="Juliet@Capulet.net/Balcony"), context(directory)) == Wait(
        CONTACT, "discovery"
    )


# -------------------------------------------------------------------------------------- load error


def test_load_error_refuses_candidates(peers: list[PeerCertificate]) -> None:
    error = OSError("key file unreadable")
    for directory in (
        FakeDirectory(),
        FakeDirectory({CONTACT: peers[:1]}),
        FakeDirectory(pending_for={CONTACT}, discover_for={CONTACT}),  # no wait either
    ):
        verdict = plan(out(), context(directory, load_error=error))
        assert isinstance(verdict, Refuse)
        assert "key file unreadable" in verdict.reason


def test_load_error_leaves_non_candidates_and_errors_alone() -> None:
    ctx = context(FakeDirectory(), load_error=OSError("nope"))
    assert plan(out(type_="groupchat"), ctx) is SEND_CLEAR
    assert plan(out(type_="error"), ctx) is SEND_CLEAR
    assert plan(out(sealed=True), ctx) is SEND_CLEAR


# ----------------------------------------------------------------------------------------- encrypt


def test_encrypt_to_contact_own_devices_and_own(peers: list[PeerCertificate]) -> None:
    a, b, c, d, own = peers
    directory = FakeDirectory({CONTACT: [a, b]}, devices=[c, d])
    assert plan(out(), context(directory, own=own)) == Encrypt((a, b, c, d, own), PROFILE_DRAFT)


def test_encrypt_each_certificate_once(peers: list[PeerCertificate]) -> None:
    a, b, c, _, own = peers
    # our own certificate listed among our devices, a contact's also ours (odd, but once)
    directory = FakeDirectory({CONTACT: [a, b]}, devices=[own, c, a])
    assert plan(out(), context(directory, own=own)) == Encrypt((a, b, own, c), PROFILE_DRAFT)


def test_encrypt_without_own_certificate(peers: list[PeerCertificate]) -> None:
    directory = FakeDirectory({CONTACT: peers[:1]})
    assert plan(out(), context(directory)) == Encrypt((peers[0],), PROFILE_DRAFT)


@pytest.mark.parametrize(
    "stanza",
    [
        pytest.param(out("message", ""), id="message-normal"),
        pytest.param(out("message", "headline", CONTACT), id="headline-to-bare"),
        pytest.param(out("iq", "get"), id="iq-get"),
        pytest.param(out("iq", "result"), id="iq-result"),
        pytest.param(out("presence", "", CONTACT), id="presence"),
        pytest.param(out("presence", "unavailable"), id="unavailable"),
    ],
)
def test_encrypt_every_candidate(stanza: Outgoing, peers: list[PeerCertificate]) -> None:
    ctx = context(FakeDirectory({CONTACT: peers[:2]}))
    assert plan(stanza, ctx) == Encrypt(tuple(peers[:2]), PROFILE_DRAFT)


def test_encrypt_answer_to_an_encrypted_stanza(peers: list[PeerCertificate]) -> None:
    ctx = context(FakeDirectory({CONTACT: peers[:1]}))
    ctx.exchanges.received(JULIET, "q1")
    assert plan(out("iq", "result", JULIET, "q1"), ctx) == Encrypt((peers[0],), PROFILE_DRAFT)


def test_refused_when_no_profile_fits(peers: list[PeerCertificate]) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    odd = dataclasses.replace(peers[0], public_key=ec_key)  # type: ignore[arg-type]
    verdict = plan(out(), context(FakeDirectory({CONTACT: [odd, peers[1]]})))
    assert isinstance(verdict, Refuse)
    assert CONTACT in verdict.reason


# ------------------------------------------------------------------------------------- none usable


def test_sticky_with_none_usable_is_refused(peers: list[PeerCertificate]) -> None:
    # our own devices do not make a recipient set for a contact
    directory = FakeDirectory(held_only={CONTACT}, sticky_for={CONTACT}, devices=peers[2:4])
    verdict = plan(out(), context(directory, own=peers[4]))
    assert isinstance(verdict, Refuse)
    assert CONTACT in verdict.reason


def test_sticky_without_anything_held_is_refused() -> None:
    """Encryption required by hand, discovery found nothing: never in the clear."""
    verdict = plan(out(), context(FakeDirectory(sticky_for={CONTACT})))
    assert isinstance(verdict, Refuse)


def test_not_sticky_with_none_goes_in_the_clear(peers: list[PeerCertificate]) -> None:
    assert plan(out(), context(FakeDirectory())) is SEND_CLEAR
    directory = FakeDirectory(devices=peers[2:4])
    assert plan(out(), context(directory, own=peers[4])) is SEND_CLEAR


def test_answer_to_an_encrypted_stanza_with_none_usable_is_refused() -> None:
    ctx = context(FakeDirectory())
    ctx.exchanges.received(JULIET, "q1")
    assert isinstance(plan(out("iq", "result", JULIET, "q1"), ctx), Refuse)
    assert plan(out("iq", "result", JULIET, "q2"), ctx) is SEND_CLEAR
