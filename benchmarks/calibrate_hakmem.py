"""Calibrate simalloc's hakmem model against hakmem's published ``[SS_OS_STATS]`` line.

hakmem's scorecard (hakmem-design.md s6; Mixed = bench_random_mixed, WS=400, 200M iterations,
FAST)::

    [SS_OS_STATS] alloc=9 free=11 madvise=9 madvise_disabled=0 mmap_total=9 fallback_mmap=0 huge_alloc=0

This script runs the same benchmark (prefault of cycles/10 undrained with seed+0xDEADBEEF, the
timed loop, the final drain) on simalloc's hakmem model with hakmem's documented defaults
(:data:`HAKMEM_MODEL`), prints simalloc's line under hakmem's, field by field, then

* a sweep of the parameters that move each field (documented defaults and the UNKNOWN ones:
  warm-pool prefill source and budget, the front-cache capacity, a flush of the front caches at
  exit), at ``--sweep-cycles`` each, naming the values that close the gap;
* Phase 54's question on that model: with LEAN (FREE and DONTNEED, 10 MB), does any superslab
  retire, and why (the committed bytes at every superslab-empty event against the budget).

Usage (2 cores: the 200M run takes a few minutes; Mid-tier requests run in Python)::

    python benchmarks/calibrate_hakmem.py                       # 200M cycles + sweep at 20M
    python benchmarks/calibrate_hakmem.py --cycles 20000000 --sweep-cycles 5000000
    python benchmarks/calibrate_hakmem.py --no-sweep --no-lean  # the comparison only

The definitions of simalloc's fields are ``simalloc.reports.OS_STATS_FIELDS``; the model and
its divergences from hakmem are in docs/hakmem-model.md.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

try:
    import simalloc
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import simalloc

from simalloc import Config, Heap, LeanPolicy

#: hakmem's published line (scorecard, Mixed WS=400, 200M iterations; hakmem-design.md s6).
HAKMEM_LINE = ("[SS_OS_STATS] alloc=9 free=11 madvise=9 madvise_disabled=0 mmap_total=9 "
               "fallback_mmap=0 huge_alloc=0")
HAKMEM = {k: int(v) for k, v in (f.split("=") for f in HAKMEM_LINE.split()[1:])}

#: simalloc's hakmem model with hakmem's documented defaults, spelled out (those that differ
#: from simalloc's option defaults first: the tiny limit and the Mid tier).
HAKMEM_MODEL: dict[str, Any] = {
    "tiny_max_size": 1023,  # HAKMEM_TINY_MAX_CLASS=7: tiny ends at 1023 B [V]
    "mid_tier": True,  # Pool/Mid 8/16/32 KB classes above it [V]
    "warm_pool_size": 16,  # HAKMEM_WARM_POOL_SIZE, the preset's 16 [V]
    "warm_pool_prefill": 2,  # WARM_POOL_PREFILL_BUDGET [V]
    "warm_pool_prefill_source": "shared",  # [I]
    "superslab_reuse": 0,  # HAKMEM_SUPERSLAB_REUSE default 0 [V]
    "ss_prefault": 0,  # HAKMEM_SS_PREFAULT default 0 [V]
    "ss_acquire_advice": "mmap",  # one madvise per superslab mapped [I: madvise=9 = alloc=9]
    "ss_lg": 21, "front_cache_cap": 64, "front_refill_batch": 16,  # [V] (TLS SLL 64 / 16)
    "ss_max_cached": 256, "ss_max_memory_mb": 512, "ss_ttl_sec": 60.0,  # Phase 9 LRU [V]
    "tiny_prewarm": True,  # ss_hot_prewarm_box: C2/C3 128, C4/C5 64 [V]
    "policy": "fast", "mem_lean": False,  # the scorecard line is FAST
}
FIELDS = ("alloc", "free", "madvise", "madvise_disabled", "mmap_total", "fallback_mmap", "huge_alloc")


def _fields(heap: Heap) -> dict[str, int]:
    """The heap's ``[SS_OS_STATS]`` fields now (definitions: ``simalloc.reports.OS_STATS_FIELDS``)."""
    return {k: int(v) for k, v in (f.split("=") for f in heap.os_stats_line().split()[1:])}


def _run_mixed(heap: Heap, cycles: int, ws: int, seed: int, slots: np.ndarray) -> int:
    """bench_random_mixed's loop through whichever entry point this simalloc has."""
    try:
        from simalloc.workloads.mixed import run_mixed
    except ImportError:
        return int(heap.run_mixed(cycles, ws, seed, slots))  # type: ignore[attr-defined]
    return int(run_mixed(heap, cycles, ws, seed, slots))


