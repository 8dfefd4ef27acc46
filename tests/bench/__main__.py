"""``python -m tests.bench [--quick] [--out DIR] [--skip SECTION]``: run every
benchmark once and write RESULTS.md, results.json and throughput.png."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from slixmpp import ClientXMPP

from . import (
    hybrid_bench,
    objects_bench,
    objenc_bench,
    openpgp_bench,
    profiling,
    prosody_bench,
    report,
)
from .common import (
    ALICE_FULL,
    HEADLINE_SIZE,
    Row,
    Settings,
    Unavailable,
    load_average,
    machine_description,
    other_cpu_busy,
)

SECTIONS = ("objenc", "hybrid", "objects", "omemo", "openpgp", "prosody")
PLUGIN_TARGET = 1.3
THROUGHPUT_TARGET = 0.8
AUTH_VS_RSA_TARGET = 2.0
"""The authenticated profile's plugin path, in multiples of the RSA-3072 one's rate."""
AUTH_VS_RSA_STRETCH = 3.0
AUTH_THROUGHPUT_TARGET = 0.5
"""Encrypted throughput through Prosody with the authenticated profile, x plaintext."""


def log(text: str) -> None:
    print(text, flush=True)


def plugin_ratio(rows: list[Row], size: str = HEADLINE_SIZE) -> float | None:
    """Cost of the default plugin path (AES-128) in multiples of its floor."""
    floors = {r.provides_floor: r for r in rows if r.provides_floor}
    for row in rows:
        if row.variant == "plugin path, AES-128" and row.size == size and row.floor_key:
            floor = floors.get(row.floor_key)
            if floor and floor.measurement and row.measurement:
                return floor.measurement.ops_per_s / row.measurement.ops_per_s
    return None


async def run(args: argparse.Namespace) -> int:
    settings = Settings.quick_settings() if args.quick else Settings()
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    section_times: dict[str, float] = {}
    rows: list[Row] = []
    wire: list[dict[str, Any]] = []
    unavailable: list[Unavailable] = []
    extra: dict[str, Any] = {}

    log("machine ...")
    machine = machine_description()
    log(f"  {machine['cpu_model']}, {machine['cores']} cores, {machine['python']}")
    client = ClientXMPP(ALICE_FULL, "unused", loop=asyncio.get_running_loop())  # framing only

    mark = time.perf_counter()
    log("RSA-3072 identities ...")
    identities = objenc_bench.Identities.generate()
    section_times["key generation"] = time.perf_counter() - mark

    if "objenc" not in args.skip:
        mark = time.perf_counter()
        log("objenc: core, plugin path, floor ...")
        objenc = await objenc_bench.run(settings, identities, log)
        rows += objenc.rows
        wire += objenc.wire
        extra["inner_stanza_bytes"] = objenc.inner_sizes
        section_times["objenc"] = time.perf_counter() - mark

    if "hybrid" not in args.skip:
        mark = time.perf_counter()
        log("objenc: post-quantum hybrid, key rotation ...")
        # after the objenc section: its authenticated-profile rows are the reference
        hybrid = await hybrid_bench.run(settings, identities, client, rows, log)
        rows += hybrid.rows
        wire += hybrid.wire
        extra["hybrid_vs_auth"] = hybrid.paired
        extra["rotation"] = hybrid.rotation
        section_times["hybrid"] = time.perf_counter() - mark

    if "objects" not in args.skip:
        mark = time.perf_counter()
        log("objects outside XMPP: seal + open streamed in a child process ...")
        try:
            extra["objects"] = objects_bench.run(args.quick, log)
        except Exception as exc:  # reported, not dropped: the target shows "not measured"
            traceback.print_exc()
            reason = f"{type(exc).__name__}: {exc}"
            unavailable.append(Unavailable("objects outside XMPP (issue 14)", reason))
        section_times["objects"] = time.perf_counter() - mark

    if "omemo" not in args.skip:
        mark = time.perf_counter()
        log("OMEMO ...")
        try:
            from . import omemo_bench  # python-omemo and its XML helpers are optional

            omemo = await omemo_bench.run(settings, client, log)
            rows += omemo.rows
            wire += omemo.wire
        except Exception as exc:  # a peer that cannot run is reported, not dropped
            traceback.print_exc()
            unavailable.append(Unavailable("OMEMO (python-omemo)", f"{type(exc).__name__}: {exc}"))
        section_times["OMEMO"] = time.perf_counter() - mark

    if "openpgp" not in args.skip:
        mark = time.perf_counter()
        log("OpenPGP ...")
        try:
            openpgp = openpgp_bench.run(settings, client, log)
            rows += openpgp.rows
            wire += openpgp.wire
            unavailable += openpgp.unavailable
            extra["gpg_spawn_ms"] = openpgp.spawn
            extra["pgpy_profile"] = openpgp.pgpy_profile
        except Exception as exc:
            traceback.print_exc()
            unavailable.append(Unavailable("OpenPGP", f"{type(exc).__name__}: {exc}"))
        section_times["OpenPGP"] = time.perf_counter() - mark

    prosody = None
    if "prosody" not in args.skip:
        mark = time.perf_counter()
        log("Prosody ...")
        prosody = await prosody_bench.run(settings, log, profile_if_slow=THROUGHPUT_TARGET)
        unavailable += prosody.unavailable
        section_times["Prosody"] = time.perf_counter() - mark

    mark = time.perf_counter()
    log("hot spots ...")
    profiles: dict[str, Any] = {}
    ratio = plugin_ratio(rows)
    if ratio is not None and ratio > PLUGIN_TARGET:
        log(f"  plugin path is {ratio:.2f}x the floor at {HEADLINE_SIZE}: profiling")
        for size, iterations in (
            (HEADLINE_SIZE, 20 if args.quick else 300),
            ("64 KiB", 5 if args.quick else 40),
        ):
            profile = await profiling.profile_plugin_path(identities, size, iterations)
            profiles[f"plugin path, RSA profile, {size}"] = profiling.summarize(profile)
        light = Settings(target_seconds=min(0.2, settings.target_seconds), repeats=3)
        extra["direct_costs"] = await profiling.direct_costs(identities, light)
    if "objenc" not in args.skip:
        # The authenticated profile's plugin path is always profiled: where it
        # spends its time is the question its targets raise.
        log(f"  plugin path, authenticated profile, {HEADLINE_SIZE}: profiling")
        profile = await profiling.profile_plugin_path(
            identities, HEADLINE_SIZE, 50 if args.quick else 300, authenticated=True
        )
        summary = profiling.summarize(profile, top=15)
        profiles[f"plugin path, authenticated profile, {HEADLINE_SIZE}"] = summary
        light = Settings(target_seconds=min(0.2, settings.target_seconds), repeats=3)
        costs = await profiling.auth_direct_costs(identities, light)
        extra["auth_direct_costs"] = costs
        profiling.print_summary(
            f"plugin path, authenticated profile, {HEADLINE_SIZE}", summary, top=10
        )
        profiling.print_breakdown(costs)
    if prosody is not None:
        for mode, profile in prosody.profiles.items():
            profiles[f"Prosody run, {mode}"] = profiling.summarize(profile)
    extra["flush_race"] = await profiling.check_flush_race()
    section_times["profiling"] = time.perf_counter() - mark

    extra["load_average_at_end"] = load_average()
    extra["other_cpu_busy_percent_at_end"] = other_cpu_busy()
    runtime = time.perf_counter() - t0
    results = report.Results(
        started=started.isoformat(timespec="seconds"),
        runtime_s=runtime,
        section_times=section_times,
        quick=args.quick,
        settings=settings,
        machine=machine,
        rows=rows,
        wire=wire,
        streams=[s.as_dict() for s in prosody.streams] if prosody else [],
        first_contact=prosody.first_contact if prosody else {},
        profiles=profiles,
        extra=extra,
        unavailable=unavailable,
        targets={
            "plugin_vs_floor": PLUGIN_TARGET,
            "throughput_vs_plaintext": THROUGHPUT_TARGET,
            "auth_vs_rsa_plugin": AUTH_VS_RSA_TARGET,
            "auth_vs_rsa_plugin_stretch": AUTH_VS_RSA_STRETCH,
            "auth_throughput_vs_plaintext": AUTH_THROUGHPUT_TARGET,
        },
    )
    out = Path(args.out)
    written = report.write(results, out)
    for path in written:
        log(f"wrote {path}")
    log(f"total runtime {runtime:.0f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short smoke run (noisy numbers)")
    parser.add_argument("--out", default="bench-results", help="output directory (bench-results)")
    parser.add_argument(
        "--skip", action="append", default=[], choices=SECTIONS, help="leave a section out"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    # python-omemo warns about every device list it fixes up on set-up: expected here.
    logging.getLogger("omemo").setLevel(logging.CRITICAL)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
