"""A throwaway ejabberd server for integration tests (Debian's ``ejabberd`` package).

:class:`EjabberdServer` has the interface of
:class:`~slixmpp_objenc.testing.prosody.ProsodyServer`: a private
configuration in a temporary directory (loopback only, one c2s port with
STARTTLS required, in-band registration open from loopback, a freshly
generated TLS certificate), Mnesia spool and logs there too.  The Erlang VM
runs in the foreground as our child process (``erl ... -s ejabberd``, the
command ``ejabberdctl foreground`` runs), as the ``ejabberd`` system user
when we are root (the directory is then given to that user), as ourselves
otherwise; it is stopped by its pid (SIGTERM, which Erlang turns into an
orderly ``init:stop()``, then SIGKILL).

The VM starts without Erlang distribution (node ``nonode@nohost``): no epmd,
no distribution port, no cookie, so the c2s port is the only socket it
listens on and any number of servers run side by side.  ``ejabberdctl``
cannot attach to it; read :attr:`~EjabberdServer.log_path` instead.

The modules are those of Debian's ``/etc/ejabberd/ejabberd.yml`` that mirror
the Prosody fixture's (:data:`EJABBERD_DEFAULT_MODULES`), with Debian's options: PEP
and PubSub in particular keep ejabberd's own defaults (e.g. PEP nodes are
created with ``max_items`` 1, and the publish-option ``pubsub#max_items`` is
refused), which is what users of a stock ejabberd meet.  Differences from the
Debian configuration, each for the tests: MAM is enabled (Debian leaves it
commented out, to be enabled with an SQL database) with ``default: always``,
like the Prosody fixture's ``default_archive_policy``, on SQLite when
Erlang's SQLite driver is installed (see ``mam_db``); registration is open
from loopback without the 600 s per-address delay; no c2s shaper (Debian's
3000 bytes/s would make the load tests crawl); only one c2s listener, no
s2s (``s2s_access: none``), HTTP, STUN or MQTT.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final

from .clients import ServerError
from .server import DEFAULT_DOMAIN, XmppServer

__all__ = [
    "DEFAULT_EJABBERDCTL",
    "EJABBERD_DEFAULT_MODULES",
    "EjabberdInstallation",
    "EjabberdServer",
    "ejabberd_available",
    "find_ejabberd",
]

DEFAULT_EJABBERDCTL: Final = "/usr/sbin/ejabberdctl"

#: The system user Debian's package runs ejabberd as; used when we are root.
EJABBERD_USER: Final = "ejabberd"

_TLS_OPTIONS: Final = [
    "no_sslv3",
    "no_tlsv1",
    "no_tlsv1_1",
    "cipher_server_preference",
    "no_compression",
]

#: Modules (and options) of the generated configuration: Debian's options
#: for the modules the Prosody fixture has an equivalent of, plus what they
#: depend on (``mod_blocking`` needs ``mod_privacy``; PEP notifications need
#: ``mod_caps``).  ``mod_stream_mgmt``'s ``resume_timeout`` is set from
#: ``smacks_hibernation_time``.
EJABBERD_DEFAULT_MODULES: Final[Mapping[str, Mapping[str, Any]]] = {
    "mod_blocking": {},
    "mod_caps": {},
    "mod_carboncopy": {},
    "mod_client_state": {},
    "mod_disco": {},
    "mod_last": {},
    "mod_mam": {"assume_mam_usage": True, "default": "always"},
    "mod_offline": {"access_max_user_messages": "max_user_offline_messages"},
    "mod_ping": {},
    "mod_privacy": {},
    "mod_private": {},
    "mod_pubsub": {
        "access_createnode": "pubsub_createnode",
        "plugins": ["flat", "pep"],
        "force_node_config": {
            "eu.siacs.conversations.axolotl.*": {"access_model": "open"},
            "storage:bookmarks": {"access_model": "whitelist"},
        },
    },
    "mod_register": {"ip_access": "trusted_network"},
    "mod_roster": {"versioning": True},
    "mod_stream_mgmt": {"resend_on_timeout": "if_offline"},
    "mod_time": {},
    "mod_vcard": {"search": False},
    "mod_vcard_xupdate": {},
    "mod_version": {},
}

#: Mnesia tables behind the store names the tests use (Prosody's names).
#: Any other store name is taken as a table name.
STORE_TABLES: Final[Mapping[str, tuple[str, ...]]] = {
    "offline": ("offline_msg",),
    "archive": ("archive_msg",),
    "roster": ("roster", "roster_version"),
    "accounts": ("passwd",),
    "pep": ("pubsub_item", "pubsub_node", "pubsub_state"),
    "private": ("private_storage",),
    "vcard": ("vcard",),
    "privacy": ("privacy",),
}

# Files of the spool directory that are not stored data: ejabberd's cache of
# translations (1 MB) and its copy of our certificate.
_NOT_STORED: Final = ("translations.cache", "certs")


@dataclass(frozen=True)
class EjabberdInstallation:
    """Where Debian's package put ejabberd (read from its ``ejabberdctl``)."""

    ejabberdctl: str
    erl: str
    """The ``erl`` executable."""
    erl_libs: str
    """The directory holding ``ejabberd-<version>/ebin`` (``$ERL_LIBS``)."""
    version: str
    sqlite: bool = False
    """Whether Erlang's SQLite driver (Debian: ``erlang-p1-sqlite3``) is installed."""