class RecordingLean(LeanPolicy):
    """LEAN, recording the committed superslab bytes seen at every superslab-empty event."""

    name = "lean"

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.seen: list[tuple[int, int, bool]] = []  # (ops, committed bytes incl. this one, kept)

    def on_superslab_empty(self, ctx: Any, ev: Any) -> Any:
        decision = super().on_superslab_empty(ctx, ev)
        self.seen.append((ev.ops, ctx.committed_superslab_bytes() + ctx.superslab_bytes(),
                          decision.action == "keep"))
        return decision


def run(cycles: int, *, ws: int = 400, seed: int = 1, kernel: str = "auto",
        policy: Any = None, **overrides: Any) -> dict[str, Any]:
    """Mixed as hakmem runs it on the hakmem model (+ ``overrides``).  Returns the
    ``[SS_OS_STATS]`` fields at exit (``line``), the same after a flush of the front caches
    (``flushed``: hakmem's TLS caches drained at exit, [I]), seconds and a few stats."""
    cfg = Config.defaults(**{**HAKMEM_MODEL, "kernel": kernel, **overrides})
    heap = Heap(cfg, policy=policy)
    try:
        slots = np.zeros(ws, dtype=np.uint64)
        phases = [_fields(heap)["free"]]  # superslab frees: after the heap's start (prewarm),
        t0 = time.perf_counter()
        _run_mixed(heap, cycles // 10, ws, (seed + 0xDEADBEEF) & 0xFFFFFFFF, slots)
        phases.append(_fields(heap)["free"])  # the prefault,
        _run_mixed(heap, cycles, ws, seed, slots)
        phases.append(_fields(heap)["free"])  # the timed loop,
        loop_end = heap.clock().ops  # the operation count before the final drain
        heap.drain_slots(slots)
        dt = time.perf_counter() - t0
        line = _fields(heap)
        phases.append(line["free"])  # the final drain
        st = heap.stats()
        heap.trim()
        flushed = _fields(heap)
        free_by_phase = dict(zip(("start", "prefault", "loop", "drain", "exit flush"),
                                 np.diff([0, *phases, flushed["free"]]).tolist(), strict=True))
        return {"line": line, "flushed": flushed, "seconds": dt, "free_by_phase": free_by_phase,
                "kernel": heap.kernel_name,
                "ops": st["ops"], "loop_end_ops": loop_end, "superslabs_active": st["superslabs_active"],
                "ss_from_lru": st["ss_from_lru"], "slab_empty_events": st["slab_empty_events"],
                "mid_allocs": st["mid_allocs"], "stats": st}
    finally:
        heap.close()


def fmt_line(d: dict[str, int]) -> str:
    return "[SS_OS_STATS] " + " ".join(f"{k}={d[k]}" for k in d)


def compare(ours: dict[str, int], label: str = "simalloc") -> str:
    """hakmem's line, simalloc's under it, then field by field."""
    rows = [f"hakmem   {HAKMEM_LINE}", f"{label:<8} {fmt_line(ours)}", "",
            f"  {'field':<17}{'hakmem':>8}{label:>10}   gap"]
    for k in FIELDS:
        gap = ours[k] - HAKMEM[k]
        rows.append(f"  {k:<17}{HAKMEM[k]:>8}{ours[k]:>10}   {'=' if gap == 0 else f'{gap:+d}'}")
    for k in ("lean_decommit", "lean_retire"):
        rows.append(f"  {k:<17}{'-':>8}{ours[k]:>10}   (Phase 54's counters)")
    return "\n".join(rows)


def _score(d: dict[str, int]) -> int:
    return sum(abs(d[k] - HAKMEM[k]) for k in ("alloc", "free", "madvise", "mmap_total"))


#: The grid over the UNKNOWN parameters that move ``alloc`` / ``free``: the warm-pool prefill
#: source and budget, and the front-cache capacity (hakmem's current Unified Cache capacity is
#: UNKNOWN; 64 / 16 is the documented old TLS SLL cap / refill, 0 = no front cache).
GRID: dict[str, list[Any]] = {
    "warm_pool_prefill_source": ["shared", "fresh"],
    "warm_pool_prefill": [1, 2, 3],
    "front_cache_cap": [64, 16, 0],
}
#: One-factor variations around the documented model: what each moves.
ONE_FACTOR: list[dict[str, Any]] = [
    {"ss_acquire_advice": "every"},  # madvise counts LRU pops too
    {"ss_acquire_advice": "off"},  # madvise -> madvise_disabled
    {"ss_prefault": 1},  # POPULATE_WRITE instead of WILLNEED: same count, pages resident
    {"ss_lg": 20},  # 1 MiB superslabs: mmap_total - alloc = fallback_mmap (alignment)
    {"mid_tier": False},  # 1024..1039 B become huge_alloc (one mmap each)
    {"tiny_max_size": 2047, "mid_tier": False},  # simalloc's former tiny limit
    {"tiny_prewarm": False},
    {"superslab_reuse": 1},
    {"warm_pool_size": 0},
]


def _fc(cap: int) -> dict[str, int]:
    return {"front_cache_cap": cap, "front_refill_batch": max(1, cap // 4),
            "front_drain_batch": max(1, cap // 2)}


def _short(ov: dict[str, Any]) -> str:
    ov = dict(ov)
    if "front_cache_cap" in ov:
        ov.pop("front_refill_batch", None)
        ov.pop("front_drain_batch", None)
    return " ".join(f"{k}={v}" for k, v in ov.items()) or "(documented defaults)"


def _row(ov: dict[str, Any], r: dict[str, Any], tag: str) -> str:
    d = r[tag]
    return (f"  {_short(ov):<62} {tag:<7} " + " ".join(f"{k}={d[k]}" for k in FIELDS[:5])
            + f" huge_alloc={d['huge_alloc']} fallback_mmap={d['fallback_mmap']}  gap={_score(d)}")


def sweep(cycles: int, kernel: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The grid, then the one-factor variations; prints a row per run (and per flush)."""
    out = []
    for source, budget, cap in itertools.product(*GRID.values()):
        ov = {"warm_pool_prefill_source": source, "warm_pool_prefill": budget, **_fc(cap)}
        r = run(cycles, kernel=kernel, **ov)
        out.append((ov, r))
        print(_row(ov, r, "line") + "  free by phase " + "/".join(map(str, r["free_by_phase"].values())),
              flush=True)
        if r["flushed"] != r["line"]:
            print(_row(ov, r, "flushed"), flush=True)
    print("  -- one factor at a time, around the documented model:")
    for ov in ONE_FACTOR:
        r = run(cycles, kernel=kernel, **ov)
        out.append((ov, r))
        print(_row(ov, r, "line"), flush=True)
    return out


def per_field(res: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
    """For each field: the settings that move it away from the documented model's value, and
    those that reach hakmem's value."""
    base = next(r for ov, r in res if ov.get("warm_pool_prefill_source") == "shared"
                and ov.get("warm_pool_prefill") == 2 and ov.get("front_cache_cap") == 64)
    print("\nWhat moves each field (documented-model value at the sweep length in brackets):")
    for k in FIELDS:
        b = base["line"][k]
        by_value: dict[int, list[str]] = {}
        for ov, r in res:
            for tag in ("line", "flushed"):
                name = _short(ov) + ("" if tag == "line" else " +exit flush")
                if r[tag][k] != b and name not in by_value.setdefault(r[tag][k], []):
                    by_value[r[tag][k]].append(name)
        by_value = {v: names for v, names in by_value.items() if names}
        print(f"  {k:<17}[{b}] hakmem {HAKMEM[k]}: " + ("moved by none" if not by_value else "moved to"))
        for v in sorted(by_value):
            names = by_value[v]
            mark = "  <- hakmem's value" if v == HAKMEM[k] else ""
            print(f"      {v:>6}: {names[0]}" + (f" (+{len(names) - 1} more)" if len(names) > 1 else "") + mark)


#: The closing note printed after the numbers (the reasoning is in docs/hakmem-model.md).
CLOSING_NOTE = """
Closing note (docs/hakmem-model.md, "Calibration"):
  alloc = mmap_total = madvise by construction: one per-acquisition madvise per superslab mmap,
    and 2 MiB mappings come back aligned (fallback_mmap=0, as in hakmem).  With every documented
    default Mixed WS=400 lives in ONE superslab: ~200 live blocks (~100 KB) plus the front caches
    fit in its 32 slabs.  Only a warm-pool prefill that maps fresh superslabs raises alloc
    (1 + prefill x tiny classes whose pool missed; Mixed has 6 tiny classes, C2..C7: 7 or 13).
    alloc=9 = 1 + 2 x 4 would need four classes drawing prefills -- no documented parameter
    gives it.  The model's superslab POPULATION is what differs from hakmem.
  free (simalloc: superslab_free calls = release-guard passes) needs superslabs to EMPTY; the
    front caches pin every slab they hold blocks of (hakmem: used-- only on drain, [V]), so with
    a 64- or 16-block front cache no superslab empties during Mixed, not even at the final drain;
    flushing the caches at exit empties each superslab that held blocks once (+1 or +2).  Without
    a front cache superslabs empty during the hot prewarm and the final drain (5 with one
    superslab, up to 12 with fresh prefills) -- not a documented setting.
  If hakmem's free counted the OS box's munmap calls instead, including the prefix/suffix trims
    of its map-2x-and-trim alignment (1 munmap per aligned 4 MiB mapping, 2 per unaligned one),
    free = alloc + unaligned mappings: 11 = 9 + 2, and free would say nothing about superslabs
    emptying.  simalloc cannot trim a Python mmap, so it cannot count that reading.
  madvise_disabled, fallback_mmap, huge_alloc match (0).  huge_alloc=0 itself confirms a Mid tier:
    with hakmem's tiny limit (1023 B) and no Mid tier, 1024..1039 B requests (1.6% of mallocs)
    would each be a huge mmap."""


def lean_question(cycles: int, kernel: str, variants: list[dict[str, Any]]) -> None:
    """Phase 54 on the model: LEAN FREE / DONTNEED, 10 MB, on the documented model and on a
    variant where superslabs empty during the run."""
    for ov in variants:
        for advice in ("FREE", "DONTNEED"):
            pol = RecordingLean(advice, 10)  # = HAKMEM_SS_MEM_LEAN=1 _DECOMMIT=advice _TARGET_MB=10
            r = run(cycles, kernel=kernel, policy=pol,
                    **{**ov, "mem_lean": True, "mem_lean_decommit": advice})
            d, f = r["line"], r["flushed"]
            loop = [e for e in pol.seen[:d["free"]] if e[0] <= r["loop_end_ops"]]
            drain = pol.seen[len(loop):d["free"]]

            def say(events: list[tuple[int, int, bool]]) -> str:
                if not events:
                    return "0"
                kept = sum(k for _o, _b, k in events)
                lo, hi = (min(b for _o, b, _k in events) >> 20, max(b for _o, b, _k in events) >> 20)
                return f"{len(events)} ({kept} kept; committed incl. it {lo}..{hi} MiB vs 10 MiB)"

            print(f"  LEAN {advice:<8} [{_short(ov)}]: alloc={d['alloc']}; superslab-empty events: "
                  f"prefault + timed loop {say(loop)}, final drain {say(drain)}, front caches "
                  f"flushed at exit +{f['free'] - d['free']}; lean_retire={d['lean_retire']} "
                  f"lean_decommit={d['lean_decommit']} (with the exit flush: {f['lean_retire']})",
                  flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=200_000_000, help="Mixed iterations (hakmem: 200M)")
    ap.add_argument("--sweep-cycles", type=int, default=20_000_000, help="iterations per sweep run")
    ap.add_argument("--lean-cycles", type=int, default=20_000_000, help="iterations per LEAN run")
    ap.add_argument("--kernel", default="auto", choices=("auto", "cython", "python"))
    ap.add_argument("--no-sweep", action="store_true")
    ap.add_argument("--no-lean", action="store_true")
    a = ap.parse_args(argv)
    print(f"simalloc {simalloc.__version__}: Mixed WS=400 seed=1, {a.cycles:,} cycles, FAST, "
          "hakmem's documented defaults (docs/hakmem-model.md)")
    r = run(a.cycles, kernel=a.kernel)
    print(f"kernel {r['kernel']}: {r['seconds']:.1f} s ({r['seconds'] / max(a.cycles, 1) * 1e7:.2f} s "
          f"per 10M cycles); {r['mid_allocs']:,} Mid-tier mallocs; {r['superslabs_active']} superslab(s) "
          f"active at exit; {r['slab_empty_events']} slab-empty events\n")
    print(compare(r["line"]))
    print("\n  free by phase: " + ", ".join(f"{k} {v}" for k, v in r["free_by_phase"].items())
          + " (exit flush = hakmem's TLS caches drained at exit, [I]; not in the line above)\n")
    if not a.no_sweep:
        print(f"Sweep ({a.sweep_cycles:,} cycles each; 'line' = as run, 'flushed' = front caches "
              "drained at exit; free by phase = start/prefault/loop/drain/exit flush):")
        res = sweep(a.sweep_cycles, a.kernel)
        best = sorted(((ov, tag, r2[tag]) for ov, r2 in res for tag in ("line", "flushed")),
                      key=lambda x: _score(x[2]))[:3]
        print("\nClosest settings (sum of |gap| over alloc, free, madvise, mmap_total):")
        for ov, tag, d in best:
            print(f"  {_short(ov)} [{tag}]: {fmt_line(d)}  gap={_score(d)}")
        exact = [(ov, tag) for ov, r2 in res for tag in ("line", "flushed") if _score(r2[tag]) == 0]
        print("  exact match: " + ("; ".join(f"{_short(ov)} [{tag}]" for ov, tag in exact)
                                   if exact else "none in this sweep"))
        per_field(res)
    print(CLOSING_NOTE)
    if not a.no_lean:
        print(f"\nPhase 54 on the model ({a.lean_cycles:,} cycles each):")
        lean_question(a.lean_cycles, a.kernel, [{}, {"warm_pool_prefill_source": "fresh", **_fc(0)}])
    return 0


if __name__ == "__main__":
    sys.exit(main())
