"""Client side of the throwaway test servers: accounts and connected clients.

:class:`ServerClients` is the half of :class:`~slixmpp_objenc.testing.server.XmppServer`
that talks XMPP to the server: in-band registration (XEP-0077) and
ready-to-use :class:`slixmpp.ClientXMPP` instances, always given the server's
``(host, port)`` explicitly (nothing is ever resolved), over STARTTLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from slixmpp import ClientXMPP
from slixmpp.exceptions import IqError, IqTimeout

__all__ = [
    "DEFAULT_CLIENT_PLUGINS",
    "ClientFactory",
    "RegistrationError",
    "ServerClients",
    "ServerError",
    "disconnect_client",
]

#: Plugins registered by :meth:`ServerClients.connect_client` when ``plugins``
#: is ``None``.
DEFAULT_CLIENT_PLUGINS: Final[tuple[str, ...]] = ("xep_0030", "xep_0199")

#: Something that builds a (not yet connected) client from ``(jid, password)``.
ClientFactory = Callable[[str, str], ClientXMPP]


class ServerError(RuntimeError):
    """The test server could not be started, or a client could not use it.

    ``ProsodyError`` is another name for it (kept from when Prosody was the
    only test server).
    """


class RegistrationError(ServerError):
    """In-band registration of an account failed (e.g. the account exists)."""


class ServerClients:
    """Accounts and clients for a running server (mixed into ``XmppServer``).

    Needs from the class it is mixed into: :attr:`domain`, :attr:`host`,
    :attr:`c2s_port`, :attr:`verify_tls`, :attr:`ca_cert_path`,
    :attr:`is_running` and :meth:`diagnostics`.
    """

    domain: str
    host: str
    c2s_port: int
    verify_tls: bool

    @property
    def ca_cert_path(self) -> Path:
        raise NotImplementedError

    @property
    def is_running(self) -> bool:
        raise NotImplementedError

    def diagnostics(self, lines: int = 40) -> str:
        raise NotImplementedError

    def jid(self, user: str, resource: str | None = None) -> str:
        """``user@domain[/resource]``."""
        bare = f"{user}@{self.domain}"
        return f"{bare}/{resource}" if resource else bare

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
            raise ServerError(
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
            _fail(done, ServerError(f"{what}: authentication failed ({condition})"))

        def on_disconnected(reason: Any) -> None:
            _fail(done, ServerError(f"{what}: disconnected before ready ({reason})"))

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
                raise ServerError(
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
        when the account exists) and :class:`ServerError` on timeout.
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
                _fail(done, ServerError(f"registering {bare}: no answer within {timeout}s"))
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
