"""A/B benchmark of the plugin path (encrypt + decrypt) of two source trees, in one run.

Why: a change to the plugin is accepted when the plugin path is no slower than
before: the commit before and the one after, benched in one run on the same
machine, median of 7 repetitions, head/base at least 0.95x. Numbers from
separate runs drift by more than 5 %, so both trees are measured here, side by
side, under the same load.

How: each tree (a temporary ``git worktree`` of a revision, or a directory such
as the working tree as it is on disk) runs in its own interpreter with cwd and
PYTHONPATH set to that tree, so that tree's ``slixmpp_objenc`` and its
``tests/bench/objenc_bench.py`` (``PluginPair``) are the ones imported; the
worker names the ``slixmpp_objenc`` it loaded and the parent checks it. Each
repetition runs one process per tree, the order alternating (A B, B A, ...) so
that drift (heat, other work) cancels. The RSA identities are made once, by the
base tree, and handed to every worker as PEM files: same keys on both sides, and
no worker pays for RSA-3072 key generation. Each worker: ``PluginPair.create``
(AES-128, one Bob device), a warm-up, then ``pair.op(body)()`` in a loop for
about ``--seconds`` per body size::

    python -m tests.bench.ab --base REV [--head PATH_OR_REV] [--reps 7] [--seconds 3]
                             [--out bench-results]

Prints the table and writes ``OUT/AB.md``. The default head is this working
tree, uncommitted changes included.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .common import ALICE, BOB, body_text, machine_description

ROOT = Path(__file__).resolve().parents[2]
SIZES: dict[str, int] = {"2 KiB": 2048, "100 B": 100}
ACCEPT = 0.95
MARK = "objenc-ab-module: "

KEYGEN = """
import sys
from pathlib import Path
import slixmpp_objenc
from slixmpp_objenc.core import generate_identity
print("MARK" + slixmpp_objenc.__file__, file=sys.stderr)
out, alice, bob = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
for name, jid, bits in (("alice", alice, 3072), ("bob", bob, 3072), ("bob_2048", bob, 2048)):
    identity = generate_identity(jid, key_size=bits)
    (out / (name + ".key")).write_bytes(identity.private_key_pem())
    (out / (name + ".pem")).write_bytes(identity.certificate_pem())
""".replace("MARK", MARK)

WORKER = """
import asyncio, dataclasses, json, sys, time
from pathlib import Path
import slixmpp_objenc
from slixmpp_objenc.core import Identity, load_certificate, load_private_key
from tests.bench.objenc_bench import Identities, PluginPair
print("MARK" + slixmpp_objenc.__file__, file=sys.stderr)
keys, seconds = Path(sys.argv[1]), float(sys.argv[2])
authenticated = sys.argv[3:4] == ["1"]
bodies = json.loads((keys / "bodies.json").read_text())

def load(name):
    return Identity(load_private_key((keys / (name + ".key")).read_bytes()),
                    load_certificate((keys / (name + ".pem")).read_bytes()))

known = {"alice": load("alice"), "bobs": [load("bob")], "bob_2048": load("bob_2048")}
identities = Identities(**{f.name: known[f.name] for f in dataclasses.fields(Identities)})

async def main():
    pair = await PluginPair.create(identities, authenticated=authenticated)
    result = {}
    try:
        for label, body in bodies.items():
            op = pair.op(body)
            start = time.perf_counter()
            while time.perf_counter() - start < min(0.5, seconds / 3):
                await op()
            count, start = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - start) < seconds:
                await op()
                count += 1
            result[label] = count / elapsed
    finally:
        await pair.close()
    print(json.dumps(result))

asyncio.run(main())
""".replace("MARK", MARK)


@dataclass
class Tree:
    role: str
    path: Path
    label: str
    runs: dict[str, list[float]] = field(default_factory=dict)


def git(*args: str, cwd: Path = ROOT) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def run_python(tree: Tree, code: str, *args: str) -> str:
    """Run ``code`` in ``tree``; check it imported that tree's package; return its stdout."""
    env = {**os.environ, "PYTHONPATH": str(tree.path), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=tree.path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"{tree.role} ({tree.path}) failed:\n{done.stderr[-3000:]}")
    loaded = [line[len(MARK) :] for line in done.stderr.splitlines() if line.startswith(MARK)]
    if not loaded or not Path(loaded[0]).resolve().is_relative_to(tree.path.resolve()):
        raise RuntimeError(f"{tree.role}: slixmpp_objenc from {loaded} is not in {tree.path}")
    return done.stdout


