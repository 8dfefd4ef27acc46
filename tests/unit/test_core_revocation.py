"""core.revocation: a device of an account revokes a lost one with a signed
statement on the account's node. The exact bytes (a fixed vector), the XML
read strictly (each malformed form refused with its reason), and the rules of
:func:`decide_revocations`, each on real keys: who may revoke (a trusted
identity of the same JID), what makes a revocation void (a bad signature, a
future date, a revoked revoker), and the fail-closed cases (two devices that
revoke each other are both revoked)."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from slixmpp_objenc.core.errors import EncryptionError
from slixmpp_objenc.core.identities import (
    DeviceKeys,
    generate_device_keys,
    validate_identity_certificate,
)
from slixmpp_objenc.core.revocation import (
    MAX_FUTURE,
    REVOKE_LABEL,
    HeldIdentity,
    Revocation,
    check_revocation,
    decide_revocations,
    parse_revocation,
    read_revocation,
    revocation_element,
    revocation_message,
    sign_revocation,
    verify_revocation,
)
from slixmpp_objenc.core.xmlsafe import parse_untrusted

ALICE = "alice@example.org"
BOB = "bob@example.org"
NS = "urn:ietf:params:xml:ns:xmpp-objenc:0"
NOW = datetime(2030, 5, 1, 12, 0, 0, tzinfo=UTC)
UNKNOWN = "ab" * 32


@pytest.fixture(scope="module")
def devices() -> dict[str, DeviceKeys]:
    """Four devices of Alice's and one of Bob's (real Ed25519 identities)."""
    found = {name: generate_device_keys(ALICE, now=NOW) for name in ("a", "b", "c", "d")}
    found["bob"] = generate_device_keys(BOB, now=NOW)
    return found


Held = Callable[..., dict[str, HeldIdentity]]


@pytest.fixture(scope="module")
def held(devices: dict[str, DeviceKeys]) -> Held:
    """The key ring for Alice's node: every device ``tofu`` unless given a
    state (``None`` leaves it out)."""

    def build(**states: str | None) -> dict[str, HeldIdentity]:
        ring = {}
        for name, device in devices.items():
            state = states.get(name, "tofu")
            if state is None:
                continue
            peer = validate_identity_certificate(device.identity_certificate, now=NOW)
            ring[peer.fingerprint] = HeldIdentity(peer.public_key, state, peer.jids)
        return ring

    return build


def revoke(
    devices: Mapping[str, DeviceKeys], revoker: str, revoked: str, at: datetime = NOW
) -> Revocation:
    signer = devices[revoker]
    target = devices[revoked].fingerprint if revoked in devices else revoked
    return sign_revocation(signer.identity_key, signer.identity_certificate, target, at)


def fp(devices: Mapping[str, DeviceKeys], name: str) -> str:
    return devices[name].fingerprint


# -- bytes ------------------------------------------------------------------

VECTOR_SEED = bytes(range(32))
VECTOR_REVOKED = "11" * 32
VECTOR_REVOKER = "22" * 32
VECTOR_ISSUED = datetime(2024, 5, 1, 12, 0, 0, 123_000, tzinfo=UTC)
VECTOR_MESSAGE = (
    "75726e3a696574663a706172616d733a786d6c3a6e733a786d70702d6f626a656e633a30"
    "23617574682d31207265766f6b6500" + "11" * 32 + "22" * 32 + "0000018f34069e7b"
)
VECTOR_SIGNATURE = (
    "6dd85252e2e2cb7558f08639fc004268f369beed34cd1bf90df67f94df08044730e05e10"
    "2422ce712b1410e8ae1ff1f64db50887cfe34294d03f3b5ab49d6f0e"
)


def test_message_bytes_match_the_vector() -> None:
    message = revocation_message(VECTOR_REVOKED, VECTOR_REVOKER, VECTOR_ISSUED)
    assert message.hex() == VECTOR_MESSAGE
    assert message.startswith(REVOKE_LABEL + b"\x00")
    assert REVOKE_LABEL == b"urn:ietf:params:xml:ns:xmpp-objenc:0#auth-1 revoke"
    assert len(message) == len(REVOKE_LABEL) + 1 + 32 + 32 + 8
    assert int.from_bytes(message[-8:], "big") == 1_714_564_800_123
    key = Ed25519PrivateKey.from_private_bytes(VECTOR_SEED)
    assert key.sign(message).hex() == VECTOR_SIGNATURE  # Ed25519 is deterministic
    vector = Revocation(
        VECTOR_REVOKED, VECTOR_REVOKER, VECTOR_ISSUED, bytes.fromhex(VECTOR_SIGNATURE)
    )
    assert verify_revocation(vector, key.public_key())
    assert vector.item_id == "revoke-" + "11" * 32 + "-" + "22" * 32


@pytest.mark.parametrize(
    ("revoked", "revoker", "issued"),
    [
        ("11" * 31, "22" * 32, VECTOR_ISSUED),
        ("11" * 32, "AB" * 32, VECTOR_ISSUED),
        ("11" * 32, "22" * 32, VECTOR_ISSUED.replace(tzinfo=None)),
        ("11" * 32, "22" * 32, datetime(1969, 12, 31, tzinfo=UTC)),
    ],
)
def test_message_refuses_malformed_values(revoked: str, revoker: str, issued: datetime) -> None:
    with pytest.raises(ValueError):
        revocation_message(revoked, revoker, issued)


def test_sign_names_both_ids_and_truncates_to_the_millisecond(
    devices: dict[str, DeviceKeys],
) -> None:
    at = NOW + timedelta(microseconds=123_456)
    revocation = revoke(devices, "a", "b", at)
    assert revocation.revoker == fp(devices, "a")
    assert revocation.revoked == fp(devices, "b")
    assert revocation.issued_at == NOW + timedelta(milliseconds=123)
    assert len(revocation.signature) == 64
    assert verify_revocation(revocation, devices["a"].identity_key.public_key())
    assert not verify_revocation(revocation, devices["b"].identity_key.public_key())


def test_a_device_does_not_revoke_itself(devices: dict[str, DeviceKeys]) -> None:
    with pytest.raises(EncryptionError, match="itself"):
        revoke(devices, "a", "a")


@pytest.mark.parametrize(
    "bad",
    [
        {"revoked_fingerprint": "AB" * 32},
        {"revoked_fingerprint": "ab" * 31},
        {"now": NOW.replace(tzinfo=None)},
        {"now": datetime(1960, 1, 1, tzinfo=UTC)},
        {"identity_key": Ed25519PrivateKey.generate()},
    ],
)
def test_sign_refuses_misuse(devices: dict[str, DeviceKeys], bad: dict[str, object]) -> None:
    arguments: dict[str, object] = {
        "identity_key": devices["a"].identity_key,
        "identity_certificate": devices["a"].identity_certificate,
        "revoked_fingerprint": fp(devices, "b"),
        "now": NOW,
    }
    arguments.update(bad)
    with pytest.raises(EncryptionError):
        sign_revocation(**arguments)  # type: ignore[arg-type]


# -- XML --------------------------------------------------------------------


def test_round_trip_through_the_wire(devices: dict[str, DeviceKeys]) -> None:
    revocation = revoke(devices, "a", "b", NOW + timedelta(milliseconds=7))
    element = revocation_element(revocation)
    assert element.tag == f"{{{NS}}}revocation"
    assert element.attrib == {
        "revoked-sha256": fp(devices, "b"),
        "revoker-sha256": fp(devices, "a"),
        "issued": "2030-05-01T12:00:00.007Z",
    }
    wire = parse_untrusted(ET.tostring(element))
    assert parse_revocation(wire) == revocation
    assert read_revocation(wire) == revocation


def test_signature_text_may_be_wrapped(devices: dict[str, DeviceKeys]) -> None:
    revocation = revoke(devices, "a", "b")
    element = revocation_element(revocation)
    text = element.text or ""
    element.text = "\n  " + text[:40] + "\n  " + text[40:] + "\n"
    assert parse_revocation(element) == revocation


def test_issued_in_another_xep_0082_form(devices: dict[str, DeviceKeys]) -> None:
    element = revocation_element(revoke(devices, "a", "b"))
    element.set("issued", "2030-05-01T12:00:00Z")  # no fraction: still UTC
    found = parse_revocation(element)
    assert found is not None and found.issued_at == NOW


def _valid(devices: Mapping[str, DeviceKeys]) -> ET.Element:
    return revocation_element(revoke(devices, "a", "b"))


def _set(name: str, value: str) -> Callable[[ET.Element], None]:
    return lambda element: element.set(name, value)


def _drop(name: str) -> Callable[[ET.Element], None]:
    def change(element: ET.Element) -> None:
        del element.attrib[name]

    return change


def _child(element: ET.Element) -> None:
    ET.SubElement(element, f"{{{NS}}}extra")


def _text(value: str | None) -> Callable[[ET.Element], None]:
    def change(element: ET.Element) -> None:
        element.text = value

    return change


def _tag(value: str) -> Callable[[ET.Element], None]:
    def change(element: ET.Element) -> None:
        element.tag = value

    return change


SIG_63 = "A" * 84  # 63 bytes
SIG_65 = "A" * 87 + "="  # 65 bytes

MALFORMED: dict[str, tuple[Callable[[ET.Element], None], str]] = {
    "wrong namespace": (_tag("{urn:other}revocation"), "not a revocation"),
    "no namespace": (_tag("revocation"), "not a revocation"),
    "wrong tag": (_tag(f"{{{NS}}}device"), "not a revocation"),
    "a child": (_child, "child"),
    "no revoked": (_drop("revoked-sha256"), "missing revoked-sha256"),
    "no revoker": (_drop("revoker-sha256"), "missing revoker-sha256"),
    "no issued": (_drop("issued"), "missing issued"),
    "extra attribute": (_set("note", "x"), "extra note"),
    "xml:lang": (_set("{http://www.w3.org/XML/1998/namespace}lang", "en"), "extra"),
    "upper-case id": (_set("revoked-sha256", "AB" * 32), "64 lowercase hex"),
    "short id": (_set("revoker-sha256", "ab" * 31), "64 lowercase hex"),
    "long id": (_set("revoker-sha256", "ab" * 33), "64 lowercase hex"),
    "not hex": (_set("revoked-sha256", "zz" * 32), "64 lowercase hex"),
    "issued garbage": (_set("issued", "yesterday"), "UTC timestamp"),
    "issued offset": (_set("issued", "2030-05-01T14:00:00.000+02:00"), "UTC timestamp"),
    "issued +00:00": (_set("issued", "2030-05-01T12:00:00.000+00:00"), "UTC timestamp"),
    "issued no zone": (_set("issued", "2030-05-01T12:00:00.000"), "UTC timestamp"),
    "issued bad date": (_set("issued", "2030-02-30T12:00:00.000Z"), "UTC timestamp"),
    "issued spaces": (_set("issued", " 2030-05-01T12:00:00.000Z"), "not a timestamp"),
    "issued too long": (_set("issued", "2030-05-01T12:00:00." + "0" * 60 + "Z"), "timestamp"),
    "issued before 1970": (_set("issued", "1969-12-31T23:59:59.000Z"), "1970"),
    "no signature": (_text(None), "not base64"),
    "empty signature": (_text(""), "not base64"),
    "not base64": (_text("!" * 88), "not base64"),
    "base64url": (_text("-_" * 44), "not base64"),
    "63 bytes": (_text(SIG_63), "63 bytes"),
    "65 bytes": (_text(SIG_65), "65 bytes"),
    "text too long": (_text("A" * 86 + "==" + " " * 200), "characters"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_is_refused_with_its_reason(
    devices: dict[str, DeviceKeys], case: str, caplog: pytest.LogCaptureFixture
) -> None:
    change, reason = MALFORMED[case]
    element = _valid(devices)
    change(element)
    found = read_revocation(element)
    assert isinstance(found, str) and reason in found
    with caplog.at_level(logging.INFO, logger="slixmpp_objenc.core.revocation"):
        assert parse_revocation(element) is None
    assert reason in caplog.text


# -- the rules --------------------------------------------------------------


@pytest.mark.parametrize("state", ["verified", "tofu"])
def test_accepted_from_a_trusted_device_of_the_same_jid(
    devices: dict[str, DeviceKeys], held: Held, state: str
) -> None:
    revocation = revoke(devices, "a", "b")
    ring = held(a=state)
    assert check_revocation(revocation, bare_jid=ALICE, held=ring, now=NOW) is None
    decision = decide_revocations(ALICE, ring, [revocation], now=NOW)
    assert decision.revoked == {fp(devices, "b"): revocation}
    assert decision.accepted == (revocation,)
    assert decision.pre_revoked == {} and decision.ignored == ()


@pytest.mark.parametrize("state", ["untrusted", "unpublished", "revoked"])
def test_ignored_from_a_revoker_not_trusted(
    devices: dict[str, DeviceKeys], held: Held, state: str
) -> None:
    revocation = revoke(devices, "a", "b")
    decision = decide_revocations(ALICE, held(a=state), [revocation], now=NOW)
    assert decision.revoked == {} and decision.accepted == ()
    assert decision.ignored == ((revocation, f"revoker is {state}"),)


def test_ignored_from_an_identity_of_another_jid(
    devices: dict[str, DeviceKeys], held: Held
) -> None:
    """Bob is a verified contact, and his identity is in the ring handed over:
    he still revokes nothing of Alice's."""
    revocation = revoke(devices, "bob", "b")
    decision = decide_revocations(ALICE, held(bob="verified"), [revocation], now=NOW)
    assert decision.revoked == {} and decision.accepted == ()
    [(_, reason)] = decision.ignored
    assert reason == f"revoker names {BOB}, not {ALICE}"


