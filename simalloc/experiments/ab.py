"""The A/B experiment of Phase 54: FAST (A) against LEAN (B), interleaved, with a verdict.

:func:`run_ab` runs the two sides interleaved ``A B A B ...`` (``runs`` per side) on the same
workload and the same seeds, each run on a fresh heap (:func:`~.metrics.run_once`), then
:func:`aggregate` turns each side's runs into a metric table, :func:`delta` compares them and
:func:`~.verdict.judge` applies the Phase 54 criteria.

Side table (one per side; "per run" figures are over that side's runs):

=========================  =====================================================================
ops_per_s_mean / _median   throughput of the timed part (ops / seconds), mean and median of runs
ops_per_s_cv (_pct)        std/mean of the per-run throughputs (ddof=1; as a fraction / in %)
epoch_cv_pct               per-epoch throughput CV inside a run, median over runs
peak_resident_bytes        max over runs of the run's exact peak resident bytes (heap's own
                           mappings; the page model, not a maximum of samples)
mean_resident_bytes        mean over runs of the run's ops-weighted mean resident bytes
mean_resident_seconds_...  the same, weighted by wall time
final_resident_bytes       median over runs of the resident bytes after the last epoch
peak/final_lazyfree_bytes  MADV_FREE'd bytes still resident (counted in resident too)
process_peak_rss_bytes     max over runs of VmHWM: the whole process, *including the Python
                           interpreter* (~30 MB; per process, see metrics.py)
drift_pct                  max over runs of the resident drift first epoch -> last epoch
drift_settled_pct          max over runs of the drift over the second half of the epochs
syscalls_per_op            mean over runs of OS calls during the timed part / ops
refaults_per_op            mean over runs of refaults during the timed part / ops: pages written
                           again after a release (MADV_DONTNEED, or MADV_FREE then reclaimed),
                           one page fault each (the page model, simalloc/pages.py)
refault_bytes_per_op       the same in bytes (refaults x page size)
rescues_per_op             MADV_FREE'd pages written again before reclaim (no fault) / ops
lean_decommit, lean_retire max per run of the heap's counters (0 on Mixed WS=400: see
madvise_calls              ``explain_lean``)
=========================  =====================================================================

Output: :meth:`AbResult.as_json` (top-level ``verdict``, ``a``, ``b``, ``delta`` plus
``reasons``, ``checks``, ``criteria``, ``failed_runs``, ``descriptions`` (:data:`DESCRIPTIONS`:
what each figure covers), ``workload``, ``kernel``, ``native``), :func:`format_table` for a
terminal and :func:`write_report` for a Phase-54-style ``report.md`` with PNG plots.  The plots
need matplotlib (the ``plot`` extra: ``pip install "simalloc[plot]"``); without it
:func:`write_report` raises ``ImportError`` with that one line (:data:`PLOT_HINT`) before
writing anything, and ``simalloc ab --report`` exits 2 with it before running.
"""

from __future__ import annotations

import platform
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .metrics import RunResult, RunSpec, cv_pct, finite, run_once
from .overrides import format_overrides
from .verdict import GO, NA, NO_GO, RESIDENT_LABELS, Criteria, Verdict, judge

__all__ = ["DEFAULT_A", "DEFAULT_B", "DESCRIPTIONS", "PLOT_HINT", "SIDE_KEYS", "AbResult", "AbSpec",
           "aggregate", "delta", "format_table", "require_matplotlib", "run_ab", "write_report"]

#: Phase 54's sides: A = FAST (lean off), B = LEAN (lean on, default decommit FREE).
DEFAULT_A: dict[str, str] = {"HAKMEM_SS_MEM_LEAN": "0"}
DEFAULT_B: dict[str, str] = {"HAKMEM_SS_MEM_LEAN": "1"}

#: Keys every side table has (the JSON schema's contract).
SIDE_KEYS = (
    "ops_per_s_mean", "ops_per_s_median", "ops_per_s_cv", "ops_per_s_cv_pct", "epoch_cv_pct",
    "peak_resident_bytes", "mean_resident_bytes", "mean_resident_seconds_bytes",
    "final_resident_bytes", "peak_lazyfree_bytes", "final_lazyfree_bytes",
    "process_peak_rss_bytes", "drift_pct", "drift_settled_pct", "syscalls_per_op",
    "refaults_per_op", "refault_bytes_per_op", "rescues_per_op",
    "lean_decommit", "lean_retire", "madvise_calls",
)

