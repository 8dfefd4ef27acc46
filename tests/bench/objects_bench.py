"""Objects outside XMPP (issue 14): one big object sealed and opened as a
stream, in a process of its own, so that its maximum RSS is the object
pipeline's and not the bench's.

:func:`run` starts ``python -m tests.bench.objects_bench``, which forks at once;
the fork does the work and prints one JSON line. Why the fork: on Linux
``ru_maxrss`` survives ``exec`` (the kernel keeps the high-water mark of the
address space ``exec`` replaced: the bench's own, hundreds of MiB after the
other sections) but starts afresh in a forked child, at its RSS at the fork.

In the fork, after the imports and two devices' keys (``generate_device_keys``:
real Ed25519 identities, X25519 encryption keys and their certificates), the
baseline RSS; then, each on bytes generated on the fly in 64 KiB pieces (never
held: a 64 KiB window slid over 68 KiB of SHAKE-256 output), authenticated
profile (auth-1), one recipient device, 64 KiB chunks:

1. seal + open in one pipeline (``open_object_stream(seal_object_stream(...))``);
2. seal alone, written to a temporary file (the writes not timed);
3. open alone, that file read back in 64 KiB pieces (the reads not timed);
4. the armored round trip: seal, ``armor``, its text split into lines,
   ``dearmor``, open (64 MiB; 16 MiB in ``--quick``);
5. seal + open again under tracemalloc, for its peak (last: its tables must
   not count in the RSS of the others).

Times are those spent inside the pipeline's iterator (the consumer's work, a
CRC-32 of the plaintext compared with the input's, computed beforehand, is
not timed); ``ru_maxrss`` is read after each phase (it only grows: the first
phase's figure is the 1 GiB seal + open's own).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import traceback
import tracemalloc
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

MiB = 1024 * 1024
FULL_TOTAL = 1024 * MiB
QUICK_TOTAL = 64 * MiB
FULL_ARMOR = 64 * MiB
QUICK_ARMOR = 16 * MiB
PIECE = 64 * 1024
"""Bytes per piece given to the sealer and read back from the file; the chunk size too."""
TARGET_TOTAL = FULL_TOTAL
TARGET_RSS_MIB = 100
"""Issue 14: a 1 GiB file is sealed and opened in under 100 MiB of memory."""
CHILD_TIMEOUT = 600.0
ROOT = Path(__file__).resolve().parents[2]
PHASES = ("seal + open", "seal alone", "open alone", "armored round trip")


# -- in the child -----------------------------------------------------------------------


def maxrss_kib() -> int:
    """``getrusage(RUSAGE_SELF).ru_maxrss`` in KiB (macOS gives bytes)."""
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value // 1024 if sys.platform == "darwin" else value


def proc_status_kib(field: str) -> int | None:
    """``VmRSS`` or ``VmHWM`` from ``/proc/self/status`` (Linux), else ``None``."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def pattern(total: int, piece: int = PIECE) -> Iterator[bytes]:
    """``total`` deterministic bytes in pieces of ``piece``: a window slid over a
    little more than a piece of SHAKE-256 output (one slice in memory at a time)."""
    block = hashlib.shake_256(b"objenc bench: objects").digest(piece + 4096)
    sent = index = 0
    while sent < total:
        size = min(piece, total - sent)
        start = (index * 257) % 4096
        yield block[start : start + size]
        sent += size
        index += 1


class Crc:
    """CRC-32 of the bytes given to :meth:`update`: the check that the plaintext came
    back (4 GB/s here, SHA-256 1.8: the check is not timed, but it takes wall time;
    the AEAD has already authenticated every chunk)."""

    def __init__(self, pieces: Iterable[bytes] = ()) -> None:
        self.value = 0
        for piece in pieces:
            self.update(piece)

    def update(self, data: bytes) -> None:
        self.value = zlib.crc32(data, self.value)


def drain(pieces: Iterable[bytes], sink: Callable[[bytes], object]) -> tuple[float, int]:
    """Every piece handed to ``sink``: the seconds spent inside the iterator (the
    sink's own time left out) and the bytes it gave."""
    clock, spent, count, it = time.perf_counter, 0.0, 0, iter(pieces)
    while True:
        start = clock()
        piece = next(it, None)
        spent += clock() - start
        if piece is None:
            return spent, count
        count += len(piece)
        sink(piece)