def test_ignored_when_the_revoked_identity_names_another_jid(
    devices: dict[str, DeviceKeys], held: Held
) -> None:
    revocation = revoke(devices, "a", "bob")
    decision = decide_revocations(ALICE, held(), [revocation], now=NOW)
    assert decision.accepted == ()
    assert "does not name" in decision.ignored[0][1]


def test_ignored_from_an_unknown_identity(devices: dict[str, DeviceKeys], held: Held) -> None:
    revocation = revoke(devices, "a", "b")
    decision = decide_revocations(ALICE, held(a=None), [revocation], now=NOW)
    assert decision.accepted == ()
    assert decision.ignored == ((revocation, "revoker is not an identity held for this JID"),)


def test_ignored_with_a_bad_signature(devices: dict[str, DeviceKeys], held: Held) -> None:
    revocation = revoke(devices, "a", "b")
    flipped = bytes([revocation.signature[0] ^ 1]) + revocation.signature[1:]
    forged = replace(revocation, signature=flipped)
    decision = decide_revocations(ALICE, held(), [forged], now=NOW)
    assert decision.accepted == () and decision.ignored == ((forged, "bad signature"),)


def test_a_signature_does_not_carry_over_to_another_revoked_id(
    devices: dict[str, DeviceKeys], held: Held
) -> None:
    """A's revocation of B, its target swapped for C (what a server would try)."""
    moved = replace(revoke(devices, "a", "b"), revoked=fp(devices, "c"))
    assert check_revocation(moved, bare_jid=ALICE, held=held(), now=NOW) == "bad signature"
    later = replace(revoke(devices, "a", "b"), issued_at=NOW + timedelta(milliseconds=1))
    assert check_revocation(later, bare_jid=ALICE, held=held(), now=NOW) == "bad signature"
    stolen = replace(revoke(devices, "a", "b"), revoker=fp(devices, "c"))
    assert check_revocation(stolen, bare_jid=ALICE, held=held(), now=NOW) == "bad signature"


