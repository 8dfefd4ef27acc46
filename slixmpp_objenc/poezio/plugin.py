"""``/load objenc`` in poezio: the user interface of Object Encryption.

The encryption itself stays with the :class:`~slixmpp_objenc.ObjEnc` slixmpp
plugin, registered on poezio's client here if it is not already. It seals
every one-to-one message, iq and directed presence in slixmpp's own filters
and opens what arrives before poezio's handlers run. poezio's end-to-end
interface (:class:`poezio.plugin_e2ee.E2EEPlugin`, 0.18) assumes something
else, so it is bridged:

* **Sending.** The interface encrypts in an ``out`` filter of its own, only
  messages, only in tabs where ``/<name>`` toggled encryption on, and then
  strips every element it does not know (chat states, receipts,
  corrections...) from the message. Here that filter is removed right after
  the interface installs it (and :meth:`Plugin.encrypt` is a no-op): ObjEnc
  decides for every stanza, by the certificates it holds, and fails closed.
  There is no per-tab toggle: ``/objenc`` *requires* encryption for the
  contact (``require_encryption``), and there is no "off" once a certificate
  is held.
* **Receiving.** The interface decrypts only messages carrying its XEP-0380
  element, in poezio's ``conversation_msg`` event. ObjEnc has opened (or
  dropped) every envelope before poezio sees the stanza, so poezio gets the
  plaintext message and the interface's decrypt hook never runs; it only runs
  for a message that still carries our element (one ObjEnc did not open), and
  then replaces the fallback text with a notice.
* **Trust.** The interface's ``/objenc_<state> <fingerprint>`` commands and
  ``/objenc_fingerprint`` map to ObjEnc's trust states (``verified``,
  ``tofu``, ``untrusted``, ``revoked``); a fingerprint may be given by its
  first digits. Key-change decisions, the 6-character verification, and
  notices for ObjEnc's events (which the interface has no notion of) are added
  here: the interface offers no way to report a refused or undecryptable
  stanza, so each event becomes a line in the conversation.
* **Unloading** removes the commands and notices, not the encryption:
  ObjEnc stays registered until poezio exits, so ``/unload`` never makes a
  contact's messages go out in the clear.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from poezio.core.structs import Completion
from poezio.plugin_e2ee import E2EEPlugin
from poezio.roster import roster
from poezio.tabs import (
    ChatTab,
    ConversationTab,
    DynamicConversationTab,
    OneToOneTab,
    StaticConversationTab,
    Tab,
)
from poezio.theming import dump_tuple, get_theme
from poezio.ui.types import InfoMessage
from poezio.windows import Input
from slixmpp import JID, InvalidJID, Message

import slixmpp_objenc

from ..core.constants import NS_OBJENC
from ..core.trust import TrustState
from ..events import EncryptionFailedEvent, SasEvent
from ..keyring import Keyring
from ..store import PeerRecord
from . import notices, text
from .account import OwnAccount
from .notices import Notice
from .text import CommandError, Held, Request

__all__ = ["Plugin"]

log = logging.getLogger(__name__)

DISCOVERY_TIMEOUT = 10.0
READY_TIMEOUT = 60.0
NACK_TRIES = 30
NOT_OPENED = "[objenc: this message is encrypted and could not be opened here]"


class Plugin(E2EEPlugin):
    """poezio's E2EE interface in front of the ObjEnc slixmpp plugin."""

    encryption_name = "Object Encryption"
    encryption_short_name = "objenc"
    eme_ns = NS_OBJENC
    stanza_encryption = True
    replace_body_with_eme = False
    supported_tab_types = (DynamicConversationTab, StaticConversationTab)
    trust_states = {  # noqa: RUF012 - the interface's own class attribute
        "accepted": {TrustState.VERIFIED.value, TrustState.TOFU.value},
        "rejected": {TrustState.UNTRUSTED.value, TrustState.REVOKED.value},
    }
    default_config = {"objenc": {"data_dir": ""}}  # noqa: RUF012 - poezio's class attribute

    # -- lifecycle ---------------------------------------------------------

    def init(self) -> None:
        self.objenc = self._load_objenc()
        self._sas: dict[str, SasEvent] = {}
        own = self.core.xmpp.boundjid
        self._account = OwnAccount(self.objenc, lambda: str(own.bare), self._held, self._say)
        super().init()
        # Encryption is ObjEnc's, in slixmpp's filters: the interface's own 'out'
        # filter would strip what it does not know from every message.
        xmpp: Any = self.core.xmpp
        xmpp.del_filter("out", self._encrypt_wrapper)
        for tab_type in self.supported_tab_types:  # replaced by the global /objenc
            self.api.del_tab_command(tab_type, self.encryption_short_name)
        self.api.add_command(
            "objenc",
            self._command,
            usage="[" + "|".join(text.SUBCOMMANDS) + "]",
            short="Object Encryption: state, trust, verification",
            help=text.HELP,
            completion=self._completion,
        )
        for state in self._all_trust_states:  # the interface's global ones ignore the JID
            name = f"{self.encryption_short_name}_{state}"
            self.api.del_command(name)
            self.api.add_command(
                name,
                self._global_trust_command(state),
                usage="<jid> <fingerprint>",
                short=f"Set the objenc trust of a JID's certificate to {state}.",
                help=f"Set the objenc trust of a JID's certificate to {state}.",
            )
        self._handlers: list[tuple[str, Callable[[Any], Any]]] = [
            (event, self._shows(event)) for event in notices.EVENTS
        ]
        self._handlers.append(("objenc_sas", self._on_sas))
        for event, handler in self._handlers:
            self.core.xmpp.add_event_handler(event, handler)

    def _load_objenc(self) -> Any:
        xmpp: Any = self.core.xmpp
        plugin = xmpp.plugin.get("objenc", None)
        if plugin is None:
            pconfig: dict[str, Any] = {}
            data_dir = str(self.config.get("data_dir", "") or "")
            if data_dir:
                pconfig["data_dir"] = os.path.expanduser(data_dir)
            xmpp.register_plugin("objenc", module=slixmpp_objenc, pconfig=pconfig)
            plugin = xmpp.plugin["objenc"]
        return plugin

    def cleanup(self) -> None:
        for event, handler in self._handlers:
            self.core.xmpp.del_event_handler(event, handler)
        super().cleanup()

    # -- the interface's hooks ---------------------------------------------

    async def _encrypt_wrapper(self, stanza: Any) -> Any:
        return stanza  # never installed (see init); ObjEnc seals in slixmpp's filters

    async def encrypt(self, message: Message, jids: Any, tab: Any) -> None:
        """Nothing to do: ObjEnc encrypts every stanza in slixmpp's filters."""

    async def decrypt(self, message: Message, jid: JID | None, tab: Any) -> None:
        """Only reached for a message carrying our XEP-0380 element. One that still
        holds an envelope was not opened by ObjEnc (it opens or drops every one it
        receives): its body is the fallback text, not the message."""
        incoming = message["from"].bare != self.core.xmpp.boundjid.bare
        if incoming and message.xml.find(f"{{{NS_OBJENC}}}e2e") is not None:
            message["body"] = NOT_OPENED

    def _display_encryption_status(self, jid_s: str) -> str:
        try:
            bare = JID(jid_s).bare
        except InvalidJID:
            return ""
        if not bare or bare == self.core.xmpp.boundjid.bare:
            return ""
        badge = self._state(bare).badge
        return f" {badge}" if badge else ""

    async def get_fingerprints(self, jid: JID) -> list[tuple[str, bool]]:
        bare = JID(jid).bare
        own = bare == self.core.xmpp.boundjid.bare
        fingerprints = [(h.fingerprint, own) for h in self._held(bare)]
        if own and self._own_fingerprint():
            fingerprints.insert(0, (self._own_fingerprint() or "", True))
        return fingerprints

    async def _show_fingerprints(self, jid: JID) -> None:
        bare = JID(jid).bare
        await self._run(Request("fingerprints", bare), self.api.current_tab())

    def store_trust(self, jid: JID, state: str, fingerprint: str) -> None:
        """The interface's ``/objenc_<state> <fingerprint>``: ObjEnc's trust state."""
        request = Request("trust", JID(jid).bare, (fingerprint, state))
        self.core.register_task(self._run(request, self.api.current_tab()))

    def fetch_trust(self, jid: JID, fingerprint: str) -> str:
        record = self.objenc.keyring.record(JID(jid).bare, fingerprint)
        return "" if record is None else str(record.trust.value)

    # -- reading the key ring ----------------------------------------------

    def _held(self, bare: str) -> list[Held]:
        return [_held(self.objenc.keyring, r) for r in self.objenc.keyring.records(bare)]

    def _state(self, bare: str) -> text.ConversationState:
        keyring = self.objenc.keyring
        usable = [c.fingerprint for c in keyring.usable(bare)]
        return text.conversation_state(bare, self._held(bare), usable, keyring.sticky(bare))

    def _own_fingerprint(self) -> str | None:
        """This device's fingerprint (its identity's), once our keys are loaded."""
        keys, identity = self.objenc.keyring.device.keys, self.objenc.keyring.identity
        return str((keys or identity).fingerprint) if keys or identity else None

    def _status(self, bare: str | None) -> list[str]:
        own = self.core.xmpp.boundjid.bare
        state = None if bare is None else self._state(bare)
        held = [] if bare is None else self._held(bare)
        ours, published = self._own_fingerprint(), self.objenc.publication.meaning
        hybrid = None if bare is None else self.objenc.uses_hybrid(bare)
        return text.status_lines(bare, state, held, ours, self._held(own), published, hybrid)

    async def _ready(self) -> None:
        """Our key is loaded (or made, on first start: a few seconds)."""
        try:
            await asyncio.wait_for(self.objenc.ready(), READY_TIMEOUT)
        except TimeoutError:
            raise CommandError("our key is still being made; try again in a moment") from None
        except Exception as exc:
            raise CommandError(f"our keys could not be loaded: {exc}") from None

    async def _discover(self, bare: str) -> None:
        if bare == self.core.xmpp.boundjid.bare:
            return
        try:
            await asyncio.wait_for(self.objenc.discover(bare), DISCOVERY_TIMEOUT)
        except Exception as exc:  # the state shown says what is known
            log.debug("objenc: discovering %s failed: %r", bare, exc)

    # -- output --------------------------------------------------------------

    def _say(self, lines: Sequence[str], tab: Tab | None, *, error: bool = False) -> None:
        """Lines in the conversation they concern, else in the information buffer."""
        if isinstance(tab, ChatTab):
            color = dump_tuple(get_theme().COLOR_CHAR_NACK) if error else None
            for line in lines:
                tab.add_message(InfoMessage(f"\x19{color}}}{line}" if color else line))
            self.core.refresh_window()
        else:
            self.api.information("\n".join(lines), "Error" if error else "Info")

    def _conversation(self, jid: str | JID | None, *, create: bool = False) -> Tab | None:
        if not jid:
            return None
        try:
            bare = JID(jid).bare
        except InvalidJID:
            return None
        if not bare or bare == self.core.xmpp.boundjid.bare:
            return None
        tab: Tab | None = self.core.get_conversation_by_jid(JID(bare), create=create)
        return tab

    # -- /objenc ---------------------------------------------------------------

    def _conversation_jid(self, tab: Tab) -> str | None:
        if isinstance(tab, ConversationTab):
            return str(JID(tab.jid).bare)
        return None

    def _completion(self, the_input: Input) -> Completion | None:
        if the_input.get_argument_position() == 1:
            return Completion(the_input.new_completion, list(text.SUBCOMMANDS), 1, quotify=False)
        return None

    async def _command(self, line: str) -> None:
        tab = self.api.current_tab()
        try:
            request = text.parse_command(line, self._conversation_jid(tab))
        except CommandError as exc:
            self._say([f"{text.PREFIX}{exc}"], tab, error=True)
            return
        await self._run(request, tab)

    def _global_trust_command(self, state: str) -> Callable[[str], Any]:
        async def command(line: str) -> None:
            tab = self.api.current_tab()
            try:
                request = text.parse_command(f"trust {line} {state}", None)
            except CommandError as exc:
                self._say([f"{text.PREFIX}{exc}"], tab, error=True)
                return
            await self._run(request, tab)

        return command

    async def _run(self, request: Request, tab: Tab) -> None:
        actions = {
            "help": self._help,
            "status": self._show_status,
            "on": self._require,
            "off": self._off,
            "fingerprints": self._fingerprints,
            "trust": self._trust,
            "accept": self._decide,
            "reject": self._decide,
            "verify": self._verify,
            "match": self._confirm,
            "mismatch": self._confirm,
            **self._account.actions(),
        }
        try:
            if request.jid is not None:
                request = Request(request.action, self._valid_jid(request), request.args)
            if request.action != "help":
                await self._ready()  # the key ring is read from the store first
            await actions[request.action](request, tab)
        except CommandError as exc:
            self._say([f"{text.PREFIX}{exc}"], tab, error=True)
        except Exception as exc:
            log.exception("objenc: /objenc %s failed", request.action)
            self._say(
                [f"{text.PREFIX}{request.action} failed: {exc or type(exc).__name__}"],
                tab,
                error=True,
            )

    def _valid_jid(self, request: Request) -> str:
        try:
            jid = JID(request.jid or "")
        except InvalidJID:
            raise CommandError(f"{request.jid!r} is not a valid JID") from None
        if request.action == "verify":
            return str(jid.full)
        return str(jid.bare)

    async def _help(self, request: Request, tab: Tab) -> None:
        self._say(text.HELP.splitlines(), tab)

    async def _show_status(self, request: Request, tab: Tab) -> None:
        if request.jid is not None and not self.objenc.keyring.records(request.jid):
            await self._discover(request.jid)
        self._say(self._status(request.jid), tab)

    async def _require(self, request: Request, tab: Tab) -> None:
        bare = request.jid or ""
        if bare == self.core.xmpp.boundjid.bare:
            raise CommandError("our own account is encrypted to our other devices you accept")
        await self.objenc.require_encryption(bare)
        await self._discover(bare)
        lines = [f"{text.PREFIX}encryption required for {bare}: nothing goes to them in the clear"]
        self._say(lines + self._status(bare), tab)

    async def _off(self, request: Request, tab: Tab) -> None:
        bare = request.jid or ""
        if self.objenc.keyring.records(bare):
            raise CommandError(
                f"there is no off for {bare}: a certificate of theirs is held, so "
                "nothing goes to them in the clear (fail closed). /objenc status shows it"
            )
        await self.objenc.require_encryption(bare, False)
        self._say([f"{text.PREFIX}encryption is no longer required for {bare}"], tab)

    async def _fingerprints(self, request: Request, tab: Tab) -> None:
        own = self.core.xmpp.boundjid.bare
        bare = request.jid or own
        lines = []
        if bare == own:
            fingerprint = self._own_fingerprint()
            if fingerprint is not None:
                lines.append(f"{text.PREFIX}this device: {text.full_fingerprint(fingerprint)}")
        held = self._held(bare)
        if held:
            label = "our other devices" if bare == own else f"certificates held for {bare}"
            lines.append(f"{text.PREFIX}{label}:")
            lines.extend(text.fingerprint_lines(held, full=True))
        elif bare != own:
            lines.append(f"{text.PREFIX}no certificate is held for {bare}")
        self._say(lines, tab)

    async def _trust(self, request: Request, tab: Tab) -> None:
        bare = request.jid or ""
        typed, word = request.args
        held = text.resolve(self._held(bare), bare, typed)
        state = text.trust_state(word)
        await self.objenc.set_trust(bare, held.fingerprint, state)
        fp = text.short_fingerprint(held.fingerprint)
        self._say([f"{text.PREFIX}{bare}'s certificate {fp} is now {state.value}"], tab)

    async def _decide(self, request: Request, tab: Tab) -> None:
        bare = request.jid or ""
        held = text.resolve(self._held(bare), bare, request.args[0])
        fp = text.short_fingerprint(held.fingerprint)
        if request.action == "accept":
            await self.objenc.accept_key_change(bare, held.fingerprint)
            line = f"accepted {bare}'s certificate {fp}: what was held for them goes out, encrypted"
        else:
            await self.objenc.reject_key_change(bare, held.fingerprint)
            line = f"rejected {bare}'s certificate {fp} for good (revoked)"
        self._say([text.PREFIX + line], tab)

    def _online_client(self, jid: JID) -> str:
        if jid.resource:
            return str(jid.full)
        contact = roster[jid.bare]
        resource = contact.get_highest_priority_resource() if contact else None
        if resource is None:
            raise CommandError(
                f"{jid.bare} has no client online: the verification runs between two online "
                "clients (or give a full JID)"
            )
        return str(resource.jid)

    async def _verify(self, request: Request, tab: Tab) -> None:
        full = self._online_client(JID(request.jid or ""))
        self._say([f"{text.PREFIX}verifying with {full}..."], tab)
        try:
            await self.objenc.start_verification(full)
        except Exception as exc:
            raise CommandError(f"the verification with {full} failed: {exc}") from None
        # the string is shown by the objenc_sas event

    async def _confirm(self, request: Request, tab: Tab) -> None:
        bare = request.jid or ""
        event = self._sas.pop(bare, None)
        if event is None:
            raise CommandError(f"no verification with {bare} awaits a decision (/objenc verify)")
        matched = request.action == "match"
        await self.objenc.confirm_verification(event.sid, matched)
        report = notices.verified if matched else notices.not_verified
        self._say([report(bare, event.peer_fingerprints or (event.peer_fingerprint,))], tab)

    # -- notices for ObjEnc's events -----------------------------------------

    def _shows(self, event: str) -> Callable[[Any], None]:
        def handler(data: Any) -> None:
            notice = notices.notice(event, data)
            if notice is not None:
                self._show(notice)
            if isinstance(data, EncryptionFailedEvent) and notice is not None:
                self.core.register_task(self._mark_unsent(data.stanza))

        return handler

    def _show(self, notice: Notice) -> None:
        """In the conversation it concerns (warnings also in the information buffer
        when that conversation is not in view), else in the information buffer."""
        tab = self._conversation(notice.jid, create=notice.open)
        if tab is None:
            self.api.information(notice.line, "Error" if notice.warn else notice.level)
            return
        self._say([notice.line], tab, error=notice.warn)
        if notice.warn and tab is not self.api.current_tab():
            self.api.information(notice.line, "Warning")

    async def _mark_unsent(self, stanza: Any) -> None:
        """Mark the message poezio shows as sent as failed (it is drawn only after
        slixmpp's filters refused it, so wait for it a little)."""
        tab = self._conversation(stanza["to"])
        if not isinstance(tab, OneToOneTab) or stanza.name != "message":
            return
        color = dump_tuple(get_theme().COLOR_CHAR_NACK)
        error = f" \n\x19{color}}}objenc: not sent, it could not be encrypted"
        for _ in range(NACK_TRIES):
            try:
                # poezio files the messages we wrote under our own JID
                if tab.nack_message(error, stanza["id"], self.core.xmpp.boundjid) is not None:
                    return
            except Exception as exc:  # poezio's AckError: not the message we sent
                log.debug("objenc: cannot mark %s as not sent: %r", stanza["id"], exc)
                return
            await asyncio.sleep(0.1)

    def _on_sas(self, event: SasEvent) -> None:
        bare = str(JID(event.jid).bare)
        self._sas[bare] = event
        if bare != self.core.xmpp.boundjid.bare:
            self._show(Notice(notices.sas(str(event.jid), event.sas), bare, open=True, warn=True))
        else:  # another device of ours: the commands must name our JID
            line = notices.sas(str(event.jid), event.sas, jid=bare)
            self.api.information(line, "Warning")


def _held(keyring: Keyring, record: PeerRecord) -> Held:
    """A held certificate as the screen shows it, with its device's label."""
    peer = keyring.validated(record)
    return Held(record.fingerprint, record.trust, peer.label if peer is not None else None)
