"""Forward secrecy by key rotation, measured through a real server (Prosody and
ejabberd): PROTOCOL.md 13.10, issue 13's "recorded, then compromised".

Bob's X25519 encryption key is replaced every ``ROTATE_EVERY``; a replaced one
still opens for ``RETENTION``, then it is destroyed. The tests record what
the server holds (the MAM archive, the offline store), let the rotation run
through the real plugin, then play an attacker who gets everything left:
Bob's SQLite store (file and WAL, every private key in it), Bob's password
(a fresh login reads the archive) and the recorded stanzas.

The clocks. Each client has its own injected clock (:class:`Clock`: real time
plus an offset the test moves). The server stamps what it stores with *its*
real clock: a stanza read back from the archive must be dated within 5 minutes
of that stamp (``check_archived``), one delivered live or from offline storage
within 5 minutes of the receiver's clock (and of the server's stamp). So every
stanza is sealed at real time and Alice's clock stays there; instead of moving
time forward past ``ROTATE_EVERY``, Bob's first key is made in the past (his
clock runs behind while he first starts, then is set to real time): it is due
at real time (:data:`OVERDUE`, test 3) or 4 minutes later (:data:`ALMOST_DUE`
then :data:`AHEAD`, tests 1-2). Only the destruction moves Bob's clock past the
retention, after the last stanza he receives live. ``RETENTION`` is shorter
than ``ROTATE_EVERY`` so that the run that destroys the first key does not
also replace the second.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import shutil
import sqlite3
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_der_private_key,
    load_pem_private_key,
)
from objenc_peers import (
    WAIT,
    QueuedDevice,
    Wire,
    befriend,
    eventually,
    publication_settled,
    secret,
    tap,
)
from slixmpp import JID, ClientXMPP
from slixmpp.xmlstream import tostring

from slixmpp_objenc import PublicationStatus
from slixmpp_objenc.core import Identity, generate_identity
from slixmpp_objenc.core.auth_envelope import AuthSender, SenderResolver, is_authenticated
from slixmpp_objenc.core.constants import DEFAULT_MAX_ENVELOPE_SIZE, NS_OBJENC
from slixmpp_objenc.core.opening import Opened, OpeningContext, OwnKeys, open_copies
from slixmpp_objenc.events import ArchivedMessage, KeyDestroyedEvent, KeyRotatedEvent
from slixmpp_objenc.testing import XmppServer, disconnect_client

PLUGINS = ["xep_0030", "xep_0060", "xep_0199", "xep_0313", "objenc"]
ROTATE_EVERY = timedelta(hours=3)
RETENTION = timedelta(hours=1)
ALMOST_DUE = ROTATE_EVERY - timedelta(minutes=3)
"""Age of Bob's first key when the story of tests 1-2 starts: not due at real
time (he comes back from offline without rotating), due once his clock is
:data:`AHEAD`."""
AHEAD = timedelta(minutes=4)
"""How far Bob's clock runs ahead when he rotates in tests 1-2: within the
5 minutes a live stanza's timestamp may differ from the receiver's clock, and
his new certificate (backdated 5 minutes) is already valid for Alice."""
OVERDUE = ROTATE_EVERY + timedelta(minutes=5)
"""Age of Bob's first key in test 3: due at real time, so he rotates at start."""
NOTIFICATION_WAIT = 5.0
"""Seconds a PEP notification of a new certificate gets to reach a contact."""
EVENTS = (
    "message",
    "objenc_key_rotated",
    "objenc_key_destroyed",
    "objenc_decryption_failed",
    "objenc_key_changed",
    "presence_unavailable",
)

NS_MAM = "urn:xmpp:mam:2"
NS_FORWARD = "urn:xmpp:forward:0"
ARCHIVED_MESSAGE = f"{{{NS_MAM}}}result/{{{NS_FORWARD}}}forwarded/{{jabber:client}}message"
E2E = f"{{{NS_OBJENC}}}e2e"
KEY = f"{{{NS_OBJENC}}}key"
DATA = f"{{{NS_OBJENC}}}data"
BODY = "{jabber:client}body"

