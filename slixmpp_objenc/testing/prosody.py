"""A throwaway Prosody server for integration tests, demos and benchmarks.

:class:`ProsodyServer` writes a private configuration (loopback only, one c2s
port, in-band registration open, MAM/offline/smacks/carbons/PEP enabled, a
freshly generated TLS certificate) into a temporary directory, runs
``prosody -F`` on it and tears everything down again.  It also knows how to
create accounts (XEP-0077 over a real c2s connection) and how to connect
ready-to-use :class:`slixmpp.ClientXMPP` instances to it.

Only the standard library, ``cryptography`` and ``slixmpp`` are used, so the
module can be shipped with the package.  Nothing here ever resolves a name or
contacts an address other than the server's loopback address: clients are
always given ``(host, port)`` explicitly.

Typical use::

    with ProsodyServer() as server:
        async def main() -> None:
            jid = await server.register("alice", "secret")
            client = await server.connect_client(jid, "secret")
            ...
            await server.disconnect_client(client)
        asyncio.run(main())
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import datetime
import ipaddress
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from slixmpp import ClientXMPP
from slixmpp.exceptions import IqError, IqTimeout

__all__ = [
    "DEFAULT_CLIENT_PLUGINS",
    "DEFAULT_DOMAIN",
    "DEFAULT_MODULES",
    "ClientFactory",
    "ProsodyError",
    "ProsodyServer",
    "RegistrationError",
    "disconnect_client",
    "find_free_port",
    "find_prosody",
    "generate_certificate",
    "prosody_available",
]

DEFAULT_DOMAIN: Final = "objenc.test"
DEFAULT_PROSODY_BIN: Final = "/usr/bin/prosody"

#: Modules enabled globally in the generated configuration.
DEFAULT_MODULES: Final[tuple[str, ...]] = (
    "roster",
    "saslauth",
    "tls",
    "disco",
    "register",
    "ping",
    "pep",
    "carbons",
    "mam",
    "offline",
    "smacks",
    "private",
    "vcard_legacy",
    "blocklist",
    "time",
    "version",
)

#: Modules that must never be loaded: ``posix`` refuses to run as root (and
#: would daemonize / switch users), the rest would open ports or do DNS.
DISABLED_MODULES: Final[tuple[str, ...]] = ("posix", "s2s", "s2s_auth_certs", "dialback")

#: Plugins registered by :meth:`ProsodyServer.connect_client` when ``plugins``
#: is ``None``.
DEFAULT_CLIENT_PLUGINS: Final[tuple[str, ...]] = ("xep_0030", "xep_0199")

#: Something that builds a (not yet connected) client from ``(jid, password)``.
ClientFactory = Callable[[str, str], ClientXMPP]

_LOG_TAIL_LINES: Final = 40

# Servers that are still running; killed at interpreter exit as a last resort
# (e.g. when a test run is interrupted before fixture teardown).
_LIVE_SERVERS: weakref.WeakSet[ProsodyServer] = weakref.WeakSet()


class ProsodyError(RuntimeError):
    """The test server could not be started, or a client could not use it."""


class RegistrationError(ProsodyError):
    """In-band registration of an account failed (e.g. the account exists)."""


def find_prosody(candidate: str | None = None) -> str | None:
    """Return the path of a usable ``prosody`` executable, or ``None``.

    An explicit *candidate* or ``$OBJENC_PROSODY_BIN`` is used as given (and
    ``None`` returned if it is not executable); otherwise
    ``/usr/bin/prosody``, then ``prosody`` on ``$PATH``.
    """
    explicit = candidate or os.environ.get("OBJENC_PROSODY_BIN")
    if explicit:
        found = shutil.which(explicit)
        return os.path.abspath(found) if found else None
    if os.path.isfile(DEFAULT_PROSODY_BIN) and os.access(DEFAULT_PROSODY_BIN, os.X_OK):
        return DEFAULT_PROSODY_BIN
    return shutil.which("prosody")


def prosody_available(candidate: str | None = None) -> bool:
    """True if a ``prosody`` executable can be found (see :func:`find_prosody`)."""
    return find_prosody(candidate) is not None


def find_free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on *host* that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _lua_string(value: str | os.PathLike[str]) -> str:
    """Quote *value* as a Lua string literal."""
    text = os.fspath(value)
    escaped = (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\0", "\\0")
    )
    return f'"{escaped}"'


def _lua_set(values: Iterable[str]) -> str:
    return "{ " + ", ".join(_lua_string(v) for v in values) + " }"


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def generate_certificate(
    domain: str, directory: Path, host: str = "127.0.0.1"
) -> tuple[Path, Path, Path]:
    """Create a throwaway CA and a server certificate for *domain*.

    Returns ``(ca_cert, server_cert, server_key)`` paths (PEM).  The server
    certificate covers *domain*, ``localhost`` and the IP *host*; clients that
    want real verification can trust ``ca_cert``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    not_before = now - datetime.timedelta(days=1)
    not_after = now + datetime.timedelta(days=30)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"objenc test CA for {domain}")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = [x509.DNSName(domain), x509.DNSName("localhost")]
    with contextlib.suppress(ValueError):
        alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )

    ca_path = directory / "ca.crt"
    cert_path = directory / f"{domain}.crt"
    key_path = directory / f"{domain}.key"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    return ca_path, cert_path, key_path


