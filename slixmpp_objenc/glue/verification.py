"""Verification: the 6-character commit-then-reveal exchange over encrypted iqs.

The math is :mod:`slixmpp_objenc.core.verification`; this module carries its
three messages (``<sas/>`` in iq ``set``) to and from a contact's client (or
another client of our own account), keeps the sessions in progress
(bounded), and applies the outcome to exactly the certificates the string
covered (:func:`~slixmpp_objenc.core.trust.verification_outcome`).

What one exchange covers, on each side: every certificate it encrypts to
for the other account's bare JID, and its own account's set (its own
certificate and the other devices of its account it encrypts to).
"""

from __future__ import annotations

import base64
import logging
import string
from collections.abc import Awaitable, Callable, Collection
from collections.abc import Set as AbstractSet
from typing import Any, Final

from slixmpp import JID
from slixmpp.exceptions import IqError
from slixmpp.xmlstream import StanzaBase

from ..core import EncryptionError
from ..core.trust import TrustState, verification_outcome
from ..core.verification import (
    MAX_SET_SIZE,
    SasInitiator,
    SasResponder,
    VerificationError,
    differences,
)
from ..events import EncryptionInfo, KeyChangedEvent, SasEvent, SasFailedEvent
from ..keyring import Keyring

__all__ = ["Verification"]

log = logging.getLogger(__name__)

MAX_SAS_SESSIONS: Final = 64
"""Verifications a peer can have us keep at once (oldest dropped first)."""