PEM_PRIVATE_KEY = re.compile(
    rb"-----BEGIN [A-Z ]*PRIVATE KEY-----[A-Za-z0-9+/=\s]+?-----END [A-Z ]*PRIVATE KEY-----"
)
PKCS8_PREFIXES = {
    "X25519": bytes.fromhex("302e020100300506032b656e04220420"),
    "Ed25519": bytes.fromhex("302e020100300506032b657004220420"),
}
"""The 16 bytes before the 32-byte secret in a PKCS#8 DER key of each kind."""

Connector = Callable[..., Awaitable[ClientXMPP]]


class Clock:
    """A client's clock: real time plus :attr:`offset`, which the test moves."""

    def __init__(self, offset: timedelta = timedelta(0)) -> None:
        self.offset = offset

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@dataclass
class Device(QueuedDevice):
    """One connected objenc client and the events it emitted since it was made."""

    client: ClientXMPP
    clock: Clock
    data_dir: Path
    rsa_identity: Identity | None
    queues: dict[str, asyncio.Queue[Any]] = field(default_factory=dict)

    @property
    def encryption_key(self) -> X25519PrivateKey:
        key: X25519PrivateKey = self.keys.encryption_key
        return key

    @property
    def encryption_fingerprint(self) -> str:
        fingerprint: str = self.keys.encryption_fingerprint
        return fingerprint


async def connect(
    connect_client: Connector,
    jid: str,
    password: str,
    data_dir: Path,
    clock: Clock,
    identity: Identity | None = None,
) -> Device:
    """An objenc client with its own store and clock (the short rotation policy),
    ready and published; its events are queued from before the plugin loads (a
    rotation at start is reported then). ``identity``: its RSA identity (the
    draft's profile), given rather than made at first start (see :func:`pair`)."""
    queues: dict[str, asyncio.Queue[Any]] = {name: asyncio.Queue() for name in EVENTS}

    def factory(jid: str, password: str) -> ClientXMPP:
        client = ClientXMPP(jid, password)
        for name, queue in queues.items():
            client.add_event_handler(name, queue.put_nowait)
        return client

    client = await connect_client(
        jid,
        password,
        plugins=PLUGINS,
        pconfig={
            "objenc": {
                "data_dir": str(data_dir),
                "key_size": 2048,
                "clock": clock,
                "rotate_every": ROTATE_EVERY,
                "retention": RETENTION,
                "identity": identity,
            }
        },
        client_factory=factory,
        resource="fs",
    )
    device = Device(client, clock, data_dir, identity, queues)
    await device.plugin.ready()
    state = await publication_settled(client)
    assert state.status is PublicationStatus.PUBLISHED, state
    return device


async def stop(device: Device) -> None:
    """Close the store, then the session (ejabberd routes to a session it holds open)."""
    await device.plugin.close()
    await disconnect_client(device.client)


async def knows(device: Device, jid: str, fingerprint: str) -> None:
    """Discover until ``device`` may encrypt to the identity ``fingerprint`` of ``jid``."""
    plugin = device.plugin
    have: set[str] = set()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while loop.time() < deadline:
        have = {c.fingerprint for c in await plugin.discover(jid)}
        if fingerprint in have:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{device.client.boundjid.bare} cannot use {jid}'s {fingerprint[:12]}")


def encryption_held(device: Device, jid: str) -> set[str]:
    """The encryption certificates ``device`` would seal to for ``jid`` now."""
    return {
        c.encryption.fingerprint
        for c in device.plugin.keyring.usable(jid)
        if c.encryption is not None
    }


