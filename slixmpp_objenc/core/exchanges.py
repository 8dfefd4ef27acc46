"""Which stanzas answer which: the ids the two decisions share.

Sending an encrypted stanza gives it a fresh outer id (draft step 11); an
error coming back carries that id and is mapped back to the inner id the
application knows. Receiving an encrypted stanza with an id means its
answers must be encrypted too (or, for errors, carry only a condition).
Both memories are bounded (oldest forgotten first).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

__all__ = ["Exchanges"]

DEFAULT_MEMORY: Final = 4096


class Exchanges:
    """Bounded memory of encrypted stanzas sent and received, by id."""

    def __init__(self, memory: int = DEFAULT_MEMORY) -> None:
        self.memory = memory
        self._sent: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._received: OrderedDict[tuple[str, str], None] = OrderedDict()

    def sent(self, outer_id: str, inner_id: str, to: str) -> None:
        """We sent an encrypted stanza: ``outer_id`` on the wire, ``inner_id`` inside."""
        self._sent[outer_id] = (inner_id, to)
        while len(self._sent) > self.memory:
            self._sent.popitem(last=False)

    def sent_to(self, outer_id: str) -> tuple[str, str] | None:
        """``(inner_id, to)`` of an encrypted stanza we sent, still remembered."""
        return self._sent.get(outer_id)

    def answered(self, outer_id: str) -> None:
        """An error answered it: forget the mapping (one answer per stanza)."""
        self._sent.pop(outer_id, None)

    def received(self, sender_full: str, inner_id: str) -> None:
        """We delivered an encrypted stanza: answers to ``inner_id`` must be encrypted."""
        self._received[(sender_full, inner_id)] = None
        while len(self._received) > self.memory:
            self._received.popitem(last=False)

    def answers_encrypted(self, to: str, stanza_id: str) -> bool:
        """Whether a stanza to ``to`` with ``stanza_id`` answers an encrypted one."""
        return (to, stanza_id) in self._received
