"""An SQLite backend: one file per account, standard library :mod:`sqlite3` only.

Durability. The database runs in WAL mode with ``synchronous=NORMAL``: a
commit has been written to the WAL file (the operating system's page cache)
when the call returns, so it survives a crash or ``SIGKILL`` of the process,
which is the :class:`~slixmpp_objenc.store.base.Storage` contract. (A power
loss may lose the last few commits, never the consistency of the file; use
``synchronous=FULL`` if that matters more than write latency.) Every public
method is exactly one transaction, opened with ``BEGIN IMMEDIATE`` for writes,
so a returning call is committed and a failing one leaves nothing behind.

Threading. The ``sqlite3`` calls run directly in the event loop thread. They
are short (a few indexed rows, no fsync on commit thanks to
``synchronous=NORMAL``), so handing them to a worker thread would cost more
than it saves, and it keeps the one connection in one thread (``sqlite3``'s
``check_same_thread`` stays on and catches misuse). Because no method awaits
in the middle of a transaction, two coroutines can never interleave on it.

Security. The file holds our private keys in the clear, so it is created
``0600`` (before SQLite opens it) in a directory created ``0700``, and
:meth:`SQLiteStorage.open` refuses an existing file that other users can read
or write. ``secure_delete`` is on so that replaced keys are overwritten in the
file rather than left in free pages. On Windows, where POSIX modes mean
little, the mode check is skipped and the file inherits the ACL of
``%APPDATA%``.

Schema versions. ``PRAGMA user_version`` holds the schema version and
``PRAGMA application_id`` marks the file as ours. :data:`MIGRATIONS` lists
the steps: ``MIGRATIONS[n]`` takes a database from version ``n`` to ``n + 1``
(so entry 0 creates version 1, the initial schema). :meth:`SQLiteStorage.open`
applies each missing step in its own transaction, together with the version
bump, and refuses, without writing anything, a file whose version is newer
than :data:`MIGRATIONS` knows. Adding a version is appending one entry, e.g.
``_sql("ALTER TABLE peers ADD COLUMN label TEXT")``. Version 2 keeps the replay
state per sender bare JID (PROTOCOL.md 6); digests from version 1 have no known
sender and are kept, refused from every sender, until they expire. Version 3
adds the authenticated profile's keys (PROTOCOL.md 13): an identity's X25519
encryption key and certificate, a peer's latest encryption certificate (all
``NULL`` for RSA, so older rows read as such). Version 4 adds the history of our
encryption keys (:mod:`~slixmpp_objenc.store.sqlite_keys`). Version 5 keeps a
peer's earlier encryption certificates that are still valid (their late stanzas
still prove their sender after a rotation). Version 6 keeps the ML-KEM-768 key
issued with each of our encryption keys (the hybrid wrap).

Times are stored as integer milliseconds since the epoch, UTC (sub-millisecond
precision is truncated, like everywhere else in the protocol), and come back
as aware UTC datetimes. Naive datetimes are refused with ``ValueError``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
import sys
from collections.abc import Callable, Collection, Iterator
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from pathlib import Path
from typing import Final

from ..core.certificates import normalize_bare_jid
from ..core.errors import EncryptionError
from ..core.replay import ReplayGuardState, ReplayPolicy
from . import sqlite_keys as keys_sql
from . import sqlite_replay as replay_sql
from .base import OwnEncryptionKeyRecord, OwnIdentityRecord, PeerRecord, Storage, TrustState

__all__ = [
    "APPLICATION_ID",
    "MIGRATIONS",
    "Migration",
    "SQLiteStorage",
    "account_store_path",
    "default_data_dir",
]

log = logging.getLogger(__name__)

APP_NAME: Final = "slixmpp-objenc"
APPLICATION_ID: Final = 0x4F424A45
"""``PRAGMA application_id`` of our files ("OBJE")."""
BUSY_TIMEOUT_MS: Final = 5000
_FORBIDDEN_MODE_BITS: Final = stat.S_IROTH | stat.S_IWOTH
_SAFE_NAME_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-")
_MAX_NAME_CHARS: Final = 200
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

Migration = Callable[[sqlite3.Connection], None]
"""One schema step; runs inside the transaction that also bumps ``user_version``."""


def _sql(*statements: str) -> Migration:
    """A migration made of plain SQL statements, executed in order.

    (Not ``executescript``, which would commit the enclosing transaction.)
    """

    def migrate(conn: sqlite3.Connection) -> None:
        for statement in statements:
            conn.execute(statement)

    return migrate


_V1_INITIAL_SCHEMA: Final = _sql(
    f"PRAGMA application_id = {APPLICATION_ID}",
    """
    CREATE TABLE identities (
        id          INTEGER PRIMARY KEY,
        fingerprint TEXT    NOT NULL UNIQUE,
        key_pem     BLOB    NOT NULL,
        cert_pem    BLOB    NOT NULL,
        created_at  INTEGER NOT NULL,
        active      INTEGER NOT NULL CHECK (active IN (0, 1))
    )
    """,
    """
    CREATE TABLE peers (
        jid         TEXT    NOT NULL,
        fingerprint TEXT    NOT NULL,
        cert_pem    BLOB    NOT NULL,
        trust       TEXT    NOT NULL,
        first_seen  INTEGER NOT NULL,
        last_seen   INTEGER NOT NULL,
        source      TEXT    NOT NULL,
        PRIMARY KEY (jid, fingerprint)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE replay_last (
        sender       TEXT    PRIMARY KEY,
        timestamp_ms INTEGER NOT NULL,
        received_ms  INTEGER NOT NULL
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE replay_seen (
        id           INTEGER PRIMARY KEY,
        digest       BLOB    NOT NULL UNIQUE,
        timestamp_ms INTEGER NOT NULL
    )
    """,
    "CREATE INDEX replay_seen_by_timestamp ON replay_seen (timestamp_ms)",
    """
    CREATE TABLE settings (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID
    """,
)

_V2_REPLAY_PER_SENDER: Final = _sql(
    "ALTER TABLE replay_seen ADD COLUMN sender TEXT NOT NULL DEFAULT ''",  # '': not known
    "CREATE INDEX replay_seen_by_sender ON replay_seen (sender, timestamp_ms)",
    """
    CREATE TABLE replay_senders (
        sender    TEXT    PRIMARY KEY,
        floor_ms  INTEGER NOT NULL,
        active_ms INTEGER NOT NULL
    ) WITHOUT ROWID
    """,
    "CREATE TABLE replay_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
    "INSERT INTO replay_meta (name, value) VALUES ('forgotten_floor_ms', 0)",
    # schema 1 kept the timestamp as sent: one dated ahead blocked its sender
    "UPDATE replay_last SET timestamp_ms = received_ms WHERE timestamp_ms > received_ms",
    """
    INSERT INTO replay_senders (sender, floor_ms, active_ms)
    SELECT bare, 0, max(received_ms) FROM (
        SELECT substr(sender, 1, instr(sender || '/', '/') - 1) AS bare, received_ms
        FROM replay_last
    ) WHERE bare != '' GROUP BY bare
    """,
)

_V3_ENCRYPTION_CERTIFICATES: Final = _sql(
    "ALTER TABLE identities ADD COLUMN encryption_key_pem BLOB",
    "ALTER TABLE identities ADD COLUMN encryption_cert_pem BLOB",
    "ALTER TABLE peers ADD COLUMN encryption_pem BLOB",
)

_V4_ENCRYPTION_KEY_HISTORY: Final = _sql(keys_sql.CREATE_TABLE)

_V5_PREVIOUS_ENCRYPTION_CERTIFICATES: Final = _sql(
    "ALTER TABLE peers ADD COLUMN previous_encryption_pem BLOB",
)

_V6_ML_KEM_KEYS: Final = _sql(*keys_sql.ADD_KEM)

MIGRATIONS: list[Migration] = [
    _V1_INITIAL_SCHEMA,
    _V2_REPLAY_PER_SENDER,
    _V3_ENCRYPTION_CERTIFICATES,
    _V4_ENCRYPTION_KEY_HISTORY,
    _V5_PREVIOUS_ENCRYPTION_CERTIFICATES,
    _V6_ML_KEM_KEYS,
]
"""``MIGRATIONS[n]`` migrates version ``n`` to ``n + 1``; the latest version is its length."""


# -- where the files live ----------------------------------------------------


def default_data_dir() -> Path:
    """The per-user data directory for this package on this platform.

    ``$XDG_DATA_HOME/slixmpp-objenc`` (default ``~/.local/share``) on Linux
    and the BSDs, ``~/Library/Application Support/slixmpp-objenc`` on macOS,
    ``%APPDATA%\\slixmpp-objenc`` on Windows.
    """
    platform: str = sys.platform
    if platform == "win32":
        appdata = os.environ.get("APPDATA")
        root = Path(appdata) if appdata else Path.home() / "AppData" / "Roaming"
    elif platform == "darwin":
        root = Path.home() / "Library" / "Application Support"
    else:
        xdg = os.environ.get("XDG_DATA_HOME")
        # The XDG spec says relative paths are invalid and must be ignored.
        root = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return root / APP_NAME


def account_store_path(data_dir: Path, bare_jid: str) -> Path:
    """The database file of one account: ``data_dir/<encoded bare JID>.sqlite3``.

    The name is the lowercased bare JID (a resource, if any, is dropped) with
    every UTF-8 byte outside ``[a-z0-9._-]`` percent-encoded (upper-case hex),
    which is injective, safe on every filesystem and unambiguous even where
    names are case-insensitive. Very long JIDs are cut and suffixed with a
    hash (``~`` never occurs in an encoded name) to stay under name limits.
    """
    bare = normalize_bare_jid(bare_jid)
    if not bare:
        raise ValueError("empty JID")
    name = "".join(
        chr(byte) if chr(byte) in _SAFE_NAME_CHARS else f"%{byte:02X}"
        for byte in bare.encode("utf-8")
    )
    if len(name) > _MAX_NAME_CHARS:
        name = f"{name[:150]}~{sha256(bare.encode('utf-8')).hexdigest()[:32]}"
    return Path(data_dir) / f"{name}.sqlite3"


# -- conversions --------------------------------------------------------------


def _to_ms(value: datetime) -> int:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("naive datetime; use an aware UTC datetime")
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _blob(value: bytes | None) -> bytes | None:
    return None if value is None else bytes(value)


def _prefix_upper_bound(prefix: str) -> str | None:
    """The least string greater than every string that starts with ``prefix``.

    SQLite's default BINARY collation compares UTF-8 bytes, which orders like
    code points, so ``prefix <= key < bound`` selects exactly the keys starting
    with ``prefix``; ``None`` means no upper bound (empty prefix, or only
    U+10FFFF). Surrogates are skipped: they cannot be stored at all.
    """
    stem = prefix.rstrip("\U0010ffff")
    if not stem:
        return None
    following = ord(stem[-1]) + 1
    if 0xD800 <= following <= 0xDFFF:
        following = 0xE000
    return stem[:-1] + chr(following)


# -- the file ------------------------------------------------------------------


def _prepare_file(path: Path) -> None:
    """Create the directory (0700) and the file (0600), or vet an existing file."""
    try:
        path.parent.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass
    else:
        if os.name == "posix":
            os.chmod(path.parent, 0o700)  # whatever the umask
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        pass
    else:
        try:
            if os.name == "posix":
                os.fchmod(fd, 0o600)  # exactly, whatever the umask
        finally:
            os.close(fd)
        return
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise EncryptionError(f"{path} is not a regular file")
    if os.name == "posix" and st.st_mode & _FORBIDDEN_MODE_BITS:
        raise EncryptionError(
            f"refusing to open {path}: it holds private keys but its mode "
            f"{stat.S_IMODE(st.st_mode):04o} lets other users read or write it; "
            f"run 'chmod 600 {path}' if that is safe"
        )


class SQLiteStorage(Storage):
    """The persistent state of one account in one SQLite file (see the module notes)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None

    # -- lifecycle

    async def open(self) -> None:
        if self._conn is not None:
            return
        _prepare_file(self.path)
        # Vet the file through a read-only connection first, so that a file we must
        # refuse is never written to, not even by a WAL checkpoint when closing.
        try:
            probe = sqlite3.connect(
                self.path.resolve().as_uri() + "?mode=ro", uri=True, isolation_level=None
            )
            try:
                self._check_version(probe)
            finally:
                probe.close()
        except sqlite3.DatabaseError as exc:
            raise EncryptionError(f"cannot open {self.path}: {exc}") from exc
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA secure_delete = ON")  # destroy_encryption_key relies on it
            self._check_version(conn)  # again: it may have changed in between
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("%s: WAL journal unavailable, using %s", self.path, mode)
            conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise EncryptionError(f"cannot open {self.path}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _check_version(self, conn: sqlite3.Connection) -> None:
        version = _user_version(conn)
        if version > len(MIGRATIONS):
            raise self._too_new(version)
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        if version == 0:
            objects = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if objects or app_id not in (0, APPLICATION_ID):
                raise EncryptionError(f"{self.path} is a database but not a slixmpp-objenc store")
        elif app_id != APPLICATION_ID:
            raise EncryptionError(f"{self.path} is not a slixmpp-objenc store")

    def _migrate(self, conn: sqlite3.Connection) -> None:
        while True:
            with _transaction(conn, write=True):
                version = _user_version(conn)  # again, under the write lock
                if version > len(MIGRATIONS):
                    raise self._too_new(version)
                if version == len(MIGRATIONS):
                    return
                try:
                    MIGRATIONS[version](conn)
                except Exception as exc:
                    raise EncryptionError(
                        f"{self.path}: migration to schema version {version + 1} failed "
                        f"(the file stays at version {version}): {exc}"
                    ) from exc
                conn.execute(f"PRAGMA user_version = {version + 1:d}")
            log.info("%s: migrated to schema version %d", self.path, version + 1)

    def _too_new(self, version: int) -> EncryptionError:
        return EncryptionError(
            f"{self.path} has schema version {version}, newer than the {len(MIGRATIONS)} "
            "this version of slixmpp-objenc knows; upgrade slixmpp-objenc (the file was "
            "not modified)"
        )

    @contextlib.contextmanager
    def _tx(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        if self._conn is None:
            raise RuntimeError("SQLiteStorage used before open() or after close()")
        with _transaction(self._conn, write=write) as conn:
            yield conn

    # -- our identities

    async def load_identities(self) -> list[OwnIdentityRecord]:
        with self._tx(write=False) as conn:
            rows = conn.execute(
                "SELECT fingerprint, key_pem, cert_pem, created_at, active,"
                " encryption_key_pem, encryption_cert_pem"
                " FROM identities ORDER BY created_at, id"
            ).fetchall()
        return [
            OwnIdentityRecord(
                fingerprint=fingerprint,
                key_pem=bytes(key_pem),
                cert_pem=bytes(cert_pem),
                created_at=_from_ms(created_at),
                active=bool(active),
                encryption_key_pem=_blob(enc_key),
                encryption_cert_pem=_blob(enc_cert),
            )
            for fingerprint, key_pem, cert_pem, created_at, active, enc_key, enc_cert in rows
        ]

    async def save_identity(self, record: OwnIdentityRecord) -> None:
        params = (
            record.fingerprint,
            bytes(record.key_pem),
            bytes(record.cert_pem),
            _to_ms(record.created_at),
            int(bool(record.active)),
            _blob(record.encryption_key_pem),
            _blob(record.encryption_cert_pem),
        )
        with self._tx(write=True) as conn:
            # An upsert, not INSERT OR REPLACE: the row keeps its id, hence its place.
            conn.execute(
                "INSERT INTO identities (fingerprint, key_pem, cert_pem, created_at, active,"
                " encryption_key_pem, encryption_cert_pem) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (fingerprint) DO UPDATE SET key_pem = excluded.key_pem,"
                " cert_pem = excluded.cert_pem, created_at = excluded.created_at,"
                " active = excluded.active, encryption_key_pem = excluded.encryption_key_pem,"
                " encryption_cert_pem = excluded.encryption_cert_pem",
                params,
            )

    # -- our encryption keys

    async def load_encryption_keys(self) -> list[OwnEncryptionKeyRecord]:
        with self._tx(write=False) as conn:
            return keys_sql.load(conn, _from_ms)

    async def save_encryption_key(self, record: OwnEncryptionKeyRecord) -> None:
        with self._tx(write=True) as conn:
            keys_sql.save(conn, record, _to_ms)

    async def destroy_encryption_key(self, fingerprint: str) -> None:
        with self._tx(write=True) as conn:
            keys_sql.delete(conn, fingerprint)
        keys_sql.checkpoint(conn, self.path)  # after the commit: the WAL let go of the page

    # -- peers

    async def load_peers(self) -> list[PeerRecord]:
        with self._tx(write=False) as conn:
            rows = conn.execute(
                "SELECT jid, fingerprint, cert_pem, trust, first_seen, last_seen, source,"
                " encryption_pem, previous_encryption_pem FROM peers ORDER BY jid, fingerprint"
            ).fetchall()
        return [
            PeerRecord(
                jid=jid,
                fingerprint=fingerprint,
                cert_pem=bytes(cert_pem),
                trust=TrustState(trust),
                first_seen=_from_ms(first_seen),
                last_seen=_from_ms(last_seen),
                source=source,
                encryption_pem=_blob(enc_pem),
                previous_encryption_pem=_blob(previous),
            )
            for (
                jid,
                fingerprint,
                cert_pem,
                trust,
                first_seen,
                last_seen,
                source,
                enc_pem,
                previous,
            ) in rows
        ]

    async def save_peer(self, record: PeerRecord) -> None:
        params = (
            record.jid,
            record.fingerprint,
            bytes(record.cert_pem),
            TrustState(record.trust).value,
            _to_ms(record.first_seen),
            _to_ms(record.last_seen),
            record.source,
            _blob(record.encryption_pem),
            _blob(record.previous_encryption_pem),
        )
        with self._tx(write=True) as conn:
            conn.execute(
                "INSERT OR REPLACE INTO peers (jid, fingerprint, cert_pem, trust,"
                " first_seen, last_seen, source, encryption_pem, previous_encryption_pem)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                params,
            )

    async def delete_peer(self, jid: str, fingerprint: str) -> None:
        with self._tx(write=True) as conn:
            conn.execute("DELETE FROM peers WHERE jid = ? AND fingerprint = ?", (jid, fingerprint))

    # -- replay protection

    async def load_replay_state(self) -> ReplayGuardState:
        with self._tx(write=False) as conn:
            return replay_sql.load(conn)

    async def record_admitted(
        self, sender: str, timestamp_ms: int, received_ms: int, digest: bytes
    ) -> None:
        with self._tx(write=True) as conn:
            replay_sql.record(conn, sender, int(timestamp_ms), int(received_ms), bytes(digest))

    async def prune_replay_state(
        self, policy: ReplayPolicy, now_ms: int, keep: Collection[str] = ()
    ) -> None:
        with self._tx(write=True) as conn:
            replay_sql.prune(conn, policy, int(now_ms), frozenset(keep))

    # -- settings

    async def get_setting(self, key: str) -> str | None:
        with self._tx(write=False) as conn:
            row = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    async def set_setting(self, key: str, value: str | None) -> None:
        with self._tx(write=True) as conn:
            if value is None:
                conn.execute("DELETE FROM settings WHERE key = ?", (key,))
            else:
                conn.execute(
                    "INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (key, value)
                )

    async def settings_with_prefix(self, prefix: str) -> dict[str, str]:
        # A range scan on the primary key: no LIKE, so '%' and '_' are just characters.
        upper = _prefix_upper_bound(prefix)
        with self._tx(write=False) as conn:
            if upper is None:
                rows = conn.execute(
                    "SELECT key, value FROM settings WHERE key >= ?", (prefix,)
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT key, value FROM settings WHERE key >= ? AND key < ?",
                    (prefix, upper),
                ).fetchall()
        return {key: value for key, value in rows if key.startswith(prefix)}


def _user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection, *, write: bool) -> Iterator[sqlite3.Connection]:
    """One explicit transaction (the connection is in autocommit mode otherwise).

    Writes take the write lock up front (``BEGIN IMMEDIATE``) so they wait on
    ``busy_timeout`` instead of failing half-way; reads get one snapshot.
    """
    conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
