"""Stanza-level tests: a slixmpp test stream, no server.

Most of these tests were written for the draft's (RSA) profile and hand-craft
its envelopes: they run a device of that profile only (``authenticated``
off), which the plugin still supports for peers that only speak the draft.
Tests of the authenticated profile pass ``authenticated: True`` in their
``pconfig`` (tests/stanza/test_auth_*.py), or run with the plugin's default
when their class sets ``authenticated_profile = True``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from slixmpp_objenc.plugin import ObjEnc


@pytest.fixture(autouse=True)
def draft_profile_only(request: pytest.FixtureRequest) -> Iterator[None]:
    """``authenticated`` off by default, except in test_auth_*.py modules."""
    if request.path.name.startswith("test_auth_") or getattr(
        request.cls, "authenticated_profile", False
    ):
        yield
        return
    default = ObjEnc.default_config["authenticated"]
    ObjEnc.default_config["authenticated"] = False
    try:
        yield
    finally:
        ObjEnc.default_config["authenticated"] = default