MACHINE_NOTE = "shared 2-core machine; medians and ratios quoted"

#: What the memory figures of a side table (and of a run, :class:`~.metrics.RunResult`) cover:
#: the ``descriptions`` of the ``--json`` documents.  Heap figures are the heap's own mappings;
#: process figures are the whole process, the Python interpreter included.
DESCRIPTIONS: dict[str, str] = {
    "peak_resident_bytes": "heap only: the most resident bytes of the heap's own mappings at any "
                           "instant of the timed part (exact page model, equal to pagemap)",
    "mean_resident_bytes": "heap only: the heap's resident bytes averaged over operations (exact)",
    "mean_resident_seconds_bytes": "heap only: the heap's resident bytes averaged over wall time (exact)",
    "peak_lazyfree_bytes": "heap only: most MADV_FREE'd bytes still resident at a sample (LazyFree)",
    "final_lazyfree_bytes": "heap only: MADV_FREE'd bytes still resident at the end (LazyFree)",
    "final_resident_bytes": "heap only: the heap's resident bytes after the last epoch",
    "epoch_resident_bytes": "heap only: the heap's resident bytes after each epoch",
    "process_peak_rss_bytes": "whole process, including the Python interpreter (~30 MB): "
                              "VmHWM; in one process it also covers earlier runs unless "
                              "isolated",
    "process_rss_bytes": "whole process, including the Python interpreter: VmRSS after the run",
    "epoch_vm_rss_bytes": "whole process, including the Python interpreter: VmRSS after each "
                          "epoch",
    "drift_pct": "heap only: resident change first epoch -> last epoch, in %",
    "drift_settled_pct": "heap only: resident change over the second half of the epochs, in %",
    "syscalls_per_op": "the heap's mmap/munmap/madvise calls during the timed part per op",
    "refaults_per_op": "heap only: pages written again after the heap gave them back (MADV_DONTNEED, "
                       "or MADV_FREE then reclaimed; one page fault each) during the timed part, per op",
    "refault_bytes_per_op": "heap only: refaults in bytes (refaults x page size) per op",
    "rescues_per_op": "heap only: MADV_FREE'd pages written again before the kernel reclaimed them "
                      "(no fault) during the timed part, per op",
}

#: The one line shown when plotting is asked for without matplotlib installed.
PLOT_HINT = 'simalloc: plotting needs matplotlib: pip install "simalloc[plot]"'


def require_matplotlib() -> None:
    """Raise ``ImportError(PLOT_HINT)`` unless matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError(PLOT_HINT, name="matplotlib") from exc


@dataclass(frozen=True)
class AbSpec:
    """An A/B experiment: one workload, two config-override sets, ``runs`` runs per side.

    Run ``i`` of both sides uses seed ``seed + i * seed_stride`` (default stride 0: every run
    replays the same stream, as hakmem's ``run_mixed_10_cleanenv.sh`` does)."""

    workload: str = "mixed"
    ops: int = 200_000
    ws: int | None = 400  # None: the workload's default
    seed: int = 1
    params: dict[str, Any] = field(default_factory=dict)
    a: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_A))
    b: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_B))
    runs: int = 3
    epochs: int = 10
    isolate: bool = False
    seed_stride: int = 0
    criteria: Criteria = field(default_factory=Criteria)

    def run_spec(self, side: str, i: int) -> RunSpec:
        return RunSpec(workload=self.workload, ops=self.ops, ws=self.ws,
                       seed=self.seed + i * self.seed_stride, params=dict(self.params),
                       overrides=dict(self.a if side == "A" else self.b), epochs=self.epochs,
                       label=side)


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else 0.0


