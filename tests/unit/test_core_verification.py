"""The short authentication string: honest runs agree, a man in the middle does not,
and one comparison covers every certificate each side encrypts to for the other
(issue 9, kind 9)."""

from __future__ import annotations

import hashlib
import os

import pytest

from slixmpp_objenc.core.trust import TrustState, verification_outcome
from slixmpp_objenc.core.verification import (
    MAX_SET_SIZE,
    SAS_ALPHABET,
    SasInitiator,
    SasResponder,
    VerificationError,
    commitment,
    differences,
    set_digest,
    short_authentication_string,
)

FP_ALICE = hashlib.sha256(b"alice cert").hexdigest()
FP_BOB = hashlib.sha256(b"bob cert").hexdigest()
FP_M1 = hashlib.sha256(b"mallory as bob").hexdigest()
FP_M2 = hashlib.sha256(b"mallory as alice").hexdigest()
FP_ALICE_2 = hashlib.sha256(b"alice's phone").hexdigest()
FP_BOB_2 = hashlib.sha256(b"bob's laptop").hexdigest()
FP_SLIPPED = hashlib.sha256(b"a certificate the server slipped in").hexdigest()


def run(initiator: SasInitiator, responder: SasResponder) -> tuple[str, str]:
    nonce_r = responder.receive_commit(initiator.commit())
    reveal = initiator.receive_nonce(nonce_r)
    sas_r = responder.receive_reveal(reveal)
    assert initiator.sas is not None
    return initiator.sas, sas_r


def test_honest_exchange_agrees_on_six_unambiguous_characters() -> None:
    a, b = run(SasInitiator({FP_ALICE}, {FP_BOB}), SasResponder({FP_BOB}, {FP_ALICE}))
    assert a == b
    assert len(a) == 6 and all(c in SAS_ALPHABET for c in a)
    assert not set("ILOU") & set(SAS_ALPHABET)


def _set_digest_by_hand(*fingerprints: str) -> bytes:
    raw = sorted({bytes.fromhex(fp) for fp in fingerprints})
    return hashlib.sha256(
        b"urn:ietf:params:xml:ns:xmpp-objenc:0 sas set\x00"
        + len(raw).to_bytes(2, "big")
        + b"".join(raw)
    ).digest()


def test_fixed_vector() -> None:
    ni, nr = bytes(range(32)), bytes(range(32, 64))
    sas = short_authentication_string(ni, nr, {FP_ALICE, FP_ALICE_2}, {FP_BOB})
    digest = hashlib.sha256(
        b"urn:ietf:params:xml:ns:xmpp-objenc:0 sas v2\x00"
        + ni
        + nr
        + _set_digest_by_hand(FP_ALICE_2, FP_ALICE)
        + _set_digest_by_hand(FP_BOB)
    ).digest()
    value = int.from_bytes(digest[:4], "big") >> 2
    expected = "".join(SAS_ALPHABET[(value >> (5 * i)) & 31] for i in reversed(range(6)))
    assert sas == expected


def test_fresh_nonces_give_fresh_strings() -> None:
    strings = {
        run(SasInitiator({FP_ALICE}, {FP_BOB}), SasResponder({FP_BOB}, {FP_ALICE}))[0]
        for _ in range(50)
    }
    assert len(strings) > 45


def test_substituted_key_on_one_side_is_caught_by_the_commitment() -> None:
    # alice holds mallory's certificate for bob; bob holds alice's real one;
    # a relay passes the messages through unchanged
    initiator = SasInitiator({FP_ALICE}, {FP_M1})
    responder = SasResponder({FP_BOB}, {FP_ALICE})
    reveal = initiator.receive_nonce(responder.receive_commit(initiator.commit()))
    with pytest.raises(VerificationError):
        responder.receive_reveal(reveal)


def test_reveal_that_does_not_match_the_commitment_is_refused() -> None:
    initiator = SasInitiator({FP_ALICE}, {FP_BOB})
    responder = SasResponder({FP_BOB}, {FP_ALICE})
    responder.receive_commit(initiator.commit())
    with pytest.raises(VerificationError):
        responder.receive_reveal(os.urandom(32))
    assert responder.sas is None


