"""A notice for every ObjEnc event a poezio user must see: what it says, and where.

Pure (no poezio): :func:`notice` turns an event's data into a :class:`Notice`,
which the plugin shows in the conversation with the JID it names (opening it
for a message that was not shown), or in poezio's information buffer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from ..events import (
    BadTimestampEvent,
    DecryptionFailedEvent,
    DeviceRevokedEvent,
    DirectoryLimitEvent,
    EncryptionFailedEvent,
    ForeignEncryptionEvent,
    KeyChangedEvent,
    KeyUnpublishedEvent,
    PeerRejectedEvent,
    PublishFailedEvent,
    SasFailedEvent,
    UnsupportedEvent,
)
from .text import PREFIX, full_fingerprint, short_fingerprint

__all__ = ["EVENTS", "Notice", "notice"]


@dataclass(frozen=True, slots=True)
class Notice:
    """One line for the user."""

    line: str
    jid: str | None = None
    """The conversation it belongs in; ``None``: poezio's information buffer."""
    open: bool = False
    """Open that conversation if it is not (a message was not shown)."""
    warn: bool = False
    """In the error colour; also in the information buffer if the conversation
    is not the one in view."""
    level: str = "Info"
    """The information buffer's level, for notices without a conversation."""


def _bare(jid: Any) -> str:
    bare = getattr(jid, "bare", None)
    return str(bare if bare is not None else jid).split("/", 1)[0]


_DECRYPTION_FAILED: Final = {
    "undecryptable": "could not be decrypted",
    "forged": "was refused: its encrypted content names other addresses than the envelope",
    "downgrade": (
        "was refused: it came without sender authentication from a contact whose "
        "devices prove who writes (a downgrade, or a legacy device of theirs)"
    ),
    "key-destroyed": (
        "was sealed to one of our keys destroyed after its retention (forward "
        "secrecy): it can never be read again"
    ),
    "passphrase": (
        "could not be decrypted, and a passphrase is set for this contact: theirs may "
        "differ, or they did not use it"
    ),
}
_STALE: Final = {
    "old": "is too old",
    "future": "is dated in the future",
    "decreasing": "is dated before one already received from that client",
    "replay": "is a replay of one already received",
}


def _stamp(timestamp: datetime) -> str:
    return timestamp.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def decryption_failed(event: DecryptionFailedEvent) -> Notice:
    kind, sender = event.stanza.name, event.stanza["from"]
    what = _DECRYPTION_FAILED.get(event.reason, f"was refused ({event.reason})")
    line = f"{PREFIX}an encrypted {kind} from {sender} {what}; it is not shown"
    return Notice(line, _bare(sender), open=kind == "message", warn=True)


def bad_timestamp(event: BadTimestampEvent) -> Notice:
    kind, sender = event.stanza.name, event.stanza["from"]
    what = _STALE.get(event.reason, f"has a bad timestamp ({event.reason})")
    line = (
        f"{PREFIX}an encrypted {kind} from {sender} {what} "
        f"(stamped {_stamp(event.timestamp)}); it is not shown"
    )
    return Notice(line, _bare(sender), open=kind == "message", warn=True)


def plaintext_refused(stanza: Any) -> Notice:
    kind, sender = stanza.name, stanza["from"]
    line = (
        f"{PREFIX}refused an unencrypted {kind} from {sender}: they use end-to-end "
        "encryption, so plaintext in their name is not shown (a client of theirs "
        "without it, or someone injecting it)"
    )
    return Notice(line, _bare(sender), open=kind == "message", warn=True)


def key_changed(event: KeyChangedEvent) -> Notice:
    before = ", ".join(short_fingerprint(fp) for fp in event.old_fingerprints) or "none"
    new = event.new_fingerprint
    line = (
        f"{PREFIX}{event.jid} presents a new certificate {full_fingerprint(new)}"
        f"{_labelled(event.label)} "
        f"(held before: {before}). What you send them waits for your decision: check it "
        f"with them (/objenc verify, or compare fingerprints), then /objenc accept "
        f"{new[:8]} or /objenc reject {new[:8]}"
    )
    return Notice(line, event.jid, open=True, warn=True)


def own_device_held(event: KeyChangedEvent) -> Notice:
    own, new = event.jid, event.new_fingerprint
    line = (
        f"{PREFIX}a new device appeared on your account {own}: certificate "
        f"{full_fingerprint(new)}{_labelled(event.label)}. "
        "Nothing is encrypted to it until you accept it: "
        f"/objenc accept {own} {new[:8]}. Not yours? /objenc reject {own} {new[:8]}, "
        "and change your password"
    )
    return Notice(line, level="Warning")


def _labelled(label: str | None) -> str:
    """' (a device it calls "phone")': the label is the sender's word, so it is
    quoted as such; cleaned already (printable, short)."""
    return f' (a device it calls "{label}")' if label else ""


def foreign_encryption(event: ForeignEncryptionEvent) -> Notice:
    sender = event.stanza["from"]
    name = f"{event.name} ({event.namespace})" if event.name else event.namespace
    line = (
        f"{PREFIX}{sender} sent a message encrypted with {name}, which no loaded "
        "plugin reads; it is not shown (its fallback text is not the message)"
    )
    return Notice(line, _bare(sender), open=True, warn=True)


