"""The post-quantum hybrid wrap and key rotation (issue 13), beside the
authenticated profile, in the same run as every other row.

* core, hybrid: :func:`seal_authenticated` with ``hybrid=True`` (HPKE AuthPSK,
  the PSK from an ML-KEM-768 encapsulation to each recipient device) +
  :func:`open_authenticated` on the first of Bob's devices, exactly as
  :func:`~.objenc_bench.auth_core_op` does for the authenticated profile (same
  stanza, same padding, same devices plus their ML-KEM keys); 1 and 4
  recipient devices, and 1 with a passphrase's ``second`` (32 fixed bytes:
  ``stretch_passphrase`` itself runs once per contact, not per stanza); each
  timed in alternating batches with ``auth_core_op`` on the same devices and
  stanza (:func:`measure_pair`), so hybrid / auth is a ratio of numbers taken
  side by side, not minutes apart on a machine whose load changes;
* wire bytes: the core ``<e2e/>`` with exactly N hybrid ``<key/>`` in the frame
  every mechanism gets (:func:`~.framing.framed_stanza_bytes`), and the stanza
  as the plugin sends it with the hybrid on (``set_hybrid``: Bob's devices and
  Alice's own, all hybrid);
* rotation: one :meth:`OwnDevice.rotate_now` that rotates (X25519 and ML-KEM-768
  key generation, encryption and ML-KEM certificates, SQLite writes) and one
  that only destroys a retired key (``secure_delete`` delete + WAL checkpoint),
  each on a fresh SQLite store in a temporary directory, with an injected clock
  moved forward; the median of N samples.
"""

from __future__ import annotations

import base64
import hashlib
import statistics
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding
from slixmpp import ClientXMPP
from slixmpp.xmlstream import tostring

from slixmpp_objenc.core import AES_128_CBC, TimestampSource
from slixmpp_objenc.core.auth_envelope import (
    HYBRID_CIPHER_ALGO,
    AuthRecipient,
    AuthSender,
    open_authenticated,
    seal_authenticated,
)
from slixmpp_objenc.core.constants import NS_OBJENC
from slixmpp_objenc.core.hybrid import with_kem_key
from slixmpp_objenc.core.identities import DeviceKeys
from slixmpp_objenc.core.rotation import RotationPolicy
from slixmpp_objenc.core.timestamps import utcnow
from slixmpp_objenc.keyring import Keyring
from slixmpp_objenc.store import SQLiteStorage

from . import framing
from .common import (
    ALICE,
    ALICE_FULL,
    BOB,
    BOB_FULL,
    HEADLINE_SIZE,
    SIZES,
    Measurement,
    Row,
    Settings,
    body_text,
)
from .objenc_bench import (
    AUTH_VARIANT,
    AUTH_VARIANT_4,
    MECHANISM,
    WRAP_CLOSE,
    WRAP_OPEN,
    AuthDevices,
    Identities,
    PluginPair,
    _client,
    auth_core_op,
    device_item,
    inner_stanza,
)

HYBRID_PROFILE = "hybrid (HPKE AuthPSK X25519 + ML-KEM-768, AES-256-GCM)"
HYBRID_VARIANT = f"core seal+open, authenticated profile, {HYBRID_PROFILE}"
HYBRID_VARIANT_4 = f"{HYBRID_VARIANT}, 4 recipient devices"
HYBRID_VARIANT_SECOND = f"{HYBRID_VARIANT}, passphrase (second: 32 bytes)"
HYBRID_WIRE = f"{MECHANISM}, authenticated profile, hybrid"
SECOND = bytes(range(32))
"""A fixed ``second``: what ``stretch_passphrase`` returns is 32 bytes like these."""
HYBRID_ROWS: tuple[tuple[str, int, bytes, str], ...] = (
    (HYBRID_VARIANT, 1, b"", AUTH_VARIANT),
    (HYBRID_VARIANT_4, 4, b"", AUTH_VARIANT_4),
    (HYBRID_VARIANT_SECOND, 1, SECOND, AUTH_VARIANT),
)
"""Each hybrid row: variant, recipient devices, ``second``, its authenticated-profile row."""
WARM_UP = 5
"""Calls before each hybrid row is measured (first ML-KEM and AuthPSK calls are slower)."""
ROTATION_POLICY = RotationPolicy(rotate_every=timedelta(hours=1), retention=timedelta(hours=1))