def test_out_of_order_messages_are_refused() -> None:
    initiator = SasInitiator({FP_ALICE}, {FP_BOB})
    with pytest.raises(VerificationError):
        initiator.receive_nonce(os.urandom(32))
    responder = SasResponder({FP_BOB}, {FP_ALICE})
    with pytest.raises(VerificationError):
        responder.receive_reveal(os.urandom(32))
    with pytest.raises(VerificationError):
        responder.receive_commit(b"short")


def _mitm_attempt(strategy: str) -> tuple[str, str]:
    """Mallory sits between alice and bob with substituted certificates and runs
    one session with each, choosing her nonces as adaptively as the order allows."""
    alice = SasInitiator({FP_ALICE}, {FP_M1})  # alice believes FP_M1 is bob
    bob = SasResponder({FP_BOB}, {FP_M2})  # bob believes FP_M2 is alice
    m_to_alice = SasResponder({FP_M1}, {FP_ALICE})
    m_to_bob = SasInitiator({FP_M2}, {FP_BOB})
    commit_a = alice.commit()
    if strategy == "bob-first":
        # learn bob's nonce before answering alice: she commits to her own first
        nonce_b = bob.receive_commit(m_to_bob.commit())
        reveal_m = m_to_bob.receive_nonce(nonce_b)
        sas_b = bob.receive_reveal(reveal_m)
        nonce_m = m_to_alice.receive_commit(commit_a)
        sas_a = m_to_alice.receive_reveal(alice.receive_nonce(nonce_m))
        assert alice.sas == sas_a
        return sas_a, sas_b
    # "alice-first": answer alice, learn her nonce, then try to steer bob's side
    nonce_m = m_to_alice.receive_commit(commit_a)
    reveal_a = alice.receive_nonce(nonce_m)
    m_to_alice.receive_reveal(reveal_a)
    assert alice.sas is not None
    nonce_b = bob.receive_commit(m_to_bob.commit())
    sas_b = bob.receive_reveal(m_to_bob.receive_nonce(nonce_b))
    return alice.sas, sas_b


@pytest.mark.parametrize("strategy", ["bob-first", "alice-first"])
def test_man_in_the_middle_gets_mismatching_strings(strategy: str) -> None:
    matches = sum(a == b for a, b in (_mitm_attempt(strategy) for _ in range(2000)))
    # each attempt matches with probability 2^-30: 2000 attempts, expected 2e-6
    assert matches == 0


def test_commitment_binds_both_sets() -> None:
    nonce = os.urandom(32)
    assert commitment(nonce, {FP_ALICE}, {FP_BOB}) != commitment(nonce, {FP_ALICE}, {FP_M1})
    assert commitment(nonce, {FP_ALICE}, {FP_BOB}) != commitment(nonce, {FP_BOB}, {FP_ALICE})
    # the boundary between the sets is fixed: {a, b} | {c} is not {a} | {b, c}
    assert commitment(nonce, {FP_ALICE, FP_BOB}, {FP_M1}) != commitment(
        nonce, {FP_ALICE}, {FP_BOB, FP_M1}
    )


def test_device_policy() -> None:
    from slixmpp_objenc.core.trust import Observation, classify_publication

    assert classify_publication({}, {"a", "b"}, "b") is Observation.FIRST
    assert classify_publication({"a": "tofu"}, {"a", "b"}, "b") is Observation.ADDED
    assert classify_publication({"a": "tofu"}, {"b"}, "b") is Observation.CHANGED  # replaced
    assert classify_publication({"a": "verified"}, {"a", "b"}, "b") is Observation.CHANGED
    assert classify_publication({"a": "revoked"}, {"b"}, "b") is Observation.CHANGED
    assert classify_publication({"a": "tofu"}, {"a"}, "a") is Observation.KNOWN


# -- kind 9: one comparison covers every certificate of both accounts --------------


def test_honest_exchange_over_several_devices_agrees() -> None:
    # alice's device A1 and bob's device B1; each account has two devices and
    # both sides hold the same sets for each other
    a, b = run(
        SasInitiator({FP_ALICE, FP_ALICE_2}, {FP_BOB, FP_BOB_2}),
        SasResponder({FP_BOB_2, FP_BOB}, {FP_ALICE_2, FP_ALICE}),
    )
    assert a == b


