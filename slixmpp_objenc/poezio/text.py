"""What the poezio plugin shows, and how it reads ``/objenc``: no poezio, no slixmpp.

Everything a user reads (conversation state, fingerprints, a notice per
event) is built here from plain data, so it is tested without a terminal.
"""

from __future__ import annotations

import shlex
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from ..core.certificates import format_fingerprint
from ..core.trust import TrustState

__all__ = [
    "HELP",
    "PREFIX",
    "SUBCOMMANDS",
    "USER_TRUST_STATES",
    "CommandError",
    "ConversationState",
    "Held",
    "Request",
    "conversation_state",
    "fingerprint_lines",
    "full_fingerprint",
    "hybrid_choice",
    "hybrid_sentence",
    "label_choice",
    "parse_command",
    "resolve",
    "short_fingerprint",
    "status_lines",
]

PREFIX: Final = "objenc: "
SHORT_GROUPS: Final = 4
"""Groups of 4 hex digits in the short form (also a prefix the commands accept)."""

USER_TRUST_STATES: Final = (
    TrustState.VERIFIED,
    TrustState.TOFU,
    TrustState.UNTRUSTED,
    TrustState.REVOKED,
)
"""The states a user may set (``unpublished`` is the directory's to set)."""

TRUST_LABELS: Final = {
    TrustState.VERIFIED: "verified",
    TrustState.TOFU: "tofu (trusted on first use, not verified)",
    TrustState.UNTRUSTED: "untrusted (held: awaiting your decision)",
    TrustState.REVOKED: "revoked (never encrypted to)",
    TrustState.UNPUBLISHED: "unpublished (pinned, no longer published: not encrypted to)",
}

HELP: Final = """\
/objenc                      in a conversation: require encryption for this contact; the state
/objenc status [jid]         encrypted or not, the certificates held and their trust, ours
/objenc off [jid]            stop requiring encryption (not once a certificate is held)
/objenc fingerprints [jid]   full fingerprints (no JID in the roster: our account's)
/objenc trust [jid] <fp> <verified|tofu|untrusted|revoked>
/objenc accept [jid] <fp>    accept a changed certificate or new device (ours: our own JID)
/objenc reject [jid] <fp>    reject it for good
/objenc verify [full jid]    the 6-character check with the contact's online client
/objenc match | mismatch     after comparing the 6 characters
/objenc hybrid [jid] <on|off|default>  post-quantum hybrid (ML-KEM-768) for this contact
/objenc revoke <fp>          revoke a lost or stolen device of our own account, for every contact
/objenc label <text|none>    name this device for contacts ("laptop"); a new key carries it
/objenc rotate               replace this device's encryption key now (one you suspect)
A fingerprint may be given by its first digits (4 or more); spaces and colons are ignored."""

_ACTIONS: Final = {
    "on": "on",
    "require": "on",
    "status": "status",
    "state": "status",
    "show": "status",
    "off": "off",
    "fingerprints": "fingerprints",
    "fingerprint": "fingerprints",
    "fp": "fingerprints",
    "trust": "trust",
    "accept": "accept",
    "reject": "reject",
    "verify": "verify",
    "match": "match",
    "mismatch": "mismatch",
    "nomatch": "mismatch",
    "hybrid": "hybrid",
    "pq": "hybrid",
    "revoke": "revoke",
    "label": "label",
    "rotate": "rotate",
    "help": "help",
}
SUBCOMMANDS: Final = tuple(a for a in dict.fromkeys(_ACTIONS.values()) if a != "on")
"""What ``/objenc`` completes and its usage lists (bare ``/objenc`` is "on")."""
_NEEDS_CONTACT: Final = frozenset(
    {"on", "off", "trust", "accept", "reject", "verify", "match", "hybrid"}
)
_OWN_DEVICE: Final = frozenset({"revoke", "label", "rotate"})
"""About this account's devices: never a contact's JID (a label may hold dots)."""
_ARGUMENTS: Final = {"trust": 2, "accept": 1, "reject": 1, "hybrid": 1, "revoke": 1}
_USAGE: Final = {
    "trust": "[jid] <fingerprint> <state>",
    "hybrid": "[jid] <on|off|default>",
    "revoke": "<fingerprint of our lost device>",
    "label": "<text> (or none)",
}
MIN_PREFIX: Final = 4


class CommandError(Exception):
    """A command the user typed cannot be carried out; the message says why."""


