"""The key directory's rules as pure functions (issue 9, kinds 1 and 4):
``read_publication`` (core/certificates.py) takes what a node publishes, one bad
item never spoiling the others, within caps; ``reconcile`` (core/trust.py)
decides what each certificate means, for a contact and for our own account.
No slixmpp, no event loop."""

from __future__ import annotations

import base64

import hostile_certificates as hostile
import pytest

from slixmpp_objenc.core.certificates import MAX_CERTIFICATE_SIZE, MAX_CERTIFICATES_PER_JID
from slixmpp_objenc.core.devices import PublishedItem, read_publication
from slixmpp_objenc.core.trust import (
    MAX_HELD_PER_JID,
    Observation,
    Reconciliation,
    Sighting,
    TrustState,
    reconcile,
)

ALICE = "alice@example.org"
A, B, C, D = "aa" * 32, "bb" * 32, "cc" * 32, "dd" * 32
OWN_FP = "ee" * 32
TOFU, VERIFIED, UNTRUSTED, REVOKED, UNPUBLISHED = (
    TrustState.TOFU,
    TrustState.VERIFIED,
    TrustState.UNTRUSTED,
    TrustState.REVOKED,
    TrustState.UNPUBLISHED,
)


def item(raw: bytes, item_id: str = "") -> PublishedItem:
    return PublishedItem(item_id or f"item-{hash(raw) & 0xFFFF:x}", (hostile.b64(raw),))


@pytest.fixture(scope="module")
def good() -> list[bytes]:
    return hostile.many(ALICE, 3)


@pytest.fixture(scope="module")
def fifteen_hundred() -> list[bytes]:
    return hostile.many(ALICE, 1500)


# -- read_publication: one bad item is skipped, the others are used -----------------


@pytest.mark.parametrize(
    "bad",
    [
        hostile.duplicate_extension(ALICE),
        hostile.unknown_key_algorithm(ALICE),
        hostile.oversized_rsa(ALICE),
        b"\x30\x03\x02\x01\x01",
    ],
    ids=["duplicate-extension", "unknown-key-algorithm", "16400-bit-rsa", "garbage"],
)
def test_a_malformed_item_next_to_a_good_one_is_skipped_with_its_reason(
    good: list[bytes], bad: bytes
) -> None:
    publication = read_publication(ALICE, [item(bad, "bad"), item(good[0], "good")])
    assert list(publication.item_ids.values()) == ["good"]
    [(item_id, reason)] = publication.skipped
    assert item_id == "bad" and reason
    assert publication.limits == ()


def test_items_that_are_not_one_base64_certificate_are_skipped(good: list[bytes]) -> None:
    items = [
        PublishedItem("none", ()),
        PublishedItem("two", (hostile.b64(good[0]), hostile.b64(good[1]))),
        PublishedItem("not-base64", ("MIIB???",)),
        PublishedItem("wrapped", ("\n".join(base64.encodebytes(good[2]).decode().split()),)),
        PublishedItem("again", (hostile.b64(good[2]),)),
    ]
    publication = read_publication(ALICE, items)
    assert list(publication.item_ids.values()) == ["wrapped"]  # whitespace is fine
    assert [i for i, _ in publication.skipped] == ["none", "two", "not-base64", "again"]
    assert [limit.name for limit in publication.limits] == ["certificates-per-item"]


def test_a_certificate_for_someone_else_is_skipped(good: list[bytes]) -> None:
    publication = read_publication("bob@example.org", [item(good[0])])
    assert publication.certificates == {}
    assert "not bob@example.org" in publication.skipped[0][1]


def test_a_huge_certificate_is_skipped_before_it_is_decoded(good: list[bytes]) -> None:
    publication = read_publication(ALICE, [item(hostile.huge(ALICE), "huge"), item(good[0])])
    assert len(publication.certificates) == 1
    assert publication.skipped[0][0] == "huge"
    [limit] = publication.limits
    assert limit.name == "certificate-size" and limit.maximum == MAX_CERTIFICATE_SIZE
    assert limit.found > 1_000_000