def timed_reads(file: IO[bytes], spent: list[float]) -> Iterator[bytes]:
    """The file in pieces of ``PIECE``, the seconds its reads took added to ``spent[0]``."""
    clock = time.perf_counter
    while True:
        start = clock()
        piece = file.read(PIECE)
        spent[0] += clock() - start
        if not piece:
            return
        yield piece


def counted(pieces: Iterable[bytes], sizes: list[int]) -> Iterator[bytes]:
    """The pieces unchanged, each one's length appended to ``sizes``."""
    for piece in pieces:
        sizes.append(len(piece))
        yield piece


def lines_of(texts: Iterable[str], chars: list[int]) -> Iterator[str]:
    """The armor's text, line by line (as a file read line by line gives it)."""
    for text in texts:
        chars[0] += len(text)
        yield from text.splitlines(keepends=True)


def measure(total: int, armored: int) -> dict[str, Any]:
    """Everything the section reports; in the forked child."""
    interpreter_kib = maxrss_kib()
    from slixmpp_objenc.core.armor import armor, dearmor
    from slixmpp_objenc.core.auth_envelope import AuthRecipient, AuthSender
    from slixmpp_objenc.core.identities import generate_device_keys
    from slixmpp_objenc.core.objects import (
        AUTH_PROFILE,
        GCM_TAG_SIZE,
        TRAILER_TAG_SIZE,
        open_object_stream,
        seal_object_stream,
    )

    alice, bob = generate_device_keys("alice@example.org"), generate_device_keys("bob@example.org")
    alice_ids = (bytes.fromhex(alice.fingerprint), bytes.fromhex(alice.encryption_fingerprint))
    bob_ids = (bytes.fromhex(bob.fingerprint), bytes.fromhex(bob.encryption_fingerprint))
    sender = AuthSender(alice.encryption_key, *alice_ids)
    target = AuthRecipient(*bob_ids, bob.encryption_key.public_key())
    own = AuthSender(bob.encryption_key, *bob_ids)
    public = alice.encryption_key.public_key()

    def seal(data: Iterable[bytes]) -> Iterator[bytes]:
        return seal_object_stream(data, [target], sender=sender, chunk_size=PIECE)

    def opened(data: Iterable[bytes]) -> Iterator[bytes]:
        """Lazy: the header is read on the first ``next``, inside the timing."""
        header, plaintext = open_object_stream(data, own=[own], resolve_sender=lambda _: public)
        if header.profile != AUTH_PROFILE or header.chunk_size != PIECE:
            raise AssertionError(f"unexpected header: {header}")
        yield from plaintext

    started = time.perf_counter()
    baseline_kib, baseline_now_kib = maxrss_kib(), proc_status_kib("VmRSS")
    expected = Crc(pattern(total)).value
    expected_armored = Crc(pattern(armored)).value
    phases: list[dict[str, Any]] = []

    def phase(name: str, size: int, seconds: float, crc: Crc, want: int, note: str) -> None:
        if crc.value != want or size != (armored if name == PHASES[3] else total):
            raise AssertionError(f"{name}: the plaintext came back different")
        phases.append(
            {
                "name": name,
                "bytes": size,
                "seconds": seconds,
                "mb_per_s": size / seconds / 1e6,
                "max_rss_kib_after": maxrss_kib(),
                "note": note,
            }
        )

    sizes: list[int] = []
    crc = Crc()
    seconds, size = drain(opened(counted(seal(pattern(total)), sizes)), crc.update)
    phase(PHASES[0], size, seconds, crc, expected, "one pipeline, nothing stored")
    sealed_bytes, header_bytes = sum(sizes), sizes[0]
    del sizes

    with tempfile.TemporaryDirectory(prefix="objenc-bench-objects-") as tmp:
        path = Path(tmp) / "object.bin"
        with path.open("wb") as out:
            seconds, written = drain(seal(pattern(total)), out.write)
        if written != sealed_bytes or path.stat().st_size != sealed_bytes:
            raise AssertionError("the second sealing is not the size of the first")
        phases.append(
            {
                "name": PHASES[1],
                "bytes": total,
                "seconds": seconds,
                "mb_per_s": total / seconds / 1e6,
                "max_rss_kib_after": maxrss_kib(),
                "note": "to a temporary file, the writes not timed",
            }
        )
        reads, crc = [0.0], Crc()
        with path.open("rb") as source:
            seconds, size = drain(opened(timed_reads(source, reads)), crc.update)
        note = f"from that file in 64 KiB reads, not timed ({reads[0]:.2f} s)"
        phase(PHASES[2], size, seconds - reads[0], crc, expected, note)

    chars, object_sizes, crc = [0], list[int](), Crc()
    text = armor(counted(seal(pattern(armored)), object_sizes))
    seconds, size = drain(opened(dearmor(lines_of(text, chars))), crc.update)
    note = "seal, armor, text split into lines, dearmor, open"
    phase(PHASES[3], size, seconds, crc, expected_armored, note)
    max_kib = maxrss_kib()

    tracemalloc.start()
    crc = Crc()
    traced_seconds, size = drain(opened(seal(pattern(total))), crc.update)
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    if crc.value != expected or size != total:
        raise AssertionError("traced: the plaintext came back different")

    chunks = total // PIECE + 1
    overhead = header_bytes + chunks * GCM_TAG_SIZE + TRAILER_TAG_SIZE
    if sealed_bytes - total != overhead:
        raise AssertionError(f"overhead {sealed_bytes - total} B, expected {overhead} B")
    return {
        "profile": AUTH_PROFILE,
        "recipient_devices": 1,
        "total_bytes": total,
        "armored_bytes": armored,
        "chunk_size": PIECE,
        "piece_bytes": PIECE,
        "phases": phases,
        "rss": {
            "interpreter_kib": interpreter_kib,
            "baseline_kib": baseline_kib,
            "baseline_current_kib": baseline_now_kib,
            "after_seal_open_kib": phases[0]["max_rss_kib_after"],
            "max_kib": max_kib,
            "increase_kib": max_kib - baseline_kib,
            "vm_hwm_kib": proc_status_kib("VmHWM"),
            "max_with_tracemalloc_kib": maxrss_kib(),
        },
        "tracemalloc": {"bytes": size, "peak_bytes": traced_peak, "seconds": traced_seconds},
        "sealed": {
            "bytes": sealed_bytes,
            "overhead_bytes": sealed_bytes - total,
            "header_bytes": header_bytes,
            "chunks": chunks,
            "chunk_tag_bytes": chunks * GCM_TAG_SIZE,
            "trailer_bytes": TRAILER_TAG_SIZE,
        },
        "armor": {"chars": chars[0], "object_bytes": sum(object_sizes)},
        "child_seconds": time.perf_counter() - started,
    }