# -- core ----------------------------------------------------------------------------


class HybridDevices(AuthDevices):
    """:class:`AuthDevices` whose recipient devices (Bob's) also hold an ML-KEM-768
    key with its certificate, issued by their identity as the plugin does."""

    def __init__(self, devices: int = 4) -> None:
        super().__init__(devices)
        self.kem: list[tuple[MLKEM768PrivateKey, bytes]] = []
        self.with_kem: list[DeviceKeys] = []
        for bob in self.bobs:
            device = with_kem_key(bob)
            assert device.kem_key is not None and device.kem_certificate is not None
            kem_id = hashlib.sha256(device.kem_certificate.public_bytes(Encoding.DER)).digest()
            self.kem.append((device.kem_key, kem_id))
            self.with_kem.append(device)

    def seal_hybrid(self, stanza: bytes, recipients: int, second: bytes = b"") -> ET.Element:
        """:meth:`AuthDevices.seal` with ``hybrid=True`` (every ``<key/>`` hybrid)."""
        sender = AuthSender(self.alice.encryption_key, *self.ids(self.alice))
        targets = [
            AuthRecipient(*self.ids(b), b.encryption_key.public_key(), kem_id, key.public_key())
            for b, (key, kem_id) in zip(self.bobs[:recipients], self.kem, strict=False)
        ]
        return seal_authenticated(
            stanza,
            sender,
            targets,
            timestamp=TimestampSource().next(),
            pad_to=64,
            hybrid=True,
            second=second,
        )


def hybrid_core_op(
    stanza: bytes, devices: HybridDevices, recipients: int, second: bytes = b""
) -> Callable[[], None]:
    """:func:`~.objenc_bench.auth_core_op` with the hybrid: seal for ``recipients``
    devices, open on the first of Bob's with its ML-KEM key (and ``second``)."""
    me = devices.bobs[0]
    kem_key, kem_id = devices.kem[0]
    own = AuthSender(me.encryption_key, *devices.ids(me), kem_key, kem_id)
    alice_key = devices.alice.encryption_key.public_key()
    alice_ids = devices.ids(devices.alice)

    def resolve(jid: str, identity: bytes, encryption: bytes) -> Any:
        return alice_key if (jid, identity, encryption) == (ALICE, *alice_ids) else None

    def op() -> None:
        e2e = devices.seal_hybrid(stanza, recipients, second)
        opened = open_authenticated(e2e, own, resolve, ALICE, second=second, require_hybrid=True)
        if opened.stanza_bytes != stanza or not opened.hybrid:
            raise AssertionError("hybrid round trip failed")

    return op


def measure_pair(
    first: Callable[[], None], second: Callable[[], None], settings: Settings
) -> tuple[Measurement, Measurement, list[float]]:
    """Two operations timed in alternating batches (the order swapped every
    repetition), each calibrated to ``settings.target_seconds`` per batch, and
    per repetition the ratio of their times (``first`` over ``second``): the
    median of those ratios does not move with load that comes and goes, as a
    ratio of rows timed minutes apart would."""
    iterations = []
    for op in (first, second):
        for _ in range(WARM_UP):
            op()
        start = time.perf_counter()
        for _ in range(WARM_UP):
            op()
        one = (time.perf_counter() - start) / WARM_UP
        iterations.append(max(settings.min_iterations, int(settings.target_seconds / one)))
    rates: list[list[float]] = [[], []]
    for repetition in range(settings.repeats):
        order = (0, 1) if repetition % 2 == 0 else (1, 0)
        for i in order:
            op = (first, second)[i]
            start = time.perf_counter()
            for _ in range(iterations[i]):
                op()
            rates[i].append(iterations[i] / (time.perf_counter() - start))
    a, b = (Measurement(statistics.median(rates[i]), iterations[i], rates[i]) for i in (0, 1))
    return a, b, [theirs / mine for mine, theirs in zip(*rates, strict=True)]