def find_ejabberd(candidate: str | None = None) -> EjabberdInstallation | None:
    """Locate an ejabberd installation, or return ``None``.

    The ``ejabberdctl`` script is an explicit *candidate*,
    ``$OBJENC_EJABBERDCTL``, ``/usr/sbin/ejabberdctl`` or ``ejabberdctl`` on
    ``$PATH``; the ``erl`` executable and ``ERL_LIBS`` are read from it (as
    Debian's package writes them), and the directory must hold
    ``ejabberd-*/ebin/ejabberd.app``.
    """
    explicit = candidate or os.environ.get("OBJENC_EJABBERDCTL")
    if explicit:
        ctl = shutil.which(explicit)
    elif os.path.isfile(DEFAULT_EJABBERDCTL):
        ctl = DEFAULT_EJABBERDCTL
    else:
        ctl = shutil.which("ejabberdctl")
    if ctl is None:
        return None
    try:
        script = Path(ctl).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    erl_match = re.search(r"""^\s*ERL=["']?([^"'\s]+)""", script, re.MULTILINE)
    libs_match = re.search(r"""^\s*ERL_LIBS=["']?([^"'\s]+)""", script, re.MULTILINE)
    erl = erl_match.group(1) if erl_match else shutil.which("erl")
    if erl is None or not os.access(erl, os.X_OK):
        return None
    candidates = [libs_match.group(1)] if libs_match else []
    candidates += ["/usr/lib/ejabberd", *glob.glob("/usr/lib/*-linux-gnu")]
    for libs in candidates:
        apps = sorted(glob.glob(os.path.join(glob.escape(libs), "ejabberd-*/ebin/ejabberd.app")))
        if apps:
            text = Path(apps[-1]).read_text(encoding="utf-8", errors="replace")
            vsn = re.search(r'\{vsn,\s*"([^"]+)"', text)
            version = vsn.group(1) if vsn else Path(apps[-1]).parents[1].name
            sqlite = any(
                glob.glob(os.path.join(glob.escape(root), "p1_sqlite3-*", "ebin", "sqlite3.beam"))
                for root in (libs, _erlang_root(erl))
            )
            return EjabberdInstallation(os.path.abspath(ctl), erl, libs, version, sqlite)
    return None


def _erlang_root(erl: str) -> str:
    """Erlang's library directory for the ``erl`` at *erl* (``/usr/lib/erlang/lib``)."""
    real = os.path.realpath(erl)  # /usr/bin/erl -> /usr/lib/erlang/bin/erl
    return os.path.join(os.path.dirname(os.path.dirname(real)), "lib")


