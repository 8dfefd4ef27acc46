"""core.trust.reconcile with ``inherited`` (PROTOCOL.md 13.8): a new identity
certificate vouched for by an RSA certificate we hold pinned or verified takes
that trust at once (``VOUCHED``, no prompt), for a contact and for our own
account; nothing else changes. Plain values in, values out."""

from __future__ import annotations

import pytest

from slixmpp_objenc.core.trust import Observation, Sighting, TrustState, reconcile

RSA, IDENTITY, OTHER, MINE = "aa" * 32, "bb" * 32, "cc" * 32, "ee" * 32
TOFU, VERIFIED, UNTRUSTED = TrustState.TOFU, TrustState.VERIFIED, TrustState.UNTRUSTED


@pytest.mark.parametrize("state", [VERIFIED, TOFU], ids=["verified", "pinned"])
@pytest.mark.parametrize("own_account", [False, True], ids=["contact", "own-account"])
def test_a_vouched_identity_inherits_the_rsa_trust_without_a_prompt(
    state: TrustState, own_account: bool
) -> None:
    result = reconcile(
        {RSA: (state, "pep")},
        [RSA, IDENTITY],
        [MINE],
        own_account=own_account,
        inherited={IDENTITY: state},
    )
    assert result.sightings == [
        Sighting(RSA, Observation.KNOWN, None, ()),
        Sighting(IDENTITY, Observation.VOUCHED, state, (RSA,)),
    ]
    assert not any(s.trust is not None and s.trust.pending for s in result.sightings)
    assert result.unpublished == result.withdrawn_verified == result.forgotten == []


def test_a_vouched_identity_replacing_its_rsa_certificate() -> None:
    """The RSA certificate is no longer published: the identity still inherits,
    and the pinned RSA certificate is unpublished as usual."""
    result = reconcile({RSA: (TOFU, "pep")}, [IDENTITY], [], inherited={IDENTITY: TOFU})
    assert result.sightings == [Sighting(IDENTITY, Observation.VOUCHED, TOFU, (RSA,))]
    assert result.unpublished == [RSA]


def test_a_fingerprint_not_inherited_next_to_a_verified_contact_is_changed() -> None:
    result = reconcile(
        {RSA: (VERIFIED, "pep")},
        [RSA, IDENTITY, OTHER],
        [],
        trust_new_devices=True,
        inherited={IDENTITY: VERIFIED},
    )
    assert result.sightings == [
        Sighting(RSA, Observation.KNOWN, None, ()),
        Sighting(IDENTITY, Observation.VOUCHED, VERIFIED, (RSA,)),
        Sighting(OTHER, Observation.CHANGED, UNTRUSTED, (RSA,)),
    ]


def test_a_fingerprint_not_inherited_on_our_own_account_is_changed() -> None:
    result = reconcile(
        {RSA: (VERIFIED, "pep")},
        [RSA, IDENTITY, OTHER],
        [MINE],
        own_account=True,
        inherited={IDENTITY: VERIFIED},
    )
    assert [(s.fingerprint, s.observation, s.trust) for s in result.sightings] == [
        (RSA, Observation.KNOWN, None),
        (IDENTITY, Observation.VOUCHED, VERIFIED),
        (OTHER, Observation.CHANGED, UNTRUSTED),
    ]


@pytest.mark.parametrize("state", [TOFU, VERIFIED, UNTRUSTED])
def test_inherited_applies_only_to_new_fingerprints(state: TrustState) -> None:
    """An identity already held keeps its state (``KNOWN``), whatever is inherited."""
    held = {RSA: (VERIFIED, "pep"), IDENTITY: (state, "pep")}
    result = reconcile(held, [RSA, IDENTITY], [], inherited={IDENTITY: VERIFIED})
    assert result.sightings == [
        Sighting(RSA, Observation.KNOWN, None, ()),
        Sighting(IDENTITY, Observation.KNOWN, None, ()),
    ]


def test_an_inherited_fingerprint_of_ours_is_skipped() -> None:
    result = reconcile({RSA: (TOFU, "pep")}, [RSA, MINE], [MINE], inherited={MINE: TOFU})
    assert [s.fingerprint for s in result.sightings] == [RSA]


def test_inherited_that_is_not_published_records_nothing() -> None:
    result = reconcile({RSA: (TOFU, "pep")}, [RSA], [], inherited={IDENTITY: TOFU})
    assert result.sightings == [Sighting(RSA, Observation.KNOWN, None, ())]


def test_without_inherited_the_same_identity_is_a_key_change() -> None:
    nothing: tuple[dict[str, TrustState] | None, ...] = (None, {})
    for inherited in nothing:
        result = reconcile({RSA: (VERIFIED, "pep")}, [RSA, IDENTITY], [], inherited=inherited)
        assert result.sightings[1] == Sighting(IDENTITY, Observation.CHANGED, UNTRUSTED, (RSA,))


def test_inherited_still_counts_against_max_held() -> None:
    result = reconcile(
        {RSA: (TOFU, "pep")}, [RSA, IDENTITY], [], max_held=1, inherited={IDENTITY: TOFU}
    )
    assert result.sightings == [Sighting(RSA, Observation.KNOWN, None, ())]
    assert result.over_limit == 1
