"""Base of the throwaway XMPP servers for integration tests, demos and benchmarks.

:class:`XmppServer` holds what does not depend on the server software: a
temporary directory with a freshly generated TLS certificate (a throwaway CA
and a server certificate for the domain), one free loopback c2s port, the
process (started in the foreground, stopped by its pid: SIGTERM, then
SIGKILL), readiness (the port serves STARTTLS stream features), crash and
restart (:meth:`~XmppServer.kill`, :meth:`~XmppServer.restart`: same data and
port), reading what the server stored (:meth:`~XmppServer.stored_files_text`,
:meth:`~XmppServer.wait_for_stored_text`) and, from
:class:`~slixmpp_objenc.testing.clients.ServerClients`, accounts and
connected clients.  :class:`~slixmpp_objenc.testing.prosody.ProsodyServer`
and :class:`~slixmpp_objenc.testing.ejabberd.EjabberdServer` add the
configuration, the command line and where the data lands.

Only the standard library, ``cryptography`` and ``slixmpp`` are used.
Nothing here ever resolves a name or contacts an address other than the
server's loopback address.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Final, Self

from .certs import generate_certificate
from .clients import RegistrationError, ServerClients, ServerError

__all__ = [
    "DEFAULT_DOMAIN",
    "RegistrationError",
    "ServerError",
    "XmppServer",
    "find_free_port",
    "generate_certificate",
]

DEFAULT_DOMAIN: Final = "objenc.test"

_LOG_TAIL_LINES: Final = 40

# Servers that are still running; killed at interpreter exit as a last resort
# (e.g. when a test run is interrupted before fixture teardown).
_LIVE_SERVERS: weakref.WeakSet[XmppServer] = weakref.WeakSet()


class _PortInUseError(ServerError):
    pass


def find_free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on *host* that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class XmppServer(ServerClients):
    """A private XMPP server listening on one loopback c2s port (base class).

    Subclasses set :attr:`kind` and implement :attr:`data_dir`,
    :attr:`log_path`, :attr:`config_path`, :meth:`render_config`,
    :meth:`_command` and :meth:`user_store_bytes`; they may override the
    other ``_``-hooks.

    :param domain: the XMPP domain.  It is never resolved: clients connect
        to :attr:`host`/:attr:`c2s_port` explicitly.
    :param host: loopback address to listen on.
    :param debug: log at debug level (stanzas included) instead of info.
    :param keep: keep the temporary directory after :meth:`stop` (for
        post-mortem inspection; its path is :attr:`base_dir`).
    :param start_timeout: seconds :meth:`start` waits for the server.
    :param smacks_hibernation_time: seconds a XEP-0198 session survives.
    :param base_dir: parent directory for the temporary directory.
    :param verify_tls: make :meth:`prepare_client` verify the server
        certificate against :attr:`ca_cert_path` (default: no verification).
    """

    #: Short name of the server software (directory prefix, messages).
    kind: ClassVar[str] = "xmpp"

    #: Seconds after which a change the server made is surely in its files
    #: (and survives a SIGKILL): see :meth:`wait_for_disk`.
    write_delay: ClassVar[float] = 0.0

    def __init__(
        self,
        domain: str = DEFAULT_DOMAIN,
        *,
        host: str = "127.0.0.1",
        debug: bool = False,
        keep: bool = False,
        start_timeout: float = 20.0,
        smacks_hibernation_time: int = 300,
        base_dir: str | os.PathLike[str] | None = None,
        verify_tls: bool = False,
    ) -> None:
        self.domain = domain
        self.host = host
        self.debug = debug
        self.keep = keep
        self.start_timeout = start_timeout
        self.smacks_hibernation_time = smacks_hibernation_time
        self.verify_tls = verify_tls
        self._parent_dir = None if base_dir is None else Path(base_dir)

        self.c2s_port: int = 0
        self._base_dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._console: Any = None  # binary file object receiving stdout/stderr
        self.start_seconds: float | None = None
        """How long the last :meth:`start`/:meth:`restart` took, in seconds."""

    # ------------------------------------------------------------------ paths

    @property
    def base_dir(self) -> Path:
        """The temporary directory holding config, certificates, logs and data."""
        if self._base_dir is None:
            raise ServerError("the server has not been started (no directory yet)")
        return self._base_dir

    @property
    def data_dir(self) -> Path:
        """Where the server keeps accounts, rosters, offline store, archive..."""
        raise NotImplementedError

    @property
    def config_path(self) -> Path:
        raise NotImplementedError

    @property
    def log_path(self) -> Path:
        """The server's own log file."""
        raise NotImplementedError

    @property
    def console_log_path(self) -> Path:
        """Where the process's stdout/stderr go (startup errors land here)."""
        return self.base_dir / "console.log"

    @property
    def cert_dir(self) -> Path:
        return self.base_dir / "certs"

    @property
    def cert_path(self) -> Path:
        return self.cert_dir / f"{self.domain}.crt"

    @property
    def key_path(self) -> Path:
        return self.cert_dir / f"{self.domain}.key"

    @property
    def ca_cert_path(self) -> Path:
        """CA that signed :attr:`cert_path`; trust it to verify TLS for real."""
        return self.cert_dir / "ca.crt"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def address(self) -> tuple[str, int]:
        """``(host, c2s_port)`` to pass to ``ClientXMPP.connect``."""
        return self.host, self.c2s_port

    # -------------------------------------------------------------- lifecycle

    def start(self) -> Self:
        """Create the directory, config and certificate and launch the server.

        Blocks until the c2s port serves XMPP stream features for
        :attr:`domain` (at most :attr:`start_timeout` seconds).
        """
        if self.is_running:
            raise ServerError("the server is already running")
        try:
            if self._base_dir is None:
                self._prepare_directory()
            # A port found free may be taken by the time the server binds it:
            # retry with another one.
            last_error: ServerError | None = None
            for _attempt in range(3):
                if not self.c2s_port or last_error is not None:
                    self.c2s_port = find_free_port(self.host)
                self._write_config()
                try:
                    self._launch()
                except _PortInUseError as exc:
                    last_error = exc
                    continue
                return self
            assert last_error is not None
            raise last_error
        except BaseException:
            # Nothing to stop later (a failed `with` never reaches __exit__).
            self.stop()
            raise

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL) and remove the directory.

        Safe to call more than once and after :meth:`kill`.  The directory is
        kept when ``keep=True``.
        """
        self._terminate()
        _LIVE_SERVERS.discard(self)
        if self._base_dir is not None and not self.keep:
            shutil.rmtree(self._base_dir, ignore_errors=True)
            self._base_dir = None

    def kill(self) -> None:
        """SIGKILL the server (a crash); data, config and port are kept for :meth:`restart`."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        self._close_console()
        self._proc = None

    def restart(self) -> Self:
        """Stop the process if running and start it again with the same data and port."""
        if self._base_dir is None:
            return self.start()
        self._terminate()
        self._write_config()
        self._launch()
        return self

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<{type(self).__name__} {self.domain} {self.host}:{self.c2s_port} {state}>"

    # ---------------------------------------------------- hooks for subclasses

    def render_config(self) -> str:
        """The server's configuration text for the current port and directory."""
        raise NotImplementedError

    def _command(self) -> list[str]:
        """The command line that runs the server in the foreground."""
        raise NotImplementedError

    def _popen_options(self) -> dict[str, Any]:
        """Extra keyword arguments for :class:`subprocess.Popen` (env, user...)."""
        return {}

    def _init_directory(self) -> None:
        """Create what the server needs in the fresh :attr:`base_dir`."""

    def _port_in_use(self, new_log: str) -> bool:
        """True if *new_log* (written since the launch) says the port was taken."""
        return False

    def _diagnostic_files(self) -> list[Path]:
        return [self.log_path, self.console_log_path]

    def _is_stored_file(self, relative: Path) -> bool:
        """Whether a file of :attr:`data_dir` is stored data (see :meth:`stored_files`)."""
        return True

    # ------------------------------------------------------------- internals

    def _prepare_directory(self) -> None:
        if self._parent_dir is not None:
            self._parent_dir.mkdir(parents=True, exist_ok=True)
        self._base_dir = Path(
            tempfile.mkdtemp(prefix=f"objenc-{self.kind}-", dir=self._parent_dir)
        ).resolve()
        generate_certificate(self.domain, self.cert_dir, self.host)
        self._init_directory()

    def _write_config(self) -> None:
        self.config_path.write_text(self.render_config(), encoding="utf-8")

    def _launch(self) -> None:
        command = self._command()
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._close_console()
        self._console = open(self.console_log_path, "ab")  # noqa: SIM115 - closed in _terminate
        started = time.monotonic()
        self._proc = subprocess.Popen(
            command,
            cwd=self.base_dir,
            stdin=subprocess.DEVNULL,
            stdout=self._console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **self._popen_options(),
        )
        _LIVE_SERVERS.add(self)
        try:
            self._wait_ready(started, log_offset)
        except BaseException:
            self._terminate()
            raise
        self.start_seconds = time.monotonic() - started

    def _new_log_text(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(offset)
                return fh.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def _wait_ready(self, started: float, log_offset: int) -> None:
        deadline = started + self.start_timeout
        proc = self._proc
        assert proc is not None
        while True:
            code = proc.poll()
            if code is not None:
                raise ServerError(
                    f"{self.kind} exited with status {code} during startup\n" + self.diagnostics()
                )
            if self._port_in_use(self._new_log_text(log_offset)):
                raise _PortInUseError(
                    f"{self.kind} could not bind {self.host}:{self.c2s_port}\n" + self.diagnostics()
                )
            if self._probe_stream():
                return
            if time.monotonic() > deadline:
                raise ServerError(
                    f"{self.kind} did not serve XMPP on {self.host}:{self.c2s_port} within "
                    f"{self.start_timeout:.0f}s\n" + self.diagnostics()
                )
            time.sleep(0.05)

    def _probe_stream(self) -> bool:
        """True once the port answers a stream header with STARTTLS features."""
        header = (
            "<?xml version='1.0'?>"
            f"<stream:stream to='{self.domain}' version='1.0' "
            "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
        ).encode()
        try:
            with socket.create_connection((self.host, self.c2s_port), timeout=2.0) as sock:
                sock.sendall(header)
                received = b""
                while b"features>" not in received or b"starttls" not in received:
                    chunk = sock.recv(4096)
                    if not chunk or b"stream:error" in received + chunk:
                        return False
                    received += chunk
                    if len(received) > 65536:
                        return False
                with contextlib.suppress(OSError):
                    sock.sendall(b"</stream:stream>")
                return True
        except OSError:
            return False

    def _terminate(self, timeout: float = 10.0) -> None:
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(timeout=10)
            self._proc = None
        self._close_console()

    def _close_console(self) -> None:
        console = self._console
        self._console = None
        if console is not None:
            with contextlib.suppress(OSError):
                console.close()

    # ------------------------------------------------------------ inspection

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last *lines* lines of the server's log."""
        if self._base_dir is None:
            return ""
        return _tail(self.log_path, lines)

    def diagnostics(self, lines: int = _LOG_TAIL_LINES) -> str:
        """Log and console tails, for error messages."""
        if self._base_dir is None:
            return "(no server directory)"
        return "\n".join(
            f"--- {path} (tail) ---\n{_tail(path, lines)}" for path in self._diagnostic_files()
        )

    def stored_files(self) -> dict[Path, bytes]:
        """Every file of stored data under :attr:`data_dir`, keyed by path relative to it."""
        result: dict[Path, bytes] = {}
        root = self.data_dir
        for path in sorted(root.rglob("*")):
            if path.is_file() and self._is_stored_file(path.relative_to(root)):
                with contextlib.suppress(OSError):
                    result[path.relative_to(root)] = path.read_bytes()
        return result

    def user_store_bytes(self, user: str, store: str) -> bytes:
        """Raw contents of *store* (``"offline"``, ``"archive"``...) for *user*
        (empty if nothing was stored)."""
        raise NotImplementedError

    def stored_files_bytes(self) -> bytes:
        """All stored data (offline store, MAM archive, PEP, rosters...) concatenated."""
        parts = []
        for rel, data in self.stored_files().items():
            parts.append(b"==> " + os.fsencode(rel) + b" <==\n" + data + b"\n")
        return b"".join(parts)

    def stored_files_text(self) -> str:
        """Like :meth:`stored_files_bytes`, decoded as UTF-8 (invalid bytes replaced).

        Plain ASCII message bodies appear verbatim (Prosody writes Lua
        literals, ejabberd Erlang terms holding the XML's text as binaries).
        """
        return self.stored_files_bytes().decode("utf-8", errors="replace")

    async def wait_for_store_bytes(
        self, user: str, store: str, needle: bytes, timeout: float = 10.0
    ) -> bytes:
        """Poll :meth:`user_store_bytes` until *needle* appears; return those bytes.

        Raises :class:`TimeoutError` if it does not appear in time.
        """
        deadline = time.monotonic() + timeout
        while True:
            data = self.user_store_bytes(user, store)
            if needle in data:
                return data
            if time.monotonic() > deadline:
                raise TimeoutError(f"{needle!r} did not appear in {store} of {user} in {timeout}s")
            await asyncio.sleep(0.05)

    async def wait_for_disk(self) -> None:
        """Return once what the server has handled so far is in its files.

        Call it before :meth:`kill` when the test needs that to survive the
        crash, or before reading the files when it must not wait for one
        expected item.  Prosody writes every change at once (nothing to wait
        for); ejabberd's Mnesia writes ``disc_only_copies`` tables through a
        write cache of up to 3 seconds.
        """
        await asyncio.sleep(self.write_delay)

    async def wait_for_stored_text(self, needle: str, timeout: float = 10.0) -> str:
        """Poll the data directory until *needle* appears; return the full text.

        Raises :class:`TimeoutError` if it does not appear in time.
        """
        deadline = time.monotonic() + timeout
        while True:
            text = self.stored_files_text()
            if needle in text:
                return text
            if time.monotonic() > deadline:
                raise TimeoutError(f"{needle!r} did not appear in {self.data_dir} in {timeout}s")
            await asyncio.sleep(0.05)


@atexit.register
def _kill_leftover_servers() -> None:  # pragma: no cover - last resort
    for server in list(_LIVE_SERVERS):
        with contextlib.suppress(Exception):
            server.stop()
