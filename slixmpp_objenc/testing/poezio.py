"""Run the poezio terminal client against a throwaway Prosody (``./dev chat``, tests).

poezio refuses to run as root, and CI runs as root. So, when started as root,
poezio runs as an unprivileged system user (:data:`POEZIO_USER`, created with
``useradd`` on first use) through ``runuser``, from a virtualenv built with the
system's ``/usr/bin/python3`` in a world-readable directory (the Python that
runs the tests may live where other users cannot read, such as
``/root/.pyenv``), holding poezio and a *non-editable* install of this package
with its ``poezio`` extra, exactly as a user would install it. Its ``HOME`` is
a fresh directory owned by that user; the server's certificate is pinned in
poezio's configuration (the throwaway CA in ``ca_cert_path`` with
verification on, and the server key's SPKI hash in ``certificate``).

Nothing here imports poezio: the test process drives poezio in ``tmux``
(:class:`TmuxSession`) and reads its screen. System packages needed (Debian):
``python3-venv``, ``python3-dev``, ``gcc`` and ``pkg-config`` (poezio builds a
small C extension), ``tmux`` for :class:`TmuxSession`; ``./dev`` installs them
when it may (:func:`missing_tools` says which are missing).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from slixmpp import ClientXMPP

from .prosody import ProsodyServer

__all__ = [
    "POEZIO_USER",
    "SYSTEM_PYTHON",
    "PoezioProfile",
    "TmuxSession",
    "befriend",
    "direct_tls_config",
    "ensure_user",
    "missing_tools",
    "poezio_command",
    "poezio_venv",
    "private_directory",
    "spki_pin",
    "terminate_tree",
    "write_profile",
]

POEZIO_USER: Final = "objenc-chat"
"""The unprivileged account poezio runs as when we are root."""
SYSTEM_PYTHON: Final = "/usr/bin/python3"
TERM: Final = "screen-256color"
"""The terminal type tmux emulates (its terminfo entry ships with ncurses-base)."""

_KEEP_VENVS: Final = 2
_PACKAGE_FILES: Final = ("pyproject.toml", "README.md", "LICENSE")


def missing_tools(*, tmux: bool = True) -> list[str]:
    """The Debian packages that seem missing: ``tmux`` (for :class:`TmuxSession`),
    ``python3-venv``, ``python3-dev``, ``gcc`` and ``pkg-config`` (poezio's
    virtualenv and its C extension), ``util-linux`` and ``passwd`` (as root)."""
    missing = []
    if tmux and shutil.which("tmux") is None:
        missing.append("tmux")
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        missing.append("python3")
    else:
        probe = subprocess.run(
            [
                SYSTEM_PYTHON,
                "-c",
                "import ensurepip, venv, sysconfig; print(sysconfig.get_paths()['include'])",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode != 0:
            missing.append("python3-venv")
        elif not (Path(probe.stdout.strip()) / "Python.h").is_file():
            missing.append("python3-dev")
    for tool in ("gcc", "pkg-config"):
        if shutil.which(tool) is None:
            missing.append(tool)
    if os.geteuid() == 0:
        for tool, package in (("runuser", "util-linux"), ("useradd", "passwd")):
            if shutil.which(tool) is None:
                missing.append(package)
    return missing


# -- the virtualenv ------------------------------------------------------------


def _source_digest(project: Path) -> str:
    digest = hashlib.sha256()
    with open(SYSTEM_PYTHON, "rb") as python:  # a Python upgrade means a new venv
        digest.update(hashlib.sha256(python.read()).digest())
    files = [project / name for name in _PACKAGE_FILES if (project / name).is_file()]
    files += sorted((project / "slixmpp_objenc").rglob("*"))
    for path in files:
        # the test tooling is installed too, but poezio never runs it
        skip = {"__pycache__", "testing"}
        if path.is_file() and not skip.intersection(path.relative_to(project).parts):
            digest.update(str(path.relative_to(project)).encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _copy_package(project: Path, destination: Path) -> None:
    """The files a wheel is built from, so the build never writes into ``project``."""
    destination.mkdir(parents=True)
    for name in _PACKAGE_FILES:
        if (project / name).is_file():
            shutil.copy2(project / name, destination / name)
    shutil.copytree(
        project / "slixmpp_objenc",
        destination / "slixmpp_objenc",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )


def _make_world_readable(root: Path) -> None:
    for directory, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(directory) / name
            if path.is_symlink():
                continue
            mode = path.stat().st_mode
            path.chmod(mode | (0o555 if path.is_dir() or mode & 0o111 else 0o444))
    root.chmod(root.stat().st_mode | 0o555)


def default_venv_root() -> Path:
    """``/var/tmp/slixmpp-objenc-poezio-<uid>``: outside any home directory, so the
    unprivileged user can reach it, and kept across runs (one build per source)."""
    return Path("/var/tmp") / f"slixmpp-objenc-poezio-{os.geteuid()}"


def poezio_venv(
    project: Path,
    root: Path | None = None,
    *,
    log: Callable[[str], None] = lambda _line: None,
    timeout: float = 600.0,
) -> Path:
    """A virtualenv (system Python) with ``project`` installed, not editable, with its
    ``poezio`` extra; built once per source tree (keyed by a hash of the package
    files) and reused; safe to call from concurrent processes. Returns its path."""
    root = root or default_venv_root()
    root.mkdir(mode=0o755, parents=True, exist_ok=True)
    root.chmod(0o755)
    digest = _source_digest(project)
    venv = root / f"venv-{digest}"
    with open(root / "lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (venv / "ready").is_file():
            os.utime(venv / "ready")
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix="build-", dir=root))
        try:
            source = work / "source"
            _copy_package(project, source)
            started = time.monotonic()
            log(f"building poezio's virtualenv in {venv} (once per source tree)")
            subprocess.run([SYSTEM_PYTHON, "-m", "venv", str(venv)], check=True, timeout=timeout)
            env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
            env.pop("PYTHONPATH", None)
            env.pop("PIP_REQUIRE_VIRTUALENV", None)
            result = subprocess.run(
                [
                    str(venv / "bin" / "python"),
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    f"{source}[poezio]",
                ],
                capture_output=True,
                text=True,
                env=env,
                timeout=timeout,
                check=False,
            )
            if result.returncode != 0:
                shutil.rmtree(venv, ignore_errors=True)
                raise RuntimeError(
                    "installing slixmpp-objenc[poezio] into poezio's virtualenv failed:\n"
                    + result.stdout[-3000:]
                    + result.stderr[-3000:]
                )
            _make_world_readable(venv)
            (venv / "ready").write_text(f"{time.time()}\n")
            (venv / "ready").chmod(0o644)
            log(f"poezio's virtualenv built in {time.monotonic() - started:.0f} s")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        _prune(root, keep=venv)
        return venv


def _prune(root: Path, keep: Path) -> None:
    """Drop all but the most recently used virtualenvs (the lock is held)."""
    others = [p for p in root.glob("venv-*") if p != keep and (p / "ready").is_file()]
    others.sort(key=lambda p: (p / "ready").stat().st_mtime, reverse=True)
    for old in others[_KEEP_VENVS - 1 :]:
        shutil.rmtree(old, ignore_errors=True)


# -- the unprivileged user and its profile -------------------------------------


def ensure_user(name: str = POEZIO_USER) -> pwd.struct_passwd:
    """The system account poezio runs as, created (no home, no login shell) if missing."""
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(name)
    result = subprocess.run(
        [
            "useradd",
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode not in (0, 9):  # 9: created meanwhile by a concurrent run
        raise RuntimeError(f"useradd {name} failed: {result.stderr.strip()}")
    return pwd.getpwnam(name)


def spki_pin(cert_pem: bytes) -> str:
    """poezio's ``certificate`` option: SHA-256 of the key's SubjectPublicKeyInfo,
    upper-case hex in colon-separated pairs."""
    certificate = x509.load_pem_x509_certificate(cert_pem)
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashlib.sha256(spki).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


@dataclass(frozen=True, slots=True)
class PoezioProfile:
    """A HOME prepared for one poezio run."""

    home: Path
    config: Path
    debug_log: Path
    user: str | None
    """Who runs poezio (``None``: the current user)."""


def direct_tls_config(port: int) -> str:
    """Prosody configuration (``extra_config``) for a direct-TLS c2s port as well.

    Given an address, slixmpp tries direct TLS first and STARTTLS after; poezio
    shows the failed first attempt as an error, so a server for poezio offers both.
    """
    return f"c2s_direct_tls_ports = {{ {int(port)} }}\n"


def write_profile(
    home: Path,
    server: ProsodyServer,
    jid: str,
    password: str,
    *,
    port: int | None = None,
    user: pwd.struct_passwd | None = None,
    autoload: Sequence[str] = (),
    plugin_config: Mapping[str, str] | None = None,
) -> PoezioProfile:
    """Write poezio's configuration into ``home`` (which must exist and be empty):
    the account, the server's loopback address (``port``: a direct-TLS port, see
    :func:`direct_tls_config`; default the STARTTLS one), its CA and pinned key,
    and optionally plugins to load at start and ``objenc.cfg`` settings."""
    config_dir = home / ".config" / "poezio"
    (config_dir / "plugins").mkdir(parents=True)
    ca = home / "prosody-ca.crt"
    shutil.copyfile(server.ca_cert_path, ca)
    lines = [
        "[Poezio]",
        f"jid = {jid}",
        f"password = {password}",
        f"custom_host = {server.host}",
        f"custom_port = {port or server.c2s_port}",
        "# the throwaway server's CA, verified; and its key pinned",
        f"ca_cert_path = {ca}",
        "tls_verify_cert = true",
        f"certificate = {spki_pin(server.cert_path.read_bytes())}",
        f"plugins_autoload = {' '.join(autoload)}",
        "enable_user_nick = false",
        "use_remote_bookmarks = false",
        "send_poezio_info = false",
        "show_tab_names = true",
        "information_buffer_popup_on = ",
        "information_win_size = 4",
        "hide_status_change = 0",
        "",
    ]
    config = config_dir / "poezio.cfg"
    config.write_text("\n".join(lines), encoding="utf-8")
    if plugin_config:
        text = "[objenc]\n" + "".join(f"{k} = {v}\n" for k, v in plugin_config.items())
        (config_dir / "plugins" / "objenc.cfg").write_text(text, encoding="utf-8")
    debug_log = home / "poezio-debug.log"
    home.chmod(0o700)
    if user is not None:
        for directory, _dirs, files in os.walk(home):
            os.chown(directory, user.pw_uid, user.pw_gid)
            for name in files:
                os.chown(Path(directory) / name, user.pw_uid, user.pw_gid)
    return PoezioProfile(home, config, debug_log, user.pw_name if user is not None else None)


def poezio_command(venv: Path, profile: PoezioProfile, *, term: str = TERM) -> list[str]:
    """The command line that starts poezio for ``profile``: a clean environment
    (HOME, LANG=C.UTF-8, TERM), as the profile's user through ``runuser``."""
    env = {
        "HOME": str(profile.home),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TERM": term,
        "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    argv = [
        "/usr/bin/env",
        "-i",
        *(f"{k}={v}" for k, v in env.items()),
        str(venv / "bin" / "poezio"),
        "-f",
        str(profile.config),
        "-d",
        str(profile.debug_log),
    ]
    if profile.user is not None:
        argv = ["runuser", "-u", profile.user, "--", *argv]
    return argv