def test_a_certificate_slipped_into_one_side_is_caught() -> None:
    # the server slipped a certificate into alice's view of bob at first contact:
    # bob's device does not count it as bob's, so the exchange fails (the
    # commitment check; a man in the middle running two sessions gets two
    # different strings instead)
    initiator = SasInitiator({FP_ALICE}, {FP_BOB, FP_SLIPPED})
    responder = SasResponder({FP_BOB}, {FP_ALICE})
    reveal = initiator.receive_nonce(responder.receive_commit(initiator.commit()))
    with pytest.raises(VerificationError, match="same certificates"):
        responder.receive_reveal(reveal)


def test_a_device_of_ours_slipped_into_the_peer_is_caught() -> None:
    # bob holds an extra certificate "of alice's" that alice does not count as hers
    initiator = SasInitiator({FP_ALICE}, {FP_BOB})
    responder = SasResponder({FP_BOB}, {FP_ALICE, FP_SLIPPED})
    reveal = initiator.receive_nonce(responder.receive_commit(initiator.commit()))
    with pytest.raises(VerificationError):
        responder.receive_reveal(reveal)


def test_strings_differ_when_sets_differ_even_with_the_same_nonces() -> None:
    ni, nr = os.urandom(32), os.urandom(32)
    honest = short_authentication_string(ni, nr, {FP_ALICE}, {FP_BOB})
    assert honest == short_authentication_string(ni, nr, [FP_ALICE, FP_ALICE], (FP_BOB,))
    assert honest != short_authentication_string(ni, nr, {FP_ALICE}, {FP_BOB, FP_SLIPPED})
    assert honest != short_authentication_string(ni, nr, {FP_ALICE, FP_SLIPPED}, {FP_BOB})


def test_set_digest_is_canonical_and_bounded() -> None:
    assert set_digest([FP_BOB, FP_ALICE]) == set_digest({FP_ALICE, FP_BOB})
    assert set_digest([FP_ALICE.upper()]) == set_digest([FP_ALICE])
    assert set_digest([FP_ALICE]) == _set_digest_by_hand(FP_ALICE)
    for bad in ([], FP_ALICE, ["zz" * 32], ["ab" * 16]):
        with pytest.raises(VerificationError):
            set_digest(bad)  # type: ignore[arg-type]
    many = [hashlib.sha256(bytes([i, j])).hexdigest() for i in range(2) for j in range(100)]
    assert len(many) > MAX_SET_SIZE
    with pytest.raises(VerificationError):
        set_digest(many)


def test_differences_name_what_only_one_side_holds() -> None:
    assert differences({FP_BOB, FP_SLIPPED}, {FP_BOB}) == ((FP_SLIPPED,), ())
    assert differences({FP_BOB}, {FP_BOB, FP_BOB_2}) == ((), (FP_BOB_2,))
    assert differences([FP_BOB.upper()], {FP_BOB}) == ((), ())


def test_a_match_verifies_the_covered_set_and_holds_the_rest() -> None:
    held = {
        FP_BOB: TrustState.TOFU,
        FP_BOB_2: TrustState.TOFU,
        FP_SLIPPED: TrustState.TOFU,  # pinned after the exchange started: not covered
        FP_M1: TrustState.REVOKED,
        FP_M2: TrustState.UNTRUSTED,
    }
    changes = verification_outcome(held, {FP_BOB, FP_BOB_2}, matched=True)
    assert changes == {
        FP_BOB: TrustState.VERIFIED,
        FP_BOB_2: TrustState.VERIFIED,
        FP_SLIPPED: TrustState.UNTRUSTED,  # stops being used once the contact is verified
    }


def test_a_mismatch_holds_every_covered_certificate() -> None:
    held = {FP_BOB: TrustState.VERIFIED, FP_BOB_2: TrustState.TOFU, FP_M1: TrustState.REVOKED}
    changes = verification_outcome(held, {FP_BOB, FP_BOB_2, FP_M1}, matched=False)
    assert changes == {FP_BOB: TrustState.UNTRUSTED, FP_BOB_2: TrustState.UNTRUSTED}
    # revoked meanwhile: a match does not bring it back
    assert FP_M1 not in verification_outcome(held, {FP_M1}, matched=True)