def test_far_future_is_ignored_and_skew_is_not(devices: dict[str, DeviceKeys], held: Held) -> None:
    ahead = revoke(devices, "a", "b", NOW + timedelta(days=365))
    decision = decide_revocations(ALICE, held(), [ahead], now=NOW)
    assert decision.ignored == ((ahead, "issued in the future"),)
    skewed = revoke(devices, "a", "b", NOW + MAX_FUTURE)
    assert decide_revocations(ALICE, held(), [skewed], now=NOW).accepted == (skewed,)
    old = revoke(devices, "a", "b", NOW - timedelta(days=3000))
    assert decide_revocations(ALICE, held(), [old], now=NOW).accepted == (old,)


def test_self_revocation_is_ignored(devices: dict[str, DeviceKeys], held: Held) -> None:
    """Built by hand (``sign_revocation`` refuses it), with a valid signature."""
    a = devices["a"]
    message = revocation_message(fp(devices, "a"), fp(devices, "a"), NOW)
    selfish = Revocation(fp(devices, "a"), fp(devices, "a"), NOW, a.identity_key.sign(message))
    decision = decide_revocations(ALICE, held(), [selfish], now=NOW)
    assert decision.ignored == ((selfish, "a device revoking itself"),)


def test_mutual_revocation_revokes_both(devices: dict[str, DeviceKeys], held: Held) -> None:
    a_b, b_a = revoke(devices, "a", "b"), revoke(devices, "b", "a")
    decision = decide_revocations(ALICE, held(), [a_b, b_a], now=NOW)
    assert decision.revoked == {fp(devices, "b"): a_b, fp(devices, "a"): b_a}
    assert decision.ignored == ()


