"""Where the time goes when a target is missed: cProfile summaries, direct timings
of the suspects (so the profiler's own per-call overhead does not skew the
picture), and checks of two plugin behaviours found while building this bench.

Also a profile mode of its own, for either wire profile's plugin path::

    python -m tests.bench.profiling [--profile authenticated|rsa] [--size "2 KiB"]
                                    [--iterations 300] [--top 25]

prints cProfile's top entries (own time and cumulative), the categories below,
own time grouped by package, and (authenticated) the direct timings of the
pieces of one seal + open.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import re
import sys
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any

from slixmpp.xmlstream import tostring
from slixmpp.xmlstream.tostring import escape as slixmpp_escape

import slixmpp_objenc
from slixmpp_objenc.core import generate_identity
from slixmpp_objenc.core.algorithms import oaep_padding
from slixmpp_objenc.core.authenticated import (
    open_content,
    open_wrap,
    seal_content,
    seal_wraps,
)
from slixmpp_objenc.core.envelope import build_plain
from slixmpp_objenc.store import MemoryStorage

from .common import (
    ALICE,
    ALICE_FULL,
    BOB,
    BOB_FULL,
    HEADLINE_SIZE,
    SIZES,
    Settings,
    ameasure,
    body_text,
    measure,
)
from .objenc_bench import (
    WRAP_CLOSE,
    WRAP_OPEN,
    AuthDevices,
    Identities,
    PluginPair,
    auth_core_op,
    floor_op,
    inner_stanza,
    plaintext_op,
)

Func = tuple[str, int, str]

CATEGORIES: dict[str, tuple[str, str]] = {
    # label: (how, pattern on the function label)
    "RSA-OAEP private-key unwrap (OpenSSL)": ("tottime", r"decrypt' of '.*RSAPrivateKey"),
    "RSA-OAEP public-key wraps (OpenSSL)": ("tottime", r"encrypt' of '.*RSAPublicKey"),
    "slixmpp XML serialization (tostring + per-character escape)": (
        "cumtime",
        r"slixmpp/xmlstream/tostring\.py:\d+\(tostring\)",
    ),
    "XML parsing (expat, defusedxml)": ("tottime", r"pyexpat|XMLParser' objects|xmlparser"),
    "SQLite store writes": ("tottime", r"sqlite3\.Connection"),
    "base64": ("tottime", r"binascii|b64encode|b64decode"),
    "idle (epoll wait)": ("tottime", r"poll' of 'select\.epoll"),
    # the authenticated profile
    "HPKE Auth seal + open (pyhpke: X25519, HKDF, AES-128-GCM of the key)": (
        "cumtime",
        r"core/hpke\.py:\d+\((seal_auth|open_auth)\)",
    ),
    "  of which X25519 (OpenSSL: key generation, exchange)": (
        "tottime",
        r"(exchange|generate|from_public_bytes|from_private_bytes)' of '.*X25519",
    ),
    "AES-256-GCM content (seal_content + open_content)": (
        "cumtime",
        r"core/authenticated\.py:\d+\((seal_content|open_content)\)",
    ),
}


def label(func: Func) -> str:
    """A readable name: module path relative to site-packages or the checkout."""
    filename, line, name = func
    if filename == "~":
        text = re.sub(r"cryptography\.hazmat\.bindings\._rust\.openssl\.", "", name)
        return text.replace("{", "").replace("}", "")
    for marker in ("site-packages/", "/work/main/", "/lib/python3.11/"):
        if marker in filename:
            filename = filename.split(marker, 1)[1]
            break
    return f"{filename}:{line}({name})"


def summarize(profile: cProfile.Profile, *, top: int = 12) -> dict[str, Any]:
    """Top functions by own time, the project's functions by cumulative time,
    categories, and who calls slixmpp's ``tostring``."""
    stats = pstats.Stats(profile)
    entries: dict[Func, Any] = stats.stats  # type: ignore[attr-defined]
    total = stats.total_tt  # type: ignore[attr-defined]
    if not total:
        return {"total_s": 0.0, "top_tottime": [], "project_cumtime": [], "categories": {}}
    rows = []
    for func, (_cc, nc, tt, ct, _callers) in entries.items():
        rows.append((label(func), nc, tt, ct))
    by_own = sorted(rows, key=lambda r: r[2], reverse=True)[:top]
    project = sorted(
        (r for r in rows if r[0].startswith("slixmpp_objenc/")), key=lambda r: r[3], reverse=True
    )[:top]
    packages: dict[str, float] = {}
    for func in entries:
        packages[package_of(func)] = packages.get(package_of(func), 0.0) + entries[func][2]
    by_package = {
        k: 100 * v / total for k, v in sorted(packages.items(), key=lambda kv: -kv[1]) if v
    }
    categories: dict[str, float] = {}
    for name, (how, pattern) in CATEGORIES.items():
        seconds = 0.0
        for func_label, _nc, tt, ct in rows:
            if re.search(pattern, func_label):
                seconds += ct if how == "cumtime" else tt
        categories[name] = 100 * seconds / total
    tostring_callers: list[dict[str, Any]] = []
    for func, (_cc, _nc, _tt, _ct, callers) in entries.items():
        if not re.search(
            CATEGORIES["slixmpp XML serialization (tostring + per-character escape)"][1],
            label(func),
        ):
            continue
        for caller, values in callers.items():
            if caller == func:
                continue  # recursion into children
            calls, cumulative = values[1], values[3]
            tostring_callers.append(
                {"caller": label(caller), "calls": calls, "percent": 100 * cumulative / total}
            )
    tostring_callers.sort(key=lambda c: c["percent"], reverse=True)

    def pack(r: tuple[str, int, float, float]) -> dict[str, Any]:
        return {
            "function": r[0],
            "calls": r[1],
            "own_percent": 100 * r[2] / total,
            "cumulative_percent": 100 * r[3] / total,
        }

    return {
        "total_s": total,
        "top_tottime": [pack(r) for r in by_own],
        "project_cumtime": [pack(r) for r in project],
        "categories": categories,
        "own_time_by_package": by_package,
        "tostring_callers": tostring_callers,
    }


