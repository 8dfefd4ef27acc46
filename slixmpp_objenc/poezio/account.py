"""``/objenc hybrid``, ``revoke``, ``label`` and ``rotate``: the post-quantum
switch per contact and this account's devices, in poezio.

Each command calls one method of the ObjEnc plugin's public API
(``set_hybrid``, ``revoke_device``, ``set_device_label``, ``rotate_keys``) and
says what it did in words. No poezio import here: the poezio plugin hands in
how to say a line and what it holds, so this is tested without a terminal.

Not offered: setting a passphrase (``set_passphrase``). poezio's command line
has no hidden input, so a passphrase typed there would be drawn on screen and
kept in the input history; applications with a hidden prompt call the API.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..core.certificates import clean_label
from . import text
from .text import CommandError, Held, Request

__all__ = ["OwnAccount"]

Say = Callable[[Sequence[str], Any], None]
Action = Callable[[Request, Any], Awaitable[None]]


class OwnAccount:
    """The commands about the post-quantum hybrid and our own devices."""

    def __init__(
        self,
        objenc: Any,
        own_jid: Callable[[], str],
        held: Callable[[str], list[Held]],
        say: Say,
    ) -> None:
        self._objenc = objenc
        self._own_jid = own_jid
        self._held = held
        self._say = say

    def actions(self) -> dict[str, Action]:
        """The ``/objenc`` subcommands handled here, by parsed action name."""
        return {
            "hybrid": self.hybrid,
            "revoke": self.revoke,
            "label": self.label,
            "rotate": self.rotate,
        }

    async def hybrid(self, request: Request, tab: Any) -> None:
        """``/objenc hybrid [jid] on|off|default``: ``set_hybrid`` for the contact."""
        bare = request.jid or ""
        if bare.rstrip(".") == self._own_jid():  # a final dot is the same account
            raise CommandError("the hybrid is chosen per contact (our own devices follow it)")
        choice = text.hybrid_choice(request.args[0])
        await self._objenc.set_hybrid(bare, choice)
        on = bool(self._objenc.uses_hybrid(bare))
        lines = [text.PREFIX + text.hybrid_sentence(bare, on)]
        if choice is None:
            lines.append(f"{text.PREFIX}(the account's setting, hybrid = {on})")
        self._say(lines, tab)

    async def revoke(self, request: Request, tab: Any) -> None:
        """``/objenc revoke <fp>``: ``revoke_device`` for a device of our account."""
        own = self._own_jid()
        held = text.resolve(self._held(own), own, request.args[0])
        fp = text.short_fingerprint(held.fingerprint)
        await self._objenc.revoke_device(held.fingerprint)
        self._say(
            [
                f"{text.PREFIX}revoked our device {fp}"
                + (f" ({held.label})" if held.label else "")
                + ": published, signed by this device; contacts who trust this device "
                "stop encrypting to it, and it opens nothing sent from now on"
            ],
            tab,
        )

    async def label(self, request: Request, tab: Any) -> None:
        """``/objenc label <text>|none``: ``set_device_label`` (a new key carries it)."""
        wanted = text.label_choice(request.args[0])
        await self._objenc.set_device_label(wanted)
        shown = clean_label(wanted)
        if shown is None:
            line = "this device has no label now; contacts see its fingerprint only"
        else:
            line = f"this device is now labelled {shown!r} for contacts (in a new certificate)"
        self._say([text.PREFIX + line], tab)

    async def rotate(self, request: Request, tab: Any) -> None:
        """``/objenc rotate``: ``rotate_keys(force=True)``, a key you suspect."""
        outcome = await self._objenc.rotate_keys(force=True)
        if outcome is None or outcome.rotated is None:
            raise CommandError("no new key was made (our keys are not ready yet)")
        line = (
            f"new encryption key {text.short_fingerprint(outcome.rotated)} published; "
            f"the one it replaces is kept only to open what was already sent, then destroyed"
        )
        self._say([text.PREFIX + line], tab)