async def pair(
    connect_client: Connector,
    account: Any,
    tmp_path: Path,
    first_key_age: timedelta,
    *,
    announce_again: bool,
) -> tuple[Device, Device, str, str, str]:
    """Alice and Bob, contacts, each holding the other's identity; Bob's first
    encryption key made ``first_key_age`` ago, his clock then set to real time.
    Returns ``(alice, bob, alice_jid, bob_jid, bob_password)``.

    Bob's RSA identity is made here, dated by his clock: the plugin would make it
    with the real time (``Keyring.ensure_identity`` does not read the injected
    clock) and then refuse it as not yet valid by that clock.

    ``announce_again``: Alice sends her (undirected) presence once more after the
    subscription, as a client does on a status change. slixmpp sent Bob a
    *directed* presence when it approved his subscription, which the plugin
    encrypts, XEP-0115 caps included; Prosody reads an available presence without
    caps as "no interest" and stops sending Alice the notifications of Bob's node
    (see test 3), which tests 1-2 do not measure."""
    alice_jid, alice_pw = await account("alice")
    bob_jid, bob_pw = await account("bob")
    alice = await connect(connect_client, alice_jid, alice_pw, tmp_path / "alice", Clock())
    bob_clock = Clock(-first_key_age)
    rsa = generate_identity(bob_jid, key_size=2048, now=bob_clock())
    bob = await connect(connect_client, bob_jid, bob_pw, tmp_path / "bob", bob_clock, rsa)
    bob_clock.offset = timedelta(0)
    await befriend(alice.client, bob.client)
    if announce_again:
        alice.client.send_presence()
    await knows(alice, bob_jid, bob.plugin.fingerprint)
    await knows(bob, alice_jid, alice.plugin.fingerprint)
    assert encryption_held(alice, bob_jid) == {bob.encryption_fingerprint}
    return alice, bob, alice_jid, bob_jid, bob_pw


async def offline(alice: Device, bob: Device, bob_jid: str) -> None:
    """Bob's client closes its store and leaves; Alice has seen him go."""
    alice.drain("presence_unavailable")
    await stop(bob)
    await alice.next(
        "presence_unavailable", "bob going offline", lambda p: p["from"].bare == bob_jid
    )


async def write_offline(
    alice: Device, wire: Wire, bob_jid: str, body: str, server: XmppServer
) -> ET.Element:
    """Alice writes to Bob while he is offline; the stanza she sent, once the
    server holds it in Bob's offline store."""
    before = len(wire.sent)
    alice.client.send_message(mto=bob_jid, mbody=body, mtype="chat")
    await eventually(
        lambda: any(NS_OBJENC in text for text in wire.sent[before:]),
        lambda: "alice sent nothing encrypted",
    )
    sent = last_sent_to(wire, bob_jid)
    await server.wait_for_store_bytes(bob_jid, "offline", data_of(sent).encode(), WAIT)
    return sent


async def within(seconds: float, predicate: Callable[[], bool]) -> bool:
    """Whether ``predicate`` holds within ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


# -- the wire and the archive, as the server holds them ------------------------


def data_of(message: ET.Element) -> str:
    """The base64 of ``T`` in the authenticated copy: unique per stanza."""
    for copy in message.findall(E2E):
        data = copy.find(DATA)
        if is_authenticated(copy) and data is not None and data.text:
            return data.text
    raise AssertionError("no authenticated copy")


def sealed_to(message: ET.Element, identity: str) -> list[str]:
    """``cert-sha256`` of every ``<key/>`` naming the device ``identity``."""
    return [
        key.get("cert-sha256", "")
        for copy in message.findall(E2E)
        for key in copy.findall(KEY)
        if key.get("identity-sha256") == identity
    ]


def last_sent_to(wire: Wire, to_bare: str) -> ET.Element:
    for text in reversed(wire.sent):
        element = ET.fromstring(text)
        if JID(element.get("to", "")).bare == to_bare and element.find(E2E) is not None:
            return element
    raise AssertionError(f"nothing encrypted sent to {to_bare}")


def last_received_from(wire: Wire, from_bare: str) -> ET.Element:
    for text in reversed(wire.received):
        element = ET.fromstring(text)
        if JID(element.get("from", "")).bare == from_bare and element.find(E2E) is not None:
            return element
    raise AssertionError(f"nothing encrypted received from {from_bare}")


async def raw_archive(client: ClientXMPP, with_jid: str, count: int) -> list[ET.Element]:
    """The encrypted messages of the account's MAM archive with ``with_jid``, as
    the server returns them to a plain client (no objenc); waits for ``count``."""
    found: list[ET.Element] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while True:
        result = await client.plugin["xep_0313"].retrieve(
            with_jid=JID(with_jid), rsm={"max": 100}, timeout=int(WAIT)
        )
        found = []
        for wrapper in result["mam"]["results"]:
            message = wrapper.xml.find(ARCHIVED_MESSAGE)
            if message is not None and message.find(E2E) is not None:
                found.append(message)
        if len(found) >= count or loop.time() > deadline:
            return found
        await asyncio.sleep(0.2)


async def plain_login(connect_client: Connector, jid: str, password: str, resource: str) -> Any:
    """Someone with the account's password: a plain client that reads the archive
    (no presence: the server delivers it nothing)."""
    return await connect_client(
        jid, password, plugins=["xep_0030", "xep_0313"], resource=resource, send_presence=False
    )


# -- the attacker ---------------------------------------------------------------


def secrets_of(key: X25519PrivateKey) -> dict[str, bytes]:
    """Every form of a private key that would betray it on disk."""
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return {
        "PEM body": b"".join(pem.strip().splitlines()[1:-1]),
        "raw 32 bytes": raw,
        "base64 of the raw bytes": base64.b64encode(raw),
        "PKCS#8 DER": key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption()),
    }


def leaks(directory: Path, key: X25519PrivateKey) -> list[str]:
    """Where in the files of ``directory`` (the store, its WAL, anything) ``key`` is."""
    needles = secrets_of(key)
    found = []
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{what} in {path.name}" for what, n in needles.items() if n in data]
    return found


def raw_of(key: X25519PrivateKey) -> bytes:
    raw: bytes = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return raw


def always(public: X25519PublicKey) -> SenderResolver:
    """A sender resolver that answers ``public`` whatever the ids: the attacker
    tries each public key it holds as the sender's."""

    def resolve(_jid: str, _identity: bytes, _encryption: bytes) -> X25519PublicKey | None:
        return public

    return resolve