def short_fingerprint(fingerprint: str) -> str:
    """``AB12 CD34 EF56 7890``: enough to tell certificates apart and to type."""
    return " ".join(full_fingerprint(fingerprint).split(" ")[:SHORT_GROUPS])


def full_fingerprint(fingerprint: str) -> str:
    """All 64 digits, grouped by 4, on one line (what a verification compares)."""
    return format_fingerprint(fingerprint).replace("\n", " ")


# -- commands ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    """One ``/objenc`` command, parsed."""

    action: str
    jid: str | None
    """The JID it is about (the conversation's by default; ``None``: our own account)."""
    args: tuple[str, ...] = ()


def _looks_like_jid(token: str) -> bool:
    return any(ch in token for ch in "@./")


def parse_command(line: str, conversation: str | None) -> Request:
    """Read ``/objenc``'s arguments; ``conversation`` is the JID of the tab it was
    typed in (``None`` outside a one-to-one conversation)."""
    words = line.strip().split(None, 1)
    if words and _ACTIONS.get(words[0].lower()) == "label":  # the rest, as typed (quotes too)
        if len(words) < 2:
            raise CommandError(f"usage: /objenc label {_USAGE['label']}")
        return Request("label", None, (words[1].strip(),))
    try:
        tokens = shlex.split(line)
    except ValueError as exc:
        raise CommandError(f"cannot read the command: {exc}") from None
    if not tokens:
        return Request("on" if conversation else "status", conversation)
    action = _ACTIONS.get(tokens[0].lower())
    if action is None:
        raise CommandError(f"unknown subcommand {tokens[0]!r}; /objenc help lists them")
    rest = tokens[1:]
    jid = None if action in _OWN_DEVICE else conversation
    if rest and _looks_like_jid(rest[0]) and action not in _OWN_DEVICE:
        jid, rest = rest[0], rest[1:]
    if action in _NEEDS_CONTACT and jid is None:
        raise CommandError(f"/objenc {action} needs a JID here (or type it in a conversation)")
    wanted = _ARGUMENTS.get(action, 0)
    if len(rest) < wanted:
        usage = _USAGE.get(action, "[jid] <fingerprint>")
        raise CommandError(f"usage: /objenc {action} {usage}")
    if len(rest) > wanted:
        raise CommandError(f"/objenc {action}: unexpected {' '.join(rest[wanted:])!r}")
    return Request(action, jid, tuple(rest))


def hybrid_choice(word: str) -> bool | None:
    """``on``/``off``, or ``default`` (``None``: the account's ``hybrid`` setting)."""
    choices = {"on": True, "yes": True, "off": False, "no": False, "default": None}
    try:
        return choices[word.lower()]
    except KeyError:
        raise CommandError(f"/objenc hybrid takes on, off or default, not {word!r}") from None


def label_choice(typed: str) -> str | None:
    """The label typed (``none`` or ``-``: no label); the plugin cleans it."""
    return None if typed.lower() in {"none", "-", '""', "''"} else typed


def trust_state(word: str) -> TrustState:
    """A state the user may set, by name."""
    for state in USER_TRUST_STATES:
        if state.value == word.lower():
            return state
    names = ", ".join(s.value for s in USER_TRUST_STATES)
    raise CommandError(f"unknown trust state {word!r} (one of: {names})")


@dataclass(frozen=True, slots=True)
class Held:
    """A certificate held for a JID, as the plugin shows it."""

    fingerprint: str
    trust: TrustState
    label: str | None = None
    """The device's label ("phone"), cleaned, if it has one."""


def resolve(held: Sequence[Held], jid: str, typed: str) -> Held:
    """The one certificate of ``jid`` whose fingerprint starts with what was typed."""
    prefix = "".join(ch for ch in typed if ch != ":" and not ch.isspace()).lower()
    if any(ch not in string.hexdigits for ch in prefix) or not prefix:
        raise CommandError(f"{typed!r} is not a fingerprint (hexadecimal digits)")
    if len(prefix) < MIN_PREFIX:
        raise CommandError(f"give at least {MIN_PREFIX} digits of the fingerprint")
    if not held:
        raise CommandError(f"no certificate is held for {jid}")
    matches = [h for h in held if h.fingerprint.startswith(prefix)]
    if not matches:
        raise CommandError(f"no certificate held for {jid} starts with {typed}")
    if len(matches) > 1:
        raise CommandError(
            f"{typed} matches {len(matches)} certificates of {jid}: type more digits"
        )
    return matches[0]


