"""This project, per stanza: the core, the plugin path, and the ``cryptography`` floor.

Two wire profiles, each measured on both ends configured for it:

* the draft's RSA profile (RSA-3072 key wraps, AES-CBC + HMAC-SHA256):
  ``authenticated: False`` on both plugins;
* the authenticated profile (Ed25519 identity and X25519 encryption
  certificates, HPKE Auth wraps, AES-256-GCM content; PROTOCOL.md 13):
  ``authenticated: True`` on both plugins, each knowing the other's device
  as PEP would have told it (``directory.reconcile`` of a ``<device/>`` item).

Rows:

* core: :func:`seal` + :func:`open_envelope` on the stanza bytes S' (one
  recipient, RSA-3072), element in, element out; for the authenticated
  profile :func:`seal_authenticated` + :func:`open_authenticated`;
* plugin path: build the slixmpp ``Message``, run the plugin's outbound
  filters (``outbound.plan`` picks the certificates, ``outbound.seal`` seals
  in place), serialize it exactly as slixmpp writes it to the socket, parse it
  on the other side, build the stanza and run the plugin's ``in`` filter
  (``inbound.receive``), then read the body; both plugins' write-behind queues are
  flushed inside the timed operation. No server: two unconnected clients;
* floor (RSA profile): the same RSA-OAEP-SHA256 wrap + unwrap, AES-CBC encrypt
  + decrypt (PKCS#7) and HMAC-SHA256 compute + verify called directly on
  ``cryptography``, on the same S' bytes: no XML, no base64.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.serialization import Encoding
from slixmpp import ClientXMPP
from slixmpp.xmlstream import StanzaBase, tostring

import slixmpp_objenc
from slixmpp_objenc.core import (
    AES_128_CBC,
    AES_256_CBC,
    BlockCipher,
    Identity,
    Recipient,
    TimestampSource,
    generate_identity,
    open_envelope,
    seal,
)
from slixmpp_objenc.core.algorithms import RSA_OAEP_SHA256
from slixmpp_objenc.core.auth_envelope import (
    WRAP_ALGO,
    AuthRecipient,
    AuthSender,
    open_authenticated,
    seal_authenticated,
)
from slixmpp_objenc.core.constants import NS_OBJENC
from slixmpp_objenc.core.identities import DeviceKeys, generate_device_keys
from slixmpp_objenc.store import MemoryStorage

from . import framing
from .common import (
    ALICE,
    ALICE_FULL,
    BOB,
    BOB_FULL,
    SIZES,
    Row,
    Settings,
    ameasure,
    body_text,
    measure,
)

CIPHERS: dict[str, BlockCipher] = {"AES-128": AES_128_CBC, "AES-256": AES_256_CBC}
OAEP = asym_padding.OAEP(
    mgf=asym_padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None
)
MECHANISM = "objenc (this project)"
FLOOR = "floor (cryptography only)"
FLOOR_4 = "AES-128|2 KiB|4 recipients"
WRAP_OPEN = "<wrap xmlns='jabber:client'>"
WRAP_CLOSE = "</wrap>"


@dataclass
class Identities:
    """RSA-3072 identities made once per run (the plugin's default key size)."""

    alice: Identity
    bobs: list[Identity]
    """Bob's devices: the first one is the one that decrypts."""
    bob_2048: Identity
    """For context only: the smallest key the plugin accepts."""

    @classmethod
    def generate(cls, devices: int = 4) -> Identities:
        return cls(
            generate_identity(ALICE, key_size=3072),
            [generate_identity(BOB, key_size=3072) for _ in range(devices)],
            generate_identity(BOB, key_size=2048),
        )


# -- floor -------------------------------------------------------------------


def floor_op(
    private_key: rsa.RSAPrivateKey,
    public_key: rsa.RSAPublicKey,
    plain: bytes,
    key_length: int,
    others: list[rsa.RSAPublicKey] | None = None,
) -> Callable[[], None]:
    """Seal and open with the bare primitives, as the draft combines them; ``others``:
    further recipients the key is also wrapped for (only the first one unwraps)."""
    extra = others or []

    def op() -> None:
        # sender
        key, iv = os.urandom(key_length), os.urandom(16)
        padder = sym_padding.PKCS7(128).padder()
        padded = padder.update(plain) + padder.finalize()
        encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
        ciphertext = iv + encryptor.update(padded) + encryptor.finalize()
        mac = hmac.HMAC(ciphertext, hashes.SHA256())
        mac.update(key)
        tag = mac.finalize()
        wrapped = public_key.encrypt(key, OAEP)
        for other in extra:
            other.encrypt(key, OAEP)
        # recipient
        unwrapped = private_key.decrypt(wrapped, OAEP)
        verifier = hmac.HMAC(ciphertext, hashes.SHA256())
        verifier.update(unwrapped)
        verifier.verify(tag)
        decryptor = Cipher(algorithms.AES(unwrapped), modes.CBC(ciphertext[:16])).decryptor()
        padded_back = decryptor.update(ciphertext[16:]) + decryptor.finalize()
        unpadder = sym_padding.PKCS7(128).unpadder()
        if unpadder.update(padded_back) + unpadder.finalize() != plain:
            raise AssertionError("floor round trip failed")

    return op


# -- core --------------------------------------------------------------------


def core_op(
    stanza: bytes,
    identities: Identities,
    cipher: BlockCipher,
    recipients: int,
    *,
    rsa_2048: bool = False,
) -> Callable[[], None]:
    """seal + open_envelope; with several recipients each key is named (cert-sha256)."""
    clock = TimestampSource()
    bobs = [identities.bob_2048] if rsa_2048 else identities.bobs[:recipients]
    named = recipients > 1
    targets = [
        Recipient(b.certificate.public_key(), b.fingerprint if named else None)  # type: ignore[arg-type]
        for b in bobs
    ]
    me = bobs[0]

    def op() -> None:
        e2e = seal(stanza, targets, timestamp=clock.next(), cipher=cipher, pad_to=64)
        opened = open_envelope(e2e, me.private_key, key_id=me.fingerprint if named else None)
        if opened.stanza_bytes != stanza:
            raise AssertionError("core round trip failed")

    return op


AUTH_PROFILE = "authenticated profile (HPKE Auth X25519, AES-256-GCM)"
AUTH_VARIANT = f"core seal+open, {AUTH_PROFILE}"
AUTH_VARIANT_4 = f"{AUTH_VARIANT}, 4 recipient devices"
AUTH_PLUGIN = f"plugin path, {AUTH_PROFILE}"
"""The authenticated profile through both plugins (``authenticated: True`` on both)."""
AUTH_PLUGIN_4 = f"{AUTH_PLUGIN}, 4 recipient devices"
RSA_PLUGIN_NOTE = "RSA profile (authenticated: False on both ends)"
AUTH_WIRE = f"{MECHANISM}, authenticated profile"


class AuthDevices:
    """Ed25519/X25519 devices for the authenticated profile (Alice and 4 of Bob's)."""

    def __init__(self, devices: int = 4) -> None:
        self.alice = generate_device_keys(ALICE)
        self.bobs = [generate_device_keys(BOB) for _ in range(devices)]

    @staticmethod
    def ids(device: DeviceKeys) -> tuple[bytes, bytes]:
        def digest(certificate: Any) -> bytes:
            return hashlib.sha256(certificate.public_bytes(Encoding.DER)).digest()

        return digest(device.identity_certificate), digest(device.encryption_certificate)

    def seal(self, stanza: bytes, recipients: int) -> ET.Element:
        sender = AuthSender(self.alice.encryption_key, *self.ids(self.alice))
        targets = [
            AuthRecipient(*self.ids(b), b.encryption_key.public_key())
            for b in self.bobs[:recipients]
        ]
        return seal_authenticated(
            stanza, sender, targets, timestamp=TimestampSource().next(), pad_to=64
        )


def auth_core_op(stanza: bytes, devices: AuthDevices, recipients: int) -> Callable[[], None]:
    """seal_authenticated + open_authenticated (the first of Bob's devices opens)."""
    me = devices.bobs[0]
    own = AuthSender(me.encryption_key, *devices.ids(me))
    alice_key = devices.alice.encryption_key.public_key()
    alice_ids = devices.ids(devices.alice)

    def resolve(jid: str, identity: bytes, encryption: bytes) -> Any:
        return alice_key if (jid, identity, encryption) == (ALICE, *alice_ids) else None

    def op() -> None:
        e2e = devices.seal(stanza, recipients)
        if open_authenticated(e2e, own, resolve, ALICE).stanza_bytes != stanza:
            raise AssertionError("authenticated round trip failed")

    return op


# -- plugin path -------------------------------------------------------------


class PluginPair:
    """Alice's and Bob's ``ObjEnc`` plugins on two unconnected slixmpp clients."""

    def __init__(self, alice: ClientXMPP, bob: ClientXMPP) -> None:
        self.alice = alice
        self.bob = bob
        self.a = alice.plugin["objenc"]
        self.b = bob.plugin["objenc"]

    @classmethod
    async def create(
        cls,
        identities: Identities,
        *,
        cipher: str = AES_128_CBC.name,
        bob_devices: int = 1,
        sqlite_dir: Path | None = None,
        authenticated: bool = False,
        other_bob_devices: Sequence[DeviceKeys] = (),
    ) -> PluginPair:
        """Both plugins configured with ``authenticated``: off (the default), the
        draft's RSA profile, certificates added by hand; on, the authenticated
        profile, each side holding the other's device as read from PEP. Bob's
        devices past the first (the one that opens) are ``identities.bobs[1:]``
        (RSA) or ``other_bob_devices`` (authenticated; made here if too few)."""
        alice = _client(
            ALICE_FULL,
            identities.alice,
            cipher,
            sqlite_dir / "a" if sqlite_dir else None,
            authenticated=authenticated,
        )
        bob = _client(
            BOB_FULL,
            identities.bobs[0],
            cipher,
            sqlite_dir / "b" if sqlite_dir else None,
            authenticated=authenticated,
        )
        # contacts, as in real use: a mutual presence subscription (without one, each
        # stanza would carry an introduction of the sender's certificates, PROTOCOL.md 13.7)
        alice.client_roster.add(BOB, afrom=True, ato=True)
        bob.client_roster.add(ALICE, afrom=True, ato=True)
        pair = cls(alice, bob)
        await pair.a.ready()
        await pair.b.ready()
        if authenticated:
            others = list(other_bob_devices[: bob_devices - 1])
            others += [generate_device_keys(BOB) for _ in range(bob_devices - 1 - len(others))]
            bob_device = pair.b.keyring.device.keys
            alice_device = pair.a.keyring.device.keys
            if bob_device is None or alice_device is None:
                raise AssertionError("authenticated: True made no device keys")
            # what each would read from the other's certificate node (PEP)
            await pair.a.directory.reconcile(
                BOB, [device_item(d) for d in (bob_device, *others)], complete=True
            )
            await pair.b.directory.reconcile(ALICE, [device_item(alice_device)], complete=True)
        else:
            for device in identities.bobs[:bob_devices]:
                pair.a.add_peer_certificate(device.certificate_pem())
            pair.b.add_peer_certificate(identities.alice.certificate_pem())
        await pair.flush()
        await pair.check_profile(authenticated, bob_devices + 1)
        return pair

    async def check_profile(self, authenticated: bool, keys: int) -> None:
        """One message: one ``<e2e/>`` of the expected profile with ``keys`` wraps
        (Bob's devices and Alice's own), opened by Bob as that profile."""
        wire = await self.send_wire("profile check")
        outer = ET.fromstring(WRAP_OPEN + wire + WRAP_CLOSE)[0]
        copies = outer.findall(f"{{{NS_OBJENC}}}e2e")
        algos = [k.get("cipher-algo") for e in copies for k in e.findall(f"{{{NS_OBJENC}}}key")]
        wanted = WRAP_ALGO if authenticated else RSA_OAEP_SHA256
        if len(copies) != 1 or len(algos) != keys or any(a != wanted for a in algos):
            raise AssertionError(f"expected one <e2e/> with {keys} {wanted} <key/>, got {algos}")
        info = self.b.encryption_info(self.receive_wire(wire))
        if info is None or bool(info.authenticated) != authenticated:
            raise AssertionError(f"Bob did not open it as expected: {info}")
        await self.flush()

    async def flush(self) -> None:
        await self.a.flush()
        await self.b.flush()
        # Let the finished writer tasks' done-callbacks run: ObjEnc._persist only
        # starts a new writer when no task flagged as one is left in _tasks, and
        # a finished writer stays there until its callback has run. Without this
        # yield, a write queued right after a flush() is never picked up and the
        # next flush() waits forever (reported in RESULTS.md).
        await asyncio.sleep(0)

    async def close(self) -> None:
        for plugin in (self.a, self.b):
            await plugin.close()
            for task in list(plugin.tasks.running):
                task.cancel()

    async def send_wire(self, body: str) -> str:
        """Alice's outbound path up to the bytes slixmpp writes to the socket."""
        msg = self.alice.make_message(mto=BOB_FULL, mbody=body, mtype="chat")
        planned = self.a.outbound.plan(msg)
        sealed = self.a.outbound.seal(planned)
        if sealed is None:
            raise AssertionError("the plugin refused to send")
        return str(
            tostring(sealed.xml, xmlns=self.alice.default_ns, stream=self.alice, top_level=True)
        )

    def receive_wire(self, wire: str) -> StanzaBase:
        """Bob's inbound path: parse, the server's ``from`` stamp, build, the ``in`` filter."""
        xml = ET.fromstring(WRAP_OPEN + wire + WRAP_CLOSE)[0]
        xml.set("from", ALICE_FULL)  # what the server stamps
        stanza = self.bob._build_stanza(xml)
        delivered = self.b.inbound.receive(stanza)
        if delivered is None:
            raise AssertionError("the plugin dropped the stanza")
        return delivered

    def op(self, body: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            delivered = self.receive_wire(await self.send_wire(body))
            if delivered["body"] != body:
                raise AssertionError("plugin round trip failed")
            await self.flush()

        return run


def _client(
    jid: str, identity: Identity, cipher: str, data_dir: Path | None, *, authenticated: bool
) -> ClientXMPP:
    client = ClientXMPP(jid, "unused", loop=asyncio.get_running_loop())
    config: dict[str, Any] = {
        "identity": identity,
        "pep": False,
        "cipher": cipher,
        "authenticated": authenticated,
    }
    if data_dir is None:
        config["storage"] = MemoryStorage()
    else:
        config["data_dir"] = str(data_dir)
    client.register_plugin("xep_0030")
    client.register_plugin("objenc", module=slixmpp_objenc, pconfig=config)
    return client


def device_item(keys: DeviceKeys) -> ET.Element:
    """One item of a certificate node (PROTOCOL.md 13.6): ``<device/>`` with the
    identity and encryption certificates, as PEP hands it to the directory."""
    item = ET.Element("{http://jabber.org/protocol/pubsub}item", {"id": keys.fingerprint})
    device = ET.SubElement(item, f"{{{NS_OBJENC}}}device")
    for name, certificate in (
        ("identity", keys.identity_certificate),
        ("encryption", keys.encryption_certificate),
    ):
        der = certificate.public_bytes(Encoding.DER)
        ET.SubElement(device, f"{{{NS_OBJENC}}}{name}").text = base64.b64encode(der).decode()
    return item


def plaintext_wire(client: ClientXMPP, body: str) -> str:
    """A chat message exactly as slixmpp writes it without encryption."""
    msg = client.make_message(mto=BOB_FULL, mbody=body, mtype="chat")
    return str(tostring(msg.xml, xmlns=client.default_ns, stream=client, top_level=True))


def plaintext_op(alice: ClientXMPP, bob: ClientXMPP, body: str) -> Callable[[], None]:
    """The same path with no plugin at all: what slixmpp's XML costs by itself."""

    def op() -> None:
        xml = ET.fromstring(WRAP_OPEN + plaintext_wire(alice, body) + WRAP_CLOSE)[0]
        xml.set("from", ALICE_FULL)
        if bob._build_stanza(xml)["body"] != body:
            raise AssertionError("plaintext round trip failed")

    return op


def inner_stanza(client: ClientXMPP, body: str) -> bytes:
    """S' as the plugin serializes it (``from`` set, namespace on the root)."""
    msg = client.make_message(mto=BOB_FULL, mbody=body, mtype="chat", mfrom=ALICE_FULL)
    return str(tostring(msg.xml, top_level=True)).encode("utf-8")


# -- the section ---------------------------------------------------------------


@dataclass
class ObjencResults:
    rows: list[Row]
    wire: list[dict[str, Any]]
    inner_sizes: dict[str, int]


async def run(
    settings: Settings, identities: Identities, log: Callable[[str], None]
) -> ObjencResults:
    rows: list[Row] = []
    wire: list[dict[str, Any]] = []
    inner_sizes: dict[str, int] = {}
    bob = identities.bobs[0]
    bob_public = bob.certificate.public_key()
    assert isinstance(bob_public, rsa.RSAPublicKey)

    # The RSA profile: authenticated off on both ends (PluginPair's default).
    pairs = {
        name: await PluginPair.create(identities, cipher=cipher.name)
        for name, cipher in CIPHERS.items()
    }
    auth = AuthDevices()
    with tempfile.TemporaryDirectory(prefix="objenc-bench-") as tmp:
        sqlite_pair = await PluginPair.create(identities, sqlite_dir=Path(tmp))
        four = await PluginPair.create(identities, bob_devices=4)
        # The authenticated profile: authenticated on on both ends.
        auth_pair = await PluginPair.create(identities, authenticated=True)
        auth_four = await PluginPair.create(
            identities, authenticated=True, bob_devices=4, other_bob_devices=auth.bobs[1:]
        )
        try:
            reference = pairs["AES-128"]
            for size, length in SIZES.items():
                body = body_text(length)
                stanza = inner_stanza(reference.alice, body)
                inner_sizes[size] = len(stanza)
                log(f"  {size}: S' is {len(stanza)} bytes")
                for name, cipher in CIPHERS.items():
                    floor_key = f"{name}|{size}"
                    rows.append(
                        Row(
                            FLOOR,
                            f"RSA-OAEP-3072 + {name}-CBC + HMAC-SHA256",
                            size,
                            1,
                            measure(
                                floor_op(bob.private_key, bob_public, stanza, cipher.key_length),
                                settings,
                            ),
                            provides_floor=floor_key,
                        )
                    )
                    rows.append(
                        Row(
                            MECHANISM,
                            f"core seal+open, {name}",
                            size,
                            1,
                            measure(core_op(stanza, identities, cipher, 1), settings),
                            floor_key=floor_key,
                        )
                    )
                    rows.append(
                        Row(
                            MECHANISM,
                            f"plugin path, {name}",
                            size,
                            1,
                            await ameasure(pairs[name].op(body), settings),
                            floor_key=floor_key,
                            note=f"{RSA_PLUGIN_NOTE}: RSA-wraps for Bob and for Alice's own "
                            "certificate (2 <key/>)",
                        )
                    )
                rows.append(
                    Row(
                        MECHANISM,
                        "plugin path, AES-128, SQLite store",
                        size,
                        1,
                        await ameasure(sqlite_pair.op(body), settings),
                        floor_key=f"AES-128|{size}",
                        note=f"{RSA_PLUGIN_NOTE}; zero-config store: write-behind of "
                        "timestamps and replay cache",
                    )
                )
                rows.append(
                    Row(
                        "slixmpp plaintext (no encryption)",
                        "build, serialize, parse, build",
                        size,
                        1,
                        measure(plaintext_op(reference.alice, reference.bob, body), settings),
                        note="context: the XML work any message costs",
                    )
                )
                rows.append(
                    Row(
                        MECHANISM,
                        AUTH_VARIANT,
                        size,
                        1,
                        measure(auth_core_op(stanza, auth, 1), settings),
                        note="compare with 'core seal+open, AES-128' (RSA-3072)",
                    )
                )
                rows.append(
                    Row(
                        MECHANISM,
                        AUTH_PLUGIN,
                        size,
                        1,
                        await ameasure(auth_pair.op(body), settings),
                        note="authenticated: True on both ends: HPKE-wraps for Bob's device "
                        "and Alice's own (2 <key/>); compare with 'plugin path, AES-128'",
                    )
                )
                for recipients in (1, 4):
                    pair = reference if recipients == 1 else four
                    outer = await pair.send_wire(body)
                    pair.receive_wire(outer)
                    await pair.flush()
                    core = seal(
                        stanza,
                        [
                            Recipient(
                                b.certificate.public_key(),
                                b.fingerprint if recipients > 1 else None,
                            )  # type: ignore[arg-type]
                            for b in identities.bobs[:recipients]
                        ],
                        timestamp=TimestampSource().next(),
                        pad_to=64,
                    )
                    wire.append(
                        {
                            "mechanism": MECHANISM,
                            "size": size,
                            "recipients": recipients,
                            "stanza_bytes": len(outer.encode("utf-8")),
                            "framed_bytes": framing.framed_stanza_bytes(
                                reference.alice, core, NS_OBJENC
                            ),
                            "payload_bytes": len(tostring(core).encode("utf-8")),
                            "note": (
                                f"RSA profile; stanza: as the plugin sends it ({recipients + 1} "
                                "<key/>: + the sender's own certificate), with EME, fallback "
                                f"body and <store/>; payload: the core <e2e/> with {recipients} "
                                "<key/>"
                            ),
                        }
                    )
                for recipients in (1, 4):
                    pair = auth_pair if recipients == 1 else auth_four
                    outer = await pair.send_wire(body)
                    pair.receive_wire(outer)
                    await pair.flush()
                    core = auth.seal(stanza, recipients)
                    wire.append(
                        {
                            "mechanism": AUTH_WIRE,
                            "size": size,
                            "recipients": recipients,
                            "stanza_bytes": len(outer.encode("utf-8")),
                            "framed_bytes": framing.framed_stanza_bytes(
                                reference.alice, core, NS_OBJENC
                            ),
                            "payload_bytes": len(tostring(core).encode("utf-8")),
                            "note": (
                                "authenticated profile; stanza: as the plugin sends it "
                                f"({recipients + 1} <key/>: + the sender's own device); "
                                f"payload: the core <e2e/> with {recipients} <key/>"
                            ),
                        }
                    )
                wire.append(
                    {
                        "mechanism": "plaintext",
                        "size": size,
                        "recipients": 1,
                        "stanza_bytes": len(plaintext_wire(reference.alice, body).encode("utf-8")),
                        "payload_bytes": length,
                        "note": "the chat message as slixmpp sends it; payload: the body text",
                    }
                )
                log(f"  {size}: done")
            # Several recipient devices: encrypt to 4, open on one.
            body = body_text(SIZES["2 KiB"])
            stanza = inner_stanza(reference.alice, body)
            others = [b.certificate.public_key() for b in identities.bobs[1:4]]
            rows.append(
                Row(
                    FLOOR,
                    "RSA-OAEP-3072 + AES-128-CBC + HMAC-SHA256, 4 recipient devices",
                    "2 KiB",
                    4,
                    measure(
                        floor_op(bob.private_key, bob_public, stanza, 16, others),  # type: ignore[arg-type]
                        settings,
                    ),
                    provides_floor=FLOOR_4,
                    note="the key wrapped 4 times, unwrapped once",
                )
            )
            rows.append(
                Row(
                    MECHANISM,
                    "core seal+open, AES-128, 4 recipient devices",
                    "2 KiB",
                    4,
                    measure(core_op(stanza, identities, AES_128_CBC, 4), settings),
                    floor_key=FLOOR_4,
                )
            )
            rows.append(
                Row(
                    MECHANISM,
                    "core seal+open, AES-128, RSA-2048 key",
                    "2 KiB",
                    1,
                    measure(core_op(stanza, identities, AES_128_CBC, 1, rsa_2048=True), settings),
                    note="context: key_size=2048, the smallest the plugin accepts",
                )
            )
            rows.append(
                Row(
                    MECHANISM,
                    "plugin path, AES-128, 4 recipient devices",
                    "2 KiB",
                    4,
                    await ameasure(four.op(body), settings),
                    floor_key=FLOOR_4,
                    note=f"{RSA_PLUGIN_NOTE}: 5 <key/>, Bob's 4 devices and Alice's own "
                    "certificate",
                )
            )
            rows.append(
                Row(
                    MECHANISM,
                    AUTH_VARIANT_4,
                    "2 KiB",
                    4,
                    measure(auth_core_op(stanza, auth, 4), settings),
                    note="sealed for 4 devices, opened on one",
                )
            )
            rows.append(
                Row(
                    MECHANISM,
                    AUTH_PLUGIN_4,
                    "2 KiB",
                    4,
                    await ameasure(auth_four.op(body), settings),
                    note="authenticated: True on both ends: 5 <key/>, Bob's 4 devices and "
                    "Alice's own",
                )
            )
        finally:
            for pair in (*pairs.values(), sqlite_pair, four, auth_pair, auth_four):
                await pair.close()
    return ObjencResults(rows, wire, inner_sizes)