@dataclass
class Loot:
    """Every key an attacker finds in a copy of the store."""

    x25519: dict[bytes, X25519PrivateKey] = field(default_factory=dict)
    """Private X25519 keys (and every Ed25519 seed read as one), by raw value."""
    rsa: list[Identity] = field(default_factory=list)
    """Our RSA identities (the draft's profile)."""
    ed25519: int = 0
    senders: dict[bytes, X25519PublicKey] = field(default_factory=dict)
    """Every X25519 public key of a certificate in the store (the contacts'
    encryption certificates, current and earlier), by raw value."""

    def take(self, key: object) -> None:
        if isinstance(key, X25519PrivateKey):
            self.x25519[raw_of(key)] = key
        elif isinstance(key, Ed25519PrivateKey):
            self.ed25519 += 1
            seed = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
            self.take(X25519PrivateKey.from_private_bytes(seed))  # a long shot, for free

    def certificates(self, pem: bytes | None) -> None:
        if pem:
            for certificate in x509.load_pem_x509_certificates(pem):
                public = certificate.public_key()
                if isinstance(public, X25519PublicKey):
                    self.senders[public.public_bytes(Encoding.Raw, PublicFormat.Raw)] = public


def loot(*directories: Path) -> Loot:
    """Every private key in the files of ``directories`` (copies of a store's
    directory): each PEM block and PKCS#8 DER key anywhere in their bytes (free
    pages, WAL frames included), then each store read through SQLite
    (``identities``, ``encryption_keys``; ``peers`` for the senders' public keys).
    Reading a copy through SQLite changes it: look for leaks before."""
    found = Loot()
    for directory in directories:
        loot_files(directory, found)
        [store] = directory.glob("*.sqlite3")
        loot_store(store, found)
    for key in found.x25519.values():
        public = key.public_key()
        found.senders[public.public_bytes(Encoding.Raw, PublicFormat.Raw)] = public
    return found


