"""Shared test identities: 2048-bit keys (the minimum) keep the suite fast."""

from __future__ import annotations

from slixmpp_objenc.core import Identity, generate_identity

TESTER: Identity = generate_identity("tester@localhost", key_size=2048)
ALICE: Identity = generate_identity("alice@example.org", key_size=2048)
MALLORY: Identity = generate_identity("mallory@example.org", key_size=2048)