class Verification:
    """The short authentication string exchange with a contact's client."""

    def __init__(
        self,
        xmpp: Any,
        keyring: Keyring,
        *,
        fingerprint: Callable[[str], str],
        encryption_info: Callable[[StanzaBase], EncryptionInfo | None],
        set_trust: Callable[[str, str, TrustState], Awaitable[None]],
        random_bytes: Callable[[int], bytes],
    ) -> None:
        self.xmpp = xmpp
        self._keyring = keyring
        self._fingerprint = fingerprint
        self._encryption_info = encryption_info
        self._set_trust = set_trust
        self._random_bytes = random_bytes
        self._sessions: dict[str, SasInitiator | SasResponder] = {}
        self._peers: dict[str, str] = {}

    # -- the two sets ------------------------------------------------------------

    def peer_set(self, bare: str) -> frozenset[str]:
        """Every certificate we encrypt to for ``bare``: for our own account (two
        clients of ours verifying each other), its whole set, ours included."""
        if bare == self.xmpp.boundjid.bare:
            return self.own_set(bare)
        return frozenset(p.fingerprint for p in self._keyring.usable(bare))

    def own_set(self, bare: str) -> frozenset[str]:
        """Our certificate as ``bare`` knows it (our identity, or our RSA certificate
        for a peer of the draft's profile only) and our other devices we encrypt to."""
        own = self._keyring.usable(self.xmpp.boundjid.bare)
        return frozenset(p.fingerprint for p in own) | {self._fingerprint(bare)}

    # -- initiator -----------------------------------------------------------------

    async def start(self, jid: JID | str, timeout: float = 30.0) -> SasEvent:
        """Run the exchange as initiator with a contact's client (a full JID)."""
        peer = JID(jid)
        if not peer.resource:
            raise EncryptionError("verification needs the contact's full JID")
        peer_set = self.peer_set(peer.bare)
        own_set = self.own_set(peer.bare)
        ours = self._fingerprint(peer.bare)
        if not peer_set - {ours}:
            raise EncryptionError(f"no usable certificate for {peer.bare}")
        sid = base64.b32encode(self._random_bytes(10)).decode("ascii").lower()
        initiator = SasInitiator(own_set, peer_set, self._random_bytes)
        self._sessions[sid] = initiator
        self._peers[sid] = peer.bare
        try:
            iq = self.xmpp.make_iq_set(ito=peer)
            sas = iq["objenc_sas"]
            sas["sid"] = sid
            sas["cert"] = ours
            sas["commit"] = _b64(initiator.commit())
            sas["initiator"] = _fingerprints(own_set)
            sas["responder"] = _fingerprints(peer_set)
            answer = await self._send(iq, timeout)
            reply = answer["objenc_sas"]
            if reply["cert"] not in peer_set - {ours}:
                raise VerificationError(
                    f"the contact answered from certificate {reply['cert'] or '(none)'}, "
                    f"which we do not encrypt to for {peer.bare}"
                )
            problem = _compare(reply, initiator_set=own_set, responder_set=peer_set, we="initiator")
            if problem is not None:
                raise VerificationError(problem)
            reveal = initiator.receive_nonce(_unb64(reply["nonce"]))
            iq = self.xmpp.make_iq_set(ito=peer)
            iq["objenc_sas"]["sid"] = sid
            iq["objenc_sas"]["reveal"] = _b64(reveal)
            await self._send(iq, timeout)
        except BaseException:
            self._forget(sid)
            raise
        assert initiator.sas is not None
        event = SasEvent(
            str(peer),
            sid,
            initiator.sas,
            reply["cert"],
            "initiator",
            tuple(sorted(peer_set)),
            tuple(sorted(own_set)),
            self._labels(peer.bare, peer_set | own_set),
        )
        self.xmpp.event("objenc_sas", event)
        return event

    def _labels(self, bare: str, fingerprints: AbstractSet[str]) -> tuple[tuple[str, str], ...]:
        """``(fingerprint, label)`` of the devices named that have a label: the
        contact's, our account's others, ours."""
        labels = {}
        keys = self._keyring.device.keys
        own = self._keyring.device.certificate() if keys is not None else None
        if own is not None and own.label:
            labels[own.fingerprint] = own.label
        for jid in (bare, self.xmpp.boundjid.bare):
            for record in self._keyring.records(jid):
                peer = self._keyring.validated(record)
                if peer is not None and peer.label:
                    labels[peer.fingerprint] = peer.label
        return tuple(sorted((fp, label) for fp, label in labels.items() if fp in fingerprints))

    async def _send(self, iq: Any, timeout: float) -> Any:
        try:
            answer = await iq.send(timeout=timeout)
        except IqError as exc:
            text = exc.iq["error"]["text"] or exc.iq["error"]["condition"]
            raise VerificationError(f"the other client refused: {text}") from exc
        self._require_encrypted(answer)
        return answer

    # -- both ----------------------------------------------------------------------

    async def confirm(self, sid: str, matched: bool) -> None:
        """The users compared the strings. Matched: every certificate the exchange
        covered for the peer's JID is marked ``verified``, and any other one we
        would encrypt to for it is held (``untrusted``: it was not covered).
        Not matched: the covered ones are held (``untrusted``)."""
        session = self._sessions.pop(sid, None)
        bare = self._peers.pop(sid, None)
        if session is None or bare is None or session.sas is None:
            raise VerificationError("no completed verification with this id")
        held = {r.fingerprint: r.trust for r in self._keyring.records(bare)}
        covered = session.peer_fingerprints
        changes = verification_outcome(held, covered, matched=matched)
        for fingerprint, trust in changes.items():
            await self._set_trust(bare, fingerprint, trust)
        uncovered = [fp for fp, t in changes.items() if fp not in covered and t.pending]
        own = bare == self.xmpp.boundjid.bare
        for fingerprint in uncovered:
            log.warning(
                "objenc: %s was verified without certificate %s: it is held", bare, fingerprint
            )
            self.xmpp.event(
                "objenc_own_device_held" if own else "objenc_key_changed",
                KeyChangedEvent(bare, tuple(sorted(covered)), fingerprint),
            )

    def _require_encrypted(self, stanza: StanzaBase) -> None:
        if self._encryption_info(stanza) is None:
            raise VerificationError("verification messages must arrive encrypted")

    def _forget(self, sid: str) -> None:
        self._sessions.pop(sid, None)
        self._peers.pop(sid, None)

    # -- responder -----------------------------------------------------------------

    async def handle(self, iq: StanzaBase) -> None:
        """The responder's side: answer a commit with our nonce, a reveal with the SAS."""
        request = iq["objenc_sas"]
        sid = request["sid"]
        try:
            self._require_encrypted(iq)
            if not sid:
                raise VerificationError("a verification message without a session id")
            reply = iq.reply()
            reply["objenc_sas"]["sid"] = sid
            if request["commit"]:
                self._answer_commit(iq, reply)
            elif request["reveal"]:
                session = self._sessions.get(sid)
                if not isinstance(session, _Responder):
                    raise VerificationError("no such verification")
                sas = session.receive_reveal(_unb64(request["reveal"]))
                self.xmpp.event(
                    "objenc_sas",
                    SasEvent(
                        str(iq["from"]),
                        sid,
                        sas,
                        session.claimed,
                        "responder",
                        tuple(sorted(session.peer_fingerprints)),
                        tuple(sorted(session.own_fingerprints)),
                        self._labels(
                            iq["from"].bare,
                            set(session.peer_fingerprints) | set(session.own_fingerprints),
                        ),
                    ),
                )
            else:
                raise VerificationError("empty verification request")
            reply.send()
        except (VerificationError, ValueError) as exc:
            self._forget(sid)
            log.warning("objenc: verification with %s failed: %s", iq["from"], exc)
            self.xmpp.event("objenc_sas_failed", SasFailedEvent(str(iq["from"]), sid, str(exc)))
            error = iq.reply()
            error["type"] = "error"
            error["error"]["type"] = "cancel"
            error["error"]["condition"] = "not-acceptable"
            error["error"]["text"] = str(exc)
            error.send()

    def _answer_commit(self, iq: StanzaBase, reply: StanzaBase) -> None:
        request = iq["objenc_sas"]
        sid = request["sid"]
        bare = iq["from"].bare
        claimed = request["cert"]
        peer_set = self.peer_set(bare)
        if claimed not in peer_set - {self._fingerprint(bare)} or sid in self._sessions:
            raise VerificationError("unknown certificate or session")
        own_set = self.own_set(bare)
        responder = _Responder(own_set, peer_set, self._random_bytes, claimed=claimed)
        sas = reply["objenc_sas"]
        sas["cert"] = self._fingerprint(bare)
        sas["nonce"] = _b64(responder.receive_commit(_unb64(request["commit"])))
        sas["initiator"] = _fingerprints(peer_set)
        sas["responder"] = _fingerprints(own_set)
        problem = _compare(request, initiator_set=peer_set, responder_set=own_set, we="responder")
        if problem is not None:
            # Answered all the same, so that the initiator names the difference too
            # (an error's text is stripped); no session is kept: no reveal is taken.
            log.warning("objenc: verification with %s failed: %s", iq["from"], problem)
            self.xmpp.event("objenc_sas_failed", SasFailedEvent(str(iq["from"]), sid, problem))
            return
        while len(self._sessions) >= MAX_SAS_SESSIONS:  # bounded: oldest dropped
            self._forget(next(iter(self._sessions)))
        self._sessions[sid] = responder
        self._peers[sid] = bare