def test_fifteen_hundred_certificates_are_capped(fifteen_hundred: list[bytes]) -> None:
    publication = read_publication(ALICE, [item(raw) for raw in fifteen_hundred])
    assert len(publication.certificates) == MAX_CERTIFICATES_PER_JID == 16
    [limit] = publication.limits
    assert limit.name == "certificates-per-jid"
    assert limit.found == 1500 and limit.maximum == 16


def test_held_certificates_come_first_and_are_always_taken(fifteen_hundred: list[bytes]) -> None:
    # the two we pinned are published last, after 1,498 new ones: still taken
    first = read_publication(ALICE, [item(raw) for raw in fifteen_hundred[-2:]])
    held = set(first.certificates)
    publication = read_publication(ALICE, [item(raw) for raw in fifteen_hundred], held=held)
    taken = list(publication.certificates)
    assert set(taken[:2]) == held and len(taken) == 16
    # even when more are held than the cap allows
    many_held = set(
        read_publication(
            ALICE, [item(r) for r in fifteen_hundred[:40]], max_certificates=40
        ).certificates
    )
    again = read_publication(ALICE, [item(r) for r in fifteen_hundred[:50]], held=many_held)
    assert many_held <= set(again.certificates) and len(again.certificates) == 40


def test_junk_costs_a_bounded_amount_of_work(good: list[bytes]) -> None:
    junk = [item(hostile.duplicate_extension(ALICE)) for _ in range(3)]
    publication = read_publication(ALICE, [*junk, item(good[0])], max_examined=2)
    assert publication.certificates == {}
    assert [limit.name for limit in publication.limits] == ["items-examined"]


# -- reconcile: a contact ------------------------------------------------------------


def test_first_publication_is_all_trusted_on_first_use() -> None:
    result = reconcile({}, [A, B], ())
    assert result.sightings == [
        Sighting(A, Observation.FIRST, TOFU, ()),
        Sighting(B, Observation.FIRST, TOFU, ()),
    ]
    assert result == Reconciliation(result.sightings)


def test_known_certificates_keep_their_state() -> None:
    held = {A: (VERIFIED, "pep"), B: (TOFU, "pep")}
    assert reconcile(held, [A, B], ()).sightings == [
        Sighting(A, Observation.KNOWN, None, ()),
        Sighting(B, Observation.KNOWN, None, ()),
    ]


def test_added_device_is_a_key_change_unless_trust_new_devices() -> None:
    assert reconcile({A: (TOFU, "pep")}, [A, B], ()).sightings[-1] == Sighting(
        B, Observation.CHANGED, UNTRUSTED, (A,)
    )
    held = {A: (TOFU, "pep"), B: (TOFU, "manual")}
    result = reconcile(held, [A, B, C], (), trust_new_devices=True)
    assert result.sightings[-1] == Sighting(C, Observation.ADDED, TOFU, (A, B))


def test_new_device_of_a_verified_contact_is_always_a_change() -> None:
    for trust_new_devices in (False, True):
        result = reconcile({A: (VERIFIED, "pep")}, [A, B], (), trust_new_devices=trust_new_devices)
        assert result.sightings[-1] == Sighting(B, Observation.CHANGED, UNTRUSTED, (A,))


def test_replacement_is_a_change_and_the_old_one_unpublished() -> None:
    result = reconcile({A: (TOFU, "pep")}, [B], (), trust_new_devices=True)
    assert result.sightings == [Sighting(B, Observation.CHANGED, UNTRUSTED, (A,))]
    assert result.unpublished == [A]


def test_an_empty_answer_never_drops_a_verified_certificate() -> None:
    # before issue 9: one empty <items/> revoked every certificate, verified ones too
    held = {A: (VERIFIED, "pep"), B: (TOFU, "pep"), C: (UNTRUSTED, "pep"), D: (REVOKED, "pep")}
    result = reconcile(held, [], ())
    assert result.withdrawn_verified == [A]  # kept, still used; the application is told
    assert result.unpublished == [B]  # not used while unpublished
    assert result.forgotten == [C]  # never trusted: asked about again if it comes back
    assert result.sightings == []  # D stays revoked: nothing to do