def test_mutual_revocation_read_at_two_fetches_revokes_both(
    devices: dict[str, DeviceKeys], held: Held
) -> None:
    """The thief (B) revoked A first, and contacts read it; A's answer still
    revokes B: a counter-revocation, whichever was read first."""
    b_a = revoke(devices, "b", "a")
    first = decide_revocations(ALICE, held(), [b_a], now=NOW)
    assert first.revoked == {fp(devices, "a"): b_a}
    # the key ring passes A's state before it was revoked (tofu), and B's revocation
    a_b = revoke(devices, "a", "b")
    second = decide_revocations(ALICE, held(), [b_a, a_b], remembered=first.accepted, now=NOW)
    assert second.revoked == {fp(devices, "b"): a_b}
    assert second.ignored == ((b_a, "already taken"),)


def test_a_revoked_revoker_cannot_revoke_a_third(
    devices: dict[str, DeviceKeys], held: Held
) -> None:
    """A revoked B (read before); B's later revocation of C is ignored, and B's
    counter-revocation of A is still taken (fail closed)."""
    a_b = revoke(devices, "a", "b")
    b_c = revoke(devices, "b", "c", NOW + timedelta(seconds=1))
    decision = decide_revocations(ALICE, held(), [b_c], remembered=[a_b], now=NOW)
    assert decision.accepted == () and decision.revoked == {}
    assert decision.ignored == ((b_c, f"its revoker is revoked (by {fp(devices, 'a')})"),)
    b_a = revoke(devices, "b", "a")
    assert decide_revocations(ALICE, held(), [b_a], remembered=[a_b], now=NOW).revoked == {
        fp(devices, "a"): b_a
    }


