"""Every release policy's speed against native glibc on the same op stream, log off and on.

Issue 9 item 8: "with any preset, the Cython kernel on Mixed WS=400 and on churn stays at >=
0.5x of native glibc on the same stream, and the log, when on, costs under 10%".

For each stream (``mixed`` WS=400 and ``churn``) one op-stream file is written
(:func:`simalloc.native.opfile.build_stream`: the workload's untimed warm-up, then its timed
part with the final drain) and both consumers read that file::

    stream file --+--> native driver, file mode, glibc (no LD_PRELOAD): ops/s of its op loop
                  '--> read_opfile --> Heap.replay on a fresh Cython heap, per policy,
                       events off and on (``Heap(events=True)``: every record kept in memory):
                       ops/s of the one timed ``replay`` call (warm-up untimed)

Policies: ``fast``, ``lean``, ``slab-purge`` (the overrides ``simalloc grade`` uses) and the six
presets of :mod:`simalloc.presets`.  Repeats are interleaved -- each round runs the native driver
once, then every policy off/on (on/off in odd rounds, so neither side always runs first) -- and
every figure is a median over rounds.  ``x glibc`` = median(sim ops/s) / median(glibc ops/s)
(target >= 0.5); ``log cost`` = median(on seconds) / median(off seconds) - 1 of the timed
``replay`` call (target < 10%).

Usage::

    python benchmarks/preset_speed.py                        # 5 rounds, default sizes
    python benchmarks/preset_speed.py --rounds 3 --mixed-ops 500000 --churn-rounds 1

Not a test: prints a table.  The machine is shared and noisy (other processes run beside it):
read the ratios, measured side by side in one run, rather than the absolute rates; the log's
cost in particular is a difference of two noisy timings.  Needs a C compiler (the native
driver) and the compiled Cython kernel.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import simalloc  # noqa: E402
from simalloc import Config, Heap  # noqa: E402
from simalloc.experiments.grade import POLICY_PRESETS  # noqa: E402
from simalloc.native import NativeUnavailable, run_file  # noqa: E402
from simalloc.native.opfile import StreamFile, build_stream  # noqa: E402
from simalloc.policy import PRESETS  # noqa: E402

BUILTINS = ("fast", "lean", "slab-purge")


def policies() -> dict[str, dict[str, Any]]:
    """Policy label -> config overrides: the three built-ins, then every preset."""
    import simalloc.presets  # noqa: F401  (registers the presets)

    out = {name: dict(POLICY_PRESETS[name]) for name in BUILTINS}
    out.update({name: {"policy": name} for name in PRESETS})
    return out


def sim_run(overrides: dict[str, Any], sf: StreamFile, rows: np.ndarray, events: bool) -> tuple[float, int]:
    """Timed seconds of the timed rows through ``Heap.replay`` (fresh Cython heap), and the
    log's records (0 with events off)."""
    with Heap(Config.defaults(kernel="cython", **overrides), events=events or None) as heap:
        slots = np.zeros(max(sf.n_slots, 1), dtype=np.uint64)
        heap.replay(rows[:sf.warmup_ops], slots)
        timed = np.ascontiguousarray(rows[sf.warmup_ops:])
        t0 = time.perf_counter()
        heap.replay(timed, slots)
        dt = time.perf_counter() - t0
        records = len(heap.events()) if events else 0
    return dt, records


def bench_stream(sf: StreamFile, pols: dict[str, dict[str, Any]], rounds: int) -> dict[str, Any]:
    rows = sf.rows()
    native: list[float] = []
    off: dict[str, list[float]] = {p: [] for p in pols}
    on: dict[str, list[float]] = {p: [] for p in pols}
    records: dict[str, int] = {}
    for ov in pols.values():  # one untimed pass: imports, caches, the kernel's first calls
        sim_run(ov, sf, rows, False)
    for r in range(rounds):
        native.append(run_file("glibc", sf.path, sf.warmup_ops)[0]["seconds"])
        for name, ov in pols.items():
            for events in ((False, True) if r % 2 == 0 else (True, False)):
                dt, rec = sim_run(ov, sf, rows, events)
                (on if events else off)[name].append(dt)
                if events:
                    records[name] = rec
    return {"native_s": statistics.median(native), "native_all": native,
            "off_s": {p: statistics.median(v) for p, v in off.items()},
            "on_s": {p: statistics.median(v) for p, v in on.items()}, "records": records}


def format_table(sf: StreamFile, res: dict[str, Any]) -> str:
    n = sf.ops
    nat = res["native_s"]
    lines = [f"== {sf.name}: {sf.describe}",
             f"   {n:,} timed ops; native glibc (driver file mode): {n / nat / 1e6:.2f} M ops/s "
             f"(median of {len(res['native_all'])})",
             f"   {'policy':<20} {'off Mops/s':>10} {'x glibc':>8} {'on Mops/s':>10} {'x glibc':>8} "
             f"{'log cost':>9} {'records':>9}  {'>=0.5x':>6}"]
    for p, t_off in res["off_s"].items():
        t_on = res["on_s"][p]
        r_off, r_on = nat / t_off, nat / t_on
        ok = "yes" if min(r_off, r_on) >= 0.5 else "NO"
        lines.append(f"   {p:<20} {n / t_off / 1e6:>10.2f} {r_off:>8.2f} {n / t_on / 1e6:>10.2f} "
                     f"{r_on:>8.2f} {(t_on / t_off - 1) * 100:>8.1f}% {res['records'].get(p, 0):>9,}  {ok:>6}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    ap.add_argument("--mixed-ops", type=int, default=2_000_000, help="Mixed WS=400 timed cycles")
    ap.add_argument("--churn-rounds", type=int, default=2, help="churn rounds (~551k ops each)")
    ap.add_argument("--only", nargs="*", help="policies to run (default: all nine)")
    a = ap.parse_args()
    if "cython" not in simalloc.available_kernels():
        print("the Cython kernel is not built (python setup.py build_ext --inplace)")
        return 1
    pols = policies()
    if a.only:
        pols = {k: v for k, v in pols.items() if k in a.only}
    print(f"simalloc {simalloc.__version__}: policies vs native glibc on the same op-stream file, "
          f"Cython kernel, {a.rounds} interleaved rounds, medians; {os.cpu_count()} CPUs, "
          f"machine shared and noisy (read the ratios, not the rates)")
    print("x glibc = sim ops/s / glibc ops/s (target >= 0.5); log cost = events on / off - 1 "
          "of the timed seconds (target < 10%)")
    with tempfile.TemporaryDirectory(prefix="simalloc-preset-speed-") as d:
        streams = [build_stream("mixed", d, ops=a.mixed_ops, ws=400, seed=1),
                   build_stream("churn", d, ops=0, seed=1, params={"rounds": a.churn_rounds})]
        for sf in streams:
            try:
                res = bench_stream(sf, pols, a.rounds)
            except NativeUnavailable as exc:
                print(f"native driver unavailable: {exc}")
                return 1
            print()
            print(format_table(sf, res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