PACKAGES: tuple[tuple[str, str], ...] = (
    # (pattern on the file name or built-in's name, group)
    (r"slixmpp_objenc/", "slixmpp_objenc (plugin and core, Python)"),
    (r"site-packages/slixmpp/", "slixmpp (Python)"),
    (r"site-packages/pyhpke/", "pyhpke (Python)"),
    (r"site-packages/cryptography/", "cryptography (Python)"),
    (r"site-packages/defusedxml/", "defusedxml (Python)"),
    (r"tests/bench/", "the bench itself"),
    (r"cryptography|openssl|_rust", "OpenSSL calls (cryptography's Rust)"),
    (r"pyexpat|xmlparser|XMLParser", "expat (XML parsing, C)"),
    (r"xml/etree/", "ElementTree (Python)"),
    (r"asyncio/|select\.epoll|_asyncio", "asyncio"),
    (r"sqlite3", "SQLite"),
    (r"binascii|base64", "base64"),
)


def package_of(func: Func) -> str:
    """Which library a profiled function belongs to (own time grouped by it)."""
    filename, _line, name = func
    text = name if filename == "~" else filename
    for pattern, group in PACKAGES:
        if re.search(pattern, text):
            return group
    return "other built-ins (see the top functions)" if filename == "~" else "other Python (stdlib)"


async def profile_plugin_path(
    identities: Identities, size: str, iterations: int, *, authenticated: bool = False
) -> cProfile.Profile:
    """cProfile over the plugin path (the same operation the table times), of the
    RSA profile or, with ``authenticated``, the authenticated profile."""
    pair = await PluginPair.create(identities, authenticated=authenticated)
    op = pair.op(body_text(SIZES[size]))
    await op()
    profile = cProfile.Profile()
    try:
        profile.enable()
        for _ in range(iterations):
            await op()
        profile.disable()
    finally:
        await pair.close()
    return profile


def _replace_escape(text: str) -> str:
    """What escaping costs when done with str.replace (C speed)."""
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("'", "&apos;")
        .replace('"', "&quot;")
    )