def _note(hybrid: Measurement, auth: Measurement, ratio: float, reference: Row | None) -> str:
    own = (
        f"; '{reference.variant}' (section 1's row): {reference.measurement.ms_per_op:.3f} ms"
        if reference is not None and reference.measurement
        else ""
    )
    return (
        f"{ratio:.2f}x the time of the authenticated profile without the hybrid (median of "
        f"{len(hybrid.repeats)} alternating batches; {hybrid.ms_per_op:.3f} vs "
        f"{auth.ms_per_op:.3f} ms; best batches "
        f"{max(auth.repeats) / max(hybrid.repeats):.2f}x){own}"
    )


# -- plugin path, for the stanza as the plugin sends it ------------------------------


def kem_device_item(keys: DeviceKeys) -> ET.Element:
    """:func:`~.objenc_bench.device_item` with the ``<kem/>`` certificate (PROTOCOL.md
    13.6), as a device that can receive the hybrid publishes it."""
    item = device_item(keys)
    if keys.kem_certificate is not None:
        device = item.find(f"{{{NS_OBJENC}}}device")
        assert device is not None
        der = keys.kem_certificate.public_bytes(Encoding.DER)
        ET.SubElement(device, f"{{{NS_OBJENC}}}kem").text = base64.b64encode(der).decode()
    return item


async def hybrid_pair(
    identities: Identities, others: list[DeviceKeys], bob_devices: int
) -> PluginPair:
    """Both plugins with ``authenticated: True``, each holding the other's devices
    with their ML-KEM certificates as PEP would give them, Alice with
    ``set_hybrid(BOB)``; checked: one ``<e2e/>`` with ``bob_devices + 1`` hybrid
    ``<key/>`` (Bob's devices and Alice's own), opened by Bob as hybrid."""
    cipher = AES_128_CBC.name
    alice = _client(ALICE_FULL, identities.alice, cipher, None, authenticated=True)
    bob = _client(BOB_FULL, identities.bobs[0], cipher, None, authenticated=True)
    alice.client_roster.add(BOB, afrom=True, ato=True)  # contacts: no introduction
    bob.client_roster.add(ALICE, afrom=True, ato=True)
    pair = PluginPair(alice, bob)
    await pair.a.ready()
    await pair.b.ready()
    bob_device, alice_device = pair.b.keyring.device.keys, pair.a.keyring.device.keys
    if bob_device is None or alice_device is None or bob_device.kem_certificate is None:
        raise AssertionError("authenticated: True made no device keys with an ML-KEM key")
    items = [kem_device_item(d) for d in (bob_device, *others[: bob_devices - 1])]
    await pair.a.directory.reconcile(BOB, items, complete=True)
    await pair.b.directory.reconcile(ALICE, [kem_device_item(alice_device)], complete=True)
    await pair.a.set_hybrid(BOB)
    await pair.flush()
    wire = await pair.send_wire("profile check")
    outer = ET.fromstring(WRAP_OPEN + wire + WRAP_CLOSE)[0]
    algos = [k.get("cipher-algo") for k in outer.iter(f"{{{NS_OBJENC}}}key")]
    if len(outer.findall(f"{{{NS_OBJENC}}}e2e")) != 1 or algos != [HYBRID_CIPHER_ALGO] * (
        bob_devices + 1
    ):
        raise AssertionError(f"expected {bob_devices + 1} hybrid <key/>, got {algos}")
    info = pair.b.encryption_info(pair.receive_wire(wire))
    if info is None or not info.authenticated or not info.hybrid:
        raise AssertionError(f"Bob did not open it as the hybrid: {info}")
    await pair.flush()
    return pair


