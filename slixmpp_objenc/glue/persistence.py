"""Persistence: loading the account's state at start, and writing behind.

Owns the store's lifecycle (open, load, flush, close), the readiness the
other modules wait for, the sending clock kept monotonic across restarts,
and the write-behind queue, so the stanza path never waits for storage.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ..conversations import ConversationSettings
from ..core import (
    CertificateError,
    EncryptionError,
    Identity,
    PeerCertificate,
    ReplayGuard,
    TimestampSource,
    format_timestamp,
    load_certificate,
    load_private_key,
    parse_timestamp,
    validate_peer_certificate,
)
from ..core.addressing import AddressParser
from ..core.receive import Admission
from ..core.timestamps import PRUNE_EVERY, to_ms
from ..keyring import Keyring
from ..own_device import RotationOutcome
from ..store import PeerRecord, Storage
from .common import Tasks

__all__ = ["Persistence", "default_storage", "identity_from_config"]

log = logging.getLogger(__name__)

LAST_SENT = "last-sent-timestamp"
RETIRED_REPLAY_FLOOR = "replay-floor-ms"
"""The global replay floor of schema 1, deleted at load: one sender could move it for
all, and every digest it stood for is still in the store (nothing ever pruned it)."""


class Persistence:
    """The account's store, its loading, and the write-behind queue."""

    def __init__(
        self,
        storage: Storage,
        keyring: Keyring,
        clock: Callable[[], datetime],
        tasks: Tasks,
    ) -> None:
        self.storage = storage
        self.keyring = keyring
        self.conversations = ConversationSettings(storage, keyring.normalize)
        """The hybrid switch and passphrases per contact (loaded with the keys)."""
        self.loaders: list[Callable[[], Awaitable[None]]] = [self.conversations.load]
        """What else reads the store at load, after the key ring, before anything
        encrypted is let through."""
        self._clock = clock
        self._tasks = tasks
        self.loaded = asyncio.Event()
        self.load_error: BaseException | None = None
        self.rotated: RotationOutcome | None = None
        """What the rotation run at start did (before the first publication)."""
        self.own_certificate: PeerCertificate | None = None
        """Our own certificate as a recipient, validated once at load."""
        self.configured: Identity | None = None
        """An RSA identity given in the configuration (``identity``, ``key_file``)."""
        self.timestamps = TimestampSource(clock)
        self._writes: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue()
        self._writer_task: asyncio.Future[None] | None = None
        self._closing: asyncio.Future[None] | None = None
        self._admissions = 0
        self._last_sent: datetime | None = None
        self._stored_last_sent: datetime | None = None

    # -- what the glue reads ---------------------------------------------------

    def identities(self) -> Sequence[Identity]:
        """Our RSA identities, the active one first (the configured one before load)."""
        identities = self.keyring.identities
        if identities:
            return identities
        return [self.configured] if self.configured is not None else []

    def own_recipient(self) -> PeerCertificate | None:
        """Our own certificate as a recipient of what we send: our identity in the
        authenticated profile, else the RSA one validated at load."""
        device = self.keyring.device.certificate()
        if device is not None:
            return device
        own = self.own_certificate
        identity = self.keyring.identity or self.configured
        return (
            own
            if own is not None and identity and own.fingerprint == identity.fingerprint
            else None
        )

    # -- loading -----------------------------------------------------------

    async def load(
        self,
        *,
        bare: str,
        configured: Identity | None,
        key_size: int,
        replay_guard: ReplayGuard,
        authenticated: bool = True,
        parse: AddressParser,
    ) -> None:
        """Open the store, load or make our identity, restore the replay state and
        the sending clock. Never raises: a failure is kept in :attr:`load_error`
        (encryption then fails closed); :attr:`loaded` is set either way."""
        try:
            await self.storage.open()
            await self.keyring.load()
            for loader in self.loaders:
                await loader()
            if configured is not None:
                if self.keyring.identity is None or (
                    self.keyring.identity.fingerprint != configured.fingerprint
                ):
                    await self.keyring.add_identity(configured)
            else:
                await self.keyring.ensure_identity(bare, key_size=key_size)
            self._check_own_identity(bare, configured, parse)
            if authenticated:
                await self.keyring.device.ensure(bare)
                self.rotated = await self.keyring.device.rotate_now()
            await self._load_replay_state(replay_guard)
            last = await self.storage.get_setting(LAST_SENT)
            if last:
                # up to a second of sending may not have been stored: start past it
                resume = parse_timestamp(last) + timedelta(seconds=1)
                self.timestamps = TimestampSource(self._clock, last=resume)
                # on disk before anything is sent: a second crash resumes past it
                await self.storage.set_setting(LAST_SENT, format_timestamp(resume))
                self._stored_last_sent = resume
        except Exception as exc:
            log.exception("objenc: cannot load keys; encryption is unavailable (fail closed)")
            self.load_error = exc
        finally:
            self.loaded.set()

    async def _load_replay_state(self, guard: ReplayGuard) -> None:
        """Restore the replay state, then bound it, in memory and in the store."""
        guard.restore(await self.storage.load_replay_state())
        now = self._clock()
        guard.prune(now)
        await self.storage.prune_replay_state(guard.policy, to_ms(now), guard.kept_senders())
        retired = await self.storage.get_setting(RETIRED_REPLAY_FLOOR)
        if retired is not None:
            log.info("objenc: dropping the global replay floor of schema 1 (%s)", retired)
            await self.storage.set_setting(RETIRED_REPLAY_FLOOR, None)

    def _check_own_identity(
        self, bare: str, configured: Identity | None, parse: AddressParser
    ) -> None:
        identity = self.keyring.identity or configured
        if identity is None:
            raise EncryptionError("no identity yet: await plugin.ready()")
        try:
            own = validate_peer_certificate(
                identity.certificate, now=self._clock(), normalize=self.keyring.normalize
            )
        except CertificateError as exc:
            raise EncryptionError(f"our own certificate is unusable: {exc}") from exc
        self.own_certificate = own
        if bare and parse(bare).bare not in {parse(j).bare for j in own.jids}:
            raise EncryptionError(f"our certificate does not name {bare}")

    # -- writing behind ----------------------------------------------------

    def write(self, write: Callable[[], Awaitable[None]]) -> None:
        """Queue a write; they run in order, and the stanza path never waits."""
        self._writes.put_nowait(write)
        self._ensure_writer()

    def _ensure_writer(self) -> None:
        # Not one of the plugin's tasks: unloading the plugin must not cancel
        # the writes it still owes the store.
        writer = self._writer_task
        if (writer is None or writer.done()) and not self._writes.empty():
            self._writer_task = asyncio.ensure_future(self._writer(), loop=self._tasks.loop)

    async def _writer(self) -> None:
        while not self._writes.empty():
            write = await self._writes.get()
            try:
                await write()
            except Exception:
                log.exception("objenc: a write to the store failed")
            finally:
                self._writes.task_done()

    def pending_writes(self) -> int:
        """How many writes are queued (benchmarks and tests)."""
        return self._writes.qsize()

    async def flush(self) -> None:
        """Wait until every pending write has reached the store."""
        self._ensure_writer()
        await self._writes.join()

    def start_closing(self) -> asyncio.Future[None]:
        """Begin :meth:`close` in the background (plugin unloaded); idempotent."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close(), loop=self._tasks.loop)
        return self._closing

    async def close(self) -> None:
        """Store the sending clock, flush pending writes and close the store; once."""
        await asyncio.shield(self.start_closing())

    async def _close(self) -> None:
        if self._last_sent is not None:
            self._note_last_sent(self._last_sent, force=True)
        await self.flush()
        await self.storage.close()

    def save_peer(self, record: PeerRecord) -> None:
        self.write(lambda: self.storage.save_peer(record))

    def delete_peer(self, jid: str, fingerprint: str) -> None:
        self.write(lambda: self.storage.delete_peer(jid, fingerprint))

    def set_setting(self, key: str, value: str | None) -> None:
        self.write(lambda: self.storage.set_setting(key, value))

    def admitted(self, admission: Admission, guard: ReplayGuard) -> None:
        """Keep what the replay guard admitted; every ``PRUNE_EVERY`` admissions (as the
        guard prunes itself), bound the store too, never folding a sender the guard keeps."""
        self.write(
            lambda: self.storage.record_admitted(
                admission.sender, admission.timestamp_ms, admission.received_ms, admission.digest
            )
        )
        self._admissions += 1
        if self._admissions % PRUNE_EVERY == 0:
            policy, now_ms, keep = guard.policy, admission.received_ms, guard.kept_senders()
            self.write(lambda: self.storage.prune_replay_state(policy, now_ms, keep))

    # -- the sending clock -------------------------------------------------

    def next_timestamp(self) -> datetime:
        """The timestamp for the next stanza we seal (strictly increasing)."""
        timestamp = self.timestamps.next()
        self._note_last_sent(timestamp)
        return timestamp

    def _note_last_sent(self, timestamp: datetime, *, force: bool = False) -> None:
        """Keep the sending clock monotonic across restarts without a write per
        stanza: stored when it moved a second past the stored value (and on close)."""
        self._last_sent = timestamp
        stored = self._stored_last_sent
        if force or stored is None or (timestamp - stored).total_seconds() >= 1.0:
            self._stored_last_sent = timestamp
            self.set_setting(LAST_SENT, format_timestamp(timestamp))


def identity_from_config(config: dict[str, Any]) -> Identity | None:
    """Our identity as configured (``identity``, or ``key_file`` + ``cert_file``), if any."""
    configured = config.get("identity")
    if isinstance(configured, Identity):
        return configured
    key_file, cert_file = config.get("key_file"), config.get("cert_file")
    if not (key_file or cert_file):
        return None
    if not (key_file and cert_file):
        raise EncryptionError("key_file and cert_file must be given together")
    mode = os.stat(key_file).st_mode
    if mode & stat.S_IROTH:
        raise EncryptionError(
            f"refusing to use {key_file}: the private key is world-readable (chmod 600 {key_file})"
        )
    password = config.get("key_password")
    if isinstance(password, str):
        password = password.encode()
    try:
        key = load_private_key(Path(key_file).read_bytes(), password)
        cert = load_certificate(Path(cert_file).read_bytes())
        return Identity(key, cert)
    except (OSError, CertificateError) as exc:
        raise EncryptionError(f"cannot load our key or certificate: {exc}") from exc


def default_storage(config: dict[str, Any], bare: str) -> Storage:
    """The per-account SQLite store under ``data_dir`` (or the platform data directory)."""
    from ..store.sqlite import SQLiteStorage, account_store_path, default_data_dir

    data_dir = config.get("data_dir")
    directory = Path(data_dir) if data_dir else default_data_dir()
    return SQLiteStorage(account_store_path(directory, bare))