def child_main(argv: list[str] | None = None) -> int:
    """``python -m tests.bench.objects_bench --total N --armor M``: forks, the fork
    measures and prints one JSON line (see the module's docstring for why)."""
    parser = argparse.ArgumentParser(prog="python -m tests.bench.objects_bench")
    parser.add_argument("--total", type=int, default=QUICK_TOTAL)
    parser.add_argument("--armor", type=int, default=QUICK_ARMOR)
    args = parser.parse_args(argv)
    if not hasattr(os, "fork"):  # no fork: ru_maxrss may include the parent's
        print(json.dumps(measure(args.total, args.armor) | {"forked": False}), flush=True)
        return 0
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            print(json.dumps(measure(args.total, args.armor) | {"forked": True}), flush=True)
            code = 0
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


# -- in the bench -------------------------------------------------------------------------


def run(quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    """The child's measurements, with the command that took them; ``RuntimeError``
    with its stderr if it failed."""
    total, armored = (QUICK_TOTAL, QUICK_ARMOR) if quick else (FULL_TOTAL, FULL_ARMOR)
    command = [sys.executable, "-m", "tests.bench.objects_bench"]
    command += ["--total", str(total), "--armor", str(armored)]
    started = time.perf_counter()
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=CHILD_TIMEOUT, check=False
    )
    if done.returncode != 0 or not done.stdout.strip():
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"the child exited with {done.returncode}: {tail}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall_seconds"] = time.perf_counter() - started
    result["command"] = " ".join(command[1:])
    for entry in result["phases"]:
        log(
            f"  {entry['name']}, {entry['bytes'] / MiB:,.0f} MiB: {entry['mb_per_s']:,.0f} MB/s, "
            f"max RSS {entry['max_rss_kib_after'] / 1024:.1f} MiB after it"
        )
    rss = result["rss"]
    log(
        f"  child max RSS {rss['max_kib'] / 1024:.1f} MiB (baseline "
        f"{rss['baseline_kib'] / 1024:.1f} MiB, +{rss['increase_kib'] / 1024:.1f}); "
        f"tracemalloc peak {result['tracemalloc']['peak_bytes'] / 1024:,.0f} KiB; overhead "
        f"{result['sealed']['overhead_bytes']:,} B; {result['wall_seconds']:.1f} s"
    )
    return result


if __name__ == "__main__":
    sys.exit(child_main())