async def direct_costs(identities: Identities, settings: Settings) -> dict[str, dict[str, float]]:
    """Per size, without a profiler: the plugin path's suspects one by one (ms)."""
    result: dict[str, dict[str, float]] = {}
    pair = await PluginPair.create(identities)
    bob = identities.bobs[0]
    public = bob.certificate.public_key()
    wrapped = public.encrypt(b"k" * 16, oaep_padding())  # type: ignore[union-attr]
    try:
        rsa = measure(lambda: bob.private_key.decrypt(wrapped, oaep_padding()), settings)
        for size, length in SIZES.items():
            body = body_text(length)
            msg = pair.alice.make_message(mto=BOB_FULL, mbody=body, mtype="chat")
            sealed = pair.a.outbound.seal(pair.a.outbound.plan(msg))
            assert sealed is not None
            await pair.flush()
            outer = sealed.xml
            inner = pair.alice.make_message(
                mto=BOB_FULL, mbody=body, mtype="chat", mfrom=f"{ALICE}/bench"
            )
            wire = str(
                tostring(outer, xmlns=pair.alice.default_ns, stream=pair.alice, top_level=True)
            )
            text = "".join((el.text or "") + "".join(el.attrib.values()) for el in outer.iter())
            stanza = inner_stanza(pair.alice, body)
            floor = measure(floor_op(bob.private_key, public, stanza, 16), settings)  # type: ignore[arg-type]
            plugin = (await ameasure(pair.op(body), settings)).ms_per_op
            result[size] = {
                "plugin_path_ms": plugin,
                "floor_ms": floor.ms_per_op,
                "rsa_unwrap_ms": rsa.ms_per_op,
                "tostring_outer_ms": measure(lambda o=outer: tostring(o), settings).ms_per_op,
                "tostring_inner_ms": measure(
                    lambda i=inner: tostring(i.xml, top_level=True), settings
                ).ms_per_op,
                "escape_slixmpp_ms": measure(lambda t=text: slixmpp_escape(t), settings).ms_per_op,
                "escape_replace_ms": measure(lambda t=text: _replace_escape(t), settings).ms_per_op,
                "parse_wire_ms": measure(
                    lambda w=wire: ET.fromstring("<w xmlns='jabber:client'>" + w + "</w>"), settings
                ).ms_per_op,
                "outer_chars": float(len(wire)),
                "inner_chars": float(len(stanza)),
            }
    finally:
        await pair.close()
    return result


async def auth_direct_costs(
    identities: Identities, settings: Settings, size: str = HEADLINE_SIZE
) -> dict[str, float]:
    """The authenticated plugin path's pieces, one by one, without a profiler (ms).

    Per message the plugin makes two HPKE SealAuth (Bob's device and Alice's
    own), one OpenAuth, one AES-256-GCM seal and open; ``core_ms`` is the
    core's seal + open for one device (one SealAuth), which also base64s S',
    builds and parses ``<plain/>`` and parses S' back (defusedxml).
    """
    pair = await PluginPair.create(identities, authenticated=True)
    devices = AuthDevices(devices=1)
    try:
        body = body_text(SIZES[size])
        stanza = inner_stanza(pair.alice, body)
        alice, bob = devices.alice, devices.bobs[0]
        a_ids, b_ids = devices.ids(alice), devices.ids(bob)
        bob_key = bob.encryption_key.public_key()
        alice_key = alice.encryption_key.public_key()
        plain = build_plain(stanza, datetime.now(UTC), 64)
        key, sealed = seal_content(plain, *a_ids)
        [wrap] = seal_wraps(key, sealed, alice.encryption_key, *a_ids, [(*b_ids, bob_key)])
        outer = (await pair.send_wire(body)).encode("utf-8")
        pair.receive_wire(outer.decode())
        await pair.flush()
        msg = pair.alice.make_message(mto=BOB_FULL, mbody=body, mtype="chat")
        sealed_msg = pair.a.outbound.seal(pair.a.outbound.plan(msg))
        assert sealed_msg is not None
        await pair.flush()
        inner = pair.alice.make_message(
            mto=BOB_FULL, mbody=body, mtype="chat", mfrom=f"{ALICE}/bench"
        )
        text = outer.decode()
        iterations = max(20, int(200 * settings.target_seconds / 0.4))
        phases = await phase_times(pair, body, iterations)
        return {
            **{f"phase: {name}": ms for name, ms in phases.items()},
            "plugin_path_ms": (await ameasure(pair.op(body), settings)).ms_per_op,
            "core_ms": measure(auth_core_op(stanza, devices, 1), settings).ms_per_op,
            "hpke_seal_ms": measure(
                lambda: seal_wraps(key, sealed, alice.encryption_key, *a_ids, [(*b_ids, bob_key)]),
                settings,
            ).ms_per_op,
            "hpke_open_ms": measure(
                lambda: open_wrap(wrap, sealed, bob.encryption_key, alice_key, *a_ids), settings
            ).ms_per_op,
            "aes_gcm_ms": measure(lambda: _gcm_round_trip(plain, a_ids), settings).ms_per_op,
            "tostring_outer_ms": measure(
                lambda: tostring(
                    sealed_msg.xml, xmlns=pair.alice.default_ns, stream=pair.alice, top_level=True
                ),
                settings,
            ).ms_per_op,
            "tostring_inner_ms": measure(
                lambda: tostring(inner.xml, top_level=True), settings
            ).ms_per_op,
            "parse_wire_ms": measure(
                lambda: ET.fromstring("<w xmlns='jabber:client'>" + text + "</w>"), settings
            ).ms_per_op,
            "plaintext_path_ms": measure(
                plaintext_op(pair.alice, pair.bob, body), settings
            ).ms_per_op,
            "outer_chars": float(len(text)),
            "inner_chars": float(len(stanza)),
        }
    finally:
        await pair.close()


