"""The short authentication string: honest runs agree, a man in the middle does not."""

from __future__ import annotations

import hashlib
import os

import pytest

from slixmpp_objenc.core.verification import (
    SAS_ALPHABET,
    SasInitiator,
    SasResponder,
    VerificationError,
    commitment,
    short_authentication_string,
)

FP_ALICE = hashlib.sha256(b"alice cert").hexdigest()
FP_BOB = hashlib.sha256(b"bob cert").hexdigest()
FP_M1 = hashlib.sha256(b"mallory as bob").hexdigest()
FP_M2 = hashlib.sha256(b"mallory as alice").hexdigest()


def run(initiator: SasInitiator, responder: SasResponder) -> tuple[str, str]:
    nonce_r = responder.receive_commit(initiator.commit())
    reveal = initiator.receive_nonce(nonce_r)
    sas_r = responder.receive_reveal(reveal)
    assert initiator.sas is not None
    return initiator.sas, sas_r


def test_honest_exchange_agrees_on_six_unambiguous_characters() -> None:
    a, b = run(SasInitiator(FP_ALICE, FP_BOB), SasResponder(FP_BOB, FP_ALICE))
    assert a == b
    assert len(a) == 6 and all(c in SAS_ALPHABET for c in a)
    assert not set("ILOU") & set(SAS_ALPHABET)


def test_fixed_vector() -> None:
    ni, nr = bytes(range(32)), bytes(range(32, 64))
    sas = short_authentication_string(ni, nr, FP_ALICE, FP_BOB)
    digest = hashlib.sha256(
        b"urn:ietf:params:xml:ns:xmpp-objenc:0 sas v1\x00"
        + ni
        + nr
        + bytes.fromhex(FP_ALICE)
        + bytes.fromhex(FP_BOB)
    ).digest()
    value = int.from_bytes(digest[:4], "big") >> 2
    expected = "".join(SAS_ALPHABET[(value >> (5 * i)) & 31] for i in reversed(range(6)))
    assert sas == expected


def test_fresh_nonces_give_fresh_strings() -> None:
    strings = {
        run(SasInitiator(FP_ALICE, FP_BOB), SasResponder(FP_BOB, FP_ALICE))[0] for _ in range(50)
    }
    assert len(strings) > 45


def test_substituted_key_on_one_side_is_caught_by_the_commitment() -> None:
    # alice holds mallory's certificate for bob; bob holds alice's real one;
    # a relay passes the messages through unchanged
    initiator = SasInitiator(FP_ALICE, FP_M1)
    responder = SasResponder(FP_BOB, FP_ALICE)
    reveal = initiator.receive_nonce(responder.receive_commit(initiator.commit()))
    with pytest.raises(VerificationError):
        responder.receive_reveal(reveal)


def test_reveal_that_does_not_match_the_commitment_is_refused() -> None:
    initiator = SasInitiator(FP_ALICE, FP_BOB)
    responder = SasResponder(FP_BOB, FP_ALICE)
    responder.receive_commit(initiator.commit())
    with pytest.raises(VerificationError):
        responder.receive_reveal(os.urandom(32))
    assert responder.sas is None


def test_out_of_order_messages_are_refused() -> None:
    initiator = SasInitiator(FP_ALICE, FP_BOB)
    with pytest.raises(VerificationError):
        initiator.receive_nonce(os.urandom(32))
    responder = SasResponder(FP_BOB, FP_ALICE)
    with pytest.raises(VerificationError):
        responder.receive_reveal(os.urandom(32))
    with pytest.raises(VerificationError):
        responder.receive_commit(b"short")


def _mitm_attempt(strategy: str) -> tuple[str, str]:
    """Mallory sits between alice and bob with substituted certificates and runs
    one session with each, choosing her nonces as adaptively as the order allows."""
    alice = SasInitiator(FP_ALICE, FP_M1)  # alice believes FP_M1 is bob
    bob = SasResponder(FP_BOB, FP_M2)  # bob believes FP_M2 is alice
    m_to_alice = SasResponder(FP_M1, FP_ALICE)
    m_to_bob = SasInitiator(FP_M2, FP_BOB)
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


def test_commitment_binds_both_fingerprints() -> None:
    nonce = os.urandom(32)
    assert commitment(nonce, FP_ALICE, FP_BOB) != commitment(nonce, FP_ALICE, FP_M1)
    assert commitment(nonce, FP_ALICE, FP_BOB) != commitment(nonce, FP_BOB, FP_ALICE)


def test_device_policy() -> None:
    from slixmpp_objenc.core.trust import Observation, classify_publication

    assert classify_publication({}, {"a", "b"}, "b") is Observation.FIRST
    assert classify_publication({"a": "tofu"}, {"a", "b"}, "b") is Observation.ADDED
    assert classify_publication({"a": "tofu"}, {"b"}, "b") is Observation.CHANGED  # replaced
    assert classify_publication({"a": "verified"}, {"a", "b"}, "b") is Observation.CHANGED
    assert classify_publication({"a": "revoked"}, {"b"}, "b") is Observation.CHANGED
    assert classify_publication({"a": "tofu"}, {"a"}, "a") is Observation.KNOWN