def introduction_bytes(wire: str) -> int:
    """Bytes of the ``<device/>`` introduction in a stanza as the plugin sends it (0
    if none): Alice's identity and encryption certificates, sent to a contact that
    cannot read her node, which two unsubscribed bench clients are (the same for
    both profiles)."""
    start = wire.find("<device>")
    end = wire.find("</device>", start)
    return 0 if start < 0 or end < 0 else len(wire[start : end + len("</device>")].encode())


# -- rotation ------------------------------------------------------------------------


@dataclass
class RotationCosts:
    """Seconds per :meth:`OwnDevice.rotate_now`, one sample per fresh store."""

    rotate: list[float] = field(default_factory=list)
    destroy: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        def summary(samples: list[float]) -> dict[str, Any]:
            ms = [1000 * s for s in samples]
            return {
                "median_ms": statistics.median(ms) if ms else None,
                "min_ms": min(ms, default=None),
                "max_ms": max(ms, default=None),
                "samples_ms": ms,
            }

        return {
            "samples": len(self.rotate),
            "policy": {
                "rotate_every_s": ROTATION_POLICY.rotate_every.total_seconds(),
                "retention_s": ROTATION_POLICY.retention.total_seconds(),
            },
            "rotate": summary(self.rotate),
            "destroy": summary(self.destroy),
        }


async def rotation_sample(path: Path, costs: RotationCosts) -> None:
    """One store: the device made at t0; at t0+1h the timed rotation (nothing to
    destroy yet); at t0+1h30 a relabel, which replaces the key early, untimed; at
    t0+2h the timed destruction of the first key, retired an hour ago, with no
    rotation due (the current key is 30 minutes old)."""
    now = [utcnow()]
    storage = SQLiteStorage(path)
    await storage.open()
    try:
        keyring = Keyring(storage, lambda: now[0])
        keyring.device.policy = ROTATION_POLICY
        await keyring.load()
        first = await keyring.device.ensure(ALICE)
        now[0] += timedelta(hours=1)
        start = time.perf_counter()
        outcome = await keyring.device.rotate_now()
        costs.rotate.append(time.perf_counter() - start)
        if outcome is None or outcome.rotated is None or outcome.destroyed:
            raise AssertionError(f"expected a rotation and nothing destroyed: {outcome}")
        now[0] += timedelta(minutes=30)
        keyring.device.label = "bench"
        outcome = await keyring.device.rotate_now()
        if outcome is None or outcome.rotated is None or outcome.destroyed:
            raise AssertionError(f"expected the relabel to rotate: {outcome}")
        now[0] += timedelta(minutes=30)
        start = time.perf_counter()
        outcome = await keyring.device.rotate_now()
        costs.destroy.append(time.perf_counter() - start)
        if (
            outcome is None
            or outcome.rotated
            or outcome.destroyed != (first.encryption_fingerprint,)
        ):
            raise AssertionError(f"expected the first key destroyed, no rotation: {outcome}")
    finally:
        await storage.close()


async def rotation_costs(samples: int) -> RotationCosts:
    costs = RotationCosts()
    with tempfile.TemporaryDirectory(prefix="objenc-bench-rotation-") as tmp:
        for i in range(samples):
            await rotation_sample(Path(tmp) / f"store-{i}.sqlite", costs)
    return costs


# -- the section ---------------------------------------------------------------------


@dataclass
class HybridResults:
    rows: list[Row]
    wire: list[dict[str, Any]]
    paired: list[dict[str, Any]]
    """Per hybrid row: it and the authenticated profile, timed alternately."""
    rotation: dict[str, Any]


def _find(rows: list[Row], variant: str, size: str) -> Row | None:
    return next((r for r in rows if r.variant == variant and r.size == size), None)


