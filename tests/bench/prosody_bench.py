"""Through a real Prosody on loopback: throughput, latency and first contact.

Both clients live in this process, on one event loop (so the sender's
encryption and the receiver's decryption share one core; Prosody has the
other). Alice sends chat messages to Bob's bare JID with at most ``window``
of them not yet received; each body carries its sequence number and the
``perf_counter_ns`` at the moment it was handed to ``send_message``.

Modes, each with fresh accounts:

* ``plaintext``: no plugin at all;
* ``plaintext, plugin loaded``: both clients run ObjEnc but hold no
  certificate for each other (PEP off), so everything goes in the clear: the
  plugin's cost on traffic it does not encrypt;
* ``encrypted (RSA profile)``: both run ObjEnc with ``authenticated: False``
  and otherwise zero configuration (RSA-3072 keys made in temporary data
  directories, the SQLite store), subscribed to each other so the certificates
  are found over PEP; one warm-up message first;
* ``encrypted (authenticated profile)``: the same with ``authenticated: True``
  on both (the default): each publishes its Ed25519 identity and X25519
  encryption certificate, and they talk the authenticated profile.

The warm-up message's :class:`~slixmpp_objenc.events.EncryptionInfo` on Bob's
side is recorded (``wire_profile``), so a run that fell back to the other
profile shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import os
import re
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slixmpp import ClientXMPP
from slixmpp.xmlstream import StanzaBase

from slixmpp_objenc.core.constants import NS_OBJENC
from slixmpp_objenc.plugin import NODE_CERTS
from slixmpp_objenc.testing import ProsodyServer, find_prosody

from .common import Settings, Unavailable

BASE_PLUGINS = ["xep_0030", "xep_0199"]
BODY_LENGTH = 100
WAIT = 30.0
PLAINTEXT = "plaintext"
PLUGIN_PLAINTEXT = "plaintext, plugin loaded (no certificate)"
ENCRYPTED = "encrypted (RSA profile)"
ENCRYPTED_AUTH = "encrypted (authenticated profile)"
FIRST_CONTACT_AUTH = ", authenticated"
"""Suffix of the first-contact scenarios run with the authenticated profile."""
MODES: dict[str, tuple[str, bool | None]] = {
    # mode: (data directory prefix, the plugins' ``authenticated``; None: no certificates)
    PLUGIN_PLAINTEXT: ("plug", None),
    ENCRYPTED: ("rsa", False),
    ENCRYPTED_AUTH: ("auth", True),
}


@dataclass
class StreamResult:
    mode: str
    messages: int
    received: int
    seconds: float
    latencies_ms: list[float] = field(repr=False)
    client_cpu_s: float
    server_cpu_s: float | None
    wire_profile: str = ""
    """How Bob received the warm-up message (``plaintext``, ``RSA profile, <cipher>``,
    ``authenticated profile, <cipher>``)."""

    @property
    def per_second(self) -> float:
        return self.received / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
        return ordered[index]

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "wire_profile": self.wire_profile,
            "messages": self.messages,
            "received": self.received,
            "seconds": self.seconds,
            "messages_per_s": self.per_second,
            "latency_ms_p50": self.percentile(50),
            "latency_ms_p99": self.percentile(99),
            "latency_ms_mean": statistics.fmean(self.latencies_ms) if self.latencies_ms else None,
            "client_cpu_ms_per_message": 1000 * self.client_cpu_s / max(1, self.received),
            "server_cpu_ms_per_message": (
                1000 * self.server_cpu_s / max(1, self.received)
                if self.server_cpu_s is not None
                else None
            ),
        }


@dataclass
class ProsodyResults:
    streams: list[StreamResult]
    first_contact: dict[str, Any]
    profiles: dict[str, cProfile.Profile]
    """mode -> a profiled run of it (taken when it fell under the threshold)."""
    unavailable: list[Unavailable]
    server_version: str = ""


def _process_cpu(pid: int | None) -> float | None:
    """utime + stime of a process, in seconds (Linux /proc)."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _body(seq: int) -> str:
    head = f"bench {seq:06d} {time.perf_counter_ns():020d} "
    return head + "x" * max(0, BODY_LENGTH - len(head))