class ProsodyServer:
    """A private Prosody instance listening on one loopback c2s port.

    :param domain: the XMPP domain (VirtualHost).  It is never resolved:
        clients connect to :attr:`host`/:attr:`c2s_port` explicitly.
    :param host: loopback address to listen on.
    :param prosody_bin: the ``prosody`` executable (see :func:`find_prosody`).
    :param debug: log at debug level (stanzas included) instead of info.
    :param keep: keep the temporary directory after :meth:`stop` (for
        post-mortem inspection; its path is :attr:`base_dir`).
    :param start_timeout: seconds :meth:`start` waits for the server.
    :param smacks_hibernation_time: seconds a XEP-0198 session survives.
    :param extra_config: Lua text appended to the global section.
    :param extra_modules: further global modules to enable.
    :param base_dir: parent directory for the temporary directory.
    :param verify_tls: make :meth:`prepare_client` verify the server
        certificate against :attr:`ca_cert_path` (default: no verification).
    """

    def __init__(
        self,
        domain: str = DEFAULT_DOMAIN,
        *,
        host: str = "127.0.0.1",
        prosody_bin: str | None = None,
        debug: bool = False,
        keep: bool = False,
        start_timeout: float = 20.0,
        smacks_hibernation_time: int = 300,
        extra_config: str = "",
        extra_modules: Iterable[str] = (),
        base_dir: str | os.PathLike[str] | None = None,
        verify_tls: bool = False,
    ) -> None:
        self.domain = domain
        self.host = host
        self.prosody_bin = prosody_bin
        self.debug = debug
        self.keep = keep
        self.start_timeout = start_timeout
        self.smacks_hibernation_time = smacks_hibernation_time
        self.extra_config = extra_config
        self.verify_tls = verify_tls
        self.modules: tuple[str, ...] = DEFAULT_MODULES + tuple(
            m for m in extra_modules if m not in DEFAULT_MODULES
        )
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
            raise ProsodyError("the server has not been started (no directory yet)")
        return self._base_dir

    @property
    def data_dir(self) -> Path:
        """Prosody's ``data_path`` (accounts, rosters, offline store, MAM archive...)."""
        return self.base_dir / "data"

    @property
    def config_path(self) -> Path:
        return self.base_dir / "prosody.cfg.lua"

    @property
    def log_path(self) -> Path:
        """Prosody's own log file."""
        return self.base_dir / "prosody.log"

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

    def jid(self, user: str, resource: str | None = None) -> str:
        """``user@domain[/resource]``."""
        bare = f"{user}@{self.domain}"
        return f"{bare}/{resource}" if resource else bare

    # -------------------------------------------------------------- lifecycle

    def start(self) -> ProsodyServer:
        """Create the directory, config and certificate and launch Prosody.

        Blocks until the c2s port serves XMPP stream features for
        :attr:`domain` (at most :attr:`start_timeout` seconds).
        """
        if self.is_running:
            raise ProsodyError("the server is already running")
        try:
            if self._base_dir is None:
                self._prepare_directory()
            # A port found free may be taken by the time Prosody binds it:
            # retry with another one.
            last_error: ProsodyError | None = None
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
        """Terminate Prosody (SIGTERM, then SIGKILL) and remove the directory.

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

    def restart(self) -> ProsodyServer:
        """Stop the process if running and start it again with the same data and port."""
        if self._base_dir is None:
            return self.start()
        self._terminate()
        self._write_config()
        self._launch()
        return self

    def __enter__(self) -> ProsodyServer:
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
        return f"<ProsodyServer {self.domain} {self.host}:{self.c2s_port} {state}>"

    # ------------------------------------------------------------- internals

    def _prepare_directory(self) -> None:
        if self._parent_dir is not None:
            self._parent_dir.mkdir(parents=True, exist_ok=True)
        self._base_dir = Path(
            tempfile.mkdtemp(prefix="objenc-prosody-", dir=self._parent_dir)
        ).resolve()
        self.data_dir.mkdir(mode=0o700)
        generate_certificate(self.domain, self.cert_dir, self.host)

    def render_config(self) -> str:
        """The Lua configuration for the current port and directory."""
        ssl_block = (
            "{ certificate = "
            + _lua_string(self.cert_path)
            + "; key = "
            + _lua_string(self.key_path)
            + "; }"
        )
        level = "debug" if self.debug else "info"
        global_section = f"""\
