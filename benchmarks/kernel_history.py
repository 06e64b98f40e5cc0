"""The Cython kernel's speed relative to glibc across its history, measured in one run.

Issue 11 asks that the hardened kernel stay at or above its pre-hardening ratio to glibc on
Mixed WS=400.  This script builds nothing itself: it runs the same Mixed stream through the
Cython kernel of several source trees (each in its own child process, with that tree first on
``sys.path``) and through the native C driver with glibc (``simalloc.native.run_native``, the
same stream: prefault untimed, timed loop plus final drain), interleaved pair by pair::

    pair 1:  tree A kernel, glibc, tree B kernel, glibc, tree C kernel, glibc
    pair 2:  ...                       ratio_i = kernel ops/s / the glibc run right after it

and prints the median ratio of each tree side by side.  The default trees::

    pre-hardening  b0a3760   git clone -q /work/main /tmp/prehard && cd /tmp/prehard &&
    hardened       ba28463     git checkout -q b0a3760 && python setup.py build_ext --inplace
    current        this tree (its compiled kernel, as built)

Usage::

    python benchmarks/kernel_history.py --tree pre=/tmp/prehard --tree hardened=/tmp/hard
    python benchmarks/kernel_history.py ... --cachegrind      # + instructions per Mixed op

``--cachegrind`` runs each tree's kernel under ``valgrind --tool=cachegrind`` twice (two stream
lengths) and reports the difference in instructions over the difference in operations: the
per-operation cost of the generator and the kernel, without start-up.  The machine is shared
and noisy: compare only figures printed by one run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# run in a child with the tree first on sys.path; prints one JSON line
_CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import simalloc
from simalloc.workloads.mixed import run_mixed, run_mixed_on
mode, cycles, ws = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
assert simalloc.__file__.startswith(sys.argv[1]), simalloc.__file__
with simalloc.Heap(simalloc.Config.defaults(kernel="cython")) as heap:
    assert heap.kernel.name == "cython", heap.kernel.name
    if mode == "mixed":
        r = run_mixed_on(heap, cycles, ws, 1)
    else:  # cachegrind: the loop only (no prefault), the same for both lengths
        slots = np.zeros(ws, np.uint64)
        run_mixed(heap, cycles, ws, 1, slots)
        r = {"ops": cycles}
print(json.dumps(r))
"""


def _child(tree: str, mode: str, cycles: int, ws: int, prefix: list[str] | None = None) -> dict:
    cmd = (prefix or []) + [sys.executable, "-c", _CHILD, tree, mode, str(cycles), str(ws)]
    # one BLAS thread: numpy's idle OpenBLAS threads spin and blur instruction counts
    env = dict(os.environ, SIMALLOC_KERNEL="cython", OPENBLAS_NUM_THREADS="1")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=tree, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _instr(tree: str, cycles: int, ws: int) -> int:
    """Instructions executed by a child running ``cycles`` Mixed cycles (cachegrind)."""
    with tempfile.TemporaryDirectory() as d:
        outf = os.path.join(d, "cg.out")
        _child(tree, "loop", cycles, ws,
               ["valgrind", "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={outf}"])
        text = Path(outf).read_text()
    m = re.search(r"^summary:\s+(\d+)", text, re.M)
    if not m:
        raise RuntimeError("no cachegrind summary")
    return int(m.group(1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tree", action="append", default=[], metavar="LABEL=PATH",
                    help="a source tree with its kernel built in place (repeatable; the "
                         "current tree is always added last as 'current')")
    ap.add_argument("--ops", type=int, default=10_000_000, help="Mixed cycles per run")
    ap.add_argument("--ws", type=int, default=400)
    ap.add_argument("--pairs", type=int, default=5, help="interleaved kernel/glibc pairs (>= 5)")
    ap.add_argument("--cachegrind", action="store_true", help="also instructions per Mixed op")
    ap.add_argument("--cg-ops", type=int, nargs=2, default=[200_000, 1_200_000])
    args = ap.parse_args(argv)
    trees = [tuple(t.split("=", 1)) for t in args.tree] + [("current", str(ROOT))]
    for label, path in trees:
        if not Path(path, "simalloc").is_dir():
            ap.error(f"{label}: {path} is not a simalloc source tree")
    sys.path.insert(0, str(ROOT))
    from simalloc.native import run_native

    git = {label: subprocess.run(["git", "-C", path, "log", "-1", "--format=%h"], text=True,
                                 capture_output=True).stdout.strip() or "?" for label, path in trees}
    print(f"Mixed WS={args.ws}, {args.ops:,} cycles per run, {args.pairs} interleaved pairs per "
          f"tree; shared noisy 2-core machine: medians of ratios measured side by side")
    for _label, path in trees:  # warm-up: byte-compile each tree, page the libraries in
        _child(path, "mixed", 10_000, args.ws)
    ratios: dict[str, list[float]] = {label: [] for label, _ in trees}
    rates: dict[str, list[float]] = {label: [] for label, _ in trees}
    glibc: list[float] = []
    gl_of: dict[str, list[float]] = {label: [] for label, _ in trees}
    for i in range(args.pairs):
        for label, path in trees:
            k = _child(path, "mixed", args.ops, args.ws)["ops_per_s"]
            g = run_native("glibc", args.ops, args.ws, 1)[0]["ops_per_s"]
            rates[label].append(k)
            glibc.append(g)
            gl_of[label].append(g)
            ratios[label].append(k / g)
            print(f"  pair {i + 1} {label:>10}: kernel {k / 1e6:6.2f} M ops/s, glibc "
                  f"{g / 1e6:6.2f} M ops/s, ratio {k / g:.3f}", flush=True)
    cg: dict[str, float] = {}
    if args.cachegrind:
        a, b = args.cg_ops
        for label, path in trees:
            cg[label] = (_instr(path, b, args.ws) - _instr(path, a, args.ws)) / (b - a)
    print()
    # median: of the per-pair ratios; best: the fastest kernel run over the fastest glibc run
    # beside it (the runs least disturbed by the other users of the machine)
    print(f"{'tree':>10} {'commit':>8} {'kernel M ops/s':>15} {'median ratio':>13} "
          f"{'(min..max)':>11} {'best/best':>10}" + (f" {'instr/op':>9}" if cg else ""))
    for label, _ in trees:
        r = ratios[label]
        print(f"{label:>10} {git[label]:>8} {statistics.median(rates[label]) / 1e6:15.2f} "
              f"{statistics.median(r):13.3f} {f'{min(r):.2f}..{max(r):.2f}':>11} "
              f"{max(rates[label]) / max(gl_of[label]):10.3f}" + (f" {cg[label]:9.1f}" if cg else ""))
    print(f"glibc median {statistics.median(glibc) / 1e6:.2f} M ops/s over all {len(glibc)} runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
