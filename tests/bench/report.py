"""RESULTS.md, results.json and throughput.png from one run's numbers."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .common import HEADLINE_SIZE, SIZES, Row, Settings, Unavailable
from .objenc_bench import (
    AUTH_PLUGIN,
    AUTH_PLUGIN_4,
    AUTH_VARIANT,
    AUTH_VARIANT_4,
    AUTH_WIRE,
    FLOOR_4,
    MECHANISM,
)
from .prosody_bench import (
    BODY_LENGTH,
    ENCRYPTED,
    ENCRYPTED_AUTH,
    FIRST_CONTACT_WAIT,
    PLAINTEXT,
)

FLOOR_128 = "RSA-OAEP-3072 + AES-128-CBC + HMAC-SHA256"
PLUGIN_128 = "plugin path, AES-128"
"""The RSA profile's plugin path (``authenticated: False`` on both ends)."""
PLUGIN_128_4 = f"{PLUGIN_128}, 4 recipient devices"
TWOMEMO_XML = "twomemo (OMEMO 2, urn:xmpp:omemo:2): encrypt + XML + decrypt"
TWOMEMO_XML_4 = f"{TWOMEMO_XML}, 4 recipient devices"
TWOMEMO_WIRE = "OMEMO twomemo (OMEMO 2, urn:xmpp:omemo:2)"
WIRE_SIZE = "100 B"
"""The message size the wire targets are judged at."""


@dataclass
class Results:
    started: str
    runtime_s: float
    section_times: dict[str, float]
    quick: bool
    settings: Settings
    machine: dict[str, Any]
    rows: list[Row]
    wire: list[dict[str, Any]]
    streams: list[dict[str, Any]]
    first_contact: dict[str, Any]
    profiles: dict[str, Any]
    extra: dict[str, Any]
    unavailable: list[Unavailable]
    targets: dict[str, float]
    verdicts: list[dict[str, Any]] = field(default_factory=list)

    # -- lookups ---------------------------------------------------------------

    def row(
        self, variant: str, size: str = HEADLINE_SIZE, recipients: int | None = None
    ) -> Row | None:
        for row in self.rows:
            if (
                row.variant == variant
                and row.size == size
                and (recipients is None or row.recipients == recipients)
            ):
                return row
        return None

    def ops(self, variant: str, size: str = HEADLINE_SIZE) -> float | None:
        row = self.row(variant, size)
        return row.measurement.ops_per_s if row and row.measurement else None

    def floor_of(self, row: Row) -> Row | None:
        """The row's own floor; peers (OMEMO, OpenPGP) are held against the AES-128 floor
        for the same size and number of recipient devices."""
        key = row.floor_key
        if key is None:
            if row.provides_floor or not row.mechanism.startswith(("OMEMO", "OpenPGP")):
                return None
            key = f"AES-128|{row.size}" if row.recipients == 1 else FLOOR_4
        return next((r for r in self.rows if r.provides_floor == key), None)

    def ratio(self, row: Row) -> float | None:
        """The row's cost in multiples of its floor's (floor ops/s / row ops/s)."""
        floor = self.floor_of(row)
        if floor is None or not floor.measurement or not row.measurement:
            return None
        return floor.measurement.ops_per_s / row.measurement.ops_per_s

    def stream(self, mode: str) -> dict[str, Any] | None:
        return next((s for s in self.streams if s["mode"] == mode), None)

    def best(
        self, mechanism_prefix: str, size: str = HEADLINE_SIZE, recipients: int = 1
    ) -> Row | None:
        candidates = [
            r
            for r in self.rows
            if r.mechanism.startswith(mechanism_prefix)
            and r.size == size
            and r.recipients == recipients
            and r.measurement
            and "no XML" not in r.variant  # compare like with like: XML on both sides
        ]
        return max(candidates, key=lambda r: r.measurement.ops_per_s, default=None)  # type: ignore[union-attr]


# -- formatting -------------------------------------------------------------------


