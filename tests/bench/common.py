"""Shared pieces: the test messages, the timer, the machine description."""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import platform
import shutil
import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

ALICE = "alice@objenc.test"
BOB = "bob@objenc.test"
ALICE_FULL = f"{ALICE}/bench"
BOB_FULL = f"{BOB}/bench"

SIZES: dict[str, int] = {"100 B": 100, "2 KiB": 2048, "64 KiB": 65536}
"""Chat message bodies measured: label -> length of the body text in bytes (ASCII)."""

HEADLINE_SIZE = "2 KiB"
"""The size the targets are judged at."""

_LOREM = (
    "Wherefore art thou Romeo? Deny thy father and refuse thy name; or, if thou "
    "wilt not, be but sworn my love, and I'll no longer be a Capulet. "
)


def body_text(length: int) -> str:
    """A deterministic ASCII chat body of exactly ``length`` bytes."""
    return (_LOREM * (length // len(_LOREM) + 1))[:length]


@dataclass
class Settings:
    """How hard to measure: the full run, or a quick smoke run (``--quick``)."""

    target_seconds: float = 0.4
    """Wall time one repetition aims at (iterations are calibrated to it)."""
    repeats: int = 7
    min_iterations: int = 3
    slow_repeats: int = 5
    """Repetitions for the slow peers (gpg, PGPy)."""
    messages: int = 2000
    """Messages per Prosody throughput run."""
    window: int = 50
    profile_messages: int = 500
    quick: bool = False

    @classmethod
    def quick_settings(cls) -> Settings:
        return cls(
            target_seconds=0.08,
            repeats=3,
            min_iterations=2,
            slow_repeats=2,
            messages=300,
            profile_messages=150,
            quick=True,
        )


@dataclass
class Measurement:
    """Operations per second: the median of several timed repetitions."""

    ops_per_s: float
    iterations: int
    repeats: list[float] = field(default_factory=list)
    """ops/s of each repetition."""

    @property
    def ms_per_op(self) -> float:
        return 1000.0 / self.ops_per_s if self.ops_per_s else float("inf")

    @property
    def spread(self) -> float:
        """(max - min) / median of the repetitions: how stable the number is."""
        if len(self.repeats) < 2 or not self.ops_per_s:
            return 0.0
        return (max(self.repeats) - min(self.repeats)) / self.ops_per_s

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ms_per_op"] = self.ms_per_op
        data["spread"] = self.spread
        return data


def _iterations_for(one: float, settings: Settings, min_iterations: int | None) -> int:
    floor = settings.min_iterations if min_iterations is None else min_iterations
    if one <= 0:
        return 10_000
    return max(floor, min(100_000, int(settings.target_seconds / one)))


def measure(
    op: Callable[[], object],
    settings: Settings,
    *,
    repeats: int | None = None,
    min_iterations: int | None = None,
) -> Measurement:
    """Time ``op``: one warm-up call (also the calibration), then repeats x iterations."""
    start = time.perf_counter()
    op()
    iterations = _iterations_for(time.perf_counter() - start, settings, min_iterations)
    results = []
    for _ in range(repeats or settings.repeats):
        start = time.perf_counter()
        for _ in range(iterations):
            op()
        results.append(iterations / (time.perf_counter() - start))
    return Measurement(statistics.median(results), iterations, results)


async def ameasure(
    op: Callable[[], Awaitable[object]],
    settings: Settings,
    *,
    repeats: int | None = None,
    min_iterations: int | None = None,
) -> Measurement:
    """:func:`measure` for a coroutine function (awaited in the running loop)."""
    start = time.perf_counter()
    await op()
    iterations = _iterations_for(time.perf_counter() - start, settings, min_iterations)
    results = []
    for _ in range(repeats or settings.repeats):
        start = time.perf_counter()
        for _ in range(iterations):
            await op()
        results.append(iterations / (time.perf_counter() - start))
        await asyncio.sleep(0)
    return Measurement(statistics.median(results), iterations, results)


@dataclass
class Row:
    """One line of the per-stanza table."""

    mechanism: str
    variant: str
    size: str
    recipients: int
    measurement: Measurement | None
    note: str = ""
    floor_key: str | None = None
    """Which floor row this one is compared with (``None``: not compared)."""
    provides_floor: str | None = None
    """This row is the floor for that key."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "mechanism": self.mechanism,
            "variant": self.variant,
            "size": self.size,
            "recipients": self.recipients,
            "note": self.note,
            "floor": self.floor_key,
            "provides_floor": self.provides_floor,
            **(self.measurement.as_dict() if self.measurement else {"ops_per_s": None}),
        }


@dataclass
class Unavailable:
    """A peer that could not be measured here, and why."""

    what: str
    reason: str


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _command_first_line(args: list[str]) -> str:
    if shutil.which(args[0]) is None:
        return "not installed"
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc.__class__.__name__})"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    kib = int(line.split()[1])
                    return f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError):
        pass
    return "unknown"


PACKAGES = (
    "slixmpp-objenc",
    "slixmpp",
    "cryptography",
    "defusedxml",
    "omemo",
    "twomemo",
    "oldmemo",
    "doubleratchet",
    "x3dh",
    "xeddsa",
    "xmlschema",
    "python-gnupg",
    "pgpy",
    "matplotlib",
)


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages (other work on the machine skews the numbers)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def other_cpu_busy(seconds: float = 1.0) -> float | None:
    """Percent of all cores busy over ``seconds`` while this process sleeps: other work."""

    def sample() -> tuple[int, int] | None:
        try:
            with open("/proc/stat", encoding="ascii") as fh:
                values = [int(v) for v in fh.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        return sum(values), idle

    before = sample()
    time.sleep(seconds)
    after = sample()
    if before is None or after is None or after[0] == before[0]:
        return None
    total, idle = after[0] - before[0], after[1] - before[1]
    return round(100 * (total - idle) / total, 1)


def machine_description() -> dict[str, Any]:
    """What the numbers were measured on."""
    from cryptography.hazmat.backends.openssl.backend import backend

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        affinity = os.cpu_count() or 0
    gpg = shutil.which("gpg") or "gpg"
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": affinity,
        "memory": _memory(),
        "load_average_at_start": load_average(),
        "other_cpu_busy_percent_at_start": other_cpu_busy(),
        "kernel": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "python_ssl_openssl": ssl.OPENSSL_VERSION,
        "cryptography_openssl": backend.openssl_version_text(),
        "gpg": f"{gpg}: {_command_first_line([gpg, '--version'])}",
        "prosody": _command_first_line(["dpkg-query", "-W", "-f=${Version}", "prosody"]),
        "packages": {name: _version(name) for name in PACKAGES},
    }
