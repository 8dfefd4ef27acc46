"""``/objenc hybrid``, ``revoke``, ``label`` and ``rotate`` without poezio: how
they are read, and which call of the ObjEnc API each one makes. (The API calls
themselves are tested in ``tests/stanza/test_auth_{hybrid,revocation,rotation}.py``
and ``tests/unit/test_device_labels.py``; ``/objenc hybrid on`` runs in poezio
in ``tests/integration/test_poezio.py``.)"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from slixmpp_objenc.core.trust import TrustState
from slixmpp_objenc.own_device import RotationOutcome
from slixmpp_objenc.poezio import text
from slixmpp_objenc.poezio.account import OwnAccount
from slixmpp_objenc.poezio.text import CommandError, Held, Request, parse_command

OURS = "juliet@capulet.net"
ROMEO = "romeo@montague.net"
PHONE = "ab12" + "0" * 60
TABLET = "cd34" + "1" * 60
NEW_KEY = "ef56" + "2" * 60


class Api:
    """The four ObjEnc methods the commands call, recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.hybrid: dict[str, bool | None] = {}
        self.default_hybrid = False
        self.outcome: RotationOutcome | None = RotationOutcome(
            NEW_KEY, (), (), datetime(2026, 12, 1, tzinfo=UTC)
        )

    async def set_hybrid(self, jid: str, on: bool | None) -> None:
        self.calls.append(("set_hybrid", (jid, on)))
        self.hybrid[jid] = on

    def uses_hybrid(self, jid: str) -> bool:
        on = self.hybrid.get(jid)
        return self.default_hybrid if on is None else on

    async def revoke_device(self, fingerprint: str) -> None:
        self.calls.append(("revoke_device", fingerprint))

    async def set_device_label(self, label: str | None) -> None:
        self.calls.append(("set_device_label", label))

    async def rotate_keys(self, *, force: bool = False) -> RotationOutcome | None:
        self.calls.append(("rotate_keys", force))
        return self.outcome


class Screen:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, lines: Sequence[str], tab: Any) -> None:
        self.lines.extend(lines)


def account(api: Api) -> tuple[OwnAccount, Screen]:
    screen = Screen()
    own = [Held(PHONE, TrustState.VERIFIED, "phone"), Held(TABLET, TrustState.TOFU)]

    def held(jid: str) -> list[Held]:
        return own if jid == OURS else []

    return OwnAccount(api, lambda: OURS, held, screen), screen


def test_the_new_subcommands_are_read() -> None:
    assert parse_command("hybrid on", ROMEO) == Request("hybrid", ROMEO, ("on",))
    assert parse_command("pq romeo@montague.net off", None) == Request("hybrid", ROMEO, ("off",))
    # about our own account: the conversation's JID is never taken for it
    assert parse_command("revoke ab12", ROMEO) == Request("revoke", None, ("ab12",))
    assert parse_command("rotate", ROMEO) == Request("rotate", None)
    # a label is the rest of the line, dots and all (never read as a JID)
    assert parse_command("label  my laptop.home ", ROMEO) == Request(
        "label", None, ("my laptop.home",)
    )
    assert parse_command("label Juliet's phone", None).args == ("Juliet's phone",)
    for word in ("hybrid", "revoke", "label", "rotate"):
        assert word in text.HELP


@pytest.mark.parametrize(
    ("line", "conversation", "message"),
    [
        ("hybrid", ROMEO, r"usage: /objenc hybrid \[jid\] <on\|off\|default>"),
        ("hybrid on", None, "needs a JID"),
        ("revoke", None, "usage: /objenc revoke"),
        ("revoke romeo@montague.net ab12", None, "unexpected"),
        ("label", None, "usage: /objenc label"),
        ("rotate now", None, "unexpected"),
    ],
)
def test_bad_new_commands_say_why(line: str, conversation: str | None, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        parse_command(line, conversation)


async def test_hybrid_sets_the_contacts_switch_and_says_what_it_means() -> None:
    api = Api()
    commands, screen = account(api)
    await commands.hybrid(Request("hybrid", ROMEO, ("ON",)), None)
    assert api.calls == [("set_hybrid", (ROMEO, True))]
    assert "post-quantum hybrid on for romeo@montague.net" in screen.lines[-1]
    assert "without an ML-KEM key are left out" in screen.lines[-1]
    await commands.hybrid(Request("hybrid", ROMEO, ("default",)), None)
    assert api.calls[-1] == ("set_hybrid", (ROMEO, None))
    assert "hybrid off" in screen.lines[-2] and "hybrid = False" in screen.lines[-1]
    with pytest.raises(CommandError, match="on, off or default"):
        await commands.hybrid(Request("hybrid", ROMEO, ("maybe",)), None)
    with pytest.raises(CommandError, match="per contact"):
        await commands.hybrid(Request("hybrid", OURS, ("on",)), None)
    assert len(api.calls) == 2  # nothing set by a refused command


async def test_revoke_names_one_device_of_our_own_account() -> None:
    api = Api()
    commands, screen = account(api)
    await commands.revoke(Request("revoke", None, ("AB12",)), None)
    assert api.calls == [("revoke_device", PHONE)]
    assert "revoked our device AB12 0000 0000 0000 (phone)" in screen.lines[-1]
    with pytest.raises(CommandError, match="no certificate held"):
        await commands.revoke(Request("revoke", None, ("9999",)), None)
    with pytest.raises(CommandError, match="at least 4 digits"):
        await commands.revoke(Request("revoke", None, ("ab",)), None)
    assert len(api.calls) == 1


async def test_label_is_cleaned_as_contacts_will_see_it_and_none_clears_it() -> None:
    api = Api()
    commands, screen = account(api)
    await commands.label(Request("label", None, ('my "laptop"\x1b[31m',)), None)
    assert api.calls == [("set_device_label", 'my "laptop"\x1b[31m')]  # the API cleans
    assert "labelled 'my laptop [31m'" in screen.lines[-1]  # quotes and escapes gone
    await commands.label(Request("label", None, ("none",)), None)
    assert api.calls[-1] == ("set_device_label", None)
    assert "no label now" in screen.lines[-1]


async def test_rotate_forces_a_new_key_and_says_so() -> None:
    api = Api()
    commands, screen = account(api)
    await commands.rotate(Request("rotate", None), None)
    assert api.calls == [("rotate_keys", True)]
    assert "new encryption key EF56 2222 2222 2222 published" in screen.lines[-1]
    api.outcome = None
    with pytest.raises(CommandError, match="not ready"):
        await commands.rotate(Request("rotate", None), None)


def test_status_says_whether_the_hybrid_is_on() -> None:
    state = text.conversation_state(ROMEO, [], [], False)
    lines = text.status_lines(ROMEO, state, [], None, hybrid=True)
    assert any("post-quantum hybrid on for romeo@montague.net" in line for line in lines)
    lines = text.status_lines(ROMEO, state, [], None, hybrid=False)
    assert any("hybrid off for romeo@montague.net" in line for line in lines)
    assert not any("hybrid" in line for line in text.status_lines(None, None, [], None))