# -- tmux ----------------------------------------------------------------------


class TmuxSession:
    """One program in a detached tmux session on a private socket: type, read the screen."""

    def __init__(self, directory: Path, *, width: int = 150, height: int = 45) -> None:
        self.socket = directory / "tmux.sock"
        self.width = width
        self.height = height
        self.target = "objenc:0.0"
        self.pane_pid: int | None = None

    def _tmux(self, *args: str, check: bool = True) -> str:
        result = subprocess.run(
            ["tmux", "-S", str(self.socket), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=20,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"tmux {args[0]} failed: {result.stderr.strip()}")
        return result.stdout

    def start(self, argv: Sequence[str]) -> None:
        self._tmux(
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "objenc",
            "-x",
            str(self.width),
            "-y",
            str(self.height),
            shlex.join(argv),
        )
        # keep the pane (and what poezio printed last) if poezio exits
        self._tmux("set-option", "-t", "objenc", "remain-on-exit", "on", check=False)
        pid = self._tmux("display-message", "-p", "-t", self.target, "#{pane_pid}", check=False)
        self.pane_pid = int(pid) if pid.strip().isdigit() else None

    def send_text(self, text: str) -> None:
        """Type ``text`` literally (no key names)."""
        self._tmux("send-keys", "-t", self.target, "-l", text)

    def send_keys(self, *keys: str) -> None:
        """Press keys by tmux name (``Enter``, ``C-n``, ``M-1``...)."""
        self._tmux("send-keys", "-t", self.target, *keys)

    async def type_line(self, text: str, timeout: float = 10.0, *, shown: str = "") -> None:
        """Type ``text``, wait until the input line shows it (or ``shown``), then
        press Enter: keys that arrive in one burst ending with Enter are taken by
        poezio as pasted text, and the Enter is dropped."""
        self.send_text(text)
        tail = (shown or text)[-20:]
        await self.wait_for(
            lambda screen: screen.rstrip().endswith(tail),
            timeout,
            what=f"{text!r} in the input line",
        )
        self.send_keys("Enter")

    async def command(self, line: str, timeout: float = 10.0) -> None:
        """Type a poezio command: ``/`` alone first (in the roster tab it opens the
        command line, and keys typed in the same burst would be read as roster keys)."""
        self.send_text("/")
        await self.wait_for(
            lambda screen: screen.rstrip().endswith("/"),
            timeout,
            what="poezio's command line",
        )
        rest = line.removeprefix("/")
        await self.type_line(rest, timeout, shown="/" + rest)

    def screen(self) -> str:
        """What the terminal shows now."""
        return self._tmux("capture-pane", "-p", "-t", self.target, check=False)

    def dead(self) -> bool:
        out = self._tmux("display-message", "-p", "-t", self.target, "#{pane_dead}", check=False)
        return out.strip() == "1"

    async def wait_for(
        self, found: str | Callable[[str], bool], timeout: float = 20.0, what: str = ""
    ) -> str:
        """Poll the screen until ``found`` (a substring, or a predicate) holds; return
        the screen. Raises :class:`TimeoutError` with the last screen."""
        test = (lambda screen: found in screen) if isinstance(found, str) else found
        deadline = time.monotonic() + timeout
        while True:
            screen = await asyncio.to_thread(self.screen)
            if test(screen):
                return screen
            if time.monotonic() > deadline or self.dead():
                state = "poezio exited" if self.dead() else f"not within {timeout:.0f} s"
                raise TimeoutError(f"{what or repr(found)}: {state}; the screen was:\n{screen}")
            await asyncio.sleep(0.1)

    def kill(self, timeout: float = 5.0) -> None:
        """Stop the program (its process group: tmux made it a session leader) and tmux."""
        pgid = self.pane_pid
        self._tmux("kill-server", check=False)  # hangs up the pane
        if pgid is not None:
            deadline = time.monotonic() + timeout
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, sig)
                while time.monotonic() < deadline and _group_alive(pgid):
                    time.sleep(0.05)
                if not _group_alive(pgid):
                    break
                deadline = time.monotonic() + timeout
        with contextlib.suppress(OSError):
            self.socket.unlink()


