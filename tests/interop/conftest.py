"""Fixtures for the OpenSSL-CLI interop tests.

These tests only need the Prosody harness, not the plugin's internals, so
the fixtures use :class:`slixmpp_objenc.testing.ProsodyServer` directly
(``tests/integration/conftest.py`` is not in scope for this folder):

* ``interop_server``: one Prosody per test module, skipped when no
  ``prosody`` executable exists (fails instead with ``OBJENC_REQUIRE_PROSODY=1``).
* ``connected``: ``await connected(jid, password, ...)`` connects a client
  through the server and disconnects it at teardown.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import pytest_asyncio
from slixmpp import ClientXMPP

from slixmpp_objenc.testing import ProsodyError, ProsodyServer, find_prosody

Connector = Callable[..., Awaitable[ClientXMPP]]


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


@pytest.fixture(scope="module")
def interop_server() -> Iterator[ProsodyServer]:
    binary = find_prosody()
    if binary is None:
        reason = "prosody is not installed (needed for the interop tests through a server)"
        if _flag("OBJENC_REQUIRE_PROSODY"):
            pytest.fail(f"OBJENC_REQUIRE_PROSODY=1 but {reason}", pytrace=False)
        pytest.skip(reason)
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
    try:
        yield server
    finally:
        server.stop()


@pytest_asyncio.fixture
async def connected(interop_server: ProsodyServer) -> AsyncIterator[Connector]:
    """``await connected(jid, password, client_factory=..., resource=...)``."""
    clients: list[ClientXMPP] = []

    async def connect(jid: str, password: str, **kwargs: Any) -> ClientXMPP:
        if not interop_server.is_running:
            interop_server.restart()
        client = await interop_server.connect_client(jid, password, timeout=10.0, **kwargs)
        clients.append(client)
        return client

    yield connect
    for client in reversed(clients):
        with contextlib.suppress(Exception):
            await interop_server.disconnect_client(client, timeout=5.0)
