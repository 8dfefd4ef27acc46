"""Two clients talk through a throwaway Prosody or ejabberd; the server holds only ciphertext.

Starts a private Prosody (``--server ejabberd``: ejabberd) on a loopback
port, registers "juliet" and an echo bot "romeo" with no key configuration
at all: each makes its keys on first start (an Ed25519 identity with X25519
and ML-KEM-768 encryption keys, and an RSA-3072 certificate for peers of the
draft's profile) and publishes them to PEP; once they are contacts they find
each other's certificates there. Then it runs an encrypted conversation, an
encrypted iq and the 6-character verification. For every stanza it prints,
side by side, what the server relayed and what the recipient read, and at the
end searches the server's own stored data (MAM
archive, offline store) for the plaintext.

    tox -e demo        (or: ./dev demo)
    tox -e demo -- --server ejabberd        (or: ./dev demo --server ejabberd)
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from slixmpp import ClientXMPP, Iq
from slixmpp.xmlstream import ElementBase, register_stanza_plugin
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

sys.path.insert(0, str(Path(__file__).resolve().parent))

from echo_bot import EchoBot

import slixmpp_objenc
from slixmpp_objenc import PublicationStatus
from slixmpp_objenc.core import generate_identity
from slixmpp_objenc.testing import (
    EjabberdServer,
    ProsodyServer,
    XmppServer,
    find_ejabberd,
    find_prosody,
)

WIDTH = 58
SERVER_NAMES = {"prosody": "Prosody", "ejabberd": "ejabberd"}
server_name = "Prosody"  # set by main()
LINES = [
    "Wherefore art thou, Romeo?",
    "Deny thy father and refuse thy name.",
    "What's in a name? That which we call a rose...",
]


class Fortune(ElementBase):
    """A made-up iq payload: the demo's encrypted request/response."""

    name = "fortune"
    namespace = "urn:example:objenc:fortune"
    plugin_attrib = "fortune"
    interfaces = {"text"}  # noqa: RUF012
    sub_interfaces = {"text"}  # noqa: RUF012


register_stanza_plugin(Iq, Fortune)


def side_by_side(title: str, wire: str, read: str) -> None:
    left = textwrap.wrap(wire, WIDTH) or [""]
    right = textwrap.wrap(read, WIDTH) or [""]
    print(f"\n--- {title} " + "-" * (2 * WIDTH - len(title) - 2))
    relayed = f"what {server_name} relayed"
    print(f"{relayed:<{WIDTH}} | what the recipient read")
    for i in range(max(len(left), len(right))):
        a = left[i] if i < len(left) else ""
        b = right[i] if i < len(right) else ""
        print(f"{a:<{WIDTH}} | {b}")


def shorten(xml: str) -> str:
    """Elide the long base64 runs, keep the structure visible."""
    return re.sub(
        r"[A-Za-z0-9+/=]{40,}", lambda m: f"{m.group(0)[:16]}...[{len(m.group(0))} chars]", xml
    )