def aggregate(runs: list[RunResult], overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One side's metric table from its runs (definitions in the module docstring).  Failed
    runs are listed under ``errors`` and left out of the figures."""
    ok = [r for r in runs if not r.error]
    tput = [r.ops_per_s for r in ok]
    mean_t = statistics.fmean(tput) if tput else 0.0
    cv = cv_pct(tput)
    last = (ok or runs)[-1] if runs else None
    table: dict[str, Any] = {
        "runs": len(runs),
        "runs_ok": len(ok),
        "ops": ok[0].ops if ok else 0,
        "ops_per_s_mean": mean_t,
        "ops_per_s_median": _median(tput),
        "ops_per_s_cv": cv / 100.0,
        "ops_per_s_cv_pct": cv,
        "epoch_cv_pct": _median([r.epoch_cv_pct for r in ok]),
        "peak_resident_bytes": max((r.peak_resident_bytes for r in ok), default=0),
        "mean_resident_bytes": statistics.fmean([r.mean_resident_bytes for r in ok]) if ok else 0.0,
        "mean_resident_seconds_bytes": (statistics.fmean([r.mean_resident_seconds_bytes for r in ok])
                                        if ok else 0.0),
        "mean_resident_virtual_bytes": (statistics.fmean([r.mean_resident_virtual_bytes for r in ok])
                                        if ok else 0.0),
        "peak_lazyfree_bytes": max((r.peak_lazyfree_bytes for r in ok), default=0),
        "final_lazyfree_bytes": int(_median([r.final_lazyfree_bytes for r in ok])),
        "final_resident_bytes": int(_median([r.final_resident_bytes for r in ok])),
        "process_peak_rss_bytes": max((r.process_peak_rss_bytes for r in ok), default=0),
        "drift_pct": max((r.drift_pct for r in ok), default=0.0),
        "drift_bytes": max((r.drift_bytes for r in ok), default=0),
        "drift_settled_pct": max((r.drift_settled_pct for r in ok), default=0.0),
        "syscalls_per_op": statistics.fmean([r.syscalls_per_op for r in ok]) if ok else 0.0,
        "refaults_per_op": statistics.fmean([r.refaults_per_op for r in ok]) if ok else 0.0,
        "refault_bytes_per_op": statistics.fmean([r.refault_bytes_per_op for r in ok]) if ok else 0.0,
        "rescues_per_op": statistics.fmean([r.rescues_per_op for r in ok]) if ok else 0.0,
        "refaults": max((r.refaults for r in ok), default=0),
        "lean_decommit": max((r.lean_decommit for r in ok), default=0),
        "lean_retire": max((r.lean_retire for r in ok), default=0),
        "madvise_calls": max((r.madvise_calls for r in ok), default=0),
        "mapped_peak_bytes": max((r.mapped_peak_bytes for r in ok), default=0),
        "errors": [f"run {i + 1}: {r.error}" for i, r in enumerate(runs) if r.error],
        "overrides": dict(overrides or {}),
        "config": dict(last.config) if last else {},
        "kernel": last.kernel if last else "",
        "policy": last.policy if last else "",
        "stats_line": last.stats_line if last else "",
        "explain_lean": last.explain_lean if last else "",
        "isolated": bool(last.isolated) if last else False,
        "per_run": [{
            "seed": r.seed, "ops": r.ops, "seconds": r.seconds, "ops_per_s": r.ops_per_s,
            "epoch_ops_per_s": r.epoch_ops_per_s, "epoch_seconds": r.epoch_seconds,
            "epoch_resident_bytes": r.epoch_resident_bytes,
            "epoch_lazyfree_bytes": r.epoch_lazyfree_bytes,
            "sample_ops": r.sample_ops, "sample_resident_bytes": r.sample_resident_bytes,
            "sample_lazyfree_bytes": r.sample_lazyfree_bytes,
            "peak_resident_bytes": r.peak_resident_bytes, "drift_pct": r.drift_pct,
            "drift_settled_pct": r.drift_settled_pct, "refaults": r.refaults, "rescues": r.rescues,
            "process_peak_rss_bytes": r.process_peak_rss_bytes, "error": r.error,
        } for r in runs],
    }
    return table


#: Keys compared by :func:`delta`.
DELTA_KEYS = (
    "ops_per_s_mean", "ops_per_s_median", "ops_per_s_cv_pct", "epoch_cv_pct",
    "peak_resident_bytes", "mean_resident_bytes", "mean_resident_seconds_bytes",
    "final_resident_bytes", "final_lazyfree_bytes",
    "process_peak_rss_bytes", "drift_pct", "drift_settled_pct", "syscalls_per_op",
    "refaults_per_op", "refault_bytes_per_op", "rescues_per_op",
    "lean_decommit", "lean_retire", "madvise_calls",
)


def delta(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, dict[str, float | None]]:
    """B vs A for each key of :data:`DELTA_KEYS`: ``abs`` = b - a, ``pct`` = 100 (b - a) / a
    (None when a is 0)."""
    out: dict[str, dict[str, float | None]] = {}
    for k in DELTA_KEYS:
        va, vb = float(a.get(k) or 0), float(b.get(k) or 0)
        out[k] = {"a": va, "b": vb, "abs": vb - va,
                  "pct": finite(100.0 * (vb - va) / va) if va else None}
    return out


@dataclass
class AbResult:
    """What :func:`run_ab` measured and judged."""

    spec: AbSpec
    describe: str
    kernel: str
    a_runs: list[RunResult]
    b_runs: list[RunResult]
    a: dict[str, Any]
    b: dict[str, Any]
    delta: dict[str, dict[str, float | None]]
    verdict: Verdict
    native: list[dict[str, Any]] = field(default_factory=list)
    native_note: str = ""

    @property
    def failed_runs(self) -> list[str]:
        """``"A run 2: Error: ..."`` for every run that raised or died."""
        return [f"{side} run {i}: {r.error}" for side, runs in (("A", self.a_runs), ("B", self.b_runs))
                for i, r in enumerate(runs, 1) if r.error]

    @property
    def ws(self) -> int | None:
        """The working set the runs used (the workload's default when the spec says None)."""
        return self.a_runs[0].ws if self.a_runs and self.a_runs[0].ws else self.spec.ws

    def as_json(self) -> dict[str, Any]:
        """The ``--json`` document (top-level keys: verdict, a, b, delta, and context)."""
        s = self.spec
        return {
            "verdict": self.verdict.label,
            "a": self.a,
            "b": self.b,
            "delta": self.delta,
            "reasons": self.verdict.reasons,
            "checks": self.verdict.as_dict()["checks"],
            "notes": self.verdict.notes,
            "criteria": s.criteria.as_dict(),
            "failed_runs": self.failed_runs,
            "descriptions": dict(DESCRIPTIONS),
            "workload": {"name": s.workload, "describe": self.describe, "ops": s.ops, "ws": self.ws,
                         "seed": s.seed, "seed_stride": s.seed_stride, "params": s.params,
                         "runs": s.runs, "epochs": s.epochs, "isolate": s.isolate},
            "kernel": self.kernel,
            "native": self.native,
            "native_note": self.native_note,
            "machine": _machine(),
        }


def _machine() -> dict[str, Any]:
    import os

    return {"note": MACHINE_NOTE, "python": platform.python_version(),
            "platform": platform.platform(), "cpus": os.cpu_count()}


def run_ab(spec: AbSpec, log: Callable[[str], None] | None = None) -> AbResult:
    """Run ``spec`` (A B A B ...), aggregate, compare and judge.  ``log`` gets one line per
    run (the CLI prints them to stderr)."""
    runs: dict[str, list[RunResult]] = {"A": [], "B": []}
    total = 2 * spec.runs
    k = 0
    for i in range(spec.runs):
        for side in ("A", "B"):
            k += 1
            rs = spec.run_spec(side, i)
            if log:
                log(f"[ab] run {k}/{total}: {side} {format_overrides(rs.overrides)} "
                    f"{spec.workload} ops={spec.ops} seed={rs.seed} ...")
            r = run_once(rs, isolate=spec.isolate)
            runs[side].append(r)
            if log:
                log(f"[ab]   {side}: {r.summary()}")
    a = aggregate(runs["A"], spec.a)
    b = aggregate(runs["B"], spec.b)
    first = runs["A"][0] if runs["A"] else None
    return AbResult(spec=spec, describe=first.describe if first else spec.workload,
                    kernel=b.get("kernel") or a.get("kernel") or "",
                    a_runs=runs["A"], b_runs=runs["B"], a=a, b=b, delta=delta(a, b),
                    verdict=judge(a, b, spec.criteria))


# ---------------------------------------------------------------------------- presentation
def _kib(x: float) -> str:
    return f"{x / 1024:,.0f} KiB"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.1f}%"


#: Table rows: title, side-table key, value format, how B vs A is shown ("pct": relative
#: change; "pp": difference of two percentages, in points; "abs": difference).
_ROWS: tuple[tuple[str, str, Callable[[float], str], str], ...] = (
    ("throughput median (ops/s)", "ops_per_s_median", lambda v: f"{v:,.0f}", "pct"),
    ("throughput mean (ops/s)", "ops_per_s_mean", lambda v: f"{v:,.0f}", "pct"),
    ("throughput CV, runs", "ops_per_s_cv_pct", lambda v: f"{v:.2f}%", "pp"),
    ("throughput CV, epochs", "epoch_cv_pct", lambda v: f"{v:.2f}%", "pp"),
    ("peak resident (heap)", "peak_resident_bytes", _kib, "pct"),
    ("mean resident (heap, per op)", "mean_resident_bytes", _kib, "pct"),
    ("mean resident (heap, per second)", "mean_resident_seconds_bytes", _kib, "pct"),
    ("final resident (heap)", "final_resident_bytes", _kib, "pct"),
    ("final LazyFree (heap)", "final_lazyfree_bytes", _kib, "abs"),
    ("process peak RSS (VmHWM, incl. Python)", "process_peak_rss_bytes", _kib, "pct"),
    ("resident drift, first->last", "drift_pct", lambda v: f"{v:+.2f}%", "pp"),
    ("resident drift, settled", "drift_settled_pct", lambda v: f"{v:+.2f}%", "pp"),
    ("syscalls/op", "syscalls_per_op", lambda v: f"{v:.3g}", "abs"),
    ("refaults/op (pages)", "refaults_per_op", lambda v: f"{v:.3g}", "abs"),
    ("refault bytes/op", "refault_bytes_per_op", lambda v: f"{v:.3g}", "abs"),
    ("rescues/op (MADV_FREE, no fault)", "rescues_per_op", lambda v: f"{v:.3g}", "abs"),
    ("lean_decommit", "lean_decommit", lambda v: f"{int(v)}", "abs"),
    ("lean_retire", "lean_retire", lambda v: f"{int(v)}", "abs"),
    ("madvise_calls", "madvise_calls", lambda v: f"{int(v)}", "abs"),
)


def _change(d: Mapping[str, float | None], how: str, fmt: Callable[[float], str]) -> str:
    diff = float(d.get("abs") or 0.0)
    if how == "pct":
        return _pct(d.get("pct"))
    if how == "pp":
        return f"{diff:+.2f} pp"
    if diff == 0:
        return "="
    return ("+" if diff > 0 else "") + fmt(diff)


def _rows(res: AbResult) -> list[tuple[str, str, str, str]]:
    out = []
    for title, key, fmt, how in _ROWS:
        d = res.delta.get(key) or {"abs": float(res.b.get(key) or 0) - float(res.a.get(key) or 0)}
        out.append((title, fmt(float(res.a.get(key) or 0)), fmt(float(res.b.get(key) or 0)),
                    _change(d, how, fmt)))
    return out


def format_table(res: AbResult) -> str:
    """A readable terminal table, the verdict and its reasons."""
    s = res.spec
    lines = [f"A/B on {res.describe} (ops={s.ops:,}, {s.runs} runs per side, {s.epochs} epochs, "
             f"kernel {res.kernel})",
             f"  A: {format_overrides(s.a)}  [{res.a.get('policy', '')}]",
             f"  B: {format_overrides(s.b)}  [{res.b.get('policy', '')}]", ""]
    head = ("metric", "A", "B", "B vs A")
    rows = [head, *_rows(res)]
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    for n, r in enumerate(rows):
        lines.append(f"{r[0]:<{w[0]}}  {r[1]:>{w[1]}}  {r[2]:>{w[2]}}  {r[3]:>{w[3]}}")
        if n == 0:
            lines.append("-" * (sum(w) + 6))
    if res.native:
        lines += ["", "native allocators (same Mixed loop, C):"]
        for row in res.native:
            lines.append(f"  {row['allocator']:<10} {row['ops_per_s']:>14,.0f} ops/s  "
                         f"max RSS {_kib(row['max_rss_bytes'])}")
    elif res.native_note:
        lines += ["", f"native: {res.native_note}"]
    lines += ["", f"A {res.a.get('stats_line', '')}", f"B {res.b.get('stats_line', '')}"]
    lines += ["", "heap figures: the heap's own mappings; process figures (VmHWM, VmRSS) include the "
              "Python interpreter."]
    lines += ["", "criteria (PASS / FAIL / N/A; measured, threshold):"]
    lines += [f"  {ch.line()}" for ch in res.verdict.checks]
    lines += ["", f"verdict: {res.verdict.label}"]
    lines += [f"  {r}" for r in res.verdict.reasons]
    lines += [f"  note: {n}" for n in res.verdict.notes]
    if res.failed_runs:
        lines += ["", f"FAILED RUNS ({len(res.failed_runs)}): the experiment is incomplete"]
        lines += [f"  {e}" for e in res.failed_runs]
    return "\n".join(lines)


def _plot(res: AbResult, outdir: Path) -> list[Path]:
    """resident.png (heap resident bytes over timed seconds) and throughput.png (ops/s per
    epoch), every run of both sides.  Uses matplotlib's object API (``Figure`` with an Agg
    canvas), so no pyplot state or open figure outlives the call."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    colors = {"A": "tab:blue", "B": "tab:orange"}
    out = []
    for name, ylabel in (("resident", "heap resident (KiB)"), ("throughput", "ops/s per epoch")):
        fig = Figure(figsize=(7, 4), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        for side, runs in (("A", res.a_runs), ("B", res.b_runs)):
            for i, r in enumerate(runs):
                lab = f"{side}: {r.policy}" if i == 0 else None
                if name == "resident":
                    ops = [0, *r.sample_ops]
                    kib = [b / 1024 for b in (r.resident_after_warmup_bytes, *r.sample_resident_bytes)]
                    ax.plot(ops[:len(kib)], kib, color=colors[side], alpha=0.8, label=lab)
                    if r.peak_resident_bytes:
                        ax.axhline(r.peak_resident_bytes / 1024, color=colors[side], alpha=0.4,
                                   linestyle="--", linewidth=0.8)
                    ax.set_xlabel("timed operations (0 = after the warm-up); dashed: exact peak")
                else:
                    ax.plot(range(1, len(r.epoch_ops_per_s) + 1), r.epoch_ops_per_s,
                            color=colors[side], alpha=0.8, label=lab, marker=".")
                    ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ws = res.ws
        ax.set_title(f"{name}: {res.spec.workload} ops={res.spec.ops:,} ws={ws} "
                     f"seed={res.spec.seed}", fontsize="medium")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize="small")
        fig.tight_layout()
        path = outdir / f"{name}.png"
        fig.savefig(path)
        out.append(path)
    return out


def _mark(outcome: str) -> str:
    return {"PASS": "✅ PASS", "FAIL": "❌ FAIL", NA: "➖ N/A"}[outcome]


def _criterion(ch: Any) -> str:
    text = f"- {_mark(ch.outcome)} {ch.name}: measured {ch.measured}, threshold {ch.threshold}"
    return text + (f" ({ch.detail})" if ch.detail else "")


def report_markdown(res: AbResult) -> str:
    """report.md in the style of the Phase 54 results document."""
    s, c, v = res.spec, res.spec.criteria, res.verdict
    a, b, d = res.a, res.b, res.delta
    rk = c.resident_key
    red = d[rk]["pct"]
    tk = c.throughput_key
    ws = res.ws
    L = [f"# Memory-Lean A/B (simalloc): {s.workload} WS={ws}", ""]
    L += ["## Summary", ""]
    L += [f"B ({b.get('policy')}) against A ({a.get('policy')}) on {s.workload} WS={ws}, "
          f"{s.runs} interleaved runs per side. The {RESIDENT_LABELS[c.resident_metric]} "
          f"went from {_kib(a[rk])} to {_kib(b[rk])} ({_pct(red)}); throughput "
          f"({c.throughput_metric}) {a[tk]:,.0f} -> {b[tk]:,.0f} ops/s ({_pct(d[tk]['pct'])}); "
          f"lean_decommit={b['lean_decommit']}, lean_retire={b['lean_retire']}. "
          f"**Verdict: {v.label}.**", ""]
    L += ["## Configuration", ""]
    for side, tab, ov in (("A (baseline)", a, s.a), ("B (treatment)", b, s.b)):
        L += [f"### {side}", "", "```bash", " " + format_overrides(ov), "```",
              f"- policy: `{tab.get('policy')}`; kernel: `{tab.get('kernel')}`",
              f"- config (differences from defaults): `{tab.get('config')}`", ""]
    L += [f"Workload: {res.describe}; timed ops per run {s.ops:,} in {s.epochs} epochs (plus the "
          f"untimed warm-up); seed {s.seed}"
          + (f" (+{s.seed_stride} per run)" if s.seed_stride else " (same for every run)")
          + f"; {s.runs} runs per side interleaved A B A B; "
          + ("each run in a fresh process." if s.isolate else "all runs in one process, fresh heap each."),
          ""]
    L += ["## Results", "", "| Metric | A | B | Change |", "|---|---|---|---|"]
    L += [f"| {t} | {x} | {y} | {z} |" for t, x, y, z in _rows(res)]
    L += ["", "Resident figures are the heap's own mappings (pagemap: present and exclusive), "
          "sampled after every epoch; drift is first epoch -> last epoch, settled drift is "
          "over the second half of the epochs (the short-run first-touch creep excluded). "
          "Process peak RSS (VmHWM) includes the Python interpreter"
          + ("." if s.isolate else " and is shared by all runs of the process (reset per run where "
                                   "the kernel allows it)."), ""]
    if res.native:
        L += ["### Native allocators (same Mixed loop in C)", "",
              "| allocator | ops/s | max RSS |", "|---|---|---|"]
        L += [f"| {r['allocator']} | {r['ops_per_s']:,.0f} | {_kib(r['max_rss_bytes'])} |"
              for r in res.native]
        L += [""]
    L += ["## Judgment Criteria", ""]
    L += ["Each criterion: outcome (PASS, FAIL or N/A: not applicable), measured value, threshold.", ""]
    L += ["### GO (production-ready): every one of (N/A counts as met)"]
    L += [_criterion(ch) for ch in v.checks if ch.gate == GO]
    L += ["", "### NO-GO (revert): any of (PASS = did not happen)"]
    L += [_criterion(ch) for ch in v.checks if ch.gate == NO_GO]
    L += ["", "### NEUTRAL (research box)",
          "- no NO-GO condition, but at least one GO criterion failed (RSS reduction without the "
          "throughput, syscall overhead above the GO budget, or variance up with drift 0).", ""]
    L += [f"## Verdict: {v.label}", ""]
    L += [f"- {r}" for r in v.reasons]
    L += [f"- note: {n}" for n in v.notes]
    L += ["", "## Why lean_retire is what it is", "",
          f"- A: {a.get('explain_lean')}", f"- B: {b.get('explain_lean')}", ""]
    L += ["## OS stats (last run of each side)", "", "```",
          f"A {a.get('stats_line')}", f"B {b.get('stats_line')}", "```", ""]
    L += report_tail(res.failed_runs, "experiment", res.kernel)
    return "\n".join(L)


def report_tail(failed_runs: list[str], what: str, kernel: str, extra: str = "") -> list[str]:
    """The end of a markdown report: failed runs, the two plots, the machine note."""
    L: list[str] = []
    if failed_runs:
        L += [f"## Failed runs (the {what} is incomplete)", ""] + [f"- {e}" for e in failed_runs] + [""]
    L += ["## Plots", "", "![heap resident bytes over the timed operations](resident.png)", "",
          "![throughput per epoch](throughput.png)", ""]
    m = _machine()
    L += ["## Machine note", "", f"{MACHINE_NOTE}. Python {m['python']}, {m['platform']}, "
          f"{m['cpus']} CPUs, kernel `{kernel}`.{extra}", ""]
    return L


def write_report(res: AbResult, outdir: str | Path) -> list[Path]:
    """Write ``report.md``, ``resident.png`` and ``throughput.png`` into ``outdir`` (created
    if missing).  Returns the paths written.  Raises ``ImportError`` (:data:`PLOT_HINT`), and
    writes nothing, when matplotlib is not installed."""
    require_matplotlib()
    d = Path(outdir)
    d.mkdir(parents=True, exist_ok=True)
    md = d / "report.md"
    md.write_text(report_markdown(res), encoding="utf-8")
    return [md, *_plot(res, d)]