-- Generated by slixmpp_objenc.testing.prosody; throwaway test server.
daemonize = false
run_as_root = true
pidfile = {_lua_string(self.base_dir / "prosody.pid")}
data_path = {_lua_string(self.data_dir)}
certificates = {_lua_string(self.cert_dir)}
log = {{ {level} = {_lua_string(self.log_path)} }}

-- Network: one c2s port on loopback, nothing else.
interfaces = {_lua_set([self.host])}
local_interfaces = {_lua_set([self.host])}
c2s_interfaces = {_lua_set([self.host])}
c2s_ports = {{ {self.c2s_port} }}
c2s_direct_tls_ports = {{ }}
legacy_ssl_ports = {{ }}
s2s_ports = {{ }}
s2s_direct_tls_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
component_ports = {{ }}
proxy65_ports = {{ }}
use_dane = false

modules_enabled = {_lua_set(self.modules)}
modules_disabled = {_lua_set(DISABLED_MODULES)}

storage = "internal"
authentication = "internal_hashed"

-- TLS stays on (and required): a throwaway CA-signed certificate.
ssl = {ssl_block}
c2s_require_encryption = true

-- Open, unthrottled in-band registration from loopback.
allow_registration = true
min_seconds_between_registrations = 0
registration_throttle_max = 1000000
registration_throttle_period = 1
registration_allowlist = {{ "127.0.0.1", "::1" }}
registration_blocklist = {{ }}

-- Archive everything, forever.
archive_expires_after = "never"
default_archive_policy = true
max_archive_query_results = 250

-- Stream management: long hibernation for resumption tests.
smacks_hibernation_time = {int(self.smacks_hibernation_time)}

{self.extra_config}
"""
        vhost = f"""
VirtualHost {_lua_string(self.domain)}
    enabled = true
    ssl = {ssl_block}
