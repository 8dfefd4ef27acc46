"""Timestamp state an attacker cannot poison (issue 9, kind 5), through the plugin.

Stanzas are fed with ``SlixTest.recv`` on the plugin's mock stream, with a
fixed clock; the attacker is the server (it forges ``<delay/>`` stamps of our
own domain, replays, and relays envelopes from as many strangers as it likes,
each built with our public certificate). Floods use one session key wrapped
once and a private key that remembers what it unwrapped, so 20,000 envelopes
cost 20,000 stanzas and one RSA decryption; everything else is the real path.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import os
import sqlite3
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar
from unittest import mock

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from slixmpp.xmlstream import tostring
from test_hostile import (
    AES128,
    ALICE_JID,
    DATA,
    E2E,
    KEY,
    ME,
    MFG1,
    HostileTestCase,
    Outcome,
    chat,
    outer,
)
from testkit import TESTER

from slixmpp_objenc.core import ReplayGuard, format_timestamp
from slixmpp_objenc.core.envelope import build_plain
from slixmpp_objenc.store import SQLiteStorage
from slixmpp_objenc.store import sqlite as sqlite_store

SEC = timedelta(seconds=1)
MIN = timedelta(minutes=1)
SESSION_KEY = os.urandom(16)
_OAEP = asym_padding.OAEP(
    mgf=asym_padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None
)
WRAPPED = TESTER.certificate.public_key().encrypt(SESSION_KEY, _OAEP)


def own_delay(stamp: datetime) -> str:
    """A <delay/> as our own server stamps offline messages (or as it forges them)."""
    return f"<delay xmlns='urn:xmpp:delay' from='localhost' stamp='{format_timestamp(stamp)}'/>"


def stranger(n: int) -> str:
    return f"stranger{n}@evil.example/r"


def quick_e2e(inner: str, timestamp: datetime) -> ET.Element:
    """An envelope to us, as any holder of our certificate builds it, under the one
    pre-wrapped session key (see :func:`remembering_rsa`)."""
    padder = sym_padding.PKCS7(128).padder()
    plain = build_plain(inner.encode(), timestamp, pad_to=64)
    padded = padder.update(plain) + padder.finalize()
    iv = os.urandom(16)
    encryptor = Cipher(algorithms.AES(SESSION_KEY), modes.CBC(iv)).encryptor()
    t = iv + encryptor.update(padded) + encryptor.finalize()
    mac = hmac.new(t, SESSION_KEY, hashlib.sha256).digest()
    e2e = ET.Element(E2E)
    ET.SubElement(e2e, KEY, {"cipher-algo": MFG1}).text = base64.b64encode(WRAPPED).decode()
    ET.SubElement(
        e2e,
        DATA,
        {
            "cipher-algo": AES128,
            "mac-algo": "HMACSHA256",
            "mac-hash": base64.b64encode(mac).decode(),
        },
    ).text = base64.b64encode(t).decode()
    return e2e


class _RememberingKey:
    """Our private key, remembering what it unwrapped (the flood shares one key)."""

    def __init__(self, key: Any) -> None:
        self._key = key
        self._seen: dict[bytes, bytes] = {}

    def decrypt(self, ciphertext: bytes, padding: Any) -> bytes:
        if ciphertext not in self._seen:
            self._seen[ciphertext] = bytes(self._key.decrypt(ciphertext, padding))
        return self._seen[ciphertext]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._key, name)


@contextmanager
def remembering_rsa(plugin: Any) -> Iterator[None]:
    keyring = plugin.keyring
    originals = list(keyring._identities)
    proxies = []
    for identity in originals:
        proxy = copy.copy(identity)
        object.__setattr__(proxy, "private_key", _RememberingKey(identity.private_key))
        proxies.append(proxy)
    keyring._identities = proxies
    try:
        yield
    finally:
        keyring._identities = originals


class ReplayCase(HostileTestCase):
    guard: ClassVar[dict[str, Any]] = {}
    """ReplayGuard arguments for this case (a fresh guard per test)."""

    def setUp(self) -> None:
        self.pconfig = {"replay_guard": ReplayGuard(reorder=2 * MIN, **self.guard)}
        super().setUp()

    def restart(self, storage: Any) -> None:
        """A new plugin on a new stream, on ``storage`` (the same file: a restart)."""
        self.run_coro(self.plugin.flush())
        self.run_coro(self.plugin.close())
        self.stream_close()
        self.pconfig = {"replay_guard": ReplayGuard(reorder=2 * MIN, **self.guard)}
        self.start_client(storage)

    def says(
        self, frm: str, body: str, ts: datetime, *, delay: datetime | None = None, oid: str = "o"
    ) -> str:
        extra = own_delay(delay) if delay is not None else ""
        e2e = quick_e2e(chat(body, frm=frm), ts)
        return outer(tostring(e2e), frm=frm, oid=oid, extra=extra)

    def delivered(self, result: Outcome, body: str) -> None:
        assert [m["body"] for m in result.delivered] == [body], result.summary()
        assert result.refusals == 0

    def refused(self, result: Outcome, reason: str) -> None:
        assert result.delivered == [] and result.decrypted == [], result.summary()
        assert [e.reason for e in result.stale] == [reason], result.summary()

    def flood(self, wires: list[str]) -> tuple[int, list[str]]:
        """Feed many stanzas quickly; (delivered, refusal reasons)."""
        marks = {name: len(self.events[name]) for name in ("message", "objenc_bad_timestamp")}
        with remembering_rsa(self.plugin):
            for start in range(0, len(wires), 100):  # (recv() per stanza is 4x slower)
                self.wait_()
                self.xmpp.data_received("".join(wires[start : start + 100]))
            self.wait_()
        self.drain()
        delivered = len(self.events["message"]) - marks["message"]
        stale = self.events["objenc_bad_timestamp"][marks["objenc_bad_timestamp"] :]
        return delivered, [e.reason for e in stale]


class TestAhead(ReplayCase):
    def test_a_stanza_dated_ahead_does_not_block_the_next_genuine_one(self) -> None:
        """The issue's example: the server stamps <delay/> 5 minutes ahead and the
        stanza is dated 5 minutes past it. Old code: Alice's genuine messages were
        'decreasing' for ~8 minutes, and again after a restart."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "tester.sqlite3"
            self.restart(SQLiteStorage(path))
            try:
                ahead = self.says(
                    ALICE_JID,
                    "from the future",
                    self.now + 10 * MIN,
                    delay=self.now + 5 * MIN,
                    oid="ahead",
                )
                self.delivered(self.feed(ahead), "from the future")
                self.delivered(
                    self.feed(self.says(ALICE_JID, "genuine", self.now + SEC)), "genuine"
                )
                self.refused(self.feed(ahead), "replay")
                self.restart(SQLiteStorage(path))
                self.now += 10 * SEC
                self.delivered(
                    self.feed(self.says(ALICE_JID, "after restart", self.now)), "after restart"
                )
                self.refused(self.feed(ahead), "replay")
            finally:
                self.run_coro(self.plugin.close())