# -- state ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConversationState:
    """Whether and how stanzas to a contact are encrypted now."""

    word: str
    """``encrypted``, ``held``, ``required`` or ``plaintext``."""
    badge: str
    """What poezio's information bar shows (empty for plaintext)."""
    sentence: str


def conversation_state(
    jid: str, held: Sequence[Held], usable: Sequence[str], sticky: bool
) -> ConversationState:
    """``usable``: fingerprints we encrypt to now; ``sticky``: plaintext to the JID
    is refused (a certificate was held, or encryption required)."""
    pending = [h for h in held if h.trust is TrustState.UNTRUSTED]
    if pending:
        fps = ", ".join(short_fingerprint(h.fingerprint) for h in pending)
        return ConversationState(
            "held",
            "objenc:held",
            f"held: {jid} presents a certificate awaiting your decision ({fps}); "
            "what you send them waits until you /objenc accept or /objenc reject it",
        )
    if usable:
        verified = {h.fingerprint for h in held if h.trust is TrustState.VERIFIED}
        all_verified = all(fp in verified for fp in usable)
        count = f"{len(usable)} certificate{'s' if len(usable) != 1 else ''}"
        return ConversationState(
            "encrypted",
            "objenc:verified" if all_verified else "objenc",
            f"encrypted: messages, iqs and directed presence to {jid} are end-to-end "
            f"encrypted to {count}" + ("" if all_verified else " (not verified: /objenc verify)"),
        )
    if sticky:
        return ConversationState(
            "required",
            "objenc:required",
            f"encryption required: no usable certificate for {jid} yet, so nothing is "
            "sent to them until one is found (fail closed)",
        )
    return ConversationState(
        "plaintext",
        "",
        f"NOT encrypted: no certificate is known for {jid} (their client may not use "
        "Object Encryption); /objenc requires encryption, so nothing goes in the clear",
    )


def hybrid_sentence(jid: str, on: bool) -> str:
    """Whether what goes to ``jid`` is also protected against a future quantum computer."""
    if on:
        return (
            f"post-quantum hybrid on for {jid}: ML-KEM-768 with X25519; their devices "
            "without an ML-KEM key are left out"
        )
    return f"post-quantum hybrid off for {jid} (X25519 only): /objenc hybrid on"


def fingerprint_lines(held: Sequence[Held], *, full: bool) -> list[str]:
    """One line per certificate: fingerprint and trust state."""
    show = full_fingerprint if full else short_fingerprint
    order = {state: i for i, state in enumerate(TRUST_LABELS)}
    ordered = sorted(held, key=lambda h: (order.get(h.trust, 99), h.fingerprint))
    return [
        f"  {show(h.fingerprint)}  {TRUST_LABELS.get(h.trust, h.trust.value)}"
        + (f"  ({h.label})" if h.label else "")
        for h in ordered
    ]


def status_lines(
    jid: str | None,
    state: ConversationState | None,
    held: Sequence[Held],
    own_fingerprint: str | None,
    own_devices: Sequence[Held] = (),
    publication: str = "",
    hybrid: bool | None = None,
) -> list[str]:
    """What ``/objenc status`` shows: the contact's state and certificates (when
    ``jid`` is given), whether stanzas to them use the post-quantum hybrid, our
    certificate, whether it is published (``publication``: ``Publication.meaning``)
    and our other devices."""
    lines = []
    if jid is not None and state is not None:
        lines.append(f"{PREFIX}{state.sentence}")
        if hybrid is not None:
            lines.append(f"{PREFIX}{hybrid_sentence(jid, hybrid)}")
        if held:
            lines.append(f"{PREFIX}certificates held for {jid}:")
            lines.extend(fingerprint_lines(held, full=False))
    if own_fingerprint is not None:
        lines.append(f"{PREFIX}our certificate: {full_fingerprint(own_fingerprint)}")
        if publication:
            lines.append(f"{PREFIX}on PEP: {publication}")
    else:
        lines.append(f"{PREFIX}our key is not ready yet (made on first start)")
    if own_devices:
        lines.append(f"{PREFIX}our other devices:")
        lines.extend(fingerprint_lines(own_devices, full=False))
    elif jid is None:  # the account's own status: say there are none
        lines.append(f"{PREFIX}our other devices: none known")
    return lines