PHASES = (
    "slixmpp: build the Message",
    "outbound.plan (send decision, recipients)",
    "outbound.seal (S' serialized, <e2e/> sealed, outside envelope)",
    "slixmpp: tostring of the sealed stanza (the socket write)",
    "slixmpp: parse the wire (expat) + _build_stanza",
    "inbound.receive (open, replay guard, inner stanza built)",
    "read the body, flush the write-behind queues (asyncio)",
)


async def phase_times(pair: PluginPair, body: str, iterations: int) -> dict[str, float]:
    """The plugin path (the same steps as ``PluginPair.op``) timed phase by phase
    with ``perf_counter``, no profiler: ms per message spent in each phase."""
    totals = dict.fromkeys(PHASES, 0.0)
    clock = time.perf_counter
    for _ in range(iterations):
        t0 = clock()
        msg = pair.alice.make_message(mto=BOB_FULL, mbody=body, mtype="chat")
        t1 = clock()
        planned = pair.a.outbound.plan(msg)
        t2 = clock()
        sealed = pair.a.outbound.seal(planned)
        t3 = clock()
        assert sealed is not None
        wire = str(
            tostring(sealed.xml, xmlns=pair.alice.default_ns, stream=pair.alice, top_level=True)
        )
        t4 = clock()
        xml = ET.fromstring(WRAP_OPEN + wire + WRAP_CLOSE)[0]
        xml.set("from", ALICE_FULL)
        stanza = pair.bob._build_stanza(xml)
        t5 = clock()
        delivered = pair.b.inbound.receive(stanza)
        t6 = clock()
        if delivered is None or delivered["body"] != body:
            raise AssertionError("plugin round trip failed")
        await pair.flush()
        t7 = clock()
        for name, (start, end) in zip(
            PHASES,
            ((t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5), (t5, t6), (t6, t7)),
            strict=True,
        ):
            totals[name] += end - start
    return {name: 1000 * seconds / iterations for name, seconds in totals.items()}


def _gcm_round_trip(plain: bytes, ids: tuple[bytes, bytes]) -> None:
    key, sealed = seal_content(plain, *ids)
    if open_content(key, sealed, *ids) != plain:
        raise AssertionError("AES-GCM round trip failed")


def auth_breakdown(costs: dict[str, float]) -> list[tuple[str, float]]:
    """Per message, ms: the authenticated plugin path split into its pieces, from
    the direct timings (no profiler): two SealAuth and one OpenAuth, AES-GCM,
    the core's own work, slixmpp's XML work, and the rest (the plugin's glue),
    which is the phase total (or the timed plugin path) less the others."""
    phases = {k[len("phase: ") :]: v for k, v in costs.items() if k.startswith("phase: ")}
    total = sum(phases.values()) if phases else costs["plugin_path_ms"]
    hpke = 2 * costs["hpke_seal_ms"] + costs["hpke_open_ms"]
    core_rest = costs["core_ms"] - costs["hpke_seal_ms"] - costs["hpke_open_ms"]
    core_rest -= costs["aes_gcm_ms"]
    slixmpp = costs["tostring_inner_ms"] + sum(
        v for k, v in phases.items() if k.startswith("slixmpp:")
    )
    if not phases:
        slixmpp += costs["tostring_outer_ms"] + costs["parse_wire_ms"]
    parts = [
        ("HPKE Auth: 2 SealAuth (Bob's device, Alice's own) + 1 OpenAuth", hpke),
        ("AES-256-GCM seal + open of E'", costs["aes_gcm_ms"]),
        ("core besides: base64, <plain/> built and parsed, S' parsed (defusedxml)", core_rest),
        (
            "slixmpp: Message built, tostring of S' and of the wire stanza, "
            "wire parsed and built into a stanza",
            slixmpp,
        ),
    ]
    rest = total - sum(v for _, v in parts)
    return [
        *parts,
        (
            "the rest: plugin glue (plan, outside envelope, size estimate, replay guard, "
            "inner stanza, events), asyncio flush",
            rest,
        ),
    ]