"""
        return global_section + vhost

    def _write_config(self) -> None:
        self.config_path.write_text(self.render_config(), encoding="utf-8")

    def _launch(self) -> None:
        binary = find_prosody(self.prosody_bin)
        if binary is None:
            raise ProsodyError(
                f"no prosody executable found (prosody_bin={self.prosody_bin!r}, "
                f"$OBJENC_PROSODY_BIN, {DEFAULT_PROSODY_BIN}, $PATH)"
            )
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._close_console()
        self._console = open(self.console_log_path, "ab")  # noqa: SIM115 - closed in _terminate
        started = time.monotonic()
        self._proc = subprocess.Popen(
            [binary, "--config", str(self.config_path), "-F"],
            cwd=self.base_dir,
            stdin=subprocess.DEVNULL,
            stdout=self._console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
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
                raise ProsodyError(
                    f"prosody exited with status {code} during startup\n" + self.diagnostics()
                )
            new_log = self._new_log_text(log_offset)
            if "Failed to open server port" in new_log:
                raise _PortInUseError(
                    f"prosody could not bind {self.host}:{self.c2s_port}\n" + self.diagnostics()
                )
            if self._probe_stream():
                return
            if time.monotonic() > deadline:
                raise ProsodyError(
                    f"prosody did not serve XMPP on {self.host}:{self.c2s_port} within "
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
        """The last *lines* lines of Prosody's log."""
        if self._base_dir is None:
            return ""
        return _tail(self.log_path, lines)

    def diagnostics(self, lines: int = _LOG_TAIL_LINES) -> str:
        """Log and console tails, for error messages."""
        if self._base_dir is None:
            return "(no server directory)"
        return (
            f"--- {self.log_path} (tail) ---\n{_tail(self.log_path, lines)}\n"
            f"--- {self.console_log_path} (tail) ---\n{_tail(self.console_log_path, lines)}"
        )

    def stored_files(self) -> dict[Path, bytes]:
        """Every file under :attr:`data_dir`, keyed by path relative to it."""
        result: dict[Path, bytes] = {}
        root = self.data_dir
        for path in sorted(root.rglob("*")):
            if path.is_file():
                with contextlib.suppress(OSError):
                    result[path.relative_to(root)] = path.read_bytes()
        return result

    @staticmethod
    def encode_store_name(name: str) -> str:
        """Encode a host/user/store name the way Prosody's datamanager does.

        Every byte that is not ASCII alphanumeric becomes ``%xx`` (lowercase
        hex), e.g. ``user-1a`` -> ``user%2d1a`` and ``objenc.test`` ->
        ``objenc%2etest``.
        """
        return "".join(
            chr(b) if chr(b).isascii() and chr(b).isalnum() else f"%{b:02x}"
            for b in name.encode("utf-8")
        )

    def store_paths(self, store: str, user: str | None = None) -> list[Path]:
        """Files of one internal-storage *store* (``"offline"``, ``"archive"``,
        ``"roster"``, ``"accounts"``, ``"pep_..."``...) for *user*.

        *user* may be a node (``"alice"``) or a JID (its node is used); only
        existing files are returned (``.dat`` key-value and ``.list`` archive
        files).
        """
        directory = self.data_dir / self.encode_store_name(self.domain)
        directory /= self.encode_store_name(store)
        if user is None:
            return sorted(p for p in directory.glob("*") if p.is_file())
        node = user.split("/", 1)[0].split("@", 1)[0] if "@" in user else user
        stem = self.encode_store_name(node)
        return [p for p in (directory / f"{stem}.dat", directory / f"{stem}.list") if p.is_file()]

    def user_store_bytes(self, user: str, store: str) -> bytes:
        """Raw contents of *store* for *user* (empty if nothing was stored)."""
        return b"".join(p.read_bytes() for p in self.store_paths(store, user))

    def stored_files_bytes(self) -> bytes:
        """All stored data (offline store, MAM archive, PEP, rosters...) concatenated."""
        parts = []
        for rel, data in self.stored_files().items():
            parts.append(b"==> " + os.fsencode(rel) + b" <==\n" + data + b"\n")
        return b"".join(parts)

    def stored_files_text(self) -> str:
        """Like :meth:`stored_files_bytes`, decoded as UTF-8 (invalid bytes replaced).

        Prosody's internal storage writes Lua literals, so XML special
        characters appear as entities only where Prosody stores serialized
        XML; plain ASCII message bodies appear verbatim.
        """
        return self.stored_files_bytes().decode("utf-8", errors="replace")

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

    # ---------------------------------------------------------------- clients

    def client_ssl_context(self, verify_tls: bool | None = None) -> ssl.SSLContext:
        """A TLS client context for this server.

        Without verification (the default, see ``verify_tls``) any certificate
        is accepted; with it, the server certificate must chain to
        :attr:`ca_cert_path` and name :attr:`domain`.  (The system trust store
        is never loaded, which keeps client creation fast.)
        """
        verify = self.verify_tls if verify_tls is None else verify_tls
        if verify:
            return ssl.create_default_context(cafile=str(self.ca_cert_path))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context

    def prepare_client(self, client: ClientXMPP, verify_tls: bool | None = None) -> ClientXMPP:
        """Configure *client* for this server: STARTTLS on the c2s port, TLS
        context from :meth:`client_ssl_context`, no DNS.

        Use it for clients you connect yourself, then
        ``client.connect(host=server.host, port=server.c2s_port)``.
        """
        client.ssl_context = self.client_ssl_context(verify_tls)
        # The c2s port speaks STARTTLS; skip the direct-TLS attempt slixmpp
        # makes first when given a custom address.
        client.enable_direct_tls = False
        client.enable_starttls = True
        client.enable_plaintext = False
        client.use_aiodns = False
        return client

    def _make_client(
        self, jid: str, password: str, client_factory: ClientFactory | None
    ) -> ClientXMPP:
        loop = asyncio.get_running_loop()
        if client_factory is None:
            client = ClientXMPP(jid, password, loop=loop, ssl_context=self.client_ssl_context())
            client.enable_direct_tls = False
            client.enable_plaintext = False
            return client
        client = client_factory(jid, password)
        if client.loop is not loop:
            raise ProsodyError(
                "the client is bound to a different event loop than the running one; "
                "create it inside the coroutine that uses it (or pass loop=)"
            )
        return self.prepare_client(client)

    async def _run_until_ready(
        self,
        client: ClientXMPP,
        done: asyncio.Future[None],
        timeout: float,
        what: str,
    ) -> None:
        """Connect *client* and wait for *done*; abort the client on any failure."""
        problems: list[str] = []

        def on_connection_failed(error: Any) -> None:
            problems.append(f"connection failed: {error}")

        def on_failed_auth(stanza: Any) -> None:
            condition = stanza["condition"] if stanza is not None else "?"
            _fail(done, ProsodyError(f"{what}: authentication failed ({condition})"))

        def on_disconnected(reason: Any) -> None:
            _fail(done, ProsodyError(f"{what}: disconnected before ready ({reason})"))

        def on_stream_error(error: Any) -> None:
            problems.append(f"stream error: {error}")

        handlers: list[tuple[str, Callable[[Any], None]]] = [
            ("connection_failed", on_connection_failed),
            ("failed_auth", on_failed_auth),
            ("failed_all_auth", on_failed_auth),
            ("disconnected", on_disconnected),
            ("stream_error", on_stream_error),
        ]
        for event, handler in handlers:
            client.add_event_handler(event, handler)
        try:
            client.connect(host=self.host, port=self.c2s_port)
            await asyncio.wait_for(done, timeout)
        except BaseException as exc:
            _abort_client(client)
            if isinstance(exc, TimeoutError):
                detail = "; ".join(problems) or "no error reported by slixmpp"
                raise ProsodyError(
                    f"{what}: not ready within {timeout}s ({detail}); server "
                    f"{'running' if self.is_running else 'NOT running'}\n" + self.diagnostics(15)
                ) from None
            raise
        finally:
            for event, handler in handlers:
                client.del_event_handler(event, handler)

    async def register(self, user: str, password: str, *, timeout: float = 20.0) -> str:
        """Create ``user@domain`` by XEP-0077 in-band registration; return the bare JID.

        The new account is verified by logging in with it.  Raises
        :class:`RegistrationError` if the server refuses (e.g. ``conflict``
        when the account exists) and :class:`ProsodyError` on timeout.
        """
        bare = self.jid(user)
        client = self._make_client(bare, password, None)
        for plugin in ("xep_0030", "xep_0004", "xep_0066", "xep_0077"):
            client.register_plugin(plugin)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def on_register(_form: Any) -> None:
            iq: Any = client.Iq()
            iq["type"] = "set"
            iq["register"]["username"] = user
            iq["register"]["password"] = password
            try:
                await iq.send(timeout=timeout)
            except IqError as exc:
                error = exc.iq["error"]
                _fail(
                    done,
                    RegistrationError(
                        f"registering {bare} refused: {error['condition']}"
                        + (f" ({error['text']})" if error["text"] else "")
                    ),
                )
                _abort_client(client)
            except IqTimeout:
                _fail(done, ProsodyError(f"registering {bare}: no answer within {timeout}s"))
                _abort_client(client)

        def on_session_start(_event: Any) -> None:
            if not done.done():
                done.set_result(None)

        client.add_event_handler("register", on_register)
        client.add_event_handler("session_start", on_session_start)
        try:
            await self._run_until_ready(client, done, timeout, f"registering {bare}")
        finally:
            client.del_event_handler("register", on_register)
            client.del_event_handler("session_start", on_session_start)
        await self.disconnect_client(client)
        return bare

    async def create_account(
        self, prefix: str = "user", password: str | None = None, *, timeout: float = 20.0
    ) -> tuple[str, str]:
        """Register ``<prefix>-<8 hex>`` with a random password; return ``(jid, password)``."""
        user = f"{prefix}-{uuid.uuid4().hex[:8]}"
        secret = password if password is not None else uuid.uuid4().hex
        return await self.register(user, secret, timeout=timeout), secret

    async def connect_client(
        self,
        jid: str,
        password: str,
        plugins: Iterable[str] | None = None,
        pconfig: Mapping[str, Mapping[str, Any]] | None = None,
        client_factory: ClientFactory | None = None,
        *,
        resource: str | None = None,
        send_presence: bool = True,
        get_roster: bool = True,
        timeout: float = 20.0,
    ) -> ClientXMPP:
        """Connect and authenticate a client; return it once the session started.

        :param jid: bare or full JID (``resource`` is appended to a bare one).
        :param plugins: slixmpp plugins to register (default
            :data:`DEFAULT_CLIENT_PLUGINS`; pass ``[]`` for none).
        :param pconfig: per-plugin configuration, ``{"xep_0xxx": {...}}``.
        :param client_factory: builds the client from ``(jid, password)``
            instead of :class:`ClientXMPP` (e.g. a subclass); called inside
            the running loop.
        :param send_presence: send initial presence once the session started.
        :param get_roster: fetch the roster before returning.
        :param timeout: bound for connecting + authenticating (and for each
            of the roster/presence steps).
        """
        if resource and "/" not in jid:
            jid = f"{jid}/{resource}"
        client = self._make_client(jid, password, client_factory)
        configs = pconfig or {}
        for plugin in DEFAULT_CLIENT_PLUGINS if plugins is None else plugins:
            config = configs.get(plugin)
            client.register_plugin(plugin, dict(config) if config is not None else None)

        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_session_start(_event: Any) -> None:
            if not done.done():
                done.set_result(None)

        client.add_event_handler("session_start", on_session_start)
        try:
            await self._run_until_ready(client, done, timeout, f"connecting {jid}")
        finally:
            client.del_event_handler("session_start", on_session_start)
        try:
            if get_roster:
                await client.get_roster(timeout=timeout)
            if send_presence:
                client.send_presence()
        except BaseException:
            _abort_client(client)
            raise
        return client

    async def disconnect_client(self, client: ClientXMPP, timeout: float = 10.0) -> None:
        """Close *client*'s stream and wait (bounded) until it is disconnected."""
        await disconnect_client(client, timeout)


