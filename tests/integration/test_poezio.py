"""poezio for real: the terminal client in tmux, against Prosody, with ``/load objenc``.

Prosody only (its own ``server`` fixture): the poezio helpers configure Prosody.

poezio runs from a virtualenv of the system's Python holding poezio and a
non-editable install of this package with its ``poezio`` extra (built once
per source tree, see :func:`slixmpp_objenc.testing.poezio.poezio_venv`), found
through the ``poezio_plugins`` entry point. As root (CI), it runs as an
unprivileged user through ``runuser``, since poezio refuses root. The test
types into poezio's terminal, reads the screen, and checks what Prosody stored.

Needs the Debian packages tmux, python3-venv, python3-dev, gcc and pkg-config
(``./dev test`` installs them when it may) and PyPI for the first build.
Without them the test is skipped, unless ``OBJENC_REQUIRE_POEZIO=1`` (set by
``./dev test``): then it fails.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from slixmpp import ClientXMPP

from examples.echo_bot import EchoBot
from slixmpp_objenc.core.constants import NS_OBJENC
from slixmpp_objenc.poezio.text import full_fingerprint, short_fingerprint
from slixmpp_objenc.testing import ProsodyError, ProsodyServer, find_free_port, find_prosody
from slixmpp_objenc.testing.poezio import (
    PoezioProfile,
    TmuxSession,
    befriend,
    direct_tls_config,
    ensure_user,
    missing_tools,
    poezio_command,
    poezio_venv,
    private_directory,
    write_profile,
)

REPO = Path(__file__).resolve().parents[2]
WAIT = 20.0


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _unavailable(reason: str) -> None:
    if _flag("OBJENC_REQUIRE_POEZIO"):
        pytest.fail(f"OBJENC_REQUIRE_POEZIO=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def poezio_venv_path() -> Path:
    """poezio's virtualenv (built on first use: about 20 s, then cached)."""
    missing = missing_tools()
    if missing:
        _unavailable(
            "poezio's test needs Debian packages: sudo apt-get install -y " + " ".join(missing)
        )
    try:
        return poezio_venv(REPO)
    except Exception as exc:  # no PyPI, a compiler error...
        _unavailable(f"poezio's virtualenv could not be built: {exc}")
        raise


@pytest.fixture(scope="module")
def tls_port() -> int:
    return find_free_port()


@pytest.fixture(scope="module")
def server(tls_port: int) -> Iterator[ProsodyServer]:
    """A Prosody offering direct TLS too (slixmpp tries it first).

    Prosody only, whatever ``OBJENC_SERVERS`` lists besides: the poezio
    helpers configure Prosody's direct-TLS port (``direct_tls_config``).
    """
    servers = os.environ.get("OBJENC_SERVERS", "prosody").lower().replace(" ", "").split(",")
    if "prosody" not in servers:
        pytest.skip("poezio's test runs through Prosody, not in OBJENC_SERVERS")
    binary = find_prosody()
    if binary is None:
        if _flag("OBJENC_REQUIRE_PROSODY"):
            pytest.fail("OBJENC_REQUIRE_PROSODY=1 but prosody is not installed", pytrace=False)
        pytest.skip("prosody is not installed")
    prosody = ProsodyServer(prosody_bin=binary, extra_config=direct_tls_config(tls_port))
    try:
        prosody.start()
    except ProsodyError as exc:
        pytest.fail(f"could not start the test Prosody server: {exc}", pytrace=False)
    try:
        yield prosody
    finally:
        prosody.stop()


@pytest_asyncio.fixture
async def echo(server: ProsodyServer, tmp_path: Path) -> AsyncIterator[ClientXMPP]:
    """An encrypting echo contact (examples/echo_bot.py, zero configuration)."""
    jid, password = await server.create_account("echo")
    bot = await server.connect_client(
        jid,
        password,
        plugins=[],
        client_factory=lambda j, p: EchoBot(j, p, {"data_dir": str(tmp_path / "echo")}),
    )
    await bot.plugin["objenc"].ready()
    try:
        yield bot
    finally:
        await bot.plugin["objenc"].close()
        await server.disconnect_client(bot)


async def befriend_account(
    server: ProsodyServer, jid: str, password: str, peer: ClientXMPP
) -> None:
    """Make ``jid`` (not yet logged in anywhere) and ``peer`` contacts, as a user
    would have before: PEP shows certificates to contacts only."""
    client = await server.connect_client(jid, password, plugins=[])
    try:
        await befriend(client, peer)
    finally:
        await server.disconnect_client(client)


def info_bar(screen: str, jid: str) -> str:
    """The conversation's information bar: ``[jid] ... <badges>``."""
    for line in screen.splitlines():
        if f"[{jid}]" in line:
            return line
    return ""


