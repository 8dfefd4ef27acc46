"""The poezio plugin's words, without poezio: ``/objenc`` parsing, fingerprints,
the conversation state, and a notice for every event a user must see. (The
plugin itself runs in poezio in ``tests/integration/test_poezio.py``.)"""

from __future__ import annotations

import ast
import dataclasses
import tomllib
import typing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from slixmpp_objenc.core.publication import Publication, PublicationStatus
from slixmpp_objenc.core.trust import TrustState
from slixmpp_objenc.events import (
    BadTimestampEvent,
    DecryptionFailedEvent,
    DeviceRevokedEvent,
    EncryptionFailedEvent,
    ForeignEncryptionEvent,
    KeyChangedEvent,
)
from slixmpp_objenc.poezio import notices, text
from slixmpp_objenc.poezio.text import CommandError, Held, Request, parse_command

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "slixmpp_objenc"
ROMEO = "romeo@montague.net"
FP_A = "ab12" + "0" * 60
FP_B = "ab34" + "1" * 60
FP_C = "cd56" + "2" * 60


class FakeStanza(dict[str, Any]):
    """What the notices read of a slixmpp stanza: ``name`` and a few interfaces."""

    def __init__(self, name: str, **fields: Any) -> None:
        super().__init__(fields)
        self.name = name


# -- /objenc ---------------------------------------------------------------------


def test_bare_objenc_in_a_conversation_requires_encryption() -> None:
    assert parse_command("", ROMEO) == Request("on", ROMEO)
    assert parse_command("", None) == Request("status", None)  # roster: our account


def test_subcommands_take_an_optional_jid_then_their_arguments() -> None:
    assert parse_command("status", ROMEO) == Request("status", ROMEO)
    assert parse_command("status juliet@capulet.net", ROMEO).jid == "juliet@capulet.net"
    assert parse_command("accept ab12", ROMEO) == Request("accept", ROMEO, ("ab12",))
    assert parse_command("reject juliet@capulet.net ab12", None) == Request(
        "reject", "juliet@capulet.net", ("ab12",)
    )
    assert parse_command("trust 'AB12 0000' verified", ROMEO).args == ("AB12 0000", "verified")
    assert parse_command("verify romeo@montague.net/phone", None).jid == (
        "romeo@montague.net/phone"
    )
    assert parse_command("FP", ROMEO).action == "fingerprints"
    assert parse_command("nomatch", ROMEO).action == "mismatch"