def n(value: float | None, digits: int = 3) -> str:
    """Three significant digits, thousands separated; '-' for nothing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(0, digits - 1 - magnitude)
    return f"{round(value, decimals):,.{decimals}f}"


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} %"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return [*lines, ""]


def verdict(ok: bool | None) -> str:
    return {True: "**met**", False: "**missed**", None: "not measured"}[ok]


# -- targets --------------------------------------------------------------------------


def evaluate_targets(r: Results) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    limit = r.targets["plugin_vs_floor"]
    for cipher in ("AES-128", "AES-256"):
        row = r.row(f"plugin path, {cipher}")
        ratio = r.ratio(row) if row else None
        out.append(
            {
                "target": (
                    f"plugin path at most {limit}x the primitive floor, {HEADLINE_SIZE}, {cipher}"
                ),
                "measured": f"{n(ratio)}x" if ratio else "-",
                "value": ratio,
                "met": None if ratio is None else ratio <= limit,
            }
        )
    plain, enc = r.stream(PLAINTEXT), r.stream(ENCRYPTED)
    if plain and enc and plain["messages_per_s"]:
        ratio = enc["messages_per_s"] / plain["messages_per_s"]
        out.append(
            {
                "target": (
                    "encrypted throughput through Prosody at least "
                    f"{r.targets['throughput_vs_plaintext']}x plaintext (RSA profile)"
                ),
                "measured": (
                    f"{n(ratio)}x ({n(enc['messages_per_s'])} vs {n(plain['messages_per_s'])} "
                    "msg/s)"
                ),
                "value": ratio,
                "met": ratio >= r.targets["throughput_vs_plaintext"],
            }
        )
    else:
        out.append(
            {
                "target": "encrypted throughput through Prosody (RSA profile)",
                "measured": "-",
                "value": None,
                "met": None,
            }
        )
    for recipients in (1, 4):
        variant = PLUGIN_128 if recipients == 1 else PLUGIN_128_4
        ours = r.row(variant, recipients=recipients)
        core = r.row(
            "core seal+open, AES-128"
            if recipients == 1
            else "core seal+open, AES-128, 4 recipient devices",
            recipients=recipients,
        )
        for peer in ("OMEMO", "OpenPGP"):
            theirs = r.best(peer, recipients=recipients)
            if not (ours and ours.measurement and theirs and theirs.measurement):
                out.append(
                    {
                        "target": f"ahead of {peer}, {recipients} device(s)",
                        "measured": "-",
                        "value": None,
                        "met": None,
                    }
                )
                continue
            mine = ours.measurement.ops_per_s
            other = theirs.measurement.ops_per_s
            core_text = (
                f"; core alone {n(core.measurement.ops_per_s)}/s"
                if core and core.measurement
                else ""
            )
            out.append(
                {
                    "target": (
                        f"ahead of {peer} in messages/s, {recipients} "
                        f"recipient device{'s' if recipients > 1 else ''}, {HEADLINE_SIZE} "
                        "(RSA profile)"
                    ),
                    "measured": (
                        f"plugin path {n(mine)}/s vs {theirs.variant} {n(other)}/s "
                        f"({n(mine / other)}x){core_text}"
                    ),
                    "value": mine / other,
                    "met": mine > other,
                }
            )
    from .hybrid_report import hybrid_targets  # it imports this module's helpers
    from .objects_report import objects_targets  # likewise

    return out + auth_targets(r) + hybrid_targets(r) + objects_targets(r)


def _unmeasured(target: str) -> dict[str, Any]:
    return {"target": target, "measured": "-", "value": None, "met": None}


def _ops(row: Row | None) -> float | None:
    return row.measurement.ops_per_s if row and row.measurement else None


def auth_targets(r: Results) -> list[dict[str, Any]]:
    """The authenticated profile's targets (issue 12), each a ratio measured in this
    run: against the RSA profile's plugin path, OMEMO 2, plaintext, OMEMO 2's bytes."""
    out: list[dict[str, Any]] = []
    auth, rsa = _ops(r.row(AUTH_PLUGIN, recipients=1)), _ops(r.row(PLUGIN_128, recipients=1))
    for key, word in (
        ("auth_vs_rsa_plugin", "at least"),
        ("auth_vs_rsa_plugin_stretch", "stretch:"),
    ):
        limit = r.targets.get(key)
        target = (
            f"plugin path, authenticated profile, {HEADLINE_SIZE}, 1 device: {word} {limit}x "
            "the RSA-3072 plugin path's messages/s"
        )
        if limit is None or not (auth and rsa):
            out.append(_unmeasured(target))
            continue
        out.append(
            {
                "target": target,
                "measured": (
                    f"{n(auth / rsa)}x ({n(1000 / auth)} ms vs {n(1000 / rsa)} ms per seal+open)"
                ),
                "value": auth / rsa,
                "met": auth / rsa >= limit,
            }
        )
    for recipients, ours_variant, theirs_variant in (
        (1, AUTH_PLUGIN, TWOMEMO_XML),
        (4, AUTH_PLUGIN_4, TWOMEMO_XML_4),
    ):
        devices = f"{recipients} recipient device{'s' if recipients > 1 else ''}"
        target = (
            f"plugin path, authenticated profile, {HEADLINE_SIZE}: ahead of OMEMO 2 (twomemo), "
            f"{devices}"
        )
        ours = _ops(r.row(ours_variant, recipients=recipients))
        theirs = _ops(r.row(theirs_variant, recipients=recipients))
        if not (ours and theirs):
            out.append(_unmeasured(target))
            continue
        core = _ops(r.row(AUTH_VARIANT if recipients == 1 else AUTH_VARIANT_4))
        core_text = f"; core alone {n(core)}/s" if core else ""
        out.append(
            {
                "target": target,
                "measured": (
                    f"{n(ours / theirs)}x ({n(ours)}/s = {n(1000 / ours)} ms vs twomemo "
                    f"{n(theirs)}/s = {n(1000 / theirs)} ms){core_text}"
                ),
                "value": ours / theirs,
                "met": ours > theirs,
            }
        )
    limit = r.targets.get("auth_throughput_vs_plaintext")
    target = (
        f"encrypted throughput through Prosody at least {limit}x plaintext (authenticated profile)"
    )
    plain, enc = r.stream(PLAINTEXT), r.stream(ENCRYPTED_AUTH)
    if limit is None or not (plain and enc and plain["messages_per_s"]):
        out.append(_unmeasured(target))
    else:
        ratio = enc["messages_per_s"] / plain["messages_per_s"]
        rsa_stream = r.stream(ENCRYPTED)
        rsa_text = (
            f"; RSA profile {n(rsa_stream['messages_per_s'] / plain['messages_per_s'])}x"
            if rsa_stream
            else ""
        )
        out.append(
            {
                "target": target,
                "measured": (
                    f"{n(ratio)}x ({n(enc['messages_per_s'])} vs {n(plain['messages_per_s'])} "
                    f"msg/s){rsa_text}"
                ),
                "value": ratio,
                "met": ratio >= limit,
            }
        )
    for recipients in (1, 4):
        our_wire = wire_entry(r, AUTH_WIRE, WIRE_SIZE, recipients)
        their_wire = wire_entry(r, TWOMEMO_WIRE, WIRE_SIZE, recipients)
        devices = f"{recipients} recipient device{'s' if recipients > 1 else ''}"
        for how, key in (
            (f"the same frame, {recipients} <key/> each", "framed_bytes"),
            ("as the plugin sends it (+1 <key/>: the sender's own device)", "stanza_bytes"),
        ):
            target = (
                f"wire bytes, {WIRE_SIZE} message, {devices}, authenticated profile: "
                f"at most OMEMO 2's ({how})"
            )
            if not (our_wire and their_wire and key in our_wire):
                out.append(_unmeasured(target))
                continue
            mine, other = our_wire[key], their_wire["stanza_bytes"]
            rsa_wire = wire_entry(r, MECHANISM, WIRE_SIZE, recipients)
            rsa_text = f"; RSA profile {rsa_wire[key]:,} B" if rsa_wire and key in rsa_wire else ""
            out.append(
                {
                    "target": target,
                    "measured": (
                        f"{n(mine / other)}x ({mine:,} B vs OMEMO 2 {other:,} B{rsa_text})"
                    ),
                    "value": mine / other,
                    "met": mine <= other,
                }
            )
    return out


def wire_entry(r: Results, mechanism: str, size: str, recipients: int) -> dict[str, Any] | None:
    return next(
        (
            w
            for w in r.wire
            if w["mechanism"] == mechanism and w["size"] == size and w["recipients"] == recipients
        ),
        None,
    )


# -- markdown -------------------------------------------------------------------------


def shared_machine_warning(r: Results) -> list[str]:
    start = r.machine.get("other_cpu_busy_percent_at_start")
    end = r.extra.get("other_cpu_busy_percent_at_end")
    busy = [b for b in (start, end) if b is not None]
    if not busy or max(busy) < 15:
        return []
    return [
        f"> **The machine was shared.** Other processes kept {start} % of all "
        f"{r.machine['cores']} cores busy in the second before this run and {end} % in the "
        "second after it (measured from /proc/stat while the benchmark slept). They competed for "
        "the CPU during the run, so absolute rates are lower and repetitions spread wider than on "
        'a quiet machine (see "spread"). Medians damp it; ratios between rows measured close '
        "together are more trustworthy than absolute rates.",
        "",
    ]


def machine_section(r: Results) -> list[str]:
    m = r.machine
    rows = [
        ["CPU", f"{m['cpu_model']} ({m['cores']} cores, {m['usable_cores']} usable)"],
        ["memory", m["memory"]],
        [
            "load average (1/5/15 min) at start; at end",
            f"{m.get('load_average_at_start')}; {r.extra.get('load_average_at_end')}",
        ],
        [
            "CPU busy with other work, 1 s before; 1 s after",
            f"{m.get('other_cpu_busy_percent_at_start')} %; "
            f"{r.extra.get('other_cpu_busy_percent_at_end')} %",
        ],
        ["kernel", m["kernel"]],
        ["Python", m["python"]],
        ["OpenSSL used by `cryptography`", m["cryptography_openssl"]],
        ["OpenSSL of Python's `ssl` (TLS to Prosody)", m["python_ssl_openssl"]],
        ["gpg", m["gpg"]],
        ["Prosody (Debian package)", m["prosody"]],
    ]
    rows += [[f"`{k}`", v] for k, v in m["packages"].items()]
    return ["## Machine", "", *table(["", ""], rows)]


def headline_section(r: Results) -> list[str]:
    picks = [
        ("floor (cryptography only)", FLOOR_128),
        ("objenc core", "core seal+open, AES-128"),
        ("objenc plugin path (RSA profile)", PLUGIN_128),
        ("objenc plugin path, AES-256 (RSA profile)", "plugin path, AES-256"),
        ("objenc core, authenticated profile", AUTH_VARIANT),
        ("objenc plugin path, authenticated profile", AUTH_PLUGIN),
        ("OMEMO 2 (twomemo)", TWOMEMO_XML),
        ("OMEMO 0.3 (oldmemo)", "oldmemo (OMEMO 0.3, axolotl): encrypt + XML + decrypt"),
        ("OpenPGP, gpg ed25519/cv25519", "gpg ed25519/cv25519: sign+encrypt, decrypt+verify"),
        ("OpenPGP, gpg RSA-3072", "gpg RSA-3072: sign+encrypt, decrypt+verify"),
        ("OpenPGP, PGPy RSA-3072", "PGPy RSA-3072: sign+encrypt, decrypt+verify"),
    ]
    floor = r.ops(FLOOR_128)
    rows = []
    for name, variant in picks:
        row = r.row(variant, recipients=1)
        if row is None or row.measurement is None:
            rows.append([name, "not measured", "-", "-"])
            continue
        ops = row.measurement.ops_per_s
        rows.append(
            [name, n(ops), n(row.measurement.ms_per_op), f"{n(floor / ops)}x" if floor else "-"]
        )
    lines = [
        f"## Headline: a {HEADLINE_SIZE} chat message, one recipient device",
        "",
        'Seal + open, both ends in one process; "x floor" is how many times the cost of the bare '
        "`cryptography` calls (RSA-OAEP-3072 wrap + unwrap, AES-128-CBC, HMAC-SHA256).",
        "",
        *table(["", "messages/s", "ms each", "x floor"], rows),
    ]
    if r.streams:
        srows = []
        plain = r.stream(PLAINTEXT)
        for s in r.streams:
            ratio = (
                s["messages_per_s"] / plain["messages_per_s"]
                if plain and plain["messages_per_s"]
                else None
            )
            srows.append(
                [
                    s["mode"],
                    n(s["messages_per_s"]),
                    f"{n(ratio)}x" if ratio else "-",
                    n(s["latency_ms_p50"]),
                    n(s["latency_ms_p99"]),
                ]
            )
        lines += [
            f"Through Prosody on loopback ({r.settings.messages} "
            f"messages of {BODY_LENGTH} B, at most {r.settings.window} in flight):",
            "",
            *table(["mode", "messages/s", "x plaintext", "p50 ms", "p99 ms"], srows),
        ]
    return lines


def targets_section(r: Results) -> list[str]:
    rows = [[v["target"], v["measured"], verdict(v["met"])] for v in r.verdicts]
    return ["## Targets (reported, not asserted)", "", *table(["target", "measured", ""], rows)]


def per_stanza_section(r: Results) -> list[str]:
    lines = [
        "## 1. Per stanza: seal + open",
        "",
        "Operations per second, the median of "
        f"{r.settings.repeats} timed repetitions (each calibrated "
        f"to about {r.settings.target_seconds} s; "
        f"gpg and PGPy: {r.settings.slow_repeats}), one warm-up "
        'call first. "spread" is (max - min) / median '
        "of the repetitions. \"x floor\" is the floor's rate over the row's (the row's cost in "
        "floors): this project's rows against the floor of the same size and cipher, OMEMO and "
        "OpenPGP against the AES-128 floor of the same size and number of recipient devices.",
        "",
        "- **floor**: `cryptography` only, on the inner stanza "
        "bytes S': RSA-OAEP-SHA256 wrap + unwrap "
        "(3072), AES-CBC + PKCS#7 encrypt + decrypt, HMAC-SHA256 "
        "compute + verify. No XML, no base64.",
        "- **core**: `seal()` + `open_envelope()` on S' (element "
        "in, element out; one `<key/>`, 64-byte padding).",
        "- **plugin path**: build the `Message`, the plugin's `out` and `out_sce` filters "
        "(`outbound.plan`, `outbound.seal` -> `seal_stanza`), "
        "serialization exactly as slixmpp writes "
        "the socket, parse on the other side, `_build_stanza`, the plugin's `in` filter "
        "(`inbound.receive` -> `core.receive.decide`), read the body; both "
        "plugins' write-behind queues flushed "
        "inside the timed operation. The plugin also wraps the "
        "key for the sender's own certificate "
        "(2 `<key/>`), as it always does. In-memory store unless the row says SQLite. "
        "The RSA profile's rows (`plugin path, AES-...`) run both plugins with "
        "`authenticated: False`; the authenticated profile's rows with `authenticated: True` on "
        "both, each holding the other's device (Ed25519 identity + X25519 encryption "
        "certificate) as read from PEP.",
        "- **core, authenticated profile**: `seal_authenticated()` + `open_authenticated()` on "
        "S' (HPKE Auth wraps with DHKEM-X25519, AES-256-GCM content; 64-byte padding).",
        "- **OMEMO**: python-omemo `SessionManager`s in one process, "
        "session established beforehand; "
        "`encrypt` for Bob's device(s), the `<encrypted/>` element "
        "serialized to bytes and parsed back "
        "(`twomemo.etree`/`oldmemo.etree`, with their schema validation), "
        "`decrypt`. OMEMO 2 encrypts an "
        "XEP-0420 envelope around the body, OMEMO 0.3 the body text.",
        "- **OpenPGP**: XEP-0373 `<signcrypt/>` around the body; sign+encrypt then decrypt+verify, "
        "binary, uncompressed. gpg: one `gpg` process per call through python-gnupg.",
        "",
    ]
    inner = r.extra.get("inner_stanza_bytes", {})
    for size in SIZES:
        rows = []
        for row in r.rows:
            if row.size != size:
                continue
            m = row.measurement
            ratio = r.ratio(row)
            rows.append(
                [
                    row.mechanism,
                    row.variant,
                    str(row.recipients),
                    n(m.ops_per_s) if m else "-",
                    n(m.ms_per_op) if m else "-",
                    pct(100 * m.spread) if m else "-",
                    f"{n(ratio)}x" if ratio else "",
                    row.note,
                ]
            )
        title = f"### {size} body" + (f" (S' = {inner[size]} bytes)" if size in inner else "")
        lines += [
            title,
            "",
            *table(
                ["mechanism", "variant", "devices", "ops/s", "ms", "spread", "x floor", "note"],
                rows,
            ),
        ]
    spawn = r.extra.get("gpg_spawn_ms")
    if spawn:
        gpg_row = r.row("gpg ed25519/cv25519: sign+encrypt, decrypt+verify")
        per_op = gpg_row.measurement.ms_per_op if gpg_row and gpg_row.measurement else None
        start = spawn.get("gpg --version (process start)")
        lines += [
            "**gpg process cost.** "
            + "; ".join(f"`{k}`: {n(v)} ms" for k, v in spawn.items())
            + ". A seal + open is two `gpg` processes"
            + (
                f", so about {n(2 * start)} ms of the {n(per_op)} "
                "ms per message (ed25519) is starting "
                "processes; most of the rest is gpg's own start-up "
                "work (keyring, trust database) and the "
                "round trips to gpg-agent for the private-key operations."
                if start and per_op
                else "."
            ),
            "",
        ]
    pgpy = r.extra.get("pgpy_profile")
    if pgpy and pgpy.get("top_tottime"):
        first = pgpy["top_tottime"][0]
        lines += [
            "**PGPy.** One 2 KiB sign+encrypt+decrypt+verify under "
            f"cProfile: `{first['function']}` takes "
            f"{first['own_percent']:.0f} % of the time ({first['calls']} calls). PGPy rebuilds a "
            "`cryptography` private key from its numbers for every private-key operation, and "
            "`RSAPrivateNumbers.private_key()` validates the key "
            "(primality checks) each time; the RSA "
            "operations themselves are a few milliseconds.",
            "",
        ]
    return lines


def wire_section(r: Results) -> list[str]:
    lines = [
        "## 2. Bytes on the wire",
        "",
        "UTF-8 bytes as slixmpp writes them to the socket. **stanza**: the whole `<message/>` "
        "(addressing, id, `xml:lang`), for this project exactly "
        "as the plugin sends it; every other "
        "mechanism's payload is put in the same frame (XEP-0380 `<encryption/>`, the same fallback "
        "`<body/>`, `<store/>`), so the columns differ only by "
        "what each mechanism adds. **payload**: "
        "the encrypted element alone (`<e2e/>` with exactly N "
        "`<key/>`, `<encrypted/>`, `<openpgp/>`). "
        "The plugin's stanza carries one more `<key/>` than recipient devices: the sender's own "
        "certificate (its archive copy stays readable). **same frame**: this project's core "
        "`<e2e/>` with exactly N `<key/>` in the frame the other mechanisms get (for them it is "
        'their stanza): the like-for-like comparison (that frame carries `xml:lang="en"`, 14 '
        "bytes the plugin moves inside the `<e2e/>`, so the plugin's own stanza lacks them). No "
        "mechanism pads here except this project "
        "(64-byte classes); OMEMO 2 and OpenPGP are measured without XEP-0420/0373 `<rpad/>`.",
        "",
    ]
    for size in SIZES:
        groups: dict[str, dict[int, dict[str, Any]]] = {}
        for w in r.wire:
            if w["size"] == size:
                groups.setdefault(w["mechanism"], {})[w["recipients"]] = w
        plain = groups.get("plaintext", {}).get(1)
        rows = []
        for mechanism, by_n in groups.items():
            one, four = by_n.get(1), by_n.get(4)

            def cell(w: dict[str, Any] | None, key: str) -> str:
                return f"{w[key]:,}" if w and key in w else "-"

            growth = (
                f"{n(one['stanza_bytes'] / plain['stanza_bytes'])}x"
                if one and plain and "stanza_bytes" in one
                else "-"
            )
            pgp = ""
            if one and "binary_bytes" in one:
                pgp = f"binary {one['binary_bytes']:,} / armored {one['armored_bytes']:,}"
                if four:
                    pgp += f" (4: {four['binary_bytes']:,} / {four['armored_bytes']:,})"

            def framed(w: dict[str, Any] | None) -> str:
                return cell(w, "framed_bytes" if w and "framed_bytes" in w else "stanza_bytes")

            rows.append(
                [
                    mechanism,
                    cell(one, "stanza_bytes"),
                    framed(one),
                    cell(one, "payload_bytes"),
                    cell(four, "stanza_bytes"),
                    framed(four),
                    cell(four, "payload_bytes"),
                    growth,
                    pgp,
                ]
            )
        lines += [
            f"### {size} body",
            "",
            *table(
                [
                    "mechanism",
                    "stanza, 1 device",
                    "same frame, 1",
                    "payload, 1",
                    "stanza, 4 devices",
                    "same frame, 4",
                    "payload, 4",
                    "stanza / plaintext",
                    "OpenPGP message (1 recipient; 4)",
                ],
                rows,
            ),
        ]
    lines += [
        "Why this project's stanzas are larger: both profiles base64-encode "
        "S' inside `<plain/>` (step 5) "
        "and then the ciphertext again for `<data/>` (step 10), "
        "so the body grows by about 4/3 x 4/3 = "
        "1.78x before the XML. RSA profile: each RSA-3072 `<key/>` is 512 base64 "
        "characters (plus a 64-character "
        "`cert-sha256` when there are several). Authenticated profile: each `<key/>` carries "
        "two 64-character hex certificate ids, a 44-character `enc` and a 64-character wrapped "
        "key (about 330 bytes with its algorithm name), and `<data/>` names the sender's two "
        "certificates (128 hex characters).",
        "",
    ]
    return lines


def prosody_section(r: Results) -> list[str]:
    if not r.streams:
        return ["## 3. Through Prosody", "", "Not measured (see below).", ""]
    plain = r.stream(PLAINTEXT)
    rows = []
    for s in r.streams:
        ratio = (
            s["messages_per_s"] / plain["messages_per_s"]
            if plain and plain["messages_per_s"]
            else None
        )
        rows.append(
            [
                s["mode"],
                s.get("wire_profile", ""),
                f"{s['received']}/{s['messages']}",
                n(s["seconds"]),
                n(s["messages_per_s"]),
                f"{n(ratio)}x" if ratio else "-",
                n(s["latency_ms_p50"]),
                n(s["latency_ms_p99"]),
                n(s["client_cpu_ms_per_message"]),
                n(s["server_cpu_ms_per_message"]),
            ]
        )
    return [
        "## 3. Through Prosody on loopback",
        "",
        f"{r.settings.messages} chat messages (100-byte bodies) "
        "from Alice to Bob's bare JID through a "
        f"throwaway Prosody ({r.machine['prosody']}, TLS, MAM archiving "
        f"on), at most {r.settings.window} "
        "sent and not yet received. Both clients run in this process on one asyncio loop (so the "
        "sender's and the receiver's crypto share one core; Prosody has the other). Throughput: "
        "from the first `send_message` to the last message event. Latency: from `send_message` to "
        "Bob's `message` event (the send time travels in the body). Fresh accounts per mode; "
        "encrypted: plugins configured only with `authenticated` (False: the RSA profile, "
        "RSA-3072 keys; True: the authenticated profile, Ed25519/X25519 device keys; made in "
        "temporary data directories, SQLite store), mutual presence subscription, certificates "
        "found over PEP, one warm-up message before timing (how Bob received it: the "
        '"received as" column). CPU per message: this process '
        "(both clients) and the Prosody process. With a window of W messages in flight at R "
        "messages/s, a message waits about W/R behind the ones sent before it, so the latencies "
        "are mostly queueing; they compare the modes under the same load, they are not the "
        'latency of a lone message (for that see first contact\'s "next message" below).',
        "",
        *table(
            [
                "mode",
                "received as",
                "received",
                "s",
                "msg/s",
                "x plaintext",
                "p50 ms",
                "p99 ms",
                "client CPU ms/msg",
                "Prosody CPU ms/msg",
            ],
            rows,
        ),
    ]


def first_contact_section(r: Results) -> list[str]:
    fc = r.first_contact
    if not fc:
        return ["## 4. First contact", "", "Not measured (see below).", ""]
    lines = [
        "## 4. First contact",
        "",
        "Stanzas on Alice's and Bob's streams from Alice's first `send_message` to a new contact "
        "until Bob's `message` event, tapped as in `tests/integration/test_zero_config.py` (after "
        "encryption outbound, before decryption inbound). **stanzas**: the certificate fetch and "
        "its result, the message out and in; **other**: unrelated traffic that happened to fall "
        "in the same window (presence). **round trips**: Alice's iq requests answered before "
        "her message was written. Two scenarios, fresh accounts each:",
        "",
        "- **one-way**: Alice subscribed to Bob's presence and Bob accepted (PEP's `presence` "
        "access model lets her read his certificate); the message is the first stanza Alice "
        "addresses to Bob;",
        "- **mutual**: both subscribed. slixmpp sends a directed presence when it authorizes a "
        "subscription, the plugin encrypts directed presence, so discovery happens then, before "
        "any message.",
        "",
        "Each scenario runs with both plugins on the RSA profile (`authenticated: False`) and on "
        "the authenticated profile (`authenticated: True`). A message Bob has not received "
        f"after {n(FIRST_CONTACT_WAIT)} s is **lost** (with the reasons of Bob's "
        "`objenc_decryption_failed` events).",
        "",
    ]
    rows = []
    for report in fc.values():
        counts = "; ".join(
            f"{who}: " + ", ".join(f"{k} x{v}" for k, v in report.get(who, {}).items())
            for who in ("alice", "bob")
        )
        failures = ", ".join(report.get("bob_decryption_failures", []))
        lost = f"**lost** (Bob: {failures or 'nothing'})"
        rows.append(
            [
                report["scenario"].split(":")[0],
                report.get("received_as") or "-",
                str(report["stanzas"]),
                str(report.get("other_stanzas_in_window", 0)),
                str(report["round_trips_before_send"]),
                n(report["first_message_ms"]) if report["first_message_ms"] is not None else lost,
                n(report["second_message_ms"]) if report["second_message_ms"] is not None else lost,
                counts,
            ]
        )
    lines += table(
        [
            "scenario",
            "received as",
            "stanzas",
            "other",
            "round trips",
            "first msg ms",
            "next msg ms",
            "what",
        ],
        rows,
    )
    one_way = fc.get("one_way")
    if one_way:
        timeline = ", ".join(f"{t} ms {what}" for t, what in one_way.get("alice_timeline_ms", []))
        lines += [f"Alice's stream, one-way, from `send_message`: {timeline}.", ""]
    mutual = fc.get("mutual")
    if mutual and mutual.get("alice_during_subscription"):
        during = ", ".join(f"{k} x{v}" for k, v in mutual["alice_during_subscription"].items())
        lines += [f"Mutual: what Alice's stream carried while subscribing: {during}.", ""]
    return lines


def profile_block(title: str, summary: dict[str, Any]) -> list[str]:
    lines = [f"#### {title}", "", f"cProfile, {n(summary['total_s'])} s profiled in total.", ""]
    cats = [[k, f"{v:.1f} %"] for k, v in summary.get("categories", {}).items() if v >= 0.5]
    if cats:
        lines += table(["where", "share of profiled time"], cats)
    callers = summary.get("tostring_callers", [])
    if callers:
        lines += table(
            ["who calls slixmpp `tostring`", "calls", "share (cumulative)"],
            [[f"`{c['caller']}`", str(c["calls"]), f"{c['percent']:.1f} %"] for c in callers[:6]],
        )
    packages = summary.get("own_time_by_package", {})
    if packages:
        lines += table(
            ["own time by package", "share"],
            [[k, f"{v:.1f} %"] for k, v in packages.items() if v >= 0.5],
        )
    top = summary.get("top_tottime", [])
    if top:
        lines += table(
            ["function (own time)", "calls", "own", "cumulative"],
            [
                [
                    f"`{t['function']}`",
                    f"{t['calls']:,}",
                    f"{t['own_percent']:.1f} %",
                    f"{t['cumulative_percent']:.1f} %",
                ]
                for t in top[:10]
            ],
        )
    project = summary.get("project_cumtime", [])
    if project:
        lines += table(
            ["slixmpp_objenc function (cumulative)", "calls", "cumulative"],
            [
                [f"`{t['function']}`", f"{t['calls']:,}", f"{t['cumulative_percent']:.1f} %"]
                for t in project[:8]
            ],
        )
    return lines


def _verdict(r: Results, prefix: str, contains: str = "") -> dict[str, Any] | None:
    return next(
        (v for v in r.verdicts if v["target"].startswith(prefix) and contains in v["target"]),
        None,
    )


def _plugin_findings(r: Results) -> list[str]:
    verdict_128 = _verdict(r, "plugin path", "AES-128")
    costs = r.extra.get("direct_costs", {})
    head = costs.get(HEADLINE_SIZE)
    if not (verdict_128 and verdict_128["met"] is False and head):
        return []
    path = 1000 / (r.ops(PLUGIN_128) or 1000 / head["plugin_path_ms"])
    floor = 1000 / (r.ops(FLOOR_128) or 1000 / head["floor_ms"])
    core_ops = r.ops("core seal+open, AES-128")
    core = 1000 / core_ops if core_ops else floor
    outer, inner = head["tostring_outer_ms"], head["tostring_inner_ms"]
    serialization = outer + inner
    speedup = head["escape_slixmpp_ms"] / head["escape_replace_ms"]
    out = [
        f"**Plugin path vs floor ({HEADLINE_SIZE}): {n(verdict_128['value'])}x, target "
        f"{r.targets['plugin_vs_floor']}x.** Per message (table above) the plugin path costs "
        f"{n(path)} ms, the floor {n(floor)} ms (the RSA-3072 private-key unwrap alone: "
        f"{n(head['rsa_unwrap_ms'])} ms) and the core {n(core)} ms. The core adds about "
        f"{n(core - floor)} ms (base64 twice, building `<plain/>`, parsing it and the inner "
        f"stanza with defusedxml); the plugin glue about {n(path - core)} ms more. Timed one by "
        "one, without a profiler:",
        "",
        f"- slixmpp's `tostring()` of the sealed outer stanza ({n(head['outer_chars'])} "
        f"characters), when slixmpp writes it: {n(outer)} ms (the plugin's `_sealed` record "
        "is a snapshot of the children now, not a second serialization); S' "
        f"({n(head['inner_chars'])} characters, serialized by `seal_stanza`) costs {n(inner)} "
        "ms more. "
        f"Together {n(serialization)} ms = {pct(100 * serialization / path)} of the plugin path, "
        f"i.e. {n(serialization / floor)}x the floor on its own.",
        "- Why it is slow: `slixmpp.xmlstream.tostring.escape()` builds the text one character "
        'at a time (`"".join(escapes.get(c, c) for c in text)`). On this stanza\'s text it '
        f"takes {n(head['escape_slixmpp_ms'])} ms; chained `str.replace` takes "
        f"{n(head['escape_replace_ms'])} ms ({n(speedup)}x faster). Base64 never contains a "
        "character that needs escaping, and a sealed stanza is almost all base64.",
        f"- Parsing the wire stanza (expat): {n(head['parse_wire_ms'])} ms; the RSA wrap for "
        "the sender's own certificate (the second `<key/>`) about 0.1 ms.",
        "",
    ]
    # With every serialization escaping at str.replace speed (the escape is most of
    # tostring's time on base64-heavy stanzas).
    saved = (outer + inner) * (1 - 1 / speedup) if speedup > 1 else 0.0
    projected = path - saved
    out += [
        f"Estimate with the serialization fix below (escaping at `str.replace` "
        f"speed): about {n(projected)} ms per message, {n(projected / floor)}x the floor "
        f"(target {r.targets['plugin_vs_floor']}x). The rest is slixmpp stanza handling, "
        "`outbound.plan`'s certificate lookup, the replay guard and the write-behind queue.",
        "",
    ]
    big = costs.get("64 KiB")
    if big:
        big_share = 100 * (big["tostring_outer_ms"] + big["tostring_inner_ms"])
        big_share /= big["plugin_path_ms"]
        out += [
            f"At 64 KiB the same effect dominates: plugin path {n(big['plugin_path_ms'])} ms "
            f"against a floor of {n(big['floor_ms'])} ms; `tostring` of the outer stanza "
            f"{n(big['tostring_outer_ms'])} ms and of S' {n(big['tostring_inner_ms'])} ms "
            f"= {pct(big_share)} of it. (slixmpp pays the per-character escape on plaintext "
            'bodies too: see the "slixmpp plaintext" rows.)',
            "",
        ]
    return out


def _throughput_findings(r: Results) -> list[str]:
    verdict_t = _verdict(r, "encrypted throughput", "(RSA profile)")
    plain, enc = r.stream(PLAINTEXT), r.stream(ENCRYPTED)
    if not (verdict_t and verdict_t["met"] is False and plain and enc):
        return []
    head = r.extra.get("direct_costs", {}).get(HEADLINE_SIZE) or {}
    floor_ops = r.ops(FLOOR_128)
    rsa_ms = head.get("rsa_unwrap_ms") or (1000 / floor_ops if floor_ops else None)
    out = [
        f"**Throughput through Prosody, RSA profile: {n(verdict_t['value'])}x plaintext, target "
        f"{r.targets['throughput_vs_plaintext']}x.** Encrypted {n(enc['messages_per_s'])} msg/s "
        f"against {n(plain['messages_per_s'])}. The process running both clients spends "
        f"{n(enc['client_cpu_ms_per_message'])} ms of CPU per encrypted message against "
        f"{n(plain['client_cpu_ms_per_message'])} ms in the clear; Prosody "
        f"{n(enc['server_cpu_ms_per_message'])} ms against "
        f"{n(plain['server_cpu_ms_per_message'])} ms (the stanzas are larger).",
    ]
    if rsa_ms:
        ceiling = 1000 / rsa_ms
        share = ceiling / plain["messages_per_s"]
        target = r.targets["throughput_vs_plaintext"]
        out[-1] += (
            f" One RSA-3072 private-key operation takes {n(rsa_ms)} ms here, so one receiving "
            f"process cannot open more than about {n(ceiling)} stanzas per second even with no "
            f"other overhead at all: {n(share)}x the plaintext rate measured. "
            + (
                f"The {target}x target is out of reach for any design that spends one RSA-3072 "
                "private-key operation per stanza on this CPU; what the plugin can still win is "
                "the overhead on top of it."
                if share < target
                else f"That alone would still allow the {target}x target on this CPU; the rest "
                "of the gap is the overhead on top of it (the plugin path's XML and glue, which "
                "both clients pay on one core here)."
            )
        )
    out.append("")
    summary = r.profiles.get(f"Prosody run, {ENCRYPTED}")
    if summary:
        cats = ", ".join(
            f"{k} {v:.0f} %" for k, v in summary.get("categories", {}).items() if v >= 1
        )
        out += [
            f"The profiled encrypted run (below) splits the client side as: {cats}. cProfile "
            "charges every step of the per-character generator in `escape`, so it overstates "
            "serialization against the single C call of the RSA unwrap; the direct timings above "
            "are the unbiased numbers.",
            "",
        ]
    return out


def _peer_findings(r: Results) -> list[str]:
    out: list[str] = []
    for recipients in (1, 4):
        v = _verdict(r, "ahead of OMEMO", f"{recipients} recipient")
        omemo = r.best("OMEMO", recipients=recipients)
        core = r.row(
            "core seal+open, AES-128"
            if recipients == 1
            else "core seal+open, AES-128, 4 recipient devices",
            recipients=recipients,
        )
        if not (v and v["met"] is False and omemo and omemo.measurement):
            continue
        theirs = omemo.measurement.ops_per_s
        ours_core = core.measurement.ops_per_s if core and core.measurement else None
        devices = f"{recipients} device{'s' if recipients > 1 else ''}"
        if ours_core and ours_core > theirs:
            why = (
                f"This project's core for the same {devices} (`seal` + `open_envelope`, "
                f"{n(ours_core)}/s) is ahead of OMEMO's {n(theirs)}/s, so the gap is the plugin "
                f"glue above (with {recipients + 1} `<key/>` the sealed stanza is larger still), "
                "not the cryptography."
            )
        else:
            why = (
                f"Even this project's core ({n(ours_core)}/s) does not beat OMEMO's {n(theirs)}/s: "
                "once a session exists OMEMO spends only symmetric work per message (a KDF chain "
                "step, AES, HMAC; the Diffie-Hellman ratchet step comes when the other side "
                "answers), while every object-encrypted stanza needs an RSA-3072 private-key "
                "operation. Only smaller keys change that (see the RSA-2048 row)."
            )
        out += [f"**Behind OMEMO ({devices}): {v['measured']}.** {why}", ""]
    return out


def _lost_first_contact_findings(r: Results) -> list[str]:
    out = []
    for key, report in r.first_contact.items():
        if report.get("first_message_ms") is not None:
            continue
        failures = ", ".join(report.get("bob_decryption_failures", [])) or "no event"
        second = (
            "the next one arrived"
            if report.get("second_message_ms") is not None
            else "the next one was lost too"
        )
        out += [
            f"**First contact ({key}): Alice's first message never reached Bob's application** "
            f"(Bob's `objenc_decryption_failed`: {failures}; {second}). "
            + (
                "With a one-way subscription Bob is not subscribed to Alice's presence, so "
                "Prosody refuses him her certificate node (`presence` access model: "
                "`forbidden`); the authenticated profile cannot open a stanza without the "
                "sender device's certificate (HPKE Auth needs her X25519 key: PROTOCOL.md 13.7, "
                "'still unknown: undecryptable'), where the RSA profile delivers it "
                "unauthenticated."
                if key.startswith("one_way")
                else ""
            ),
            "",
        ]
    return out


def _first_contact_findings(r: Results) -> list[str]:
    fc = r.first_contact.get("one_way")
    if not fc or fc["first_message_ms"] is None or fc["first_message_ms"] <= 900:
        return []
    fetch = next((t for t, what in fc.get("alice_timeline_ms", []) if "fetch" in what), None)
    left = f"; the PEP fetch left her stream {n(fetch)} ms after `send_message`" if fetch else ""
    return [
        "**First contact stalls Alice's whole send queue for about a second** "
        f"({n(fc['first_message_ms'])} ms for the first message against "
        f"{n(fc['second_message_ms'])} ms for the next{left}). `outbound.plan` is an async "
        "`out` filter that awaits certificate discovery; slixmpp's `run_filters` handles its "
        "queue one stanza at a time and gives an async filter 1 s (`asyncio.wait(..., "
        "timeout=1)`) before moving it aside. The discovery iq is queued behind the very message "
        "waiting for it, so it only leaves after that second, and everything else Alice sends "
        "meanwhile waits too.",
        "",
    ]


def _race_findings(r: Results) -> list[str]:
    race = r.extra.get("flush_race")
    if not race:
        return []
    if not race.get("hangs"):
        return [
            "The write-behind race checked on every run (a write queued right after `flush()`) "
            "did not reproduce.",
            "",
        ]
    return [
        "**A write queued right after `flush()` is never written, and the next `flush()` or "
        "`close()` waits forever** (found while building this benchmark and checked live on "
        f"every run: {race['pending_writes']} write left pending). Reproduction: "
        f"`{race['reproduction']}`. `ObjEnc._persist` starts a writer only when no task flagged "
        "`_objenc_writer` is in `self._tasks`, but a writer that has just drained the queue stays "
        "in that set until its done-callback runs, after `flush()`'s waiter has resumed. The "
        "plugin-path rows here work around it by yielding once after each flush.",
        "",
    ]


def _auth_findings(r: Results) -> list[str]:
    """The authenticated profile: where its plugin path spends its time (always),
    and why a missed target is missed."""
    out: list[str] = []
    costs = r.extra.get("auth_direct_costs")
    auth, rsa = _ops(r.row(AUTH_PLUGIN, recipients=1)), _ops(r.row(PLUGIN_128, recipients=1))
    if costs:
        from .profiling import auth_breakdown

        parts = auth_breakdown(costs)
        total = sum(ms for _, ms in parts)
        phases = {k[len("phase: ") :]: v for k, v in costs.items() if k.startswith("phase: ")}
        head = f"**Authenticated profile, plugin path ({HEADLINE_SIZE}, 1 device)"
        if auth and rsa:
            head += f": {n(1000 / auth)} ms against the RSA profile's {n(1000 / rsa)} ms"
            head += f" ({n(auth / rsa)}x the rate)"
        out += [
            head + ".** Where one seal + open goes, timed piece by piece without a profiler "
            f"({n(total)} ms in all; one SealAuth {n(costs['hpke_seal_ms'])} ms, one OpenAuth "
            f"{n(costs['hpke_open_ms'])} ms; the core's seal + open for one device "
            f"{n(costs['core_ms'])} ms; slixmpp's plaintext path {n(costs['plaintext_path_ms'])} "
            "ms):",
            "",
            *table(
                ["work", "ms", "share"],
                [[name, n(ms), pct(100 * ms / total)] for name, ms in parts],
            ),
        ]
        if phases:
            phase_total = sum(phases.values())
            out += [
                "The same path phase by phase (`perf_counter` around each step):",
                "",
                *table(
                    ["phase", "ms", "share"],
                    [[name, n(ms), pct(100 * ms / phase_total)] for name, ms in phases.items()],
                ),
            ]
        out += [
            "HPKE is the cryptography's whole cost (X25519 in OpenSSL, the key schedule in "
            "pyhpke's Python); AES-GCM on a few KiB is noise. Two wraps per message: the plugin "
            "also seals for the sender's own device. The rest is XML: slixmpp's per-character "
            "`escape` in `tostring` (S' and the base64-heavy sealed stanza), and the plugin's "
            "own Python around it.",
            "",
        ]
        target = _verdict(r, "plugin path, authenticated profile", "at least")
        rsa_core = _ops(r.row("core seal+open, AES-128", recipients=1))
        auth_core = _ops(r.row(AUTH_VARIANT, recipients=1))
        floor = r.ops(FLOOR_128)
        crypto = 2 * costs["hpke_seal_ms"] + costs["hpke_open_ms"] + costs["aes_gcm_ms"]
        if target and target["met"] is False and auth and rsa and floor and crypto:
            limit = r.targets.get("auth_vs_rsa_plugin", 2.0)
            shared = 1000 / auth - crypto
            core_text = (
                f" The cores alone (one `<key/>` each, no sender's copy): {n(1000 / rsa_core)} ms "
                f"against {n(1000 / auth_core)} ms, {n(auth_core / rsa_core)}x."
                if rsa_core and auth_core
                else ""
            )
            out += [
                f"**Why {limit}x the RSA plugin path is out of reach by cutting overhead.** Both "
                "profiles pay about the same XML and glue per message (here the authenticated "
                f"path less its cryptography: {n(shared)} ms); only the cryptography differs: the "
                f"RSA floor {n(1000 / floor)} ms (one wrap, the unwrap, AES-CBC, HMAC; the "
                "sender's copy adds a cheap public-key wrap) against the authenticated path's "
                f"two SealAuth + one OpenAuth + AES-GCM, {n(crypto)} ms. With a shared part S "
                "the ratio is about (S + RSA) / (S + HPKE): every cut in S raises it, but never "
                f"past {n(1000 / floor / crypto)}x, its value at S = 0.{core_text} Reaching "
                f"{limit}x needs cheaper wraps too: pyhpke's Python key schedule is most of a "
                f"SealAuth ({n(costs['hpke_seal_ms'])} ms), and the sender's own copy costs a "
                "second one per message.",
                "",
            ]
    missed = [v for v in r.verdicts if v["target"].startswith("wire bytes") and v["met"] is False]
    one, four = (wire_entry(r, AUTH_WIRE, WIRE_SIZE, k) for k in (1, 4))
    omemo_one, omemo_four = (wire_entry(r, TWOMEMO_WIRE, WIRE_SIZE, k) for k in (1, 4))
    if missed and one and four and omemo_one and omemo_four:
        ours_key = (four["payload_bytes"] - one["payload_bytes"]) / 3
        their_key = (omemo_four["payload_bytes"] - omemo_one["payload_bytes"]) / 3
        out += [
            f"**Wire bytes, {WIRE_SIZE} message, authenticated profile: "
            f"{len(missed)} of the OMEMO 2 comparisons missed.** The authenticated `<e2e/>` "
            f"with one `<key/>` is {one['payload_bytes']:,} B against OMEMO 2's `<encrypted/>` "
            f"{omemo_one['payload_bytes']:,} B; each further device adds about {n(ours_key)} B "
            f"against {n(their_key)} B. S' (the whole inner stanza, not only the body) is "
            "base64'd into `<plain/>`, padded, encrypted and base64'd again; every `<key/>` "
            "names its device by two 64-character hex SHA-256 ids and an algorithm name, where "
            "OMEMO names it by a 32-bit device id; and the plugin adds one more `<key/>` for the "
            "sender's own device.",
            "",
        ]
    v = _verdict(r, "encrypted throughput", "(authenticated profile)")
    plain, enc = r.stream(PLAINTEXT), r.stream(ENCRYPTED_AUTH)
    if v and v["met"] is False and plain and enc:
        out += [
            f"**Throughput through Prosody, authenticated profile: {v['measured']}.** The process "
            f"running both clients spends {n(enc['client_cpu_ms_per_message'])} ms of CPU per "
            f"message against {n(plain['client_cpu_ms_per_message'])} ms in the clear; Prosody "
            f"{n(enc['server_cpu_ms_per_message'])} ms against "
            f"{n(plain['server_cpu_ms_per_message'])} ms (larger stanzas, archived). Both "
            "clients share one core here, so the client's CPU per message bounds the rate: "
            "sender and receiver together pay the plugin path above for every message.",
            "",
        ]
        summary = r.profiles.get(f"Prosody run, {ENCRYPTED_AUTH}")
        if summary:
            cats = ", ".join(
                f"{k.strip()} {v:.0f} %" for k, v in summary.get("categories", {}).items() if v >= 1
            )
            out += [f"Its profiled run (below) splits the client side as: {cats}.", ""]
    return out


def findings(r: Results) -> list[str]:
    """What the numbers say about the missed targets, in words."""
    return (
        _auth_findings(r)
        + _plugin_findings(r)
        + _throughput_findings(r)
        + _peer_findings(r)
        + _first_contact_findings(r)
        + _lost_first_contact_findings(r)
        + _race_findings(r)
    )


def hotspots_section(r: Results) -> list[str]:
    lines = ["## Hot spots", ""]
    missed = [v for v in r.verdicts if v["met"] is False]
    if not missed:
        lines += ["Every target was met; nothing was profiled beyond the checks below.", ""]
    lines += findings(r)
    if r.profiles:
        lines += [
            "### Profiles",
            "",
            "In the plugin-path profiles `tests/bench/objenc_bench.py:send_wire` is the bench "
            "standing in for slixmpp's socket write (the `tostring` call `run_filters` makes).",
            "",
        ]
        for title, summary in r.profiles.items():
            lines += profile_block(title, summary)
    return lines


def suggestions(r: Results) -> list[str]:
    lines = ["### Suggested fixes (not applied; this benchmark changes no plugin code)", ""]
    items = []
    costs = r.extra.get("direct_costs", {}).get(HEADLINE_SIZE)
    if costs or r.extra.get("auth_direct_costs"):
        items += [
            "Serialize S' without slixmpp's per-character `escape` "
            "(e.g. `xml.etree.ElementTree.tostring` "
            "with the root's namespace declared, or a `str.replace`-based "
            "escape), and propose upstream "
            "that `slixmpp.xmlstream.tostring.escape` use `str.replace`/`str.translate`; "
            "that speeds up "
            "the wire serialization of every stanza, encrypted or not.",
        ]
    if (r.first_contact.get("one_way", {}).get("first_message_ms") or 0) > 900:
        items.append(
            "Do not await discovery inside the `out` filter: park the stanza, discover in a task, "
            "re-send it; or pre-fetch certificates when a subscription becomes mutual."
        )
    race = r.extra.get("flush_race")
    if race and race.get("hangs"):
        items.append("`_persist`: treat a finished writer task as absent (`not t.done()`).")
    enc = r.stream(ENCRYPTED)
    if enc:
        items.append(
            "RSA unwraps release the GIL in `cryptography`; opening `<e2e/>` in a worker thread "
            "(keeping stanza order) would let a receiver use a second core. Beyond that, the "
            "per-stanza RSA-3072 private-key operation is the protocol's cost."
        )
    lines += [f"{i}. {text}" for i, text in enumerate(items, 1)] + [""]
    return lines


def unavailable_section(r: Results) -> list[str]:
    if not r.unavailable:
        return ["## Peers that could not run", "", "None: every peer ran on this machine.", ""]
    return [
        "## Peers that could not run",
        "",
        *table(["what", "why"], [[u.what, u.reason] for u in r.unavailable]),
    ]


def markdown(r: Results) -> str:
    from .hybrid_report import hybrid_section  # it imports this module's helpers
    from .objects_report import objects_section  # likewise

    mode = "QUICK smoke run: noisy numbers" if r.quick else "full run"
    times = ", ".join(f"{k} {v:.0f} s" for k, v in r.section_times.items())
    lines = [
        "# slixmpp-objenc benchmarks",
        "",
        f"Generated by `python -m tests.bench` ({mode}), started {r.started}, total runtime "
        f"{r.runtime_s:.0f} s ({times}). One run on one machine: compare rows with each other, "
        "not with numbers from elsewhere. Machine-readable: `results.json`; "
        "chart: `throughput.png`.",
        "",
        *shared_machine_warning(r),
        *machine_section(r),
        *headline_section(r),
        *targets_section(r),
        *per_stanza_section(r),
        *wire_section(r),
        *hybrid_section(r),
        *objects_section(r),
        *prosody_section(r),
        *first_contact_section(r),
        *hotspots_section(r),
        *suggestions(r),
        *unavailable_section(r),
        "![throughput](throughput.png)",
        "",
    ]
    return "\n".join(lines)


# -- chart --------------------------------------------------------------------------


def chart(r: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picks = [
        ("floor", FLOOR_128),
        ("objenc RSA core", "core seal+open, AES-128"),
        ("objenc RSA plugin", PLUGIN_128),
        ("objenc auth. core", AUTH_VARIANT),
        ("objenc auth. plugin", AUTH_PLUGIN),
        ("OMEMO 2", TWOMEMO_XML),
        ("OMEMO 0.3", "oldmemo (OMEMO 0.3, axolotl): encrypt + XML + decrypt"),
        ("gpg ed25519", "gpg ed25519/cv25519: sign+encrypt, decrypt+verify"),
        ("gpg RSA-3072", "gpg RSA-3072: sign+encrypt, decrypt+verify"),
        ("PGPy RSA-3072", "PGPy RSA-3072: sign+encrypt, decrypt+verify"),
    ]
    fig, (left, right) = plt.subplots(1, 2, figsize=(15, 6), gridspec_kw={"width_ratios": [2.2, 1]})
    width = 0.8 / len(SIZES)
    colors = ["#4c72b0", "#dd8452", "#55a868"]
    for i, size in enumerate(SIZES):
        values = [r.ops(variant, size) or 0 for _, variant in picks]
        xs = [x + (i - 1) * width for x in range(len(picks))]
        bars = left.bar(xs, values, width, label=f"{size} body", color=colors[i % len(colors)])
        for bar, value in zip(bars, values, strict=True):
            if value:
                left.annotate(
                    n(value, 2),
                    (bar.get_x() + bar.get_width() / 2, value),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    rotation=90,
                    xytext=(0, 2),
                    textcoords="offset points",
                )
    left.set_yscale("log")
    low, high = left.get_ylim()
    left.set_ylim(low, high * 2.5)  # room for the value labels
    left.set_xticks(range(len(picks)))
    left.set_xticklabels([name for name, _ in picks], rotation=20, ha="right")
    left.set_ylabel("seal + open per second (log scale)")
    left.set_title("Per stanza, one recipient device")
    left.legend()
    left.grid(axis="y", which="both", alpha=0.3)
    if r.streams:
        names = [
            s["mode"].replace(" (no certificate)", "").replace(", ", ",\n").replace(" (", "\n(")
            for s in r.streams
        ]
        values = [s["messages_per_s"] for s in r.streams]
        bars = right.bar(
            range(len(values)),
            values,
            color=["#8c8c8c", "#bcbcbc", "#4c72b0", "#55a868"][: len(values)],
        )
        for bar, s in zip(bars, r.streams, strict=True):
            right.annotate(
                f"{n(s['messages_per_s'])}/s\np50 {n(s['latency_ms_p50'])} "
                f"ms\np99 {n(s['latency_ms_p99'])} ms",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=8,
                xytext=(0, 2),
                textcoords="offset points",
            )
        right.set_xticks(range(len(values)))
        right.set_xticklabels(names, fontsize=8)
        right.set_ylabel("messages per second")
        right.set_ylim(0, max(values) * 1.3 if values else 1)
        right.set_title(
            f"Through Prosody ({r.settings.messages} x 100 B, window {r.settings.window})"
        )
        right.grid(axis="y", alpha=0.3)
    else:
        right.text(0.5, 0.5, "Prosody not measured", ha="center", va="center")
        right.set_axis_off()
    fig.suptitle(
        f"slixmpp-objenc vs OMEMO and OpenPGP: {r.machine['cpu_model']}, {r.machine['python']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- writing ----------------------------------------------------------------------------


def as_json(r: Results) -> dict[str, Any]:
    return {
        "started": r.started,
        "runtime_s": r.runtime_s,
        "section_times_s": r.section_times,
        "quick": r.quick,
        "settings": asdict(r.settings),
        "machine": r.machine,
        "targets": r.targets,
        "verdicts": r.verdicts,
        "per_stanza": [row.as_dict() | {"x_floor": r.ratio(row)} for row in r.rows],
        "wire": r.wire,
        "prosody": r.streams,
        "first_contact": r.first_contact,
        "profiles": r.profiles,
        "extra": r.extra,
        "unavailable": [asdict(u) for u in r.unavailable],
    }


def write(r: Results, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    r.verdicts = evaluate_targets(r)
    written = []
    png = out / "throughput.png"
    try:
        chart(r, png)
        written.append(png)
    except ImportError as exc:  # no matplotlib: the rest of the report still stands
        r.unavailable.append(Unavailable("throughput.png", f"matplotlib missing: {exc}"))
    data = out / "results.json"
    data.write_text(json.dumps(as_json(r), indent=2, default=str) + "\n", encoding="utf-8")
    text = out / "RESULTS.md"
    text.write_text(markdown(r), encoding="utf-8")
    return [data, *written, text]
