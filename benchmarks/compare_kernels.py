"""Side-by-side speed of simalloc's kernels against real allocators, measured in one run.

Covers: the Cython batch kernel (``simalloc.workloads.run_mixed``: the Mixed stream from the
compiled generator in chunks, replayed by the kernel's ``apply``) vs the native C driver with
glibc (same Mixed op stream),
per-call ``heap.malloc``/``free`` from a Python loop vs libc ``malloc``/``free`` through ctypes
from the same loop, Cython vs pure Python, and how throughput and the simulator's own memory
scale with the working set (WS=400, 4000, and one large enough for ~a million live blocks).

Usage::

    python benchmarks/compare_kernels.py            # 20M ops, about a minute
    python benchmarks/compare_kernels.py --ops 2000000 --big-ws 200000   # quick

The machine is shared and noisy: every figure is the median of ``--repeat`` runs, and the
ratios compare runs made back to back in this one process.  The kernel's ratio to glibc across
its history (before and after the hardening, and now) is ``benchmarks/kernel_history.py``.
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import time

import numpy as np

import simalloc
from simalloc.workloads.mixed import PREFAULT_SEED_OFFSET, mixed_ops, run_mixed


def _mixed_heap_run(kernel: str, cycles: int, ws: int, seed: int = 1) -> dict:
    """One bench_random_mixed run on a fresh heap; timed region = timed loop + final drain."""
    cfg = simalloc.Config.defaults(kernel=kernel)
    with simalloc.Heap(cfg) as heap:
        slots = np.zeros(ws, np.uint64)
        run_mixed(heap, max(cycles // 10, 1), ws, seed + PREFAULT_SEED_OFFSET, slots)
        t0 = time.perf_counter()
        run_mixed(heap, cycles, ws, seed, slots)
        live = int(np.count_nonzero(slots))
        res = heap.residency()
        heap.drain_slots(slots)
        dt = time.perf_counter() - t0
        return {"ops_per_s": cycles / dt, "live_blocks": live,
                "heap_resident": res["resident_bytes"], "vm_rss": res["vm_rss_bytes"],
                "slots_bytes": slots.nbytes}


def _median(fn, repeat: int) -> dict:
    runs = [fn() for _ in range(repeat)]
    key = sorted(runs, key=lambda r: r["ops_per_s"])[len(runs) // 2]
    return key


def _per_call(kernel: str | None, n: int, ws: int = 400, seed: int = 1) -> float:
    """ops/s of a Python loop calling malloc/free per op: heap (kernel) or libc via ctypes.
    The Mixed stream is generated before the clock starts, so both sides time only the calls."""
    ops = list(mixed_ops(n, ws, seed, prefault=0))
    slots = [0] * ws
    if kernel is None:
        libc = ctypes.CDLL(None)
        malloc, free = libc.malloc, libc.free
        malloc.restype = ctypes.c_void_p
        malloc.argtypes = [ctypes.c_size_t]
        free.argtypes = [ctypes.c_void_p]
        heap = None
    else:
        heap = simalloc.Heap(simalloc.Config.defaults(kernel=kernel))
        malloc, free = heap.malloc, heap.free
    t0 = time.perf_counter()
    for kind, i, size in ops:
        if kind:
            free(slots[i])
        else:
            slots[i] = malloc(size)
    dt = time.perf_counter() - t0
    if heap is not None:
        heap.close()
    return len(ops) / dt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=20_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--big-ws", type=int, default=2_000_000,
                    help="working set for the ~million-live-blocks case (occupancy ~50%%)")
    ap.add_argument("--py-ops", type=int, default=400_000, help="ops for pure-Python runs")
    ap.add_argument("--call-ops", type=int, default=400_000, help="ops for per-call loops")
    args = ap.parse_args(argv)
    kernels = simalloc.available_kernels()
    print(f"simalloc {simalloc.__version__}; kernels available: {kernels}; "
          f"shared 2-core machine: medians of {args.repeat}, ratios from this run")
    rows: list[tuple[str, str]] = []
    fast = "cython" if "cython" in kernels else "python"

    # 1. batch kernel vs native glibc on the identical stream
    cy = _median(lambda: _mixed_heap_run(fast, args.ops, 400), args.repeat)
    rows.append((f"{fast} batch Mixed WS=400, {args.ops:,} ops", f"{cy['ops_per_s'] / 1e6:.2f} M ops/s"))
    def glibc_rate(cycles: int, ws: int, repeat: int) -> float | None:
        try:
            from simalloc.native import run_native

            nat = run_native("glibc", cycles, ws, 1, runs=repeat)
        except Exception as exc:  # no compiler, or no native module
            rows.append(("native C driver", f"unavailable: {exc}"))
            return None
        return statistics.median(r["ops_per_s"] for r in nat)

    glibc = glibc_rate(args.ops, 400, args.repeat)
    if glibc:
        rows.append(("native C driver, glibc, same stream", f"{glibc / 1e6:.2f} M ops/s"))
        rows.append((f"RATIO {fast} batch / glibc (target >= 0.5)", f"{cy['ops_per_s'] / glibc:.2f}x"))

    # 3. Cython vs pure Python (same loop, in the kernel)
    py = _median(lambda: _mixed_heap_run("python", args.py_ops, 400), max(1, args.repeat - 1))
    rows.append((f"python batch Mixed WS=400, {args.py_ops:,} ops", f"{py['ops_per_s'] / 1e6:.3f} M ops/s"))
    if fast == "cython":
        rows.append(("RATIO cython / python", f"{cy['ops_per_s'] / py['ops_per_s']:.1f}x"))

    # 4. scaling with the working set, and the simulator's own memory
    w4k = _median(lambda: _mixed_heap_run(fast, args.ops, 4000), args.repeat)
    big_ops = max(args.ops, 10 * args.big_ws)
    big = _mixed_heap_run(fast, big_ops, args.big_ws)
    rows.append(("Mixed WS=4000", f"{w4k['ops_per_s'] / 1e6:.2f} M ops/s "
                 f"({w4k['ops_per_s'] / cy['ops_per_s']:.2f}x of WS=400)"))
    rows.append((f"Mixed WS={args.big_ws:,} ({big['live_blocks']:,} live blocks, {big_ops:,} ops)",
                 f"{big['ops_per_s'] / 1e6:.2f} M ops/s ({big['ops_per_s'] / cy['ops_per_s']:.2f}x of WS=400)"))
    for label, run, cycles, ws in (("WS=4000", w4k, args.ops, 4000),
                                   (f"WS={args.big_ws:,}", big, big_ops, args.big_ws)):
        g = glibc_rate(cycles, ws, 1)
        if g:
            rows.append((f"  glibc at {label} (same stream)",
                         f"{g / 1e6:.2f} M ops/s; simalloc/glibc {run['ops_per_s'] / g:.2f}x; "
                         f"glibc's own {label}/WS=400 scaling {g / glibc:.2f}x" if glibc else ""))
    own_small = cy["vm_rss"] - cy["heap_resident"] - cy["slots_bytes"]
    own_big = big["vm_rss"] - big["heap_resident"] - big["slots_bytes"]
    per_block = (own_big - own_small) / max(big["live_blocks"] - cy["live_blocks"], 1)
    rows.append(("simulator memory outside the heap's mappings",
                 f"{own_small / 2**20:.1f} MiB at WS=400, {own_big / 2**20:.1f} MiB at WS={args.big_ws:,} "
                 f"({per_block:+.2f} B per extra live block)"))

    # 5. per-call from a Python loop (last: its op lists grow the interpreter's own heap,
    #    which would blur the memory figure above)
    heap_calls = statistics.median(_per_call(fast, args.call_ops) for _ in range(args.repeat))
    libc_calls = statistics.median(_per_call(None, args.call_ops) for _ in range(args.repeat))
    rows.append((f"per-call heap.malloc/free ({fast}) from Python", f"{heap_calls / 1e6:.2f} M ops/s"))
    rows.append(("per-call libc malloc/free via ctypes from Python", f"{libc_calls / 1e6:.2f} M ops/s"))
    rows.append(("RATIO heap per-call / ctypes libc (target >= 1.0)", f"{heap_calls / libc_calls:.2f}x"))

    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
