"""Chat in poezio with an encrypting echo bot, through a throwaway Prosody.

    ./dev chat        (it runs this file with the tox environment "chat")

Starts a private Prosody on a loopback port, creates two accounts, "you" and
"echo", makes them contacts (PEP shows certificates to contacts only), runs
the echo bot of examples/echo_bot.py in this process with zero configuration,
and opens poezio in this terminal with the objenc plugin loaded (poezio's
``plugins_autoload``; ``/load objenc`` does the same by hand). The bot greets
you once it has found your certificate; whatever you write to it comes back,
end-to-end encrypted both ways. Quit poezio with /quit: this script then says
what the server stored, and removes the server, the accounts and the keys.

poezio runs from a virtualenv of the system's Python with a non-editable
install of this package and its ``poezio`` extra (built on first use). poezio
refuses to run as root: as root, it runs as the unprivileged user
"objenc-chat" (created on first use), with a HOME of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import shutil
import signal
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from echo_bot import EchoBot

from slixmpp_objenc.core.constants import NS_OBJENC
from slixmpp_objenc.testing import ProsodyServer, find_free_port, find_prosody
from slixmpp_objenc.testing.poezio import (
    POEZIO_USER,
    befriend,
    direct_tls_config,
    ensure_user,
    missing_tools,
    poezio_command,
    poezio_venv,
    private_directory,
    terminate_tree,
    write_profile,
)

REPO = Path(__file__).resolve().parents[1]
GREETING = (
    "Hello! I am an echo bot: what you write here comes back, end-to-end encrypted "
    "both ways. Try /objenc status, /objenc verify (then /objenc match), /objenc help. "
    "Quit with /quit."
)


async def greet(bot: EchoBot, you: str, timeout: float = 300.0) -> None:
    """Say hello once poezio's certificate is known (published when the plugin loads)."""
    objenc: Any = bot.plugin["objenc"]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    asked = 0.0
    while not objenc.keyring.usable(you):
        if loop.time() > deadline:
            return
        if loop.time() - asked > 5.0:  # a PEP notification usually comes first
            asked = loop.time()
            with contextlib.suppress(Exception):
                await objenc.discover(you)
        await asyncio.sleep(0.5)
    bot.send_message(mto=you, mbody=GREETING, mtype="chat")


async def run(server: ProsodyServer, venv: Path, tls_port: int, workdir: Path) -> int:
    password = uuid.uuid4().hex
    you = await server.register("you", password)
    echo_password = uuid.uuid4().hex
    echo_jid = await server.register("echo", echo_password)
    bot: EchoBot = await server.connect_client(  # type: ignore[assignment]
        echo_jid,
        echo_password,
        plugins=[],
        client_factory=lambda j, p: EchoBot(j, p, {"data_dir": str(workdir / "echo")}),
    )
    read: list[str] = []

    def on_message(msg: Any) -> None:
        if msg["type"] == "chat" and msg["body"] and bot.plugin["objenc"].encryption_info(msg):
            read.append(msg["body"])

    bot.add_event_handler("message", on_message)
    first_login = await server.connect_client(you, password, plugins=[])
    await befriend(first_login, bot)
    await server.disconnect_client(first_login)
    await bot.plugin["objenc"].ready()
    await bot.plugin["objenc"].require_encryption(you)  # never a reply in the clear

    user = ensure_user() if os.geteuid() == 0 else None
    term = os.environ.get("TERM") or "xterm-256color"
    with private_directory("objenc-chat-home-", user) as home:
        profile = write_profile(
            home, server, you, password, port=tls_port, user=user, autoload=["objenc"]
        )
        print(
            f"\nYou are {you}; your contact {echo_jid} echoes what you write, encrypted."
            "\nIn poezio: wait for its greeting (tab 1 lights up), go there with Ctrl-N"
            f" (or /message {echo_jid}), and write. /objenc help lists the commands;"
            " /quit leaves.\n"
            + (f"(poezio refuses root: it runs as the user {POEZIO_USER})\n" if user else "")
        )
        greeter = asyncio.create_task(greet(bot, you))
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, lambda: None)  # Ctrl-C is poezio's
        proc = await asyncio.create_subprocess_exec(*poezio_command(venv, profile, term=term))
        try:
            status = await proc.wait()
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            greeter.cancel()
            if proc.returncode is None:  # we are stopped: poezio ignores hangups
                terminate_tree(proc.pid)
    stored = server.stored_files_text()
    leaked = [body for body in read if body in stored]
    print(f"poezio exited ({status}).")
    print(f"  the echo bot read {len(read)} message(s) from you, all end-to-end encrypted")
    print(f"  encrypted stanzas in Prosody's storage: {stored.count(NS_OBJENC)}")
    print(f"  your messages found in plaintext there: {leaked or 'none'}")
    await bot.plugin["objenc"].close()
    await server.disconnect_client(bot)
    return 1 if leaked else 0


def main() -> int:
    if find_prosody() is None:
        print("Prosody is not installed: sudo apt-get install -y prosody", file=sys.stderr)
        return 1
    missing = missing_tools(tmux=False)
    if missing:
        print(
            "poezio's virtualenv needs: sudo apt-get install -y " + shlex.join(missing),
            file=sys.stderr,
        )
        return 1
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print("./dev chat opens poezio in this terminal: run it in one", file=sys.stderr)
        return 1
    for sig in (signal.SIGTERM, signal.SIGHUP):  # clean up (Prosody, poezio) when stopped
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))
    workdir = Path(tempfile.mkdtemp(prefix="objenc-chat-"))
    # poezio draws on this terminal: our own log goes to a file
    logging.basicConfig(filename=workdir / "chat.log", level=logging.INFO, force=True)
    try:
        print("preparing poezio (its virtualenv is built on first use, then reused)...")
        venv = poezio_venv(REPO, log=print)
        tls_port = find_free_port()
        with ProsodyServer(extra_config=direct_tls_config(tls_port)) as server:
            print(f"Prosody {server.domain} listening on {server.host}:{tls_port}")
            return asyncio.run(run(server, venv, tls_port, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