class _Responder(SasResponder):
    """A responder that remembers which certificate the initiator ran it from."""

    def __init__(
        self,
        own: Collection[str],
        peer: Collection[str],
        random_bytes: Callable[[int], bytes],
        *,
        claimed: str,
    ) -> None:
        super().__init__(own, peer, random_bytes)
        self.claimed = claimed


def _compare(
    sas: Any, *, initiator_set: frozenset[str], responder_set: frozenset[str], we: str
) -> str | None:
    """Compare the sets the other side says it sees with ours: ``None`` if they
    agree (or it said nothing usable: then only the strings decide), else what
    differs, certificates named (the strings would not match anyway)."""
    problems = []
    for role, seen in (("initiator", initiator_set), ("responder", responder_set)):
        claimed = _parse_fingerprints(sas[role])
        if claimed is None:
            continue
        only_theirs, only_ours = differences(claimed, seen)
        if role == we:  # what they hold for us, against our own set
            if only_theirs:
                problems.append(f"they encrypt to {_short(only_theirs)} as ours, not our device")
            if only_ours:
                problems.append(f"they do not encrypt to our {_short(only_ours)}")
        else:  # what their device counts as its account, against what we hold for it
            if only_theirs:
                problems.append(f"they count {_short(only_theirs)} as theirs, we do not")
            if only_ours:
                problems.append(
                    f"we encrypt to {_short(only_ours)} for them, which they do not count as theirs"
                )
    if not problems:
        return None
    return "the two sides do not hold the same certificates: " + "; ".join(problems)


def _parse_fingerprints(text: str) -> set[str] | None:
    words = text.split()
    if not words or len(words) > MAX_SET_SIZE:
        return None
    if any(len(w) != 64 or any(c not in string.hexdigits for c in w) for w in words):
        return None
    return {w.lower() for w in words}


def _fingerprints(fingerprints: Collection[str]) -> str:
    return " ".join(sorted(fingerprints))


def _short(fingerprints: Collection[str]) -> str:
    return ", ".join(fp[:16] for fp in sorted(fingerprints))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)
