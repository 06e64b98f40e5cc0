"""What the decision log costs: events on vs off, Cython kernel, Mixed WS=400 and churn.

Each run builds a fresh heap (``Heap(events=True)`` keeps every record in memory, the most
the log can cost short of a slow sink; ``--sink null`` passes each record to a function that
drops it instead), runs the workload's untimed warm-up, then times the workload's operations
(``Workload.run_chunks``, the final drain included).  Runs alternate off on, on off, off on ...
so drifts of the shared machine hit both sides alike; the figure is the median of ``--runs``
runs per side, and the ratio is ``median(on) / median(off)`` of the timed wall seconds
(target: < 1.10), next to the same ratio of CPU seconds (``time.process_time``: less
sensitive to the other processes of a shared machine).  Last, the cost of one record is
timed alone and multiplied by the records of a run: the steadiest estimate of all.

Usage::

    python benchmarks/events_overhead.py                 # 7 runs per side, ~1 minute
    python benchmarks/events_overhead.py --runs 3 --ops 1000000

The machine is shared and noisy: read the ratios, measured side by side in one process,
rather than the absolute figures.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np

from simalloc import Config, Heap
from simalloc.workloads import get_workload


def one_run(workload: str, ops: int, ws: int | None, events: Any) -> tuple[float, float, int, int]:
    """Timed wall and CPU seconds, operations and log records of one run on a fresh Cython heap."""
    w = get_workload(workload, ops=ops, ws=ws, seed=1)
    with Heap(Config.defaults(kernel="cython"), events=events) as heap:
        slots = np.zeros(w.nslots, dtype=np.uint64)
        w.warmup(heap, slots)
        n = 0
        t0, c0 = time.perf_counter(), time.process_time()
        for done in w.run_chunks(heap, slots, 10):
            n += int(done)
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        records = len(heap.events()) if events is True else 0
    return dt, cpu, n, records


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7, help="runs per side (default 7)")
    ap.add_argument("--ops", type=int, default=3_000_000, help="operations per run (default 3,000,000)")
    ap.add_argument("--sink", choices=("keep", "null"), default="keep",
                    help="events on = records kept in memory (default) or sent to a null sink")
    args = ap.parse_args()
    on: Any = True if args.sink == "keep" else (lambda record: None)
    print(f"decision log overhead, Cython kernel, {args.ops:,} ops per run, {args.runs} interleaved "
          f"runs per side, events on = {args.sink}; machine shared and noisy")
    print(f"{'workload':<14} {'off s (median)':>15} {'on s (median)':>14} {'records/run':>12} "
          f"{'records/Mop':>12} {'on/off':>8} {'cpu on/off':>8}")
    costs: list[tuple[str, int, float]] = []
    for workload, ws in (("mixed", 400), ("churn", None)):
        off_t: list[float] = []
        on_t: list[float] = []
        off_c: list[float] = []
        on_c: list[float] = []
        records = ops_done = 0
        one_run(workload, args.ops // 10, ws, None)  # warm caches and the generator
        for i in range(args.runs):  # off on, on off, off on, ... (ABBA: neither side always first)
            for side in ((None, on) if i % 2 == 0 else (on, None)):
                dt, cpu, n, rec = one_run(workload, args.ops, ws, side)
                if side is None:
                    off_t.append(dt)
                    off_c.append(cpu)
                else:
                    on_t.append(dt)
                    on_c.append(cpu)
                    ops_done, records = n, rec
        m_off, m_on = statistics.median(off_t), statistics.median(on_t)
        label = f"{workload} WS={ws}" if ws else workload
        per_mop = records / ops_done * 1e6 if ops_done else 0.0
        cpu_ratio = statistics.median(on_c) / statistics.median(off_c)
        print(f"{label:<14} {m_off:>15.4f} {m_on:>14.4f} {records:>12,} {per_mop:>12,.0f} "
              f"{m_on / m_off:>8.3f} {cpu_ratio:>8.3f}")
        costs.append((label, records, m_off))
    # A steadier figure than the ratio on a noisy machine: the cost of one record, times the records.
    with Heap(Config.defaults(kernel="cython"), events=on) as heap:
        log = heap._st.log  # the slow path's own entry point (private: a benchmark, not an API)
        assert log is not None
        t0 = time.perf_counter()
        for _ in range(50_000):
            log.emit("slab_empty", 1, 2, 3, why="listed EMPTY")
        per_record = (time.perf_counter() - t0) / 50_000
    print(f"one record costs {per_record * 1e6:.2f} us; estimated overhead = records x that / off time:")
    for label, records, m_off in costs:
        print(f"  {label:<14} {records * per_record / m_off * 100:6.2f} %")


if __name__ == "__main__":
    main()