async def test_poezio_chats_encrypted_with_an_echo_contact(
    server: ProsodyServer,
    tls_port: int,
    echo: ClientXMPP,
    poezio_venv_path: Path,
    tmp_path: Path,
) -> None:
    you, password = await server.create_account("poezio")
    echo_jid = echo.boundjid.bare
    objenc_echo: Any = echo.plugin["objenc"]
    await befriend_account(server, you, password, echo)
    # The contact never writes to us in the clear (before /load, nothing is encrypted).
    await objenc_echo.require_encryption(you)
    echo_sas: asyncio.Queue[Any] = asyncio.Queue()
    echo.add_event_handler("objenc_sas", echo_sas.put_nowait)
    secret = f"the rose by any other name {uuid.uuid4().hex[:8]}"
    hybrid_secret = f"what's in a name {uuid.uuid4().hex[:8]}"
    echo_infos: dict[str, Any] = {}  # what the contact opened, and how
    echo.add_event_handler(
        "message",
        lambda m: echo_infos.setdefault(m["body"], objenc_echo.encryption_info(m)),
    )
    injected = f"plaintext in the name of the contact {uuid.uuid4().hex[:8]}"
    unsent = f"never in the clear {uuid.uuid4().hex[:8]}"
    stranger, _ = await server.create_account("stranger")  # no certificate, not a contact

    user = ensure_user() if os.geteuid() == 0 else None
    with private_directory("objenc-poezio-home-", user) as home:
        profile: PoezioProfile = write_profile(
            home, server, you, password, port=tls_port, user=user
        )
        tmux = TmuxSession(tmp_path)
        tmux.start(poezio_command(poezio_venv_path, profile))
        try:
            screen = await tmux.wait_for("Authentication success", 30.0)
            assert "Error>" not in screen  # TLS verified against the pinned CA, at once

            await tmux.command("/load objenc")
            await tmux.wait_for("Plugin objenc loaded", WAIT)
            await tmux.command(f"/message {echo_jid}")
            await tmux.wait_for(f"[{echo_jid}]", WAIT, what="the conversation tab")

            # /objenc: require encryption, show the state and the certificates
            await tmux.command("/objenc")
            screen = await tmux.wait_for("objenc: our certificate:", WAIT)
            assert f"objenc: encryption required for {echo_jid}" in screen
            assert f"objenc: encrypted: messages, iqs and directed presence to {echo_jid}" in screen
            assert f"{short_fingerprint(objenc_echo.fingerprint)}  tofu" in screen

            # a message, encrypted both ways: the echo is read off poezio's screen
            await tmux.type_line(secret)
            screen = await tmux.wait_for(f"echo: {secret}", WAIT, what="the decrypted echo")
            assert re.search(r" objenc\s*$", info_bar(screen, echo_jid)), info_bar(screen, echo_jid)
            held = objenc_echo.keyring.records(you)
            assert len(held) == 1  # the contact found our certificate on PEP...
            assert f"our certificate: {full_fingerprint(held[0].fingerprint)}" in screen  # ...ours

            # no "off" for a contact whose certificate is held
            await tmux.command("/objenc off")
            await tmux.wait_for(f"there is no off for {echo_jid}", WAIT)

            # the 6-character verification with the contact's online client
            await tmux.command("/objenc verify")
            theirs = await asyncio.wait_for(echo_sas.get(), WAIT)
            await tmux.wait_for(f"both screens show {theirs.sas}", WAIT)
            await tmux.command("/objenc match")
            await tmux.wait_for(f"objenc: {echo_jid} is verified", WAIT)
            screen = await tmux.wait_for(
                lambda s: "objenc:verified" in info_bar(s, echo_jid), WAIT, what="the badge"
            )

            # the post-quantum hybrid for this contact: what the contact opens was sealed with it
            await tmux.command("/objenc hybrid on")
            await tmux.wait_for(f"objenc: post-quantum hybrid on for {echo_jid}", WAIT)
            await tmux.type_line(hybrid_secret)
            await tmux.wait_for(f"echo: {hybrid_secret}", WAIT, what="the echo of a hybrid message")
            assert echo_infos[hybrid_secret].hybrid and not echo_infos[secret].hybrid
            # a label for this device, in a new certificate (a rotation, published)
            await tmux.command("/objenc label poezio desk")
            await tmux.wait_for("objenc: this device is now labelled 'poezio desk'", WAIT)

            # plaintext injected in the contact's name: refused, and the user is told
            forged = echo.make_message(mto=you, mbody=injected, mtype="chat")
            echo.send(forged, use_filters=False)  # around the contact's own plugin
            screen = await tmux.wait_for(
                f"objenc: refused an unencrypted message from {echo_jid}", WAIT
            )
            assert injected not in screen

            # a contact with no certificate, encryption required: nothing is sent
            await tmux.command(f"/message {stranger}")
            await tmux.wait_for(f"[{stranger}]", WAIT, what="the second conversation")
            await tmux.command("/objenc")
            await tmux.wait_for(f"encryption required: no usable certificate for {stranger}", WAIT)
            await tmux.wait_for(lambda s: "objenc:required" in info_bar(s, stranger), WAIT)
            await tmux.type_line(unsent)
            await tmux.wait_for(f"objenc: a message to {stranger} was NOT sent", WAIT)
            await tmux.wait_for("objenc: not sent, it could not be encrypted", WAIT)  # marked
        finally:
            tmux.kill()

    # Prosody's own storage (MAM archive...) holds our messages only encrypted.
    stored = server.stored_files_text()
    assert secret not in stored
    assert hybrid_secret not in stored
    assert unsent not in stored
    archive = server.user_store_bytes(you, "archive").decode("utf-8", "replace")
    assert NS_OBJENC in archive
    assert injected in archive  # the forged plaintext was archived: the check can see text
