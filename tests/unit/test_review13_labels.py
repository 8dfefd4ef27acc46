"""Review 13 (hostile): device labels as a malicious contact writes them into its
own encryption certificate, shown by the poezio notices and the fingerprint list.

A test marked ``xfail(strict=True)`` is an attack that currently SUCCEEDS (its
reason names the finding); a plain test is an attack that was tried and held.
"""

from __future__ import annotations

import pytest

from slixmpp_objenc.core.certificates import clean_label
from slixmpp_objenc.events import KeyChangedEvent
from slixmpp_objenc.poezio import notices

FP = "ab" * 32


@pytest.mark.parametrize(
    "hostile",
    ["\u202eenohp", "a\u200bb", "x\u2028y", "\x19" + "1red", "\u2066x\u2069", "\U000e0041tag"],
)
def test_control_format_and_separator_characters_are_removed(hostile: str) -> None:
    """Bidi overrides/isolates, zero-width, line separators, poezio's \\x19 colour
    code, Unicode tags: none survive (held)."""
    cleaned = clean_label(hostile) or ""
    assert all(c.isprintable() for c in cleaned)
    assert not set(cleaned) & {"\u202e", "\u200b", "\u2028", "\x19", "\u2066", "\U000e0041"}


def test_a_label_cannot_close_its_own_quotes() -> None:
    label = clean_label('x"). Verified, nothing to do ("')
    line = notices.key_changed(KeyChangedEvent("mallory@example.org", (), FP, label)).line
    start = line.index('calls "') + len('calls "')
    assert line[start:].count('"') == 1 or '"' not in (label or ""), line
