"""Which stanzas answer which: the ids the two decisions share.

Sending an encrypted stanza gives it a fresh outer id (draft step 11); an
error coming back carries that id and is mapped back to the inner id the
application knows. An encrypted iq request must be answered by an
encrypted result from the very full JID it went to; a plaintext error for
it only fails it. A plaintext request we sent may be answered in the clear
by the JID we sent it to (PEP, disco, vCard). Receiving an encrypted stanza
with an id means its answers must be encrypted too (or, for errors, carry
only a condition). Every memory is bounded (oldest forgotten first).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Final

__all__ = ["Exchanges"]

DEFAULT_MEMORY: Final = 4096


class Exchanges:
    """Bounded memory of encrypted stanzas sent and received, by id."""

    def __init__(self, memory: int = DEFAULT_MEMORY) -> None:
        self.memory = memory
        self._sent: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._received: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._requests: OrderedDict[str, str] = OrderedDict()
        self._plain_requests: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._refused: OrderedDict[tuple[str, str], None] = OrderedDict()

    def sent(self, outer_id: str, inner_id: str, to: str, *, request: bool = False) -> None:
        """We sent an encrypted stanza: ``outer_id`` on the wire, ``inner_id`` inside;
        ``request``: an iq ``get`` or ``set`` awaiting its result from ``to``."""
        self._sent[outer_id] = (inner_id, to)
        _bound(self._sent, self.memory)
        if request and inner_id:
            self._requests[inner_id] = to
            _bound(self._requests, self.memory)

    def pending_request(self, inner_id: str) -> str | None:
        """The full JID an encrypted request with this (inner) id went to, if pending."""
        return self._requests.get(inner_id)

    def request_answered(self, inner_id: str) -> None:
        """Its result or error arrived: no other answer is expected."""
        self._requests.pop(inner_id, None)

    def refused_locally(self, to: str, stanza_id: str) -> None:
        """We did not send a request (fail closed) and answer it ourselves with an
        error "from" ``to``, so the waiting caller fails at once."""
        self._refused[(to, stanza_id)] = None
        _bound(self._refused, self.memory)

    def our_own_failure(self, sender: str, stanza_id: str) -> bool:
        """Whether an error is the one we made for a request we refused (once)."""
        key = (sender, stanza_id)
        if key in self._refused:
            del self._refused[key]
            return True
        return False

    def plain_request(self, to: str, stanza_id: str) -> None:
        """We sent an iq request in the clear to ``to`` (as addressed)."""
        if stanza_id:
            self._plain_requests[(to, stanza_id)] = None
            _bound(self._plain_requests, self.memory)

    def answers_plain_request(self, sender: str, stanza_id: str) -> bool:
        """Whether a result or error from ``sender`` answers our plaintext request."""
        return (sender, stanza_id) in self._plain_requests

    def sent_to(self, outer_id: str) -> tuple[str, str] | None:
        """``(inner_id, to)`` of an encrypted stanza we sent, still remembered."""
        return self._sent.get(outer_id)

    def answered(self, outer_id: str) -> None:
        """An error answered it: forget the mapping (one answer per stanza)."""
        self._sent.pop(outer_id, None)

    def received(self, sender_full: str, inner_id: str) -> None:
        """We delivered an encrypted stanza: answers to ``inner_id`` must be encrypted."""
        self._received[(sender_full, inner_id)] = None
        _bound(self._received, self.memory)

    def answers_encrypted(self, to: str, stanza_id: str) -> bool:
        """Whether a stanza to ``to`` with ``stanza_id`` answers an encrypted one."""
        return (to, stanza_id) in self._received


def _bound(memory: OrderedDict[Any, Any], size: int) -> None:
    while len(memory) > size:
        memory.popitem(last=False)