def ejabberd_available(candidate: str | None = None) -> bool:
    """True if ejabberd can be found (see :func:`find_ejabberd`)."""
    return find_ejabberd(candidate) is not None


def _erlang_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


class EjabberdServer(XmppServer):
    """A private ejabberd listening on one loopback c2s port.

    :param domain: the XMPP domain (the only entry of ``hosts``).
    :param host: loopback address to listen on.
    :param ejabberdctl: the ``ejabberdctl`` script to read the installation
        from (see :func:`find_ejabberd`).
    :param debug: ``loglevel: debug`` (stanzas included) instead of info.
    :param keep: keep the temporary directory after :meth:`stop`.
    :param start_timeout: seconds :meth:`start` waits for the server.
    :param smacks_hibernation_time: ``mod_stream_mgmt``'s ``resume_timeout``.
    :param extra_config: top-level options merged into the configuration
        (replacing those of the same name).
    :param extra_modules: further modules ``{"mod_x": {options}}`` (replace
        a default module's options).
    :param mam_db: where ``mod_mam`` keeps the archive: ``"sql"`` (a SQLite
        file in the spool directory, :attr:`sqlite_path`) or ``"mnesia"``;
        ``None``: SQLite when Erlang's SQLite driver is installed (Debian:
        ``erlang-p1-sqlite3``), else Mnesia.  ejabberd warns against Mnesia
        for MAM and Debian's configuration enables MAM only "when you have
        SQL configured"; with Mnesia every archived message rereads the
        user's whole archive (a dets bag), so long runs slow down
        quadratically (10,000 messages: hours instead of a minute).
    :param run_as: system user the VM runs as when we are root (``None``:
        :data:`EJABBERD_USER` if it exists, else root).  Ignored otherwise.
    :param base_dir: parent directory for the temporary directory (must be
        traversable by *run_as*).
    :param verify_tls: make :meth:`prepare_client` verify the server
        certificate against :attr:`ca_cert_path`.
    """

    kind: ClassVar[str] = "ejabberd"

    #: Mnesia's ``disc_only_copies`` tables (accounts, rosters, offline
    #: store, archive, PEP items...) are dets files, written through dets's
    #: write cache: a change reaches the file up to 3 s later (measured:
    #: 2.8-2.9 s), and a SIGKILL loses what had not.
    write_delay: ClassVar[float] = 3.5

    def __init__(
        self,
        domain: str = DEFAULT_DOMAIN,
        *,
        host: str = "127.0.0.1",
        ejabberdctl: str | None = None,
        debug: bool = False,
        keep: bool = False,
        start_timeout: float = 30.0,
        smacks_hibernation_time: int = 300,
        extra_config: Mapping[str, Any] | None = None,
        extra_modules: Mapping[str, Mapping[str, Any]] | None = None,
        mam_db: str | None = None,
        run_as: str | None = None,
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
        self.ejabberdctl = ejabberdctl
        self.extra_config: dict[str, Any] = dict(extra_config or {})
        self.modules: dict[str, dict[str, Any]] = {
            name: dict(options) for name, options in EJABBERD_DEFAULT_MODULES.items()
        }
        for name, options in (extra_modules or {}).items():
            self.modules[name] = dict(options)
        self.run_as = run_as
        if mam_db is None:
            installation = find_ejabberd(ejabberdctl)
            mam_db = "sql" if installation is not None and installation.sqlite else "mnesia"
        if mam_db not in ("sql", "mnesia"):
            raise ValueError(f"mam_db must be 'sql' or 'mnesia', not {mam_db!r}")
        self.mam_db = mam_db

    # ------------------------------------------------------------------ paths

    @property
    def data_dir(self) -> Path:
        """The Mnesia directory (``-mnesia dir``): accounts, offline store, archive, PEP..."""
        return self.base_dir / "spool"

    @property
    def logs_dir(self) -> Path:
        return self.base_dir / "logs"

    @property
    def config_path(self) -> Path:
        return self.base_dir / "ejabberd.yml"

    @property
    def log_path(self) -> Path:
        """ejabberd's own log (``error.log`` and ``crash.log`` are beside it)."""
        return self.logs_dir / "ejabberd.log"

    @property
    def sqlite_path(self) -> Path:
        """The SQLite database of the archive when ``mam_db="sql"``."""
        return self.data_dir / "ejabberd.db"

    @property
    def inetrc_path(self) -> Path:
        return self.base_dir / "inetrc"

    # ---------------------------------------------------------- configuration

    def config_data(self) -> dict[str, Any]:
        """The configuration as data (written as JSON, which is YAML too)."""
        stream_mgmt = self.modules.get("mod_stream_mgmt")
        modules = dict(self.modules)
        if stream_mgmt is not None:
            modules["mod_stream_mgmt"] = {
                "resume_timeout": int(self.smacks_hibernation_time),
                **stream_mgmt,
            }
        config: dict[str, Any] = {
            "loglevel": "debug" if self.debug else "info",
            "log_rotate_count": 0,
            "hosts": [self.domain],
            "certfiles": [str(self.cert_path), str(self.key_path)],
            "ca_file": str(self.ca_cert_path),
            "c2s_ciphers": "HIGH:!aNULL:!eNULL:!3DES:@STRENGTH",
            "c2s_protocol_options": _TLS_OPTIONS,
            "listen": [
                {
                    "port": self.c2s_port,
                    "ip": self.host,
                    "module": "ejabberd_c2s",
                    "max_stanza_size": 262144,
                    "access": "c2s",
                    "starttls_required": True,
                    "protocol_options": _TLS_OPTIONS,
                }
            ],
            "disable_sasl_mechanisms": ["digest-md5", "X-OAUTH2"],
            "auth_password_format": "scram",
            # Never talk to another server (the tests only use our domain).
            "s2s_access": "none",
            # Open, unthrottled in-band registration (from loopback: see mod_register).
            "registration_timeout": "infinity",
            "acl": {
                "local": {"user_regexp": ""},
                "loopback": {"ip": ["127.0.0.0/8", "::1/128"]},
            },
            "access_rules": {
                "local": {"allow": "local"},
                "c2s": {"deny": "blocked", "allow": "all"},
                "pubsub_createnode": {"allow": "local"},
                "trusted_network": {"allow": "loopback"},
            },
            "shaper_rules": {"max_user_sessions": 10, "max_user_offline_messages": 100},
            "modules": modules,
        }
        if self.mam_db == "sql" and "mod_mam" in modules:
            # ejabberd creates the tables (its lite.sql) in a new file
            config["sql_type"] = "sqlite"
            config["sql_database"] = str(self.sqlite_path)
            modules["mod_mam"] = {**modules["mod_mam"], "db_type": "sql"}
        config.update(self.extra_config)
        return config

    def render_config(self) -> str:
        """The ``ejabberd.yml`` text for the current port and directory."""
        return (
            "# Generated by slixmpp_objenc.testing.ejabberd; throwaway test server.\n"
            + json.dumps(self.config_data(), indent=2)
            + "\n"
        )

    # ---------------------------------------------------------------- process

    def _user(self) -> pwd.struct_passwd | None:
        """The account the VM runs as, or ``None`` for ourselves."""
        if os.geteuid() != 0:
            return None
        name = self.run_as or EJABBERD_USER
        try:
            return pwd.getpwnam(name)
        except KeyError:
            if self.run_as is not None:
                raise ServerError(f"no system user {self.run_as!r} to run ejabberd as") from None
            return None

    def _give_directory(self) -> None:
        user = self._user()
        if user is None:
            return
        for root, dirs, files in os.walk(self.base_dir):
            for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                os.chown(name, user.pw_uid, user.pw_gid)

    def _init_directory(self) -> None:
        self.data_dir.mkdir(mode=0o700)
        self.logs_dir.mkdir(mode=0o700)
        # Name lookups only from /etc/hosts: the VM never asks a DNS server.
        self.inetrc_path.write_text('{lookup, ["file"]}.\n', encoding="utf-8")

    def _write_config(self) -> None:
        super()._write_config()
        self._give_directory()

    def _installation(self) -> EjabberdInstallation:
        found = find_ejabberd(self.ejabberdctl)
        if found is None:
            raise ServerError(
                f"no ejabberd installation found (ejabberdctl={self.ejabberdctl!r}, "
                f"$OBJENC_EJABBERDCTL, {DEFAULT_EJABBERDCTL}, $PATH)"
            )
        return found

    def _command(self) -> list[str]:
        return [
            self._installation().erl,
            # Idle schedulers sleep instead of spinning (two-core CI machines).
            "+sbwt",
            "none",
            "+sbwtdcpu",
            "none",
            "+sbwtdio",
            "none",
            "-noshell",
            "-noinput",
            "-mnesia",
            "dir",
            _erlang_string(str(self.data_dir)),
            "-s",
            "ejabberd",
        ]

    def _popen_options(self) -> dict[str, Any]:
        installation = self._installation()
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": str(self.base_dir),
            "LANG": "C.UTF-8",
            "EJABBERD_CONFIG_PATH": str(self.config_path),
            "EJABBERD_LOG_PATH": str(self.log_path),
            "ERL_LIBS": installation.erl_libs,
            "ERL_INETRC": str(self.inetrc_path),
            "ERL_CRASH_DUMP": str(self.logs_dir / "erl_crash.dump"),
            "ERL_CRASH_DUMP_BYTES": "0",
            "CONTRIB_MODULES_PATH": str(self.base_dir / "contrib"),
        }
        options: dict[str, Any] = {"env": env}
        user = self._user()
        if user is not None:
            options.update(user=user.pw_uid, group=user.pw_gid, extra_groups=[])
        return options

    def _port_in_use(self, new_log: str) -> bool:
        return "eaddrinuse" in new_log or "address already in use" in new_log.lower()

    def _diagnostic_files(self) -> list[Path]:
        return [self.log_path, self.logs_dir / "error.log", self.console_log_path]

    # ------------------------------------------------------------ inspection

    def _is_stored_file(self, relative: Path) -> bool:
        return relative.parts[0] not in _NOT_STORED

    def store_paths(self, store: str) -> list[Path]:
        """Mnesia files of the table(s) behind *store* (see :data:`STORE_TABLES`).

        ``<table>.DAT`` (``disc_only_copies``: a dets file, written at each
        change), its index files ``<table>_<n>.DAT``, or ``<table>.DCD`` and
        ``.DCL`` (``disc_copies``) plus Mnesia's transaction log
        ``LATEST.LOG``, where changes to ``disc_copies`` tables land first.
        The archive on SQLite (``mam_db="sql"``) is :attr:`sqlite_path` and
        its journal.
        """
        if store == "archive" and self.mam_db == "sql":
            return sorted(self.data_dir.glob(glob.escape(self.sqlite_path.name) + "*"))
        tables = STORE_TABLES.get(store) or (
            STORE_TABLES["pep"] if store.startswith("pep") else (store,)
        )
        paths: list[Path] = []
        disc_copies = False
        for table in tables:
            paths += [p for p in (self.data_dir / f"{table}.DAT",) if p.is_file()]
            paths += sorted(self.data_dir.glob(f"{glob.escape(table)}_[0-9]*.DAT"))
            for suffix in (".DCD", ".DCL"):
                path = self.data_dir / f"{table}{suffix}"
                if path.is_file():
                    paths.append(path)
                    disc_copies = True
        if disc_copies:
            paths += [p for p in (self.data_dir / "LATEST.LOG",) if p.is_file()]
        return paths

    def user_store_bytes(self, user: str, store: str) -> bytes:
        """Raw bytes of the Mnesia table(s) behind *store*, **for all users**.

        ejabberd keeps one table per kind of data, not one file per user as
        Prosody does, so *user* cannot narrow the result: what one user's
        store contains is in it, along with everyone else's.  Deleted
        records (e.g. delivered offline messages) may linger in the file.
        """
        del user  # one table for every user
        data = b""
        for path in self.store_paths(store):
            with contextlib.suppress(OSError):
                data += path.read_bytes()
        return data