async def befriend(a: ClientXMPP, b: ClientXMPP) -> None:
    """Mutual presence subscription (PEP's 'presence' access model needs it)."""
    a.send_presence(pto=b.boundjid.bare, ptype="subscribe")
    for _ in range(400):
        if (
            a.client_roster[b.boundjid.bare]["subscription"] == "both"
            and b.client_roster[a.boundjid.bare]["subscription"] == "both"
        ):
            return
        await asyncio.sleep(0.05)
    raise RuntimeError("presence subscriptions did not complete")


class Session:
    """A pair of connected clients on one server, and their cleanup."""

    def __init__(self, server: ProsodyServer, workdir: Path) -> None:
        self.server = server
        self.workdir = workdir
        self.clients: list[ClientXMPP] = []

    async def connect(self, name: str, plugins: list[str], pconfig: dict[str, Any]) -> ClientXMPP:
        jid, password = await self.server.create_account(name)
        client = await self.server.connect_client(jid, password, plugins=plugins, pconfig=pconfig)
        self.clients.append(client)
        if "objenc" in plugins:
            await client.plugin["objenc"].ready()
        return client

    async def pair(self, mode: str) -> tuple[ClientXMPP, ClientXMPP]:
        if mode == PLAINTEXT:
            return (
                await self.connect("alice", BASE_PLUGINS, {}),
                await self.connect("bob", BASE_PLUGINS, {}),
            )
        plugins = [*BASE_PLUGINS, "objenc"]
        prefix, authenticated = MODES[mode]
        encrypted = authenticated is not None
        clients = []
        for name in ("alice", "bob"):
            config: dict[str, Any] = {
                "data_dir": str(self.workdir / f"{prefix}-{name}"),
                "pep": encrypted,
            }
            if encrypted:
                config["authenticated"] = authenticated
            clients.append(await self.connect(name, plugins, {"objenc": config}))
        a, b = clients
        if encrypted:
            await befriend(a, b)
            await a.plugin["objenc"].discover(b.boundjid.bare)
        return a, b

    async def close(self) -> None:
        for client in reversed(self.clients):
            plugin = client.plugin.get("objenc", None)
            if plugin is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(plugin.close(), 10)
            with contextlib.suppress(Exception):
                await self.server.disconnect_client(client, timeout=5.0)
        self.clients.clear()


async def stream(
    server: ProsodyServer,
    a: ClientXMPP,
    b: ClientXMPP,
    mode: str,
    messages: int,
    window: int,
    profile: cProfile.Profile | None = None,
) -> StreamResult:
    """Alice sends ``messages`` chat messages to Bob, ``window`` at most in flight."""
    slots = asyncio.Semaphore(window)
    finished = asyncio.Event()
    latencies: list[float] = []
    last = [0.0]

    def on_message(msg: Any) -> None:
        body = msg["body"]
        if not body.startswith("bench "):
            return
        now = time.perf_counter_ns()
        latencies.append((now - int(body.split(" ", 3)[2])) / 1e6)
        last[0] = now / 1e9
        slots.release()
        if len(latencies) >= messages:
            finished.set()

    b.add_event_handler("message", on_message)
    target = b.boundjid.bare
    server_cpu = _process_cpu(server.pid)
    cpu = time.process_time()
    if profile is not None:
        profile.enable()
    start = time.perf_counter()
    try:
        for seq in range(messages):
            await slots.acquire()
            a.send_message(mto=target, mbody=_body(seq), mtype="chat")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(finished.wait(), WAIT + messages / 20)
    finally:
        if profile is not None:
            profile.disable()
        b.del_event_handler("message", on_message)
    end = last[0] if latencies else time.perf_counter()
    server_after = _process_cpu(server.pid)
    return StreamResult(
        mode,
        messages,
        len(latencies),
        end - start,
        latencies,
        time.process_time() - cpu,
        server_after - server_cpu if server_after is not None and server_cpu is not None else None,
    )