def encryption_failed(event: EncryptionFailedEvent) -> Notice | None:
    """Only for what the user wrote or asked: a message with a body, an iq request.
    Chat states, receipts and presence that could not go are not worth a line each."""
    kind, recipient = event.stanza.name, event.stanza["to"]
    wrote = kind == "message" and bool(event.stanza["body"])
    asked = kind == "iq" and event.stanza["type"] in ("get", "set")
    if not (wrote or asked):
        return None
    article = "an" if kind == "iq" else "a"
    line = (
        f"{PREFIX}{article} {kind} to {recipient} was NOT sent: it had to be encrypted and "
        f"could not be ({event.error})"
    )
    return Notice(line, _bare(recipient), warn=True, level="Warning")


def sas_failed(event: SasFailedEvent) -> Notice:
    line = f"{PREFIX}the verification with {event.jid} stopped: {event.reason}"
    return Notice(line, _bare(event.jid), warn=True, level="Warning")


def rejected(event: PeerRejectedEvent) -> Notice:
    failed = event.condition == "decryption-failed"
    why = "could not decrypt" if failed else "refused the timestamp of"
    line = f"{PREFIX}{event.jid} {why} something we sent ({event.condition})"
    return Notice(line, _bare(event.jid), warn=True)


def unsupported(event: UnsupportedEvent) -> Notice:
    line = (
        f"{PREFIX}{event.jid}'s client does not support Object Encryption (it answered "
        "service-unavailable): it cannot read what we encrypt to it"
    )
    return Notice(line, _bare(event.jid), warn=True)


def key_unpublished(event: KeyUnpublishedEvent) -> Notice:
    line = (
        f"{PREFIX}{event.jid} no longer publishes its verified certificate "
        f"{short_fingerprint(event.fingerprint)}; it is still used. If they confirm that "
        f"device is gone: /objenc trust {event.jid} {event.fingerprint[:8]} revoked"
    )
    return Notice(line, event.jid)


def device_added(event: KeyChangedEvent) -> Notice:
    line = f"{PREFIX}{event.jid} added a device, trusted at once: "
    return Notice(line + short_fingerprint(event.new_fingerprint), event.jid)


def own_device_added(event: KeyChangedEvent) -> Notice:
    line = (
        f"{PREFIX}a new device of your account was trusted at once "
        f"(trust_own_new_devices): {short_fingerprint(event.new_fingerprint)}"
    )
    return Notice(line, level="Warning")


def directory_limit(event: DirectoryLimitEvent) -> Notice:
    line = (
        f"{PREFIX}{event.jid} publishes more than allowed ({event.limit}: "
        f"{event.found} > {event.maximum}); the rest is ignored"
    )
    return Notice(line, event.jid)


def device_revoked(event: DeviceRevokedEvent) -> Notice:
    name = f' ("{event.label}")' if event.label else ""
    line = (
        f"{PREFIX}{event.jid}'s device {short_fingerprint(event.fingerprint)}{name} was "
        f"revoked by its device {short_fingerprint(event.revoker)} (lost or stolen): "
        "nothing is encrypted to it any more, and nothing from it is shown"
    )
    return Notice(line, event.jid, warn=True)


def publish_failed(event: PublishFailedEvent) -> Notice:
    detail = f": {event.text}" if event.text else ""
    line = (
        f"{PREFIX}our certificate could not be published ({event.condition}{detail}); "
        "contacts cannot find it, so they cannot encrypt to us"
    )
    return Notice(line, level="Error")


EVENTS: Final[dict[str, Callable[[Any], Notice | None]]] = {
    "objenc_decryption_failed": decryption_failed,
    "objenc_bad_timestamp": bad_timestamp,
    "objenc_plaintext_refused": plaintext_refused,
    "objenc_key_changed": key_changed,
    "objenc_own_device_held": own_device_held,
    "objenc_foreign_encryption": foreign_encryption,
    "objenc_encryption_failed": encryption_failed,
    "objenc_sas_failed": sas_failed,
    "objenc_rejected": rejected,
    "objenc_unsupported": unsupported,
    "objenc_key_unpublished": key_unpublished,
    "objenc_device_added": device_added,
    "objenc_own_device_added": own_device_added,
    "objenc_directory_limit": directory_limit,
    "objenc_publish_failed": publish_failed,
    "objenc_device_revoked": device_revoked,
}
"""Every event shown as a notice (``objenc_sas`` is the plugin's: it keeps state)."""


def notice(event_name: str, data: Any) -> Notice | None:
    """The notice for one event (``None``: nothing worth showing)."""
    return EVENTS[event_name](data)


def sas(peer: str, code: str, *, jid: str = "") -> str:
    """The 6 characters to compare; ``jid``: what the commands must name (outside
    the peer's conversation, e.g. for another device of ours)."""
    target = f" {jid}" if jid else ""
    return (
        f"{PREFIX}verification with {peer}: both screens show {code}. Same on theirs? "
        f"/objenc match{target}. Different? /objenc mismatch{target}"
    )


def verified(jid: str, fingerprints: Sequence[str]) -> str:
    fps = ", ".join(short_fingerprint(fp) for fp in fingerprints) or "none"
    return f"{PREFIX}{jid} is verified: {fps}"


def not_verified(jid: str, fingerprints: Sequence[str]) -> str:
    fps = ", ".join(short_fingerprint(fp) for fp in fingerprints) or "none"
    return (
        f"{PREFIX}the strings differed: {jid}'s certificates {fps} are now untrusted and "
        "what you send them is held; someone may be in the middle"
    )
