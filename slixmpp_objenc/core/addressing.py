"""Addresses as the decisions see them: already parsed and normalised.

The core never normalises a JID itself (stringprep belongs to the XMPP
library): the glue parses with slixmpp's ``JID`` and hands the result in as
an :class:`Address`, and gives the core an :data:`AddressParser` for the
addresses it only finds after opening an envelope (the inner stanza's
``from``/``to``, a forwarded message's).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .certificates import normalize_bare_jid

__all__ = ["Address", "AddressParser", "simple_address"]


@dataclass(frozen=True, slots=True)
class Address:
    """One parsed JID: ``local@domain/resource``, any part possibly empty."""

    bare: str
    """``local@domain`` (or ``domain``), normalised; empty for no address."""
    resource: str = ""
    local: str = ""
    """The localpart; empty for a server (domain) address."""

    @property
    def domain(self) -> str:
        """The domainpart."""
        return self.bare.rpartition("@")[2]

    @property
    def full(self) -> str:
        """``bare/resource``, or the bare JID when there is no resource."""
        return f"{self.bare}/{self.resource}" if self.resource else self.bare


AddressParser = Callable[[str], Address]
"""Parses and normalises a JID string; raises ``ValueError`` for an invalid one."""


def simple_address(jid: str) -> Address:
    """An :data:`AddressParser` exact for ASCII addresses (tests, the command line).

    The plugin uses slixmpp's ``JID`` (full stringprep) instead.
    """
    if not jid:
        return Address("")
    bare, _, resource = jid.partition("/")
    if not bare or any(c.isspace() for c in bare) or bare.count("@") > 1:
        raise ValueError(f"invalid JID {jid!r}")
    normalized = normalize_bare_jid(bare)
    local = normalized.split("@", 1)[0] if "@" in normalized else ""
    return Address(normalized, resource, local)
