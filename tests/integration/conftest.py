"""Fixtures for tests against real, throwaway XMPP servers (Prosody and ejabberd).

* ``server``: an :class:`~slixmpp_objenc.testing.XmppServer` per test module
  and server kind (started once, stopped after the module): every test that
  uses it (or ``account``, ``connect_client``, ``server_factory``) runs once
  per server, with the ids ``prosody`` and ``ejabberd``.  A kind whose
  software is not installed is skipped, unless ``OBJENC_REQUIRE_PROSODY=1`` /
  ``OBJENC_REQUIRE_EJABBERD=1`` (then its tests fail instead).
* ``server_factory``: starts extra, private servers of the same kind (for
  destructive tests: kill/restart); all are stopped after the test.
* ``account``: ``await account()`` registers ``user-<8 hex>`` and returns
  ``(jid, password)``.
* ``connect_client``: ``await connect_client()`` registers a fresh account and
  returns a connected, session-started ``ClientXMPP``; or pass
  ``(jid, password, plugins=..., pconfig=..., client_factory=...)``.  Every
  client made through it is disconnected at teardown.
* ``@pytest.mark.servers("prosody", reason="...")``: run a test only on the
  named servers; elsewhere it is skipped with the reason (say which server
  difference makes it impossible there).

Environment knobs: ``OBJENC_SERVERS`` (comma list of the kinds to run,
default ``prosody,ejabberd``), ``OBJENC_PROSODY_BIN`` (executable),
``OBJENC_EJABBERDCTL`` (Debian's ``ejabberdctl``, read to find the
installation), ``OBJENC_PROSODY_DEBUG=1`` / ``OBJENC_EJABBERD_DEBUG=1``
(debug-level server log), ``OBJENC_KEEP_PROSODY=1`` / ``OBJENC_KEEP_EJABBERD=1``
(keep the server's temporary directory for inspection; its path is printed).

All tests collected from this folder get the ``integration`` marker.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

_HERE = Path(__file__).resolve().parent

if importlib.util.find_spec("slixmpp_objenc") is None:  # not installed: use the checkout
    sys.path.insert(0, str(_HERE.parents[1]))

from slixmpp import ClientXMPP  # noqa: E402

from slixmpp_objenc.testing import (  # noqa: E402
    EjabberdServer,
    ProsodyServer,
    ServerError,
    XmppServer,
    find_ejabberd,
    find_prosody,
)

SERVER_KINDS = ("prosody", "ejabberd")

AccountFactory = Callable[..., Awaitable[tuple[str, str]]]
ClientConnector = Callable[..., Awaitable[ClientXMPP]]


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _selected_kinds() -> list[str]:
    raw = os.environ.get("OBJENC_SERVERS", ",".join(SERVER_KINDS))
    kinds = [k.strip().lower() for k in raw.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(SERVER_KINDS))
    if unknown:
        raise pytest.UsageError(
            f"OBJENC_SERVERS={raw!r}: unknown server(s) {unknown}; known: {', '.join(SERVER_KINDS)}"
        )
    return list(dict.fromkeys(kinds))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "servers(*kinds, reason): run only against these servers (prosody, ejabberd); "
        "skipped on the others with the reason (a server difference)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.path)).resolve()
        if path == _HERE or _HERE in path.parents:
            item.add_marker(pytest.mark.integration)
        marker = item.get_closest_marker("servers")
        callspec = getattr(item, "callspec", None)
        if marker is None or callspec is None or "server_kind" not in callspec.params:
            continue
        kind = callspec.params["server_kind"]
        if kind not in marker.args:
            reason = marker.kwargs.get("reason")
            if not reason:
                raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.servers needs a reason=")
            item.add_marker(pytest.mark.skip(reason=f"not on {kind}: {reason}"))


def _require(kind: str) -> str:
    """The executable (Prosody) or ``ejabberdctl`` of *kind*; skip or fail without."""
    if kind == "prosody":
        binary = find_prosody()
        if binary is not None:
            return binary
        configured = os.environ.get("OBJENC_PROSODY_BIN")
        where = (
            f"$OBJENC_PROSODY_BIN={configured!r} is not executable"
            if configured
            else "no /usr/bin/prosody and no prosody on $PATH"
        )
        package = "prosody"
    else:
        installation = find_ejabberd()
        if installation is not None:
            return installation.ejabberdctl
        configured = os.environ.get("OBJENC_EJABBERDCTL")
        where = (
            f"$OBJENC_EJABBERDCTL={configured!r} is not a usable ejabberdctl"
            if configured
            else "no /usr/sbin/ejabberdctl (with erl and ejabberd-*/ebin) and none on $PATH"
        )
        package = "ejabberd"
    reason = (
        f"{kind} is not available ({where}); "
        f"install the Debian package '{package}' to run the integration tests on it"
    )
    variable = f"OBJENC_REQUIRE_{kind.upper()}"
    if _flag(variable):
        pytest.fail(f"{variable}=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def _start_server(kind: str) -> XmppServer:
    where = _require(kind)
    server: XmppServer
    if kind == "prosody":
        server = ProsodyServer(
            prosody_bin=where,
            debug=_flag("OBJENC_PROSODY_DEBUG"),
            keep=_flag("OBJENC_KEEP_PROSODY"),
        )
    else:
        server = EjabberdServer(
            ejabberdctl=where,
            debug=_flag("OBJENC_EJABBERD_DEBUG"),
            keep=_flag("OBJENC_KEEP_EJABBERD"),
        )
    try:
        server.start()
    except ServerError as exc:
        server.stop()
        pytest.fail(f"could not start the test {kind} server: {exc}", pytrace=False)
    if server.keep:
        print(f"\n[{kind}] {server!r} directory: {server.base_dir}")
    return server


@pytest.fixture(scope="module", params=_selected_kinds())
def server_kind(request: pytest.FixtureRequest) -> str:
    """``"prosody"`` or ``"ejabberd"``: the server software of this run of the test."""
    kind: str = request.param
    return kind


@pytest.fixture(scope="module")
def server(server_kind: str) -> Iterator[XmppServer]:
    """A running server shared by the tests of one module (one per kind)."""
    started = _start_server(server_kind)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def server_factory(server_kind: str) -> Iterator[Callable[[], XmppServer]]:
    """``server_factory()`` starts a private server; all are stopped after the test."""
    servers: list[XmppServer] = []

    def make() -> XmppServer:
        started = _start_server(server_kind)
        servers.append(started)
        return started

    yield make
    for started in servers:
        started.stop()


@pytest.fixture
def _live_server(server: XmppServer) -> XmppServer:
    # A test of this module may have killed the shared server; bring it back
    # (same data and port) rather than failing every later test.
    if not server.is_running:
        warnings.warn("the module's server was not running; restarting it", stacklevel=1)
        server.restart()
    return server


@pytest.fixture
def account(_live_server: XmppServer) -> AccountFactory:
    """``await account(prefix="user", password=None)`` -> ``(bare_jid, password)``."""

    async def make(prefix: str = "user", password: str | None = None) -> tuple[str, str]:
        return await _live_server.create_account(prefix, password)

    return make


@pytest_asyncio.fixture
async def connect_client(
    _live_server: XmppServer, account: AccountFactory
) -> AsyncIterator[ClientConnector]:
    """Connect clients (optionally to fresh accounts); disconnect them all at teardown."""
    clients: list[ClientXMPP] = []

    async def connect(
        jid: str | None = None,
        password: str | None = None,
        plugins: list[str] | None = None,
        pconfig: dict[str, dict[str, Any]] | None = None,
        client_factory: Callable[[str, str], ClientXMPP] | None = None,
        **kwargs: Any,
    ) -> ClientXMPP:
        if jid is None:
            jid, password = await account()
        elif password is None:
            raise ValueError("a password is needed with an explicit jid")
        client = await _live_server.connect_client(
            jid, password, plugins, pconfig, client_factory, **kwargs
        )
        clients.append(client)
        return client

    yield connect
    for client in reversed(clients):
        with contextlib.suppress(Exception):
            await _live_server.disconnect_client(client, timeout=5.0)