def test_a_pinned_certificate_published_again_is_restored() -> None:
    # before issue 9: revoked for good, so every later send to the contact failed
    result = reconcile({A: (UNPUBLISHED, "pep")}, [A], ())
    assert result.sightings == [Sighting(A, Observation.RESTORED, TOFU, ())]


def test_restored_next_to_a_verification_that_did_not_cover_it_is_held() -> None:
    result = reconcile({A: (UNPUBLISHED, "pep"), B: (VERIFIED, "pep")}, [A, B], ())
    assert result.sightings[0] == Sighting(A, Observation.RESTORED, UNTRUSTED, (B,))


def test_revoked_stays_revoked_when_published_again() -> None:
    result = reconcile({A: (REVOKED, "pep"), B: (TOFU, "pep")}, [A, B], ())
    assert [s.observation for s in result.sightings] == [Observation.KNOWN] * 2


def test_certificates_added_by_hand_are_never_touched_by_pep() -> None:
    held = {A: (TOFU, "manual"), B: (VERIFIED, "manual")}
    assert reconcile(held, [], ()) == Reconciliation()


def test_an_incomplete_read_withdraws_nothing() -> None:
    held = {A: (TOFU, "pep"), B: (VERIFIED, "pep")}
    result = reconcile(held, [C], (), complete=False)
    assert result.sightings == [Sighting(C, Observation.CHANGED, UNTRUSTED, (A, B))]
    assert (result.unpublished, result.withdrawn_verified, result.forgotten) == ([], [], [])


def test_held_certificates_per_jid_are_capped() -> None:
    held = {f"{n:064x}": (REVOKED, "pep") for n in range(MAX_HELD_PER_JID - 1)}
    result = reconcile(held, [A, B, C], ())
    assert [s.fingerprint for s in result.sightings] == [A]
    assert result.over_limit == 2


# -- reconcile: our own account's node ----------------------------------------------


def test_own_fingerprints_are_skipped() -> None:
    assert reconcile({}, [OWN_FP, A], {OWN_FP}).sightings == [
        Sighting(A, Observation.FIRST, TOFU, ())
    ]


def test_a_certificate_on_our_own_node_is_held_for_a_decision() -> None:
    # before issue 9: on a single-device account nothing was held, so the
    # attacker's certificate was the FIRST one and pinned (tofu, no event)
    result = reconcile({}, [OWN_FP, A], {OWN_FP}, own_account=True)
    assert result.sightings == [Sighting(A, Observation.CHANGED, UNTRUSTED, ())]
    # also next to devices of ours we trust, and next to verified ones
    for state in (TOFU, VERIFIED):
        result = reconcile({A: (state, "pep")}, [OWN_FP, A, B], {OWN_FP}, own_account=True)
        assert result.sightings[-1] == Sighting(B, Observation.CHANGED, UNTRUSTED, (A,))


def test_a_new_device_pins_what_its_account_publishes_on_its_first_read() -> None:
    result = reconcile({}, [A, OWN_FP, B], {OWN_FP}, own_account=True, first_contact=True)
    assert result.sightings == [
        Sighting(A, Observation.FIRST, TOFU, ()),
        Sighting(B, Observation.FIRST, TOFU, ()),
    ]


def test_trust_own_new_devices_trusts_at_once_and_says_so() -> None:
    result = reconcile(
        {A: (VERIFIED, "pep")}, [A, B], {OWN_FP}, own_account=True, trust_new_devices=True
    )
    assert result.sightings[-1] == Sighting(B, Observation.ADDED, TOFU, (A,))


def test_a_removed_device_of_ours_stays_revoked() -> None:
    result = reconcile({A: (REVOKED, "pep")}, [OWN_FP, A], {OWN_FP}, own_account=True)
    assert result.sightings == [Sighting(A, Observation.KNOWN, None, ())]