async def check_flush_race() -> dict[str, Any]:
    """A write queued right after ``flush()`` returned: is it ever written?

    ``ObjEnc._persist`` starts a writer only when no task flagged as one is in
    ``_tasks``; a writer that has just finished stays there until its
    done-callback runs, which is after ``flush()``'s waiter resumed.
    """
    from slixmpp import ClientXMPP

    client = ClientXMPP(f"{ALICE}/check", "unused", loop=asyncio.get_running_loop())
    client.register_plugin("xep_0030")
    client.register_plugin(
        "objenc",
        module=slixmpp_objenc,
        pconfig={
            "identity": generate_identity(ALICE, key_size=2048),
            "storage": MemoryStorage(),
            "pep": False,
        },
    )
    plugin = client.plugin["objenc"]
    await plugin.ready()
    peer = generate_identity(BOB, key_size=2048)
    plugin.add_peer_certificate(peer.certificate_pem())
    await plugin.flush()
    plugin.remove_peer_certificate(BOB)  # queued in the same loop iteration
    try:
        await asyncio.wait_for(plugin.flush(), 2.0)
        hangs = False
    except TimeoutError:
        hangs = True
    pending = plugin.persistence.pending_writes()
    for task in list(plugin.tasks.running):
        task.cancel()
    return {
        "hangs": hangs,
        "pending_writes": pending,
        "reproduction": (
            "plugin.add_peer_certificate(pem); await plugin.flush(); "
            "plugin.remove_peer_certificate(jid); await plugin.flush()  # never returns"
        ),
    }


# -- the profile mode ---------------------------------------------------------------


def print_summary(title: str, summary: dict[str, Any], top: int = 15) -> None:
    """The summary's categories, packages and top entries, as text."""
    print(f"== {title}: cProfile, {summary['total_s']:.2f} s profiled")
    print("-- categories (share of profiled time):")
    for name, share in summary.get("categories", {}).items():
        if share >= 0.5:
            print(f"  {share:5.1f} %  {name}")
    print("-- own time by package:")
    for name, share in summary.get("own_time_by_package", {}).items():
        if share >= 0.5:
            print(f"  {share:5.1f} %  {name}")
    print("-- top functions by own time (own %, cumulative %, calls):")
    for entry in summary.get("top_tottime", [])[:top]:
        print(
            f"  {entry['own_percent']:5.1f} % {entry['cumulative_percent']:5.1f} % "
            f"{entry['calls']:>7}  {entry['function']}"
        )
    print("-- slixmpp_objenc by cumulative time:")
    for entry in summary.get("project_cumtime", [])[:top]:
        print(f"  {entry['cumulative_percent']:5.1f} % {entry['calls']:>7}  {entry['function']}")


def print_breakdown(costs: dict[str, float]) -> None:
    path = costs["plugin_path_ms"]
    phases = {k[len("phase: ") :]: v for k, v in costs.items() if k.startswith("phase: ")}
    if phases:
        total = sum(phases.values())
        print(f"== authenticated plugin path, phase by phase (perf_counter): {total:.3f} ms")
        for name, ms in phases.items():
            print(f"  {ms:7.3f} ms {100 * ms / total:5.1f} %  {name}")
    parts = auth_breakdown(costs)
    total = sum(ms for _, ms in parts)
    print(
        f"== authenticated plugin path by kind of work: {total:.3f} ms "
        f"(timed as a whole: {path:.3f} ms per seal+open)"
    )
    for name, ms in parts:
        print(f"  {ms:7.3f} ms {100 * ms / total:5.1f} %  {name}")
    print(
        f"  (one SealAuth {costs['hpke_seal_ms']:.3f} ms, one OpenAuth "
        f"{costs['hpke_open_ms']:.3f} ms; core seal+open for one device {costs['core_ms']:.3f} "
        f"ms; slixmpp plaintext path {costs['plaintext_path_ms']:.3f} ms)"
    )


async def _main(args: argparse.Namespace) -> None:
    authenticated = args.profile == "authenticated"
    identities = Identities.generate(devices=1)
    profile = await profile_plugin_path(
        identities, args.size, args.iterations, authenticated=authenticated
    )
    print_summary(
        f"plugin path, {args.profile} profile, {args.size}",
        summarize(profile, top=args.top),
        args.top,
    )
    stream = io.StringIO()
    stats = pstats.Stats(profile, stream=stream)
    stats.sort_stats("cumulative").print_stats(args.top)
    print("-- pstats, by cumulative time:")
    print(stream.getvalue())
    if authenticated:
        print_breakdown(await auth_direct_costs(identities, Settings(), args.size))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.profiling",
        description="cProfile of one wire profile's plugin path (seal + open, both plugins)",
    )
    parser.add_argument("--profile", choices=("authenticated", "rsa"), default="authenticated")
    parser.add_argument("--size", choices=tuple(SIZES), default=HEADLINE_SIZE)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--top", type=int, default=20)
    asyncio.run(_main(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