def test_a_revoked_revoker_in_the_same_list(devices: dict[str, DeviceKeys], held: Held) -> None:
    """A -> B and B -> C read together: B is revoked, so C is not."""
    a_b, b_c = revoke(devices, "a", "b"), revoke(devices, "b", "c")
    decision = decide_revocations(ALICE, held(), [b_c, a_b], now=NOW)
    assert decision.revoked == {fp(devices, "b"): a_b}
    assert decision.ignored == ((b_c, f"its revoker is revoked (by {fp(devices, 'a')})"),)


def test_a_device_the_user_revoked_cannot_revoke(
    devices: dict[str, DeviceKeys], held: Held
) -> None:
    """Revoked by the user (no revocation): not even a counter-revocation."""
    b_a = revoke(devices, "b", "a")
    decision = decide_revocations(ALICE, held(b="revoked"), [b_a], now=NOW)
    assert decision.ignored == ((b_a, "revoker is revoked"),)


def test_a_pending_device_revoked_gains_nothing(devices: dict[str, DeviceKeys], held: Held) -> None:
    """A revoked B while B was awaiting a decision: B's counter-revocation is
    void (its state before was not trusted)."""
    a_b = revoke(devices, "a", "b")
    b_a = revoke(devices, "b", "a")
    decision = decide_revocations(ALICE, held(b="untrusted"), [b_a], remembered=[a_b], now=NOW)
    assert decision.accepted == ()
    assert decision.ignored == ((b_a, "revoker is untrusted"),)


def test_a_cycle_revokes_everyone_in_it(devices: dict[str, DeviceKeys], held: Held) -> None:
    cycle = [revoke(devices, "a", "b"), revoke(devices, "b", "c"), revoke(devices, "c", "a")]
    decision = decide_revocations(ALICE, held(), cycle, now=NOW)
    assert set(decision.revoked) == {fp(devices, n) for n in "abc"}
    assert decision.ignored == ()


def test_a_revocation_of_an_unknown_identity_is_pre_revoked(
    devices: dict[str, DeviceKeys], held: Held
) -> None:
    early = revoke(devices, "a", "d")
    decision = decide_revocations(ALICE, held(d=None), [early], now=NOW)
    assert decision.revoked == {} and decision.pre_revoked == {fp(devices, "d"): early}
    assert decision.accepted == (early,)
    # once D is held, the remembered revocation is not asked again, nor reported anew
    again = decide_revocations(ALICE, held(), [early], remembered=[early], now=NOW)
    assert again.revoked == {} and again.accepted == ()


