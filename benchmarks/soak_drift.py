"""A soak that proves no drift (issue 11): N Mixed operations on one heap, resident memory exact.

    python benchmarks/soak_drift.py                  # 1e8 operations per policy
    python benchmarks/soak_drift.py --ops 1e9        # the full run

For each policy (LEAN + MADV_DONTNEED with hakmem's variables, and the slab-granular purge) one
heap runs bench_random_mixed (``run_mixed``, WS=400, chained xorshift state) in epochs of
``--epoch-ops`` operations after a warm-up of ``--warmup`` operations (default a tenth of the
run, bench_random_mixed's prefault; the resident set is the high-water mark of the pages the
slabs ever carved, which creeps up by a page whenever a class's live count sets a record, so
the first sample belongs after that settles -- metrics.py).  After the warm-up and
after every epoch it reads the heap's *exact* resident bytes (``heap.resident()``: the page
model, equal to ``/proc/self/pagemap`` -- tests/test_resident_model.py) and prints them after
the warm-up and at the end, the drift under the report's definition (first -> last epoch,
``simalloc.experiments.metrics.drift_pct``), the settled drift (second half), the range over all
epochs, LazyFree bytes, and the throughput.  ``heap.check()`` runs at the end.  Exit status 1 if
a drift is not 0 (``--tolerance`` in percent; default 0).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import simalloc
from simalloc.experiments.metrics import drift_pct, drift_settled_pct
from simalloc.workloads.mixed import PREFAULT_SEED_OFFSET, run_mixed

POLICIES = {
    "lean-dontneed": {"HAKMEM_SS_MEM_LEAN": "1", "HAKMEM_SS_MEM_LEAN_DECOMMIT": "DONTNEED"},
    "slab-purge": {"policy": "slab-purge"},
}


def _count(text: str) -> int:
    value = float(text)
    if not value.is_integer() or value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a positive whole number of operations (1e8 is fine)")
    return int(value)


def soak(name: str, overrides: dict, ops: int, epoch_ops: int, warmup: int, ws: int, seed: int,
         kernel: str) -> dict:
    heap = simalloc.Heap(simalloc.Config.defaults(kernel=kernel, **overrides))
    slots = np.zeros(ws, np.uint64)
    run_mixed(heap, warmup, ws, seed + PREFAULT_SEED_OFFSET, slots)
    samples = [heap.resident()["resident_bytes"]]
    lazy = [heap.resident()["lazyfree_bytes"]]
    heap.reset_resident_stats()
    state, done = seed, 0
    t0 = time.perf_counter()
    while done < ops:
        n = min(epoch_ops, ops - done)
        state = run_mixed(heap, n, ws, state, slots)
        done += n
        res = heap.resident()
        samples.append(res["resident_bytes"])
        lazy.append(res["lazyfree_bytes"])
    dt = time.perf_counter() - t0
    peak = heap.resident()["resident_peak_bytes"]
    heap.check()
    heap.drain_slots(slots)
    heap.check()
    heap.close()
    grew = [i for i in range(1, len(samples)) if samples[i] != samples[i - 1]]
    return {"policy": name, "ops": done, "last_change": grew[-1] * epoch_ops if grew else 0,
            "epochs": len(samples) - 1, "first": samples[0], "last": samples[-1],
            "min": min(samples), "max": max(samples), "peak": peak, "lazy_last": lazy[-1],
            "drift_pct": drift_pct(samples), "drift_settled_pct": drift_settled_pct(samples),
            "drift_bytes": samples[-1] - samples[0], "seconds": dt, "ops_per_s": done / dt}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ops", type=_count, default=100_000_000, help="Mixed operations after the warm-up (1e8)")
    ap.add_argument("--epoch-ops", type=_count, default=None, help="operations per epoch (default ops/100)")
    ap.add_argument("--warmup", type=_count, default=None,
                    help="warm-up operations (default ops/10: bench_random_mixed's prefault)")
    ap.add_argument("--ws", type=int, default=400)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--kernel", default="auto", choices=("auto", "cython", "python"))
    ap.add_argument("--policy", action="append", choices=sorted(POLICIES), help="default: all")
    ap.add_argument("--tolerance", type=float, default=0.0, help="largest |drift| in %% that passes (0)")
    args = ap.parse_args(argv)
    epoch_ops = args.epoch_ops or max(args.ops // 100, 1)
    warmup = args.warmup or max(args.ops // 10, 1)
    print(f"simalloc {simalloc.__version__}, kernel {simalloc.kernel_name(args.kernel)}: Mixed WS={args.ws}, "
          f"{args.ops:,} ops after a {warmup:,}-op warm-up, epochs of {epoch_ops:,} ops")
    rc = 0
    for name in args.policy or sorted(POLICIES):
        r = soak(name, POLICIES[name], args.ops, epoch_ops, warmup, args.ws, args.seed, args.kernel)
        ok = abs(r["drift_pct"]) <= args.tolerance
        rc |= not ok
        print(f"{name:14s} resident after warm-up {r['first']:,} B, at the end {r['last']:,} B "
              f"(epochs {r['epochs']}: min {r['min']:,}, max {r['max']:,}, exact peak {r['peak']:,}; "
              f"LazyFree at the end {r['lazy_last']:,} B; last change after {r['last_change']:,} ops)")
        print(f"{'':14s} drift first->last {r['drift_pct']:+.4f}% ({r['drift_bytes']:+,} B), settled "
              f"{r['drift_settled_pct']:+.4f}%  {'PASS' if ok else 'FAIL'}  "
              f"({r['ops']:,} ops in {r['seconds']:.1f} s, {r['ops_per_s'] / 1e6:.1f} M ops/s)", flush=True)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
