"""Where the time goes when a target is missed: cProfile summaries, direct timings
of the suspects (so the profiler's own per-call overhead does not skew the
picture), and checks of two plugin behaviours found while building this bench.
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import re
import xml.etree.ElementTree as ET
from typing import Any

from slixmpp.xmlstream import tostring
from slixmpp.xmlstream.tostring import escape as slixmpp_escape

import slixmpp_objenc
from slixmpp_objenc.core import generate_identity
from slixmpp_objenc.core.algorithms import oaep_padding
from slixmpp_objenc.store import MemoryStorage

from .common import ALICE, BOB, BOB_FULL, SIZES, Settings, ameasure, body_text, measure
from .objenc_bench import Identities, PluginPair, floor_op, inner_stanza

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
        "tostring_callers": tostring_callers,
    }


async def profile_plugin_path(
    identities: Identities, size: str, iterations: int
) -> cProfile.Profile:
    """cProfile over the plugin path (the same operation the table times)."""
    pair = await PluginPair.create(identities)
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