@pytest.mark.parametrize(
    ("line", "conversation", "message"),
    [
        ("bogus", ROMEO, "unknown subcommand"),
        ("accept", ROMEO, "usage: /objenc accept"),
        ("trust ab12", ROMEO, "usage: /objenc trust"),
        ("accept ab12", None, "needs a JID"),
        ("off", None, "needs a JID"),
        ("status extra words", ROMEO, "unexpected"),
        ("trust 'ab12", ROMEO, "cannot read"),
    ],
)
def test_bad_commands_say_why(line: str, conversation: str | None, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        parse_command(line, conversation)


def test_a_fingerprint_is_found_by_a_unique_prefix() -> None:
    held = [Held(FP_A, TrustState.TOFU), Held(FP_B, TrustState.UNTRUSTED)]
    assert text.resolve(held, ROMEO, "AB:12").fingerprint == FP_A
    assert text.resolve(held, ROMEO, "ab34 1111").fingerprint == FP_B
    twin = [*held, Held("ab12" + "f" * 60, TrustState.TOFU)]
    with pytest.raises(CommandError, match=r"matches 2 .* type more digits"):
        text.resolve(twin, ROMEO, "ab12")
    with pytest.raises(CommandError, match="at least 4 digits"):
        text.resolve(held, ROMEO, "ab")
    with pytest.raises(CommandError, match="no certificate held"):
        text.resolve(held, ROMEO, "ffff")
    with pytest.raises(CommandError, match="not a fingerprint"):
        text.resolve(held, ROMEO, "romeo")
    with pytest.raises(CommandError, match="no certificate is held"):
        text.resolve([], ROMEO, "abcd")


def test_only_the_users_trust_states_can_be_set() -> None:
    assert text.trust_state("Verified") is TrustState.VERIFIED
    with pytest.raises(CommandError, match="unknown trust state"):
        text.trust_state("unpublished")


# -- the state of a conversation ---------------------------------------------------


def test_state_encrypted_verified_held_required_or_plaintext() -> None:
    tofu = [Held(FP_A, TrustState.TOFU)]
    state = text.conversation_state(ROMEO, tofu, [FP_A], sticky=True)
    assert (state.word, state.badge) == ("encrypted", "objenc")
    assert "not verified" in state.sentence

    verified = [Held(FP_A, TrustState.VERIFIED)]
    state = text.conversation_state(ROMEO, verified, [FP_A], sticky=True)
    assert (state.word, state.badge) == ("encrypted", "objenc:verified")

    changed = [Held(FP_A, TrustState.TOFU), Held(FP_B, TrustState.UNTRUSTED)]
    state = text.conversation_state(ROMEO, changed, [FP_A], sticky=True)
    assert (state.word, state.badge) == ("held", "objenc:held")
    assert text.short_fingerprint(FP_B) in state.sentence

    revoked = [Held(FP_A, TrustState.REVOKED)]
    state = text.conversation_state(ROMEO, revoked, [], sticky=True)
    assert (state.word, state.badge) == ("required", "objenc:required")
    assert "fail closed" in state.sentence

    state = text.conversation_state(ROMEO, [], [], sticky=False)
    assert (state.word, state.badge) == ("plaintext", "")
    assert "NOT encrypted" in state.sentence


def test_status_lists_their_certificates_ours_and_our_other_devices() -> None:
    held = [Held(FP_B, TrustState.REVOKED), Held(FP_A, TrustState.VERIFIED)]
    state = text.conversation_state(ROMEO, held, [FP_A], sticky=True)
    lines = text.status_lines(ROMEO, state, held, FP_C, [Held(FP_B, TrustState.UNTRUSTED)])
    joined = "\n".join(lines)
    assert lines[0] == f"objenc: {state.sentence}"
    assert f"  {text.short_fingerprint(FP_A)}  verified" in lines  # verified first
    assert joined.index("verified") < joined.index("revoked")
    assert f"our certificate: {text.full_fingerprint(FP_C)}" in joined
    assert "our other devices:" in joined
    assert "awaiting your decision" in joined
    assert "not ready" in "\n".join(text.status_lines(None, None, [], None))
    assert "on PEP" not in joined  # said only when the plugin knows it


def test_status_says_whether_our_certificate_is_published() -> None:
    failing = Publication(PublicationStatus.FAILING, FP_C, "node-configuration", "forbidden")
    lines = text.status_lines(None, None, [], FP_C, [], failing.meaning)
    assert lines[1].startswith("objenc: on PEP: NOT published (forbidden)")
    assert "in the clear" in lines[1]


def test_fingerprints_are_grouped_for_people() -> None:
    assert text.short_fingerprint(FP_A) == "AB12 0000 0000 0000"
    assert text.full_fingerprint(FP_A).replace(" ", "").lower() == FP_A
    assert len(text.full_fingerprint(FP_A).split()) == 16


# -- notices -------------------------------------------------------------------------


def test_every_event_a_user_must_see_has_a_notice() -> None:
    must = {
        "objenc_decryption_failed",
        "objenc_bad_timestamp",
        "objenc_plaintext_refused",
        "objenc_key_changed",
        "objenc_own_device_held",
        "objenc_foreign_encryption",
        "objenc_encryption_failed",
        "objenc_device_revoked",
    }
    assert must <= set(notices.EVENTS)


def test_labels_lost_devices_and_destroyed_keys_are_said_in_words() -> None:
    """Issue 13: a label is the contact's word, quoted; a revoked device names its
    revoker; a stanza sealed to a destroyed key says it can never be read."""
    changed = notices.notice(
        "objenc_key_changed", KeyChangedEvent(ROMEO, (FP_A,), FP_B, label="phone")
    )
    assert '(a device it calls "phone")' in changed.line
    revoked = notices.notice(
        "objenc_device_revoked",
        DeviceRevokedEvent(ROMEO, FP_B, FP_A, datetime.now(UTC), label="phone"),
    )
    assert text.short_fingerprint(FP_B) in revoked.line and '("phone")' in revoked.line
    assert text.short_fingerprint(FP_A) in revoked.line and revoked.jid == ROMEO
    stanza = FakeStanza("message", **{"from": ROMEO, "to": ROMEO, "id": "x", "body": "hi"})
    gone = notices.notice(
        "objenc_decryption_failed", DecryptionFailedEvent(stanza, "key-destroyed")
    )
    assert "can never be read again" in gone.line


def test_notices_say_what_happened_and_go_to_the_conversation() -> None:
    message = FakeStanza("message", **{"from": f"{ROMEO}/phone", "to": "me@x", "id": "m1"})
    failed = notices.notice(
        "objenc_decryption_failed", DecryptionFailedEvent(message, "undecryptable")
    )
    assert failed == notices.Notice(
        f"objenc: an encrypted message from {ROMEO}/phone could not be decrypted; it is not shown",
        ROMEO,
        open=True,
        warn=True,
    )
    stamp = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    stale = notices.notice("objenc_bad_timestamp", BadTimestampEvent(message, "replay", stamp))
    assert "is a replay of one already received (stamped 2026-01-02 03:04:05 UTC)" in stale.line
    iq = FakeStanza("iq", **{"from": f"{ROMEO}/phone"})
    refused = notices.notice("objenc_plaintext_refused", iq)
    assert "refused an unencrypted iq" in refused.line
    assert (refused.jid, refused.open) == (ROMEO, False)  # no tab opened for an iq
    foreign = notices.notice(
        "objenc_foreign_encryption",
        ForeignEncryptionEvent(message, "eu.siacs.conversations.axolotl", "OMEMO"),
    )
    assert "encrypted with OMEMO (eu.siacs.conversations.axolotl)" in foreign.line
    outgoing = FakeStanza("message", to=f"{ROMEO}/phone", id="m2", body="hi", type="chat")
    unsent = notices.notice(
        "objenc_encryption_failed", EncryptionFailedEvent(outgoing, RuntimeError("no key"))
    )
    assert unsent is not None
    assert "a message to romeo@montague.net/phone was NOT sent" in unsent.line
    assert "(no key)" in unsent.line
    chat_state = FakeStanza("message", to=ROMEO, id="m3", body="", type="chat")
    refused = EncryptionFailedEvent(chat_state, RuntimeError("no key"))
    assert notices.notice("objenc_encryption_failed", refused) is None  # not one per keystroke
    request = FakeStanza("iq", to=f"{ROMEO}/phone", id="q", type="get")
    asked = notices.notice("objenc_encryption_failed", EncryptionFailedEvent(request, OSError()))
    assert asked is not None and "objenc: an iq to romeo@montague.net/phone was NOT" in asked.line


def test_key_decisions_name_the_command_to_type() -> None:
    changed = notices.notice("objenc_key_changed", KeyChangedEvent(ROMEO, (FP_A,), FP_B))
    assert f"/objenc accept {FP_B[:8]}" in changed.line
    assert f"/objenc reject {FP_B[:8]}" in changed.line
    assert text.full_fingerprint(FP_B) in changed.line
    assert text.short_fingerprint(FP_A) in changed.line
    assert (changed.jid, changed.open, changed.warn) == (ROMEO, True, True)
    own = notices.notice("objenc_own_device_held", KeyChangedEvent("me@x", (), FP_C))
    assert own.jid is None and own.level == "Warning"  # the information buffer
    assert f"/objenc accept me@x {FP_C[:8]}" in own.line


def test_every_notice_renders_from_its_events_data() -> None:
    stanza = FakeStanza("message", **{"from": ROMEO, "to": ROMEO, "id": "x", "body": "hi"})
    stanza["type"] = "chat"
    values = {
        "stanza": stanza,
        "timestamp": datetime.now(UTC),
        "old_fingerprints": (FP_A,),
        "trust": TrustState.VERIFIED,
        "found": 20,
        "maximum": 16,
        "error": RuntimeError("x"),
        "issued_at": datetime.now(UTC),
        "label": None,
        "revoker": FP_A,
    }
    for name, build in notices.EVENTS.items():
        kind = next(iter(typing.get_type_hints(build).values()))
        if dataclasses.is_dataclass(kind):
            data: Any = kind(
                **{
                    f.name: values.get(f.name, FP_B if "fingerprint" in f.name else ROMEO)
                    for f in dataclasses.fields(kind)
                }
            )
        else:
            data = stanza  # objenc_plaintext_refused carries the stanza itself
        shown = notices.notice(name, data)
        assert shown is not None and shown.line.startswith("objenc: "), name


# -- packaging and layering ------------------------------------------------------------


def test_poezio_finds_the_plugin_through_its_entry_point() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["poezio_plugins"] == {"objenc": "slixmpp_objenc.poezio.plugin"}
    assert any(dep.startswith("poezio") for dep in project["optional-dependencies"]["poezio"])
    assert (PACKAGE / "poezio" / "plugin.py").is_file()


def test_only_the_poezio_plugin_module_imports_poezio() -> None:
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {
            n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0
        }
        uses_poezio = any(name.split(".")[0] == "poezio" for name in names)
        allowed = path == PACKAGE / "poezio" / "plugin.py"
        assert allowed or not uses_poezio, f"{path.relative_to(ROOT)} imports poezio"
        if not allowed:
            assert "slixmpp_objenc.poezio.plugin" not in names, path
