"""Repeated runs of one configuration: throughput mean / median / CV and memory figures.

:func:`run_bench` runs a :class:`~.metrics.RunSpec` ``runs`` times, each on a fresh heap (or a
fresh process with ``isolate``), and aggregates them with :func:`~.ab.aggregate`: ops/s mean,
median and CV, the heap's peak resident bytes, the process peak RSS, syscalls/op, refaults/op
and refault bytes/op (pages written again after a release: ``simalloc/pages.py``) and the
``[SS_OS_STATS]`` line.  :func:`collect_native` adds rows for the C allocators found by
:mod:`simalloc.native` (glibc, and jemalloc / mimalloc / tcmalloc when installed) running the
same Mixed loop.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from .ab import DESCRIPTIONS, aggregate
from .metrics import RunResult, RunSpec, cv_pct, run_once

__all__ = ["BenchResult", "collect_native", "format_bench", "run_bench"]


@dataclass
class BenchResult:
    """Per-run results and their aggregate (the side-table keys of :mod:`.ab`)."""

    spec: RunSpec
    runs: list[RunResult]
    table: dict[str, Any]
    native: list[dict[str, Any]] = field(default_factory=list)
    native_note: str = ""

    def as_json(self) -> dict[str, Any]:
        s = self.spec
        return {"workload": {"name": s.workload, "ops": s.ops, "ws": s.ws, "seed": s.seed,
                             "params": s.params, "epochs": s.epochs},
                "overrides": s.overrides, "summary": self.table,
                "failed_runs": self.failed_runs, "descriptions": dict(DESCRIPTIONS),
                "native": self.native, "native_note": self.native_note}

    @property
    def failed_runs(self) -> list[str]:
        """``"run 2: Error: ..."`` for every run that raised or died."""
        return [f"run {i}: {r.error}" for i, r in enumerate(self.runs, 1) if r.error]


def run_bench(spec: RunSpec, runs: int = 3, isolate: bool = False, seed_stride: int = 0,
              log: Callable[[str], None] | None = None) -> BenchResult:
    """Run ``spec`` ``runs`` times (run ``i`` with seed ``spec.seed + i * seed_stride``)."""
    out: list[RunResult] = []
    for i in range(runs):
        rs = replace(spec, seed=spec.seed + i * seed_stride, label=spec.label or "bench")
        if log:
            log(f"[bench] run {i + 1}/{runs}: {rs.workload} ops={rs.ops} seed={rs.seed} ...")
        r = run_once(rs, isolate=isolate)
        if log:
            log(f"[bench]   {r.summary()}")
        out.append(r)
    return BenchResult(spec=spec, runs=out, table=aggregate(out, spec.overrides))


def collect_native(cycles: int, ws: int, seed: int, runs: int = 1,
                   log: Callable[[str], None] | None = None) -> tuple[list[dict[str, Any]], str]:
    """One row ``{allocator, runs, ops, seconds, ops_per_s, ops_per_s_cv_pct, max_rss_bytes}``
    per native allocator found (medians over ``runs``; max of the peak RSS), and a note (why
    there are none, which were skipped).  Never raises for a missing compiler or library: that
    is reported in the note."""
    try:
        from ..native import ALLOCATOR_LIBS, NativeUnavailable, find_allocators, run_native
    except ImportError as exc:
        return [], f"simalloc.native is not available ({exc})"
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    try:
        found = find_allocators()
    except NativeUnavailable as exc:
        return [], f"native benchmark unavailable: {exc}"
    skipped += [f"{name} (not installed)" for name in ALLOCATOR_LIBS if name not in found]
    for name in found:
        if log:
            log(f"[native] {name}: {cycles} cycles ws={ws} seed={seed} x{runs} ...")
        try:
            got = run_native(name, cycles, ws, seed, runs=runs)
        except NativeUnavailable as exc:
            skipped.append(f"{name} ({exc})")
            continue
        if got:
            rows.append(_native_summary(got))
    note = ("skipped: " + ", ".join(skipped)) if skipped else ""
    return rows, note


def _native_summary(got: list[dict[str, Any]]) -> dict[str, Any]:
    """One row per allocator: median ops/s over its runs, max of the peak RSS."""
    tput = sorted(r["ops_per_s"] for r in got)
    return {"allocator": got[0]["allocator"], "runs": len(got), "ops": got[0]["ops"],
            "seconds": statistics.median(r["seconds"] for r in got),
            "ops_per_s": statistics.median(tput), "ops_per_s_cv_pct": cv_pct(tput),
            "max_rss_bytes": max(r["max_rss_bytes"] for r in got),
            "library": got[0].get("library")}


def _kib(x: float) -> str:
    return f"{x / 1024:,.0f} KiB"


def format_bench(res: BenchResult) -> str:
    """A per-run table and the summary lines."""
    t = res.table
    lines = [f"{'run':>3}  {'ops/s':>12}  {'epoch CV':>8}  {'peak resident':>13}  "
             f"{'process peak*':>13}  {'syscalls/op':>11}  {'refaults/op':>11}  {'drift':>8}  {'settled':>8}"]
    for i, r in enumerate(res.runs, 1):
        if r.error:
            lines.append(f"{i:>3}  ERROR {r.error}")
            continue
        lines.append(f"{i:>3}  {r.ops_per_s:>12,.0f}  {r.epoch_cv_pct:>7.2f}%  "
                     f"{_kib(r.peak_resident_bytes):>13}  {_kib(r.process_peak_rss_bytes):>13}  "
                     f"{r.syscalls_per_op:>11.3g}  {r.refaults_per_op:>11.3g}  "
                     f"{r.drift_pct:>+7.2f}%  {r.drift_settled_pct:>+7.2f}%")
    lines += [
        "",
        f"ops/s: mean {t['ops_per_s_mean']:,.0f}  median {t['ops_per_s_median']:,.0f}  "
        f"CV {t['ops_per_s_cv_pct']:.2f}% (runs), {t['epoch_cv_pct']:.2f}% (epochs, median)",
        f"heap resident peak {_kib(t['peak_resident_bytes'])}  mean {_kib(t['mean_resident_bytes'])}  "
        f"final {_kib(t['final_resident_bytes'])}; process peak RSS (VmHWM, incl. the Python "
        f"interpreter) {_kib(t['process_peak_rss_bytes'])}",
        f"resident drift first->last {t['drift_pct']:+.2f}%, settled {t['drift_settled_pct']:+.2f}% "
        "(max over runs)",
        f"syscalls/op {t['syscalls_per_op']:.3g}; refaults/op {t['refaults_per_op']:.3g} "
        f"({t['refault_bytes_per_op']:.3g} bytes/op; rescues/op {t['rescues_per_op']:.3g}); "
        f"lean_decommit={t['lean_decommit']} "
        f"lean_retire={t['lean_retire']} madvise_calls={t['madvise_calls']}",
        t["stats_line"],
    ]
    if res.native:
        lines += ["", "native allocators (same Mixed loop, C):"]
        lines += [f"  {row['allocator']:<10} {row['ops_per_s']:>14,.0f} ops/s  max RSS "
                  f"{_kib(row['max_rss_bytes'])}" for row in res.native]
    if res.native_note:
        lines.append(f"native: {res.native_note}")
    lines.append("* process peak = VmHWM of the whole process, the Python interpreter included; "
                 "resident = the heap's own mappings")
    if res.failed_runs:
        lines += [f"FAILED RUNS ({len(res.failed_runs)} of {len(res.runs)}):"]
        lines += [f"  {e}" for e in res.failed_runs]
    return "\n".join(lines)