async def warm_up_profile(a: ClientXMPP, b: ClientXMPP, timeout: float = WAIT) -> tuple[float, str]:
    """One message end to end; its latency in ms and how Bob received it."""
    got: asyncio.Future[tuple[float, str]] = asyncio.get_running_loop().create_future()
    start = time.perf_counter()

    def on_message(msg: Any) -> None:
        if msg["body"] == "warm-up" and not got.done():
            got.set_result(((time.perf_counter() - start) * 1000, received_as(b, msg)))

    b.add_event_handler("message", on_message)
    try:
        a.send_message(mto=b.boundjid.bare, mbody="warm-up", mtype="chat")
        return await asyncio.wait_for(got, timeout)
    finally:
        b.del_event_handler("message", on_message)


def received_as(client: ClientXMPP, msg: Any) -> str:
    """``plaintext``, or the profile and content cipher a message was opened with."""
    plugin: Any = client.plugin.get("objenc", None)
    info = plugin.encryption_info(msg) if plugin is not None else None
    if info is None:
        return "plaintext"
    profile = "authenticated profile" if info.authenticated else "RSA profile"
    return f"{profile}, {info.cipher}"


# -- first contact ----------------------------------------------------------------


@dataclass
class Tap:
    """Every stanza a client writes (after encryption) and reads (before decryption)."""

    events: list[tuple[float, str, str]] = field(default_factory=list)

    def attach(self, client: ClientXMPP) -> None:
        def out(stanza: StanzaBase) -> StanzaBase:
            self.events.append((time.perf_counter(), "out", str(stanza)))
            return stanza

        def incoming(stanza: StanzaBase) -> StanzaBase:
            self.events.append((time.perf_counter(), "in", str(stanza)))
            return stanza

        plugin = client.plugin["objenc"]
        client.add_filter("out_sce", out)
        client.del_filter("in", plugin.inbound.receive)
        client.add_filter("in", incoming)
        client.add_filter("in", plugin.inbound.receive)

    def between(self, start: float, end: float) -> list[tuple[float, str, str]]:
        return [e for e in self.events if start <= e[0] <= end]


def _kind(xml: str) -> str:
    if NODE_CERTS in xml and xml.startswith("<iq"):
        return "PEP certificate fetch" if 'type="get"' in xml else "PEP certificate result"
    if NS_OBJENC in xml and xml.startswith("<message"):
        return "encrypted message"
    if NS_OBJENC in xml and xml.startswith("<presence"):
        return "encrypted presence"
    if xml.startswith("<presence") or "jabber:iq:roster" in xml:
        return "presence/roster"
    return xml.split(" ", 1)[0].lstrip("<") + " (other)"


def _attribute(xml: str, name: str) -> str | None:
    match = re.match(r"<[^>]*?\s" + name + r'="([^"]*)"', xml)
    return match.group(1) if match else None


async def subscribe(a: ClientXMPP, b: ClientXMPP, *, mutual: bool) -> None:
    """Alice subscribes to Bob's presence (Bob accepts); with ``mutual``, Bob back."""
    b.auto_subscribe = mutual
    a.send_presence(pto=b.boundjid.bare, ptype="subscribe")
    wanted = {"both"} if mutual else {"to", "both"}
    for _ in range(400):
        if a.client_roster[b.boundjid.bare]["subscription"] in wanted and (
            not mutual or b.client_roster[a.boundjid.bare]["subscription"] == "both"
        ):
            return
        await asyncio.sleep(0.05)
    raise RuntimeError("presence subscription did not complete")


FIRST_CONTACT_WAIT = 10.0
"""How long a first-contact message may take before it counts as lost."""