class TestFlood(ReplayCase):
    guard: ClassVar[dict[str, Any]] = {"max_entries": 200, "max_per_sender": 50, "max_senders": 50}

    def test_flooding_from_other_senders_never_makes_a_contact_old(self) -> None:
        """Old code: beyond max_entries a global floor rose to the evicted timestamps
        (here 4 minutes ahead) and every contact was refused as 'old'."""
        self.delivered(self.feed(self.says(ALICE_JID, "before", self.now - SEC)), "before")
        ahead = self.now + 4 * MIN
        mallory = [
            self.says("mallory@evil.example/den", f"m{n}", ahead + n * timedelta(milliseconds=1))
            for n in range(300)
        ]
        strangers = [self.says(stranger(n), "hi", ahead) for n in range(300)]
        delivered, reasons = self.flood(mallory + strangers)
        assert delivered == 300 + 48  # the table holds alice, mallory and 48 strangers
        assert set(reasons) == {"old"} and len(reasons) == 300 - 48
        self.delivered(self.feed(self.says(ALICE_JID, "after", self.now)), "after")
        self.delivered(self.feed(self.says("alice@example.org/laptop", "other", self.now)), "other")
        # once the strangers are quiet, newcomers are admitted again
        self.now += 15 * MIN
        self.delivered(self.feed(self.says("nurse@example.org/k", "new", self.now)), "new")

    def test_a_replay_after_eviction_of_a_flooding_sender_is_still_refused(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "tester.sqlite3"
            self.restart(SQLiteStorage(path))
            try:
                mallory = "mallory@evil.example/den"
                first_ts = self.now
                first = self.says(mallory, "m0", first_ts, oid="m0")
                rest = [self.says(mallory, f"m{n}", self.now + n * SEC) for n in range(1, 80)]
                delivered, _ = self.flood([first, *rest])
                assert delivered == 80
                assert self.plugin.replay_guard.sizes[1] <= 50
                # the server replays the first, with a <delay/> making it look fresh
                replay = first.replace("</message>", own_delay(first_ts) + "</message>")
                self.refused(self.feed(replay), "old")
                self.restart(SQLiteStorage(path))
                self.refused(self.feed(replay), "old")
                # a stranger whose whole state was folded: same
                x_ts = self.now
                x = self.says(stranger(0), "x", x_ts, oid="x")
                self.delivered(self.feed(x), "x")
                self.now += 12 * MIN  # mallory and stranger0 are quiet: the flood folds them
                self.flood([self.says(stranger(n), "later", self.now) for n in range(1, 60)])
                assert "stranger0@evil.example" not in self.plugin.replay_guard.state().senders
                x_replay = x.replace("</message>", own_delay(x_ts) + "</message>")
                self.refused(self.feed(x_replay), "old")
                self.restart(SQLiteStorage(path))
                self.refused(self.feed(x_replay), "old")
            finally:
                self.run_coro(self.plugin.close())


class TestBounded(ReplayCase):
    guard: ClassVar[dict[str, Any]] = {}  # the defaults

    @pytest.mark.slow
    def test_state_stays_bounded_under_a_flood_of_twenty_thousand_strangers(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "tester.sqlite3"
            self.restart(SQLiteStorage(path))
            try:
                self.delivered(self.feed(self.says(ALICE_JID, "hi", self.now - SEC)), "hi")
                wires = [self.says(stranger(n), "hi", self.now) for n in range(20_000)]
                delivered, reasons = self.flood(wires)
                assert delivered == 9_999  # and alice: the default 10,000 senders
                assert set(reasons) == {"old"} and len(reasons) == 10_001
                senders, digests = self.plugin.replay_guard.sizes
                assert senders <= 10_000 and digests <= 10_000
                self.run_coro(self.plugin.flush())
                rows = count_rows(path)
                assert rows["replay_senders"] <= 10_000
                assert rows["replay_seen"] <= 10_000
                assert rows["replay_last"] <= 10_000
                assert rows["settings"] < 20  # nothing per stranger (kind 6 marks nobody)
                self.delivered(self.feed(self.says(ALICE_JID, "still", self.now + SEC)), "still")
            finally:
                self.run_coro(self.plugin.close())


def count_rows(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        return {
            table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            for table in ("replay_senders", "replay_seen", "replay_last", "settings")
        }
    finally:
        conn.close()


class TestMaximumDelay(ReplayCase):
    def test_a_server_delayed_stanza_older_than_the_maximum_age_is_old(self) -> None:
        stamp = self.now - timedelta(days=30) - SEC
        result = self.feed(self.says(ALICE_JID, "too old", stamp, delay=stamp, oid="a"))
        self.refused(result, "old")
        stamp = self.now - timedelta(days=29)
        self.delivered(
            self.feed(self.says(ALICE_JID, "old but kept", stamp, delay=stamp, oid="b")),
            "old but kept",
        )


class TestShorterMaximumDelay(ReplayCase):
    guard: ClassVar[dict[str, Any]] = {"max_delay": timedelta(days=2)}

    def test_the_maximum_age_is_configurable(self) -> None:
        stamp = self.now - timedelta(days=3)
        self.refused(self.feed(self.says(ALICE_JID, "x", stamp, delay=stamp)), "old")


class TestUpgrade(ReplayCase):
    def test_a_poisoned_global_floor_from_schema_1_is_retired(self) -> None:
        """A store written before this change, whose global floor a flood had moved
        4 minutes ahead (old code: every contact 'old'): after the upgrade, contacts
        are admitted, the setting is gone, and its digests are still replays."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "tester.sqlite3"
            before = self.says(ALICE_JID, "before the upgrade", self.now - MIN, oid="b")
            with mock.patch.object(sqlite_store, "MIGRATIONS", sqlite_store.MIGRATIONS[:1]):
                self.run_coro(_write_schema_1(path, before, self.now))
            self.restart(SQLiteStorage(path))
            try:
                self.delivered(self.feed(self.says(ALICE_JID, "after", self.now)), "after")
                assert (
                    self.run_coro(self.plugin.persistence.storage.get_setting("replay-floor-ms"))
                    is None
                )
                self.refused(self.feed(before), "replay")
            finally:
                self.run_coro(self.plugin.close())


async def _write_schema_1(path: Path, wire: str, now: datetime) -> None:
    """A schema-1 store that admitted ``wire`` (its digest, no sender), whose rule-3
    entry for Alice and whose global floor are 4 minutes ahead of ``now``."""
    store = SQLiteStorage(path)
    await store.open()
    await store.close()
    from slixmpp_objenc.core import open_envelope

    e2e = ET.fromstring(wire).find(E2E)
    assert e2e is not None
    opened = open_envelope(e2e, TESTER.private_key)
    floor_ms = int((now + 4 * MIN).timestamp() * 1000)
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO replay_seen (digest, timestamp_ms) VALUES (?, ?)",
        (opened.digest, int(opened.timestamp.timestamp() * 1000)),
    )
    received_ms = int((now - MIN).timestamp() * 1000)  # a stanza 5 minutes ahead, a minute ago
    conn.execute("INSERT INTO replay_last VALUES (?, ?, ?)", (ALICE_JID, floor_ms, received_ms))
    conn.execute("INSERT INTO settings VALUES ('replay-floor-ms', ?)", (str(floor_ms),))
    conn.commit()
    conn.close()


_ = ME  # (the recipient of every envelope here)