class _PortInUseError(ProsodyError):
    pass


def _fail(future: asyncio.Future[None], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def _abort_client(client: ClientXMPP) -> None:
    with contextlib.suppress(Exception):
        client.cancel_connection_attempt()
    with contextlib.suppress(Exception):
        client.abort()
    _cancel_background(client)


def _cancel_background(client: ClientXMPP) -> None:
    # slixmpp keeps a send-queue task per client; cancel it so closed clients
    # leave no pending task behind when the event loop is closed.
    task = getattr(client, "_run_out_filters", None)
    if isinstance(task, asyncio.Future) and not task.done():
        task.cancel()


async def disconnect_client(client: ClientXMPP, timeout: float = 10.0) -> None:
    """Close *client*'s stream and wait (bounded) for ``disconnected``.

    Falls back to aborting the transport if the server does not close its
    side in time.  Never raises on a client that is already disconnected.
    """
    client.cancel_connection_attempt()
    if client.transport is None:
        _cancel_background(client)
        return
    disconnected: asyncio.Future[Any] = client.disconnected
    try:
        await asyncio.wait_for(client.disconnect(wait=min(2.0, timeout)), timeout)
        await asyncio.wait_for(asyncio.shield(disconnected), timeout)
    except (TimeoutError, OSError):
        client.abort()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(disconnected), 2.0)
    finally:
        _cancel_background(client)


@atexit.register
def _kill_leftover_servers() -> None:  # pragma: no cover - last resort
    for server in list(_LIVE_SERVERS):
        with contextlib.suppress(Exception):
            server.stop()
