"""An echo bot that answers every encrypted message, encrypted.

    python examples/echo_bot.py bot@example.org [--password ...]
        [--key bot.key --cert bot.pem] [--peer-cert alice.pem]
        [--data-dir DIR] [--host 127.0.0.1 --port 5222 --insecure]

Zero configuration: a JID and a password are enough. On first start the bot
makes its key and certificate, keeps them in its store and publishes the
certificate to PEP; it accepts presence subscriptions, so a contact who
subscribes can fetch it, and it finds the contact's certificate the same way.
Key files (--key/--cert) and hand-exchanged certificates (--peer-cert) are
optional. Plaintext messages are not answered: the bot only talks
end-to-end encrypted.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import ssl
from pathlib import Path
from typing import Any

from slixmpp import ClientXMPP

import slixmpp_objenc


class EchoBot(ClientXMPP):  # type: ignore[misc]
    """Echoes encrypted chat messages back to their sender."""

    def __init__(self, jid: str, password: str, objenc_config: dict[str, Any]) -> None:
        super().__init__(jid, password)
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0199")
        self.register_plugin("objenc", module=slixmpp_objenc, pconfig=objenc_config)
        self.add_event_handler("session_start", self.on_session_start)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("objenc_decryption_failed", self.on_failure)
        self.add_event_handler("objenc_bad_timestamp", self.on_stale)
        self.echoed = 0

    async def on_session_start(self, _event: Any) -> None:
        self.send_presence()
        await self.get_roster()

    def on_message(self, msg: Any) -> None:
        if msg["type"] not in ("chat", "normal") or not msg["body"]:
            return
        info = self.plugin["objenc"].encryption_info(msg)
        if info is None:
            logging.info("ignoring a plaintext message from %s", msg["from"])
            return
        reply = msg.reply(f"echo: {msg['body']}")
        reply.send()  # encrypted by the plugin: we hold the sender's certificate
        self.echoed += 1

    def on_failure(self, event: slixmpp_objenc.DecryptionFailedEvent) -> None:
        logging.warning("could not open a stanza from %s (%s)", event.stanza["from"], event.reason)

    def on_stale(self, event: slixmpp_objenc.BadTimestampEvent) -> None:
        logging.warning("refused a %s stanza from %s", event.reason, event.stanza["from"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("jid")
    parser.add_argument("--password", help="default: ask")
    parser.add_argument("--key", help="our private key (PEM; default: made and kept)")
    parser.add_argument("--cert", help="our certificate (PEM; with --key)")
    parser.add_argument("--data-dir", help="where the store lives (default: per user)")
    parser.add_argument("--peer-cert", action="append", default=[], help="a peer's certificate")
    parser.add_argument("--host", help="server address (default: from the JID's domain)")
    parser.add_argument("--port", type=int, default=5222)
    parser.add_argument("--insecure", action="store_true", help="do not verify the server's TLS")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    password = args.password or getpass.getpass(f"password for {args.jid}: ")
    config: dict[str, Any] = {}
    if args.key or args.cert:
        config.update(key_file=args.key, cert_file=args.cert)
    if args.data_dir:
        config["data_dir"] = args.data_dir
    bot = EchoBot(args.jid, password, config)
    for path in args.peer_cert:
        peer = bot.plugin["objenc"].add_peer_certificate(Path(path).read_bytes())
        logging.info("will encrypt to %s", ", ".join(sorted(peer.jids)))
    if args.insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        bot.ssl_context = context
    if args.host:
        bot.enable_direct_tls = args.port == 5223
        bot.connect(host=args.host, port=args.port)
    else:
        bot.connect()
    asyncio.get_event_loop().run_until_complete(bot.disconnected)


if __name__ == "__main__":
    main()
