"""The replay state in SQL (schema 2): what :class:`~slixmpp_objenc.store.sqlite.SQLiteStorage`
runs, inside its own transactions, for the replay methods of the storage interface.

Tables: ``replay_seen`` (digest, owner bare JID or ``''`` when not known,
timestamp), ``replay_senders`` (bare JID, floor, activity), ``replay_last``
(full JID, last timestamp, received) and ``replay_meta`` (the forgotten floor).
:func:`prune` applies the rules of :class:`~slixmpp_objenc.core.replay.ReplayLedger`.
"""

from __future__ import annotations

import sqlite3

from ..core.replay import UNATTRIBUTED, ReplayGuardState, ReplayPolicy, SenderState, bare_of

__all__ = ["load", "prune", "record"]


def load(conn: sqlite3.Connection) -> ReplayGuardState:
    last = conn.execute("SELECT sender, timestamp_ms, received_ms FROM replay_last")
    last_accepted = {sender: (ts, rx) for sender, ts, rx in last.fetchall()}
    seen = conn.execute(
        "SELECT digest, timestamp_ms, sender FROM replay_seen ORDER BY timestamp_ms, digest"
    ).fetchall()
    rows = conn.execute("SELECT sender, floor_ms, active_ms FROM replay_senders")
    senders = {sender: SenderState(floor, active) for sender, floor, active in rows}
    for digest, _, sender in seen:
        if sender in senders:
            senders[sender].digests.append(bytes(digest))
    return ReplayGuardState(
        last_accepted, [(bytes(d), ts) for d, ts, _ in seen], senders, _forgotten_floor(conn)
    )


def record(conn: sqlite3.Connection, sender: str, ts: int, rx: int, digest: bytes) -> None:
    bare = bare_of(sender)
    conn.execute(
        "INSERT INTO replay_seen (digest, sender, timestamp_ms) VALUES (?, ?, ?)"
        " ON CONFLICT (digest) DO UPDATE SET sender = excluded.sender,"
        " timestamp_ms = excluded.timestamp_ms",
        (digest, bare, ts),
    )
    if not bare:
        return
    conn.execute(
        "INSERT INTO replay_last (sender, timestamp_ms, received_ms) VALUES (?, ?, ?)"
        " ON CONFLICT (sender) DO UPDATE SET"
        " timestamp_ms = max(timestamp_ms, excluded.timestamp_ms),"
        " received_ms = max(received_ms, excluded.received_ms)",
        (sender, min(ts, rx), rx),  # never later than our own clock
    )
    conn.execute(  # a new sender starts at the forgotten floor
        "INSERT INTO replay_senders (sender, floor_ms, active_ms)"
        " SELECT ?, value, ? FROM replay_meta WHERE name = 'forgotten_floor_ms'"
        " ON CONFLICT (sender) DO UPDATE SET active_ms = max(active_ms, excluded.active_ms)",
        (bare, rx),
    )


def _forgotten_floor(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM replay_meta WHERE name = 'forgotten_floor_ms'")
    return int(row.fetchone()[0])


def prune(conn: sqlite3.Connection, policy: ReplayPolicy, now: int, keep: frozenset[str]) -> None:
    """:meth:`ReplayLedger.prune <slixmpp_objenc.core.replay.ReplayLedger.prune>` in SQL."""
    horizon, stale, quiet = policy.horizon(now), now - policy.window_ms, policy.quiet(now)
    forgotten = _forgotten_floor(conn)
    forgotten = forgotten if forgotten >= horizon else 0
    conn.execute("DELETE FROM replay_seen WHERE timestamp_ms < ?", (horizon,))
    conn.execute("DELETE FROM replay_last WHERE received_ms < ?", (stale,))
    conn.execute(
        "DELETE FROM replay_last WHERE sender IN (SELECT sender FROM replay_last"
        " ORDER BY received_ms DESC, sender DESC LIMIT -1 OFFSET ?)",
        (policy.max_entries,),
    )
    conn.execute("UPDATE replay_senders SET floor_ms = 0 WHERE floor_ms < ?", (horizon,))
    over = conn.execute(
        "SELECT sender, count(*) FROM replay_seen WHERE sender != ? GROUP BY sender"
        " HAVING count(*) > ?",
        (UNATTRIBUTED, policy.max_per_sender),
    ).fetchall()
    for sender, count in over:
        rows = conn.execute(
            "SELECT sender, digest, timestamp_ms FROM replay_seen WHERE sender = ?"
            " ORDER BY timestamp_ms, digest LIMIT ?",
            (sender, count - policy.max_per_sender),
        )
        _evict(conn, rows.fetchall())
    query = "SELECT count(*) FROM replay_seen WHERE sender != ?"
    total = int(conn.execute(query, (UNATTRIBUTED,)).fetchone()[0])
    if total > policy.max_entries:
        rows = conn.execute(
            "SELECT sender, digest, timestamp_ms FROM replay_seen WHERE sender != ?"
            " ORDER BY timestamp_ms, digest LIMIT ?",
            (UNATTRIBUTED, total - policy.max_entries),
        )
        _evict(conn, rows.fetchall())
    conn.execute(
        "DELETE FROM replay_senders WHERE active_ms < ? AND floor_ms <= ? AND NOT EXISTS"
        " (SELECT 1 FROM replay_seen WHERE replay_seen.sender = replay_senders.sender)",
        (stale, forgotten),
    )
    count = int(conn.execute("SELECT count(*) FROM replay_senders").fetchone()[0])
    if count > policy.max_senders:
        order = "SELECT sender, floor_ms, active_ms FROM replay_senders ORDER BY active_ms, sender"
        for sender, floor, active in conn.execute(order).fetchall():
            if count <= policy.max_senders:
                break
            if sender in keep:
                continue
            query = "SELECT max(timestamp_ms) FROM replay_seen WHERE sender = ?"
            newest = max(floor, conn.execute(query, (sender,)).fetchone()[0] or floor)
            if active >= quiet or newest >= quiet:
                break  # the least recently active is not quiet: no one is
            forgotten = max(forgotten, newest)
            conn.execute("DELETE FROM replay_seen WHERE sender = ?", (sender,))
            conn.execute("DELETE FROM replay_senders WHERE sender = ?", (sender,))
            count -= 1
    conn.execute("UPDATE replay_meta SET value = ? WHERE name = 'forgotten_floor_ms'", (forgotten,))


def _evict(conn: sqlite3.Connection, rows: list[tuple[str, bytes, int]]) -> None:
    """Drop these digests, raising each owner's floor to the newest of its dropped."""
    floors: dict[str, int] = {}
    for sender, _, ts in rows:
        floors[sender] = max(floors.get(sender, ts), ts)
    conn.executemany("DELETE FROM replay_seen WHERE digest = ?", [(d,) for _, d, _ in rows])
    conn.executemany(
        "INSERT INTO replay_senders (sender, floor_ms, active_ms) VALUES (?, ?, 0)"
        " ON CONFLICT (sender) DO UPDATE SET floor_ms = max(floor_ms, excluded.floor_ms)",
        list(floors.items()),
    )