def make_tree(role: str, spec: str, scratch: Path) -> Tree:
    """A directory as it is on disk, or a detached worktree of a revision."""
    if Path(spec).is_dir():
        path = Path(spec).resolve()
        label = git("rev-parse", "--short", "HEAD", cwd=path)
        changed = git("status", "--porcelain", "--untracked-files=no", cwd=path)
        if changed:
            label += f" + uncommitted changes to {len(changed.splitlines())} tracked file(s)"
        return Tree(role, path, f"`{label}` ({path})")
    sha = git("rev-parse", "--verify", f"{spec}^{{commit}}")
    path = scratch / role
    git("worktree", "add", "--detach", str(path), sha)
    return Tree(role, path, f"`{git('rev-parse', '--short', sha)}` ({spec})")


def span(values: list[float]) -> str:
    return f"{min(values):.1f} to {max(values):.1f}"


def report(base: Tree, head: Tree, machine: str, reps: int, seconds: float) -> str:
    lines = [
        "# A/B: plugin path, encrypt + decrypt",
        "",
        f"Machine: {machine}",
        "",
        f"- base: {base.label}",
        f"- head: {head.label}",
        "",
        f"{reps} repetitions, one process per tree each, order alternating; per process and "
        f"size: `PluginPair.create` (AES-128, RSA-3072, one Bob device), warm-up, then "
        f"`pair.op(body)()` for {seconds:g} s. Accepted when head/base >= {ACCEPT}.",
        "",
        "| size | base median ops/s | head median ops/s | head/base | accepted "
        "| base min to max | head min to max |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for size in SIZES:
        b, h = statistics.median(base.runs[size]), statistics.median(head.runs[size])
        ok = "yes" if h / b >= ACCEPT else "**no**"
        lines.append(
            f"| {size} | {b:.1f} | {h:.1f} | {h / b:.3f}x | {ok} "
            f"| {span(base.runs[size])} | {span(head.runs[size])} |"
        )
    lines += ["", "Each repetition (ops/s):", "", "| rep | order |"]
    lines[-1] += "".join(f" {t.role} {s} |" for s in SIZES for t in (base, head))
    lines.append("|---:|---|" + "---:|" * 2 * len(SIZES))
    for i in range(reps):
        order = "base, head" if i % 2 == 0 else "head, base"
        cells = "".join(f" {t.runs[s][i]:.1f} |" for s in SIZES for t in (base, head))
        lines.append(f"| {i + 1} | {order} |{cells}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="revision before the change")
    parser.add_argument(
        "--head", default=str(ROOT), help="directory or revision (default: %(default)s)"
    )
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument(
        "--authenticated",
        action="store_true",
        help="the authenticated profile (Ed25519/X25519, HPKE Auth) instead of the RSA one",
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per size")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args(argv)

    m = machine_description()
    machine = (
        f"{m['cpu_model']}, {m['usable_cores']}/{m['cores']} cores usable, {m['memory']}, "
        f"{m['kernel']}, {m['python']}, {m['cryptography_openssl']}, "
        f"load {m['load_average_at_start']}, other work {m['other_cpu_busy_percent_at_start']} %"
    )
    scratch = Path(tempfile.mkdtemp(prefix="objenc-ab-"))
    trees: list[Tree] = []
    try:
        trees.append(make_tree("base", args.base, scratch))
        trees.append(make_tree("head", args.head, scratch))
        base, head = trees
        keys = scratch / "keys"
        keys.mkdir()
        run_python(base, KEYGEN, str(keys), ALICE, BOB)
        bodies = {label: body_text(length) for label, length in SIZES.items()}
        (keys / "bodies.json").write_text(json.dumps(bodies))
        for i in range(args.reps):
            for tree in (base, head) if i % 2 == 0 else (head, base):
                result = json.loads(
                    run_python(
                        tree,
                        WORKER,
                        str(keys),
                        str(args.seconds),
                        "1" if args.authenticated else "0",
                    )
                )
                for size in SIZES:
                    tree.runs.setdefault(size, []).append(result[size])
                shown = ", ".join(f"{s} {result[s]:.1f}/s" for s in SIZES)
                print(f"rep {i + 1}/{args.reps} {tree.role}: {shown}", file=sys.stderr)
    finally:
        for tree in trees:
            if tree.path.is_relative_to(scratch):
                subprocess.run(["git", "worktree", "remove", "--force", str(tree.path)], cwd=ROOT)
        shutil.rmtree(scratch, ignore_errors=True)
        subprocess.run(["git", "worktree", "prune"], cwd=ROOT)

    text = report(base, head, machine, args.reps, args.seconds)
    if args.authenticated:
        text = text.replace(
            "(AES-128, RSA-3072, one Bob device)", "(authenticated profile, one Bob device)"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "AB.md").write_text(text, encoding="utf-8")
    print(text)
    print(f"written to {args.out / 'AB.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