async def first_contact(
    session: Session, *, mutual: bool, authenticated: bool = False
) -> dict[str, Any]:
    """What Alice's first message to a new contact costs, certificate discovery included.

    One-way (Alice subscribed to Bob, who accepted): the message is the first
    stanza Alice addresses to Bob. Mutual: slixmpp sends a directed presence
    when it authorizes a subscription, and that presence is what discovers the
    certificate, before any message. Both plugins run the profile
    ``authenticated`` says. A message Bob does not receive within
    :data:`FIRST_CONTACT_WAIT` is reported lost (``first_message_ms`` None),
    with the reasons of Bob's ``objenc_decryption_failed`` events.
    """
    plugins = [*BASE_PLUGINS, "objenc"]
    tag = ("mutual" if mutual else "oneway") + ("-auth" if authenticated else "-rsa")
    taps = {"alice": Tap(), "bob": Tap()}
    a = await session.connect(
        f"{tag}-a",
        plugins,
        {
            "objenc": {
                "data_dir": str(session.workdir / f"{tag}-a"),
                "authenticated": authenticated,
            }
        },
    )
    b = await session.connect(
        f"{tag}-b",
        plugins,
        {
            "objenc": {
                "data_dir": str(session.workdir / f"{tag}-b"),
                "authenticated": authenticated,
            }
        },
    )
    taps["alice"].attach(a)
    taps["bob"].attach(b)
    failures: list[str] = []
    b.add_event_handler("objenc_decryption_failed", lambda e: failures.append(e.reason))
    subscribed_at = time.perf_counter()
    await subscribe(a, b, mutual=mutual)
    await asyncio.sleep(1.0)  # subscription presence, roster pushes (and, mutual, discovery) settle
    start = time.perf_counter()
    first_ms: float | None
    second_ms: float | None
    received = ""
    try:
        first_ms, received = await warm_up_profile(a, b, FIRST_CONTACT_WAIT)
    except TimeoutError:
        first_ms = None
    end = time.perf_counter()
    try:
        second_ms, second_received = await warm_up_profile(a, b, FIRST_CONTACT_WAIT)
        received = received or second_received
    except TimeoutError:
        second_ms = None
    profile = "authenticated profile" if authenticated else "RSA profile"
    report: dict[str, Any] = {
        "scenario": (
            f"mutual subscription, {profile}: slixmpp's authorization presence already "
            "discovered the key"
            if mutual
            else f"one-way subscription, {profile}: the message is the first stanza to the contact"
        ),
        "first_message_ms": first_ms,
        "second_message_ms": second_ms,
        "received_as": received,
        "bob_decryption_failures": failures,
    }
    protocol = other = 0
    for who, tap in taps.items():
        counts: dict[str, int] = {}
        for _, direction, xml in tap.between(start, end):
            kind = _kind(xml)
            key = f"{direction}: {kind}"
            counts[key] = counts.get(key, 0) + 1
            if kind.startswith("PEP") or kind == "encrypted message":
                protocol += 1
            else:
                other += 1
        report[who] = counts
        before: dict[str, int] = {}
        for _, direction, xml in tap.between(subscribed_at, start):
            kind = _kind(xml)
            if "PEP" in kind or "encrypted" in kind:
                key = f"{direction}: {kind}"
                before[key] = before.get(key, 0) + 1
        report[f"{who}_during_subscription"] = before
    # Round trips Alice waits for before her message leaves: her iq requests
    # answered (same id) before the encrypted message was written.
    alice = taps["alice"].between(start, end)
    sent_at = next((t for t, d, x in alice if d == "out" and _kind(x) == "encrypted message"), end)
    asked = {
        _attribute(x, "id")
        for t, d, x in alice
        if d == "out"
        and t < sent_at
        and x.startswith("<iq")
        and _attribute(x, "type") in ("get", "set")
    }
    answered = {
        _attribute(x, "id")
        for t, d, x in alice
        if d == "in"
        and t < sent_at
        and x.startswith("<iq")
        and _attribute(x, "type") in ("result", "error")
    }
    report["round_trips_before_send"] = len(asked & answered - {None})
    report["alice_timeline_ms"] = [
        (round((t - start) * 1000, 1), f"{d}: {_kind(x)}") for t, d, x in alice
    ]
    report["stanzas"] = protocol
    report["other_stanzas_in_window"] = other
    return report