def terminate_tree(pid: int, timeout: float = 5.0) -> None:
    """SIGTERM a process we started and its descendants (poezio ignores hangups and
    runs under ``runuser``), then SIGKILL whatever is left after ``timeout``."""
    pids = [pid, *_descendants(pid)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for target in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(target, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.05)
        if not any(_alive(p) for p in pids):
            return


def _descendants(pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
    found: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        found.extend(children)
        frontier.extend(children)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def private_directory(prefix: str, owner: pwd.struct_passwd | None = None) -> Iterator[Path]:
    """A temporary directory (mode 0700, owned by ``owner`` if given), removed after."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        if owner is not None:
            os.chown(path, owner.pw_uid, owner.pw_gid)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- contacts ------------------------------------------------------------------


async def befriend(a: ClientXMPP, b: ClientXMPP, timeout: float = 15.0) -> None:
    """Make two connected accounts contacts (subscription ``both``): PEP lets only
    contacts read a certificate. Relies on slixmpp's default auto-authorize and
    auto-subscribe on both sides."""
    a_jid, b_jid = a.boundjid.bare, b.boundjid.bare
    a.send_presence(pto=b_jid, ptype="subscribe")
    deadline = time.monotonic() + timeout

    def mutual() -> bool:
        roster_a: Any = a.client_roster
        roster_b: Any = b.client_roster
        return bool(
            roster_a.has_jid(b_jid)
            and roster_b.has_jid(a_jid)
            and roster_a[b_jid]["subscription"] == "both"
            and roster_b[a_jid]["subscription"] == "both"
        )

    while not mutual():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{a_jid} and {b_jid} did not become contacts in {timeout} s")
        await asyncio.sleep(0.05)