def loot_files(directory: Path, found: Loot) -> None:
    for path in sorted(directory.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        for match in PEM_PRIVATE_KEY.finditer(data):
            try:
                found.take(load_pem_private_key(match.group(0), None))
            except (ValueError, TypeError):
                continue
        for prefix in PKCS8_PREFIXES.values():
            start = data.find(prefix)
            while start >= 0:
                with contextlib.suppress(ValueError, TypeError):
                    found.take(load_der_private_key(data[start : start + 48], None))
                start = data.find(prefix, start + 1)


def loot_store(store: Path, found: Loot) -> None:
    conn = sqlite3.connect(store)  # the copy's WAL beside it is read too
    try:
        identities = conn.execute(
            "SELECT key_pem, cert_pem, encryption_key_pem, encryption_cert_pem FROM identities"
        ).fetchall()
        history = conn.execute("SELECT key_pem, cert_pem FROM encryption_keys").fetchall()
        peers = conn.execute(
            "SELECT cert_pem, encryption_pem, previous_encryption_pem FROM peers"
        ).fetchall()
    finally:
        conn.close()
    for key_pem, cert_pem, encryption_key_pem, encryption_cert_pem in identities:
        key = load_pem_private_key(key_pem, None)
        if isinstance(key, RSAPrivateKey):
            found.rsa.append(Identity(key, x509.load_pem_x509_certificate(cert_pem)))
        found.take(key)
        if encryption_key_pem:
            found.take(load_pem_private_key(encryption_key_pem, None))
        found.certificates(encryption_cert_pem)
    for key_pem, cert_pem in history:
        found.take(load_pem_private_key(key_pem, None))
        found.certificates(cert_pem)
    for row in peers:
        for pem in row:
            found.certificates(pem)


def attack(
    message: ET.Element, found: Loot, extra: Sequence[X25519PrivateKey] = ()
) -> Opened | None:
    """Try to open an archived ``<message/>`` with everything found: each X25519
    key as the recipient of each ``<key/>`` (whatever ids it names), with each
    X25519 public key as the sender's; then each RSA identity for the draft's copy.
    The plugin's own opening code (``open_copies``, which runs ``open_authenticated``)."""
    copies = message.findall(E2E)
    sender = JID(message.get("from", "")).bare
    wraps = [key for copy in copies for key in copy.findall(KEY)]
    for private in [*found.x25519.values(), *extra]:
        for wrap in wraps:
            try:
                own = AuthSender(
                    private,
                    bytes.fromhex(wrap.get("identity-sha256", "")),
                    bytes.fromhex(wrap.get("cert-sha256", "")),
                )
            except ValueError:
                continue
            for public in found.senders.values():
                context = OpeningContext(resolve_sender=always(public))
                opened = open_copies(
                    copies,
                    OwnKeys(device=[own]),
                    sender,
                    context,
                    max_size=DEFAULT_MAX_ENVELOPE_SIZE,
                )
                if isinstance(opened, Opened):
                    return opened
    for identity in found.rsa:
        opened = open_copies(
            copies,
            OwnKeys(rsa=[identity]),
            sender,
            OpeningContext(),
            max_size=DEFAULT_MAX_ENVELOPE_SIZE,
        )
        if isinstance(opened, Opened):
            return opened
    return None


def body_of(opened: Opened) -> str | None:
    return opened.stanza.findtext(BODY)


# -- the story of tests 1 and 2: recorded, rotated, destroyed ---------------------


@dataclass
class Destroyed:
    alice: Device
    bob: Device
    alice_jid: str
    bob_jid: str
    bob_password: str
    old_key: X25519PrivateKey
    """Bob's first encryption key, kept by the test (not by anyone else) to prove
    that the recorded stanzas were sealed to it and that the attack would open them."""
    old_fingerprint: str
    new_fingerprint: str
    recorded: list[str]
    """The archived ``<message/>``s sealed to the first key, as the server returned
    them before the rotation (serialised)."""
    bodies: list[str]
    control: str
    """The body of a message sent after the rotation, sealed to the second key."""


async def recorded_then_destroyed(
    connect_client: Connector, account: Any, server: XmppServer, tmp_path: Path
) -> Destroyed:
    """Alice writes to Bob, online then while he is offline (offline storage);
    what the server archived is recorded; Bob, back, rotates (``rotate_keys()``,
    published: Alice switches), Alice writes once more (the control), Bob's
    clock passes the retention and ``rotate_keys()`` destroys the first key."""
    alice, bob, alice_jid, bob_jid, bob_pw = await pair(
        connect_client, account, tmp_path, ALMOST_DUE, announce_again=True
    )
    identity = bob.plugin.fingerprint
    old_key, old_fp = bob.encryption_key, bob.encryption_fingerprint
    token = secret("recorded")
    bodies = [f"{token} {i}" for i in range(4)]
    for body in bodies[:2]:
        alice.client.send_message(mto=bob_jid, mbody=body, mtype="chat")
        await bob.body(body)
    alice_wire = tap(alice.client)
    await offline(alice, bob, bob_jid)
    for body in bodies[2:]:
        sent = await write_offline(alice, alice_wire, bob_jid, body, server)
        assert sealed_to(sent, identity) == [old_fp]
    bob = await connect(connect_client, bob_jid, bob_pw, bob.data_dir, bob.clock, bob.rsa_identity)
    for body in bodies[2:]:
        info = bob.plugin.encryption_info(await bob.body(body))
        assert info is not None and info.delay is not None  # from offline storage
    assert bob.encryption_fingerprint == old_fp, "not due yet"

    recorder = await plain_login(connect_client, bob_jid, bob_pw, "recorder")
    recorded = await raw_archive(recorder, alice_jid, len(bodies))
    await disconnect_client(recorder)
    assert len(recorded) == len(bodies), [ET.tostring(m) for m in recorded]
    for message in recorded:
        assert sealed_to(message, identity) == [old_fp]
        # what the server keeps on disk is this very ciphertext
        await server.wait_for_store_bytes(bob_jid, "archive", data_of(message).encode(), WAIT)
    assert token not in server.stored_files_text()

    bob.clock.offset = AHEAD
    outcome = await bob.plugin.rotate_keys()
    assert outcome is not None and outcome.rotated is not None, outcome
    assert outcome.retired == (old_fp,) and outcome.destroyed == ()
    rotated: KeyRotatedEvent = await bob.next("objenc_key_rotated", "the rotation")
    new_fp = bob.encryption_fingerprint
    assert rotated.fingerprint == outcome.rotated == new_fp != old_fp
    assert rotated.retired == (old_fp,)
    await eventually(
        lambda: encryption_held(alice, bob_jid) == {new_fp},
        lambda: f"alice seals to {encryption_held(alice, bob_jid)}, not {new_fp}",
    )

    wire = tap(bob.client)
    control = f"{token} control"
    alice.client.send_message(mto=bob_jid, mbody=control, mtype="chat")
    await bob.body(control)
    assert sealed_to(last_received_from(wire, alice_jid), identity) == [new_fp]

    bob.clock.offset = AHEAD + RETENTION + timedelta(minutes=1)
    outcome = await bob.plugin.rotate_keys()
    assert outcome is not None and outcome.rotated is None, outcome
    assert outcome.destroyed == (old_fp,) and outcome.retired == ()
    destroyed: KeyDestroyedEvent = await bob.next("objenc_key_destroyed", "the destruction")
    assert destroyed.fingerprint == old_fp
    assert bob.plugin.keyring.device.destroyed == {old_fp}
    assert bob.encryption_fingerprint == new_fp
    assert alice.queues["objenc_key_changed"].empty(), "a rotation asked alice something"
    return Destroyed(
        alice,
        bob,
        alice_jid,
        bob_jid,
        bob_pw,
        old_key,
        old_fp,
        new_fp,
        [ET.tostring(m, encoding="unicode") for m in recorded],
        bodies,
        control,
    )


# -- the tests ----------------------------------------------------------------------


async def test_recorded_then_compromised_opens_nothing(
    connect_client: Connector, account: Any, server: XmppServer, tmp_path: Path
) -> None:
    """Attack shown failing: record what the server holds of Alice's stanzas to
    Bob, wait until Bob's key was replaced and its retention passed, then seize
    everything left: Bob's store (file and WAL, taken while his client runs and
    again at rest; every private key in it), his password (a fresh login reads
    the archive again) and the recorded stanzas. No key found opens any of them,
    and the destroyed key is nowhere in the files' bytes (PEM, DER, raw).
    Controls, so that the attack is real: with the keys found it opens the
    stanza sent after the rotation; given the destroyed key (kept by the test
    alone) it opens every recorded stanza; the byte search finds the current key."""
    story = await recorded_then_destroyed(connect_client, account, server, tmp_path)
    current = story.bob.encryption_key
    live = tmp_path / "stolen-live"
    shutil.copytree(story.bob.data_dir, live)
    await stop(story.bob)
    at_rest = tmp_path / "stolen-at-rest"
    shutil.copytree(story.bob.data_dir, at_rest)
    for stolen in (live, at_rest):
        assert leaks(stolen, story.old_key) == [], stolen.name
        assert "PEM body in" in " ".join(leaks(stolen, current)), "the search must see keys"
    found = loot(live, at_rest)
    assert raw_of(current) in found.x25519
    assert raw_of(story.old_key) not in found.x25519
    assert found.rsa and found.ed25519, "Bob's RSA identity and Ed25519 identity"
    alice_key = story.alice.encryption_key.public_key()
    assert alice_key.public_bytes(Encoding.Raw, PublicFormat.Raw) in found.senders

    attacker = await plain_login(connect_client, story.bob_jid, story.bob_password, "attacker")
    archived = await raw_archive(attacker, story.alice_jid, len(story.bodies) + 1)
    by_data = {data_of(message): message for message in archived}
    recorded = [ET.fromstring(text) for text in story.recorded]
    assert {data_of(message) for message in recorded} <= by_data.keys(), "the server keeps them"
    for message, body in zip(recorded, story.bodies, strict=True):
        assert attack(message, found) is None, f"{body!r} opened after its key was destroyed"
        assert attack(by_data[data_of(message)], found) is None
        opened = attack(message, found, extra=[story.old_key])
        assert opened is not None and body_of(opened) == body, "the attack opens with the key"
    recorded_data = {data_of(message) for message in recorded}
    [control] = [message for message in archived if data_of(message) not in recorded_data]
    assert sealed_to(control, story.bob.plugin.fingerprint) == [story.new_fingerprint]
    opened = attack(control, found)
    assert opened is not None and body_of(opened) == story.control
    for stolen in (live, at_rest):  # and no plaintext was kept either
        for path in stolen.rglob("*"):
            data = path.read_bytes()
            assert not [b for b in [*story.bodies, story.control] if b.encode() in data]


async def test_fetch_archive_reports_destroyed_keys(
    connect_client: Connector, account: Any, server: XmppServer, tmp_path: Path
) -> None:
    """Attack shown failing: Bob's own client, once the key is destroyed, cannot
    read the old history either (so neither can whoever takes it over):
    ``fetch_archive`` returns those messages as ``key-destroyed`` (not
    ``undecryptable``), ciphertext untouched, while the message sent after the
    rotation opens normally; a recorded stanza replayed to Bob live (by a
    server or a contact) is refused as ``key-destroyed`` and not delivered."""
    story = await recorded_then_destroyed(connect_client, account, server, tmp_path)
    bob = story.bob
    archive: list[ArchivedMessage] = await asyncio.wait_for(
        bob.plugin.fetch_archive(with_jid=story.alice_jid, max_items=100), WAIT
    )
    assert len(archive) == len(story.bodies) + 1, [(a.stanza["body"], a.error) for a in archive]
    *old, control = archive
    for item in old:
        assert item.error == "key-destroyed", item.error
        assert item.info is None
        assert item.stanza.xml.find(E2E) is not None, "the archived stanza as it was"
        assert item.stanza["body"] not in story.bodies
    assert control.error is None, control.error
    assert control.stanza["body"] == story.control
    assert control.info is not None and control.info.authenticated
    assert control.info.delay is not None  # the archive's stamp

    replayed = ET.fromstring(story.recorded[0])
    copies = "".join(tostring(copy) for copy in replayed.findall(E2E))
    story.alice.client.send_raw(
        f"<message to='{story.bob_jid}' type='chat' id='replayed-1'>{copies}</message>"
    )
    failed = await bob.next(
        "objenc_decryption_failed", "the replay", lambda e: e.stanza["id"] == "replayed-1"
    )
    assert failed.reason == "key-destroyed"
    await asyncio.sleep(0.3)
    while not bob.queues["message"].empty():
        assert bob.queues["message"].get_nowait()["body"] not in story.bodies


async def test_senders_switch_at_once_and_the_old_key_opens_within_retention(
    connect_client: Connector, account: Any, server: XmppServer, tmp_path: Path
) -> None:
    """Attack shown failing: a key stolen before the rotation keeps reading what
    is sent after it. Bob is offline while Alice writes (offline storage, sealed
    to his first key); he comes back when that key is due: it is replaced at
    start and the new certificate published, and Alice's next stanza is sealed
    to the new certificate only (no prompt), so the first key does not open it.
    Within the retention the stanza sealed to the first key still opens,
    delivered from offline storage and from the archive.

    "At once" means by the PEP notification of Bob's node. On Prosody it never
    comes: the directed presence slixmpp sent Bob when approving his subscription
    is encrypted with its XEP-0115 caps, and Prosody then stops notifying Alice.
    The test then lets Alice read the node, checks the rest, and is marked
    xfail (a decision for the protocol: caps beside the envelope)."""
    alice, bob, alice_jid, bob_jid, bob_pw = await pair(
        connect_client, account, tmp_path, OVERDUE, announce_again=False
    )
    identity = bob.plugin.fingerprint
    old_key, old_fp = bob.encryption_key, bob.encryption_fingerprint
    alice_wire = tap(alice.client)
    await offline(alice, bob, bob_jid)
    token = secret("offline")
    late = f"{token} sealed to the first key"
    stored = await write_offline(alice, alice_wire, bob_jid, late, server)
    assert sealed_to(stored, identity) == [old_fp]

    bob = await connect(connect_client, bob_jid, bob_pw, bob.data_dir, Clock(), bob.rsa_identity)
    rotated: KeyRotatedEvent = await bob.next("objenc_key_rotated", "the rotation at start")
    new_fp = bob.encryption_fingerprint
    assert rotated.fingerprint == new_fp != old_fp
    assert rotated.retired == (old_fp,)
    info = bob.plugin.encryption_info(await bob.body(late))
    assert info is not None and info.authenticated and info.delay is not None

    notified = await within(NOTIFICATION_WAIT, lambda: encryption_held(alice, bob_jid) == {new_fp})
    if not notified:
        await alice.plugin.discover(bob_jid)
    assert encryption_held(alice, bob_jid) == {new_fp}
    bob_wire = tap(bob.client)
    fresh = f"{token} after the rotation"
    alice.client.send_message(mto=bob_jid, mbody=fresh, mtype="chat")
    await bob.body(fresh)
    sent = last_sent_to(alice_wire, bob_jid)
    got = last_received_from(bob_wire, alice_jid)
    assert data_of(got) == data_of(sent)
    assert sealed_to(sent, identity) == sealed_to(got, identity) == [new_fp]

    # the first key, as if stolen before the rotation: it reads what was sealed
    # to it (so the attack is real), and nothing after
    stolen = Loot()
    stolen.take(old_key)
    alice_key = alice.encryption_key.public_key()
    stolen.senders[alice_key.public_bytes(Encoding.Raw, PublicFormat.Raw)] = alice_key
    opened = attack(stored, stolen)
    assert opened is not None and body_of(opened) == late
    assert attack(got, stolen) is None

    archive: list[ArchivedMessage] = await asyncio.wait_for(
        bob.plugin.fetch_archive(with_jid=alice_jid, max_items=100), WAIT
    )
    errors = {item.stanza["body"]: item.error for item in archive}
    assert errors.get(late, "missing") is None and errors.get(fresh, "missing") is None, errors
    assert bob.plugin.keyring.device.destroyed == frozenset()
    assert alice.queues["objenc_key_changed"].empty(), "a rotation asked alice something"
    assert bob.queues["objenc_decryption_failed"].empty()
    if not notified:
        pytest.xfail(
            "the PEP notification of Bob's new certificate never reached Alice: her "
            "directed presence to Bob went encrypted with its XEP-0115 <c/>, and Prosody's "
            "mod_pep took the caps-less presence as 'no +notify interest' (until her next "
            "undirected presence she keeps sealing to a replaced key)"
        )