async def run(
    settings: Settings,
    identities: Identities,
    client: ClientXMPP,
    reference_rows: list[Row],
    log: Callable[[str], None],
) -> HybridResults:
    """``client``: Alice's, for S' and the frame; ``reference_rows``: this run's
    rows so far (section 1's authenticated-profile rows are quoted in the notes)."""
    rows: list[Row] = []
    wire: list[dict[str, Any]] = []
    paired: list[dict[str, Any]] = []
    devices = HybridDevices()
    # Each hybrid row and its authenticated-profile counterpart in alternating
    # batches of an eighth of the other rows' calibration time, twice their
    # repetitions plus one: about 1.5 s per row in a full run, 0.15 s quick.
    light = Settings(
        target_seconds=settings.target_seconds / 8,
        repeats=2 * settings.repeats + 1,
        min_iterations=settings.min_iterations,
    )
    stanza = inner_stanza(client, body_text(SIZES[HEADLINE_SIZE]))
    for variant, recipients, second, auth_variant in HYBRID_ROWS:
        hybrid, auth, ratios = measure_pair(
            hybrid_core_op(stanza, devices, recipients, second),
            auth_core_op(stanza, devices, recipients),
            light,
        )
        reference = _find(reference_rows, auth_variant, HEADLINE_SIZE)
        rows.append(
            Row(
                MECHANISM,
                variant,
                HEADLINE_SIZE,
                recipients,
                hybrid,
                note=_note(hybrid, auth, statistics.median(ratios), reference),
            )
        )
        paired.append(
            {
                "variant": variant,
                "recipients": recipients,
                "auth_variant": auth_variant,
                "hybrid": hybrid.as_dict(),
                "auth": auth.as_dict(),
                "hybrid_over_auth": statistics.median(ratios),
                "hybrid_over_auth_per_batch": ratios,
                "hybrid_over_auth_best": max(auth.repeats) / max(hybrid.repeats),
            }
        )
        log(f"  {variant}: {hybrid.ops_per_s:,.0f}/s, {rows[-1].note}")

    pairs = {n: await hybrid_pair(identities, devices.with_kem[1:], n) for n in (1, 4)}
    try:
        for size, length in SIZES.items():
            body = body_text(length)
            stanza = inner_stanza(client, body)
            for recipients, pair in pairs.items():
                outer = await pair.send_wire(body)
                pair.receive_wire(outer)
                await pair.flush()
                core = devices.seal_hybrid(stanza, recipients)
                wire.append(
                    {
                        "mechanism": HYBRID_WIRE,
                        "size": size,
                        "recipients": recipients,
                        "stanza_bytes": len(outer.encode("utf-8")),
                        "framed_bytes": framing.framed_stanza_bytes(client, core, NS_OBJENC),
                        "payload_bytes": len(str(tostring(core)).encode("utf-8")),
                        "introduction_bytes": introduction_bytes(outer),
                        "note": (
                            "authenticated profile with the hybrid (set_hybrid); stanza: as "
                            f"the plugin sends it ({recipients + 1} hybrid <key/>: + the "
                            f"sender's own device); payload: the core <e2e/> with {recipients} "
                            "<key/>"
                        ),
                    }
                )
    finally:
        for pair in pairs.values():
            await pair.close()
    one = next(w for w in wire if w["size"] == "100 B" and w["recipients"] == 1)
    four = next(w for w in wire if w["size"] == "100 B" and w["recipients"] == 4)
    log(
        f"  hybrid wire, 100 B: {one['framed_bytes']:,} B (1 device), "
        f"{four['framed_bytes']:,} B (4), {(four['framed_bytes'] - one['framed_bytes']) / 3:,.0f} "
        "B per further device"
    )

    samples = 5 if settings.quick else 15
    costs = await rotation_costs(samples)
    auth_ms = paired[0]["auth"]["ms_per_op"]
    rotation = costs.as_dict() | {"auth_seal_open_ms": auth_ms}
    for key in ("rotate", "destroy"):
        rotation[key]["x_auth_seal_open"] = rotation[key]["median_ms"] / auth_ms
    log(
        f"  rotate_now, median of {samples}: rotating {rotation['rotate']['median_ms']:.2f} ms "
        f"({rotation['rotate']['x_auth_seal_open']:.2f}x one authenticated seal+open, "
        f"{auth_ms:.3f} ms), destroying {rotation['destroy']['median_ms']:.2f} ms "
        f"({rotation['destroy']['x_auth_seal_open']:.2f}x)"
    )
    return HybridResults(rows, wire, paired, rotation)