async def run(server: XmppServer, workdir: Path) -> int:
    juliet_jid, juliet_pw = await server.create_account("juliet")
    romeo_jid, romeo_pw = await server.create_account("romeo")
    print(f"accounts: {juliet_jid} and {romeo_jid} (in-band registration)")

    t0 = time.perf_counter()
    romeo_bot: EchoBot = await server.connect_client(  # type: ignore[assignment]
        romeo_jid,
        romeo_pw,
        plugins=[],
        client_factory=lambda j, p: EchoBot(j, p, {"data_dir": str(workdir / "romeo")}),
        send_presence=True,
        get_roster=True,
    )
    juliet: ClientXMPP = await server.connect_client(
        juliet_jid,
        juliet_pw,
        plugins=["xep_0030", "xep_0199", "objenc"],
        pconfig={"objenc": {"data_dir": str(workdir / "juliet")}},
    )
    for client in (juliet, romeo_bot):
        await client.plugin["objenc"].ready()
    for _ in range(400):  # publication: publish-options, or the node configured
        states = [c.plugin["objenc"].publication for c in (juliet, romeo_bot)]
        if all(s.status is not PublicationStatus.PENDING for s in states):
            break
        await asyncio.sleep(0.05)
    print(
        f"zero configuration: keys made on first start and published to PEP "
        f"in {time.perf_counter() - t0:.2f} s (an Ed25519 identity and X25519 encryption key "
        f"per device, RSA-3072 for peers of the draft only; one SQLite file per account)"
    )
    for name, state in zip(("juliet", "romeo"), states, strict=True):
        print(f"  {name}'s certificate: {state.meaning}")
    if not all(state.published for state in states):
        print("not published: the rest would go in the clear; stopping", file=sys.stderr)
        return 1
    juliet.send_presence(pto=romeo_jid, ptype="subscribe")  # PEP: contacts only
    for _ in range(200):
        if juliet.client_roster[romeo_jid]["subscription"] == "both":
            break
        await asyncio.sleep(0.05)
    print(f"  juliet {juliet.plugin['objenc'].fingerprint[:32]}...")
    print(f"  romeo  {romeo_bot.plugin['objenc'].fingerprint[:32]}...")

    # Show each encrypted stanza as it arrived on romeo's and juliet's sockets.
    wire: dict[str, list[str]] = {"romeo": [], "juliet": []}
    for name, client in (("romeo", romeo_bot), ("juliet", juliet)):
        plugin = client.plugin["objenc"]

        def capture(stanza: Any, _name: str = name) -> Any:
            # only what carries an envelope: PEP fetches and presence go by too
            if stanza.xml.find("{urn:ietf:params:xml:ns:xmpp-objenc:0}e2e") is not None:
                wire[_name].append(str(stanza))
            return stanza

        client.del_filter("in", plugin.inbound.receive)
        client.add_filter("in", capture)
        client.add_filter("in", plugin.inbound.receive)

    replies: asyncio.Queue[Any] = asyncio.Queue()
    juliet.add_event_handler("message", replies.put_nowait)
    romeo_read: list[tuple[str, Any]] = []  # what romeo's handlers got, and how it came
    romeo_bot.add_event_handler(
        "message",
        lambda m: romeo_read.append((str(m), romeo_bot.plugin["objenc"].encryption_info(m))),
    )

    def proof(info: Any, sender: str) -> str:
        if info is not None and info.authenticated and info.sender_fingerprint:
            return (
                f"encrypted, authenticated: {sender}'s device {info.sender_fingerprint[:16]}, "
                f"{info.sender_trust}"
            )
        return "encrypted, NOT authenticated" if info is not None else "NOT encrypted"

    for line in LINES:
        juliet.send_message(mto=romeo_bot.boundjid.full, mbody=line, mtype="chat")
        reply = await asyncio.wait_for(replies.get(), 15)
        info = juliet.plugin["objenc"].encryption_info(reply)
        read, romeo_info = romeo_read[-1]
        side_by_side(
            f"juliet -> romeo ({proof(romeo_info, 'juliet')})", shorten(wire["romeo"][-1]), read
        )
        side_by_side(
            f"romeo -> juliet ({proof(info, 'romeo')})", shorten(wire["juliet"][-1]), str(reply)
        )

    def fortune(iq: Iq) -> None:
        answer = iq.reply()
        answer["fortune"]["text"] = "A plague on both your houses"
        answer.send()

    romeo_bot.register_handler(Callback("fortune", StanzaPath("iq@type=get/fortune"), fortune))
    iq = juliet.make_iq_get(ito=romeo_bot.boundjid.full)
    iq["fortune"]["text"] = "what does fate hold?"
    result = await iq.send(timeout=15)
    result_info = juliet.plugin["objenc"].encryption_info(result)
    side_by_side(
        f"iq result, romeo -> juliet ({proof(result_info, 'romeo')})",
        shorten(wire["juliet"][-1]),
        str(result),
    )

    sas = await juliet.plugin["objenc"].start_verification(romeo_bot.boundjid.full)
    print(f"\n--- verification: both screens now show the same 6 characters: {sas.sas}")
    await juliet.plugin["objenc"].confirm_verification(sas.sid, matched=True)
    state = juliet.plugin["objenc"].keyring.record(romeo_jid, sas.peer_fingerprint).trust
    print(f"    juliet marked romeo's certificate {state.value}")

    nurse_jid, _ = await server.create_account("nurse")  # never online: offline storage
    nurse_key = generate_identity(nurse_jid, key_size=2048)
    juliet.plugin["objenc"].add_peer_certificate(nurse_key.certificate_pem())
    juliet.send_message(mto=nurse_jid, mbody="Nurse, the key is under the mat", mtype="chat")
    await juliet.plugin["xep_0199"].ping(jid=server.domain, timeout=15)
    await asyncio.sleep(0.3)
    await server.wait_for_disk()  # ejabberd writes its files up to 3 s later
    stored = server.stored_files_text()
    secrets = [*LINES, "plague", "what does fate hold", "under the mat"]
    leaked = [s for s in secrets if s.split(",")[0] in stored]
    title = f"{server_name}'s own stored data (MAM archive, offline store)"
    print(f"\n--- {title} " + "-" * (2 * WIDTH - len(title) - 2))
    mentions = stored.count("urn:ietf:params:xml:ns:xmpp-objenc:0")
    print(
        f"  the envelope's namespace appears {mentions} times (archive and offline copies "
        "of encrypted messages and presence, and our PEP nodes)"
    )
    print(f"  plaintext found in server storage: {leaked or 'none'}")
    print(f"  romeo echoed {romeo_bot.echoed} encrypted messages")

    await juliet.plugin["objenc"].close()
    await romeo_bot.plugin["objenc"].close()
    await server.disconnect_client(juliet)
    await server.disconnect_client(romeo_bot)
    return 1 if leaked or romeo_bot.echoed != len(LINES) else 0


def main(argv: list[str] | None = None) -> int:
    global server_name
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--server",
        choices=sorted(SERVER_NAMES),
        default="prosody",
        help="the throwaway server to talk through (default: prosody)",
    )
    args = parser.parse_args(argv)
    server_name = SERVER_NAMES[args.server]
    server: XmppServer
    if args.server == "ejabberd":
        if find_ejabberd() is None:
            print("ejabberd is not installed: sudo apt-get install -y ejabberd", file=sys.stderr)
            return 1
        server = EjabberdServer()
    else:
        if find_prosody() is None:
            print("Prosody is not installed: sudo apt-get install -y prosody", file=sys.stderr)
            return 1
        server = ProsodyServer()
    assert slixmpp_objenc.ObjEnc.name == "objenc"
    workdir = Path(tempfile.mkdtemp(prefix="objenc-demo-"))
    try:
        with server:
            print(f"{server_name} {server.domain} listening on {server.host}:{server.c2s_port}")
            return asyncio.run(run(server, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
