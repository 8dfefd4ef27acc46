"""A throwaway Prosody server for integration tests, demos and benchmarks.

:class:`ProsodyServer` writes a private configuration (loopback only, one c2s
port, in-band registration open, MAM/offline/smacks/carbons/PEP enabled, a
freshly generated TLS certificate) into a temporary directory, runs
``prosody -F`` on it and tears everything down again.  What does not depend on Prosody (the
certificate, the process, accounts over XEP-0077 and ready-to-use
:class:`slixmpp.ClientXMPP` instances) is in
:class:`~slixmpp_objenc.testing.server.XmppServer`.

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

import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar, Final

from .clients import (
    DEFAULT_CLIENT_PLUGINS,
    ClientFactory,
    RegistrationError,
    ServerError,
    disconnect_client,
)
from .server import DEFAULT_DOMAIN, XmppServer, find_free_port, generate_certificate

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

#: The error of every test server (another name for
#: :class:`~slixmpp_objenc.testing.clients.ServerError`, kept for existing code).
ProsodyError = ServerError


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


class ProsodyServer(XmppServer):
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

    kind: ClassVar[str] = "prosody"

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
        super().__init__(
            domain,
            host=host,
            debug=debug,
            keep=keep,
            start_timeout=start_timeout,
            smacks_hibernation_time=smacks_hibernation_time,
            base_dir=base_dir,
            verify_tls=verify_tls,
        )
        self.prosody_bin = prosody_bin
        self.extra_config = extra_config
        self.modules: tuple[str, ...] = DEFAULT_MODULES + tuple(
            m for m in extra_modules if m not in DEFAULT_MODULES
        )

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

    def _init_directory(self) -> None:
        self.data_dir.mkdir(mode=0o700)

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

    def _command(self) -> list[str]:
        binary = find_prosody(self.prosody_bin)
        if binary is None:
            raise ProsodyError(
                f"no prosody executable found (prosody_bin={self.prosody_bin!r}, "
                f"$OBJENC_PROSODY_BIN, {DEFAULT_PROSODY_BIN}, $PATH)"
            )
        return [binary, "--config", str(self.config_path), "-F"]

    def _port_in_use(self, new_log: str) -> bool:
        return "Failed to open server port" in new_log

    # ------------------------------------------------------------ inspection

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