# -- the section --------------------------------------------------------------------


async def run(
    settings: Settings, log: Callable[[str], None], *, profile_if_slow: float
) -> ProsodyResults:
    """Throughput per mode; a mode slower than ``profile_if_slow`` x plaintext is profiled."""
    unavailable: list[Unavailable] = []
    if find_prosody() is None:
        unavailable.append(
            Unavailable(
                "Prosody throughput and first contact",
                "no prosody executable (apt install prosody)",
            )
        )
        return ProsodyResults([], {}, {}, unavailable)
    streams: list[StreamResult] = []
    profiles: dict[str, cProfile.Profile] = {}
    first: dict[str, Any] = {}
    workdir = Path(tempfile.mkdtemp(prefix="bench-prosody-"))
    server = ProsodyServer(start_timeout=30.0)
    try:
        server.start()
        log(f"  Prosody on {server.host}:{server.c2s_port}")
        for mode in (PLAINTEXT, PLUGIN_PLAINTEXT, ENCRYPTED, ENCRYPTED_AUTH):
            session = Session(server, workdir)
            try:
                a, b = await session.pair(mode)
                _, profile_seen = await warm_up_profile(a, b)
                expected = {ENCRYPTED: "RSA profile", ENCRYPTED_AUTH: "authenticated profile"}
                if not profile_seen.startswith(expected.get(mode, "plaintext")):
                    # measuring the wrong profile is worse than not measuring it
                    unavailable.append(
                        Unavailable(f"Prosody, {mode}", f"the warm-up arrived as {profile_seen}")
                    )
                    continue
                result = await stream(server, a, b, mode, settings.messages, settings.window)
                result.wire_profile = profile_seen
                streams.append(result)
                log(
                    f"  {mode} [{profile_seen}]: {result.received}/{result.messages} in "
                    f"{result.seconds:.2f}s "
                    f"= {result.per_second:.0f}/s, p50 {result.percentile(50):.1f} ms, "
                    f"p99 {result.percentile(99):.1f} ms"
                )
                if mode != PLAINTEXT and streams[0].per_second:
                    ratio = result.per_second / streams[0].per_second
                    if ratio < profile_if_slow:
                        log(
                            f"  {ratio:.2f}x plaintext: profiling {settings.profile_messages} "
                            "messages"
                        )
                        profile = cProfile.Profile()
                        await stream(
                            server, a, b, mode, settings.profile_messages, settings.window, profile
                        )
                        profiles[mode] = profile
            finally:
                await session.close()
        for authenticated in (False, True):
            for mutual in (False, True):
                session = Session(server, workdir)
                key = ("mutual" if mutual else "one_way") + (
                    FIRST_CONTACT_AUTH if authenticated else ""
                )
                try:
                    report = await first_contact(
                        session, mutual=mutual, authenticated=authenticated
                    )
                    first[key] = report
                    took = report["first_message_ms"]
                    log(
                        f"  first contact ({key}): "
                        + (
                            f"{took:.0f} ms"
                            if took is not None
                            else f"LOST (Bob: {report['bob_decryption_failures']})"
                        )
                        + f", {report['stanzas']} stanzas, "
                        f"{report['round_trips_before_send']} round trip(s) before sending"
                    )
                finally:
                    await session.close()
    except Exception as exc:  # report what could not be measured rather than lose the rest
        unavailable.append(Unavailable("Prosody section (partly)", f"{type(exc).__name__}: {exc}"))
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return ProsodyResults(streams, first, profiles, unavailable)
