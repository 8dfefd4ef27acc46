"""Verification: the 6-character commit-then-reveal exchange over encrypted iqs.

The math is :mod:`slixmpp_objenc.core.verification`; this module carries its
three messages (``<sas/>`` in iq ``set``) to and from a contact's client and
keeps the sessions in progress (bounded).
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any, Final

from slixmpp import JID
from slixmpp.xmlstream import StanzaBase

from ..core import EncryptionError, PeerCertificate
from ..core.trust import TrustState
from ..core.verification import SasInitiator, SasResponder, VerificationError
from ..events import EncryptionInfo, SasEvent
from ..keyring import Keyring

__all__ = ["Verification"]

MAX_SAS_SESSIONS: Final = 64
"""Verifications a peer can have us keep at once (oldest dropped first)."""


class Verification:
    """The short authentication string exchange with a contact's client."""

    def __init__(
        self,
        xmpp: Any,
        keyring: Keyring,
        *,
        fingerprint: Callable[[], str],
        peer_certificate: Callable[[JID], PeerCertificate | None],
        encryption_info: Callable[[StanzaBase], EncryptionInfo | None],
        set_trust: Callable[[str, str, TrustState], Awaitable[None]],
        random_bytes: Callable[[int], bytes],
    ) -> None:
        self.xmpp = xmpp
        self._keyring = keyring
        self._fingerprint = fingerprint
        self._peer_certificate = peer_certificate
        self._encryption_info = encryption_info
        self._set_trust = set_trust
        self._random_bytes = random_bytes
        self._sessions: dict[str, SasInitiator | SasResponder] = {}
        self._peers: dict[str, tuple[str, str]] = {}

    async def start(self, jid: JID | str, timeout: float = 30.0) -> SasEvent:
        """Run the exchange as initiator with a contact's client (a full JID)."""
        peer = JID(jid)
        if not peer.resource:
            raise EncryptionError("verification needs the contact's full JID")
        certificate = self._peer_certificate(peer)
        if certificate is None:
            raise EncryptionError(f"no usable certificate for {peer.bare}")
        ours = self._fingerprint()
        sid = base64.b32encode(self._random_bytes(10)).decode("ascii").lower()
        initiator = SasInitiator(ours, certificate.fingerprint, self._random_bytes)
        self._sessions[sid] = initiator
        self._peers[sid] = (peer.bare, certificate.fingerprint)
        iq = self.xmpp.make_iq_set(ito=peer)
        iq["objenc_sas"]["sid"] = sid
        iq["objenc_sas"]["cert"] = ours
        iq["objenc_sas"]["commit"] = _b64(initiator.commit())
        answer = await iq.send(timeout=timeout)
        self._require_encrypted(answer)
        if answer["objenc_sas"]["cert"] != certificate.fingerprint:
            raise VerificationError("the contact answered with another certificate")
        reveal = initiator.receive_nonce(_unb64(answer["objenc_sas"]["nonce"]))
        iq = self.xmpp.make_iq_set(ito=peer)
        iq["objenc_sas"]["sid"] = sid
        iq["objenc_sas"]["reveal"] = _b64(reveal)
        self._require_encrypted(await iq.send(timeout=timeout))
        assert initiator.sas is not None
        event = SasEvent(str(peer), sid, initiator.sas, certificate.fingerprint, "initiator")
        self.xmpp.event("objenc_sas", event)
        return event

    async def confirm(self, sid: str, matched: bool) -> None:
        """Mark the peer's certificate ``verified`` (or ``untrusted`` on a mismatch)."""
        session = self._sessions.pop(sid, None)
        peer = self._peers.pop(sid, None)
        if session is None or peer is None or session.sas is None:
            raise VerificationError("no completed verification with this id")
        bare, fingerprint = peer
        await self._set_trust(
            bare, fingerprint, TrustState.VERIFIED if matched else TrustState.UNTRUSTED
        )

    def _require_encrypted(self, stanza: StanzaBase) -> None:
        if self._encryption_info(stanza) is None:
            raise VerificationError("verification messages must arrive encrypted")

    def _forget(self, sid: str) -> None:
        self._sessions.pop(sid, None)
        self._peers.pop(sid, None)

    async def handle(self, iq: StanzaBase) -> None:
        """The responder's side: answer a commit with our nonce, a reveal with the SAS."""
        request = iq["objenc_sas"]
        sid = request["sid"]
        try:
            self._require_encrypted(iq)
            if not sid:
                raise VerificationError("verification messages must arrive encrypted")
            reply = iq.reply()
            reply["objenc_sas"]["sid"] = sid
            if request["commit"]:
                claimed = request["cert"]
                record = self._keyring.record(iq["from"].bare, claimed)
                if record is None or not record.trust.usable or sid in self._sessions:
                    raise VerificationError("unknown certificate or session")
                while len(self._sessions) >= MAX_SAS_SESSIONS:  # bounded: oldest dropped
                    self._forget(next(iter(self._sessions)))
                ours = self._fingerprint()
                responder = SasResponder(ours, claimed, self._random_bytes)
                reply["objenc_sas"]["cert"] = ours
                reply["objenc_sas"]["nonce"] = _b64(
                    responder.receive_commit(_unb64(request["commit"]))
                )
                self._sessions[sid] = responder
                self._peers[sid] = (iq["from"].bare, claimed)
            elif request["reveal"]:
                session = self._sessions.get(sid)
                if not isinstance(session, SasResponder):
                    raise VerificationError("no such verification")
                sas = session.receive_reveal(_unb64(request["reveal"]))
                _bare, fingerprint = self._peers[sid]
                self.xmpp.event(
                    "objenc_sas", SasEvent(str(iq["from"]), sid, sas, fingerprint, "responder")
                )
            else:
                raise VerificationError("empty verification request")
            reply.send()
        except (VerificationError, ValueError) as exc:
            self._forget(sid)
            error = iq.reply()
            error["type"] = "error"
            error["error"]["type"] = "cancel"
            error["error"]["condition"] = "not-acceptable"
            error["error"]["text"] = str(exc)
            error.send()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)