def test_a_revocation_is_permanent(devices: dict[str, DeviceKeys], held: Held) -> None:
    """The item gone (withheld by the server), nothing is undone: nothing in a
    decision ever un-revokes, and the remembered one still counts."""
    a_b = revoke(devices, "a", "b")
    decision = decide_revocations(ALICE, held(), [], remembered=[a_b], now=NOW)
    assert decision == decide_revocations(ALICE, held(), [], now=NOW)
    b_c = revoke(devices, "b", "c")
    later = decide_revocations(ALICE, held(), [b_c], remembered=[a_b], now=NOW)
    assert later.accepted == ()


def test_an_already_revoked_target_is_accepted_but_not_reported(
    devices: dict[str, DeviceKeys], held: Held
) -> None:
    a_b = revoke(devices, "a", "b")
    decision = decide_revocations(ALICE, held(b="revoked"), [a_b], now=NOW)
    assert decision.accepted == (a_b,) and decision.revoked == {}


def test_several_revokers_the_earliest_is_reported(
    devices: dict[str, DeviceKeys], held: Held
) -> None:
    late = revoke(devices, "a", "d", NOW)
    early = revoke(devices, "c", "d", NOW - timedelta(hours=1))
    decision = decide_revocations(ALICE, held(), [late, early], now=NOW)
    assert decision.revoked == {fp(devices, "d"): early}
    assert decision.accepted == (late, early)


def test_signature_checks_are_capped_held_targets_first(
    devices: dict[str, DeviceKeys], held: Held
) -> None:
    junk = [revoke(devices, "a", f"{i:064x}") for i in range(3)]
    real = revoke(devices, "a", "b")
    decision = decide_revocations(ALICE, held(), [*junk, real], now=NOW, max_verified=2)
    assert decision.revoked == {fp(devices, "b"): real}
    assert len(decision.pre_revoked) == 1
    assert decision.ignored == tuple((r, "not examined (over the limit)") for r in junk[1:])


def test_our_own_device_revoked_by_another_of_ours(
    devices: dict[str, DeviceKeys], held: Held
) -> None:
    """On our own node, our identity is in the ring (verified): a revocation of
    this device is reported like any other."""
    a_b = revoke(devices, "a", "b")
    decision = decide_revocations(ALICE, held(b="verified"), [a_b], now=NOW)
    assert decision.revoked == {fp(devices, "b"): a_b}


def test_revoked_by_two_devices_the_thief_cannot_answer(
    devices: dict[str, DeviceKeys], held: Held
) -> None:
    """A and C both revoked B (the thief): B's answer to either is void, even
    read with them; revoked by A alone, B takes A down with it."""
    a_b, c_b = revoke(devices, "a", "b"), revoke(devices, "c", "b")
    b_a = revoke(devices, "b", "a")
    together = decide_revocations(ALICE, held(), [a_b, c_b, b_a], now=NOW)
    assert together.revoked[fp(devices, "b")] in (a_b, c_b) and len(together.revoked) == 1
    assert together.ignored == ((b_a, f"its revoker is revoked (by {fp(devices, 'c')})"),)
    later = decide_revocations(ALICE, held(), [b_a], remembered=[a_b, c_b], now=NOW)
    assert later.accepted == ()
    alone = decide_revocations(ALICE, held(), [b_a], remembered=[a_b], now=NOW)
    assert alone.accepted == (b_a,)


def test_a_thief_that_struck_first_is_revoked_by_each_good_device(
    devices: dict[str, DeviceKeys], held: Held
) -> None:
    """B revoked A and C, and contacts took it; A and C answer: B is revoked
    too, A and C stay revoked (permanent: the user re-verifies)."""
    first = decide_revocations(
        ALICE, held(), [revoke(devices, "b", "a"), revoke(devices, "b", "c")], now=NOW
    )
    assert set(first.revoked) == {fp(devices, "a"), fp(devices, "c")}
    answers = [revoke(devices, "a", "b"), revoke(devices, "c", "b")]
    second = decide_revocations(ALICE, held(), answers, remembered=first.accepted, now=NOW)
    assert second.revoked[fp(devices, "b")] in answers and len(second.revoked) == 1
    assert second.accepted == tuple(answers)
