"""Fixtures for tests against a real, throwaway Prosody server.

* ``prosody``: a :class:`ProsodyServer` per test module (started once, stopped
  after the module).  Skipped when no ``prosody`` executable is installed,
  unless ``OBJENC_REQUIRE_PROSODY=1`` (then the tests fail instead).
* ``prosody_factory``: starts extra, private servers (for destructive tests:
  kill/restart); all are stopped after the test.
* ``account``: ``await account()`` registers ``user-<8 hex>`` and returns
  ``(jid, password)``.
* ``connect_client``: ``await connect_client()`` registers a fresh account and
  returns a connected, session-started ``ClientXMPP``; or pass
  ``(jid, password, plugins=..., pconfig=..., client_factory=...)``.  Every
  client made through it is disconnected at teardown.

Environment knobs: ``OBJENC_PROSODY_BIN`` (executable), ``OBJENC_PROSODY_DEBUG=1``
(debug-level Prosody log), ``OBJENC_KEEP_PROSODY=1`` (keep the server's
temporary directory for inspection; its path is printed).

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

from slixmpp_objenc.testing import ProsodyError, ProsodyServer, find_prosody  # noqa: E402

AccountFactory = Callable[..., Awaitable[tuple[str, str]]]
ClientConnector = Callable[..., Awaitable[ClientXMPP]]


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.path)).resolve()
        if path == _HERE or _HERE in path.parents:
            item.add_marker(pytest.mark.integration)


def _require_prosody() -> str:
    binary = find_prosody()
    if binary is None:
        configured = os.environ.get("OBJENC_PROSODY_BIN")
        where = (
            f"$OBJENC_PROSODY_BIN={configured!r} is not executable"
            if configured
            else "no /usr/bin/prosody and no prosody on $PATH"
        )
        reason = (
            f"prosody is not available ({where}); "
            "install the Debian package 'prosody' to run the integration tests"
        )
        if _flag("OBJENC_REQUIRE_PROSODY"):
            pytest.fail(f"OBJENC_REQUIRE_PROSODY=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return binary


def _start_server(binary: str) -> ProsodyServer:
    server = ProsodyServer(
        prosody_bin=binary,
        debug=_flag("OBJENC_PROSODY_DEBUG"),
        keep=_flag("OBJENC_KEEP_PROSODY"),
    )
    try:
        server.start()
    except ProsodyError as exc:
        server.stop()
        pytest.fail(f"could not start the test Prosody server: {exc}", pytrace=False)
    if server.keep:
        print(f"\n[prosody] {server!r} directory: {server.base_dir}")
    return server


@pytest.fixture(scope="module")
def prosody() -> Iterator[ProsodyServer]:
    """A running Prosody shared by the tests of one module."""
    server = _start_server(_require_prosody())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def prosody_factory() -> Iterator[Callable[[], ProsodyServer]]:
    """``prosody_factory()`` starts a private server; all are stopped after the test."""
    servers: list[ProsodyServer] = []

    def make() -> ProsodyServer:
        server = _start_server(_require_prosody())
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def _live_prosody(prosody: ProsodyServer) -> ProsodyServer:
    # A test of this module may have killed the shared server; bring it back
    # (same data and port) rather than failing every later test.
    if not prosody.is_running:
        warnings.warn("the module's Prosody server was not running; restarting it", stacklevel=1)
        prosody.restart()
    return prosody


@pytest.fixture
def account(_live_prosody: ProsodyServer) -> AccountFactory:
    """``await account(prefix="user", password=None)`` -> ``(bare_jid, password)``."""

    async def make(prefix: str = "user", password: str | None = None) -> tuple[str, str]:
        return await _live_prosody.create_account(prefix, password)

    return make


@pytest_asyncio.fixture
async def connect_client(
    _live_prosody: ProsodyServer, account: AccountFactory
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
        client = await _live_prosody.connect_client(
            jid, password, plugins, pconfig, client_factory, **kwargs
        )
        clients.append(client)
        return client

    yield connect
    for client in reversed(clients):
        with contextlib.suppress(Exception):
            await _live_prosody.disconnect_client(client, timeout=5.0)
