"""The scorecard of ``simalloc validate``: terminal text, report.md and the plots.

:func:`format_scorecard` prints, per workload, one table with a column per policy (FAST,
LEAN+FREE, LEAN+DONTNEED) and a row per figure -- exact heap resident peak / mean (per op and
per second) / final, LazyFree, throughput mean and CV, both drifts, syscalls/op, the lean
counters and the process VmHWM (labelled: it includes the Python interpreter) -- then every
LEAN cell's judgment against FAST with each criterion's outcome, measured value and threshold
(:class:`~.verdict.Check` lines), then the summary.  :func:`write_report` writes ``report.md``
(the same in Markdown, in the style of the Phase 54 results document), ``resident.png`` (heap
resident bytes over the timed operations from the dense samples, the exact peak dashed,
LazyFree dotted; one panel per workload) and ``throughput.png`` (ops/s per epoch).  The plots
need matplotlib (the ``plot`` extra); without it :func:`write_report` raises ``ImportError``
with :data:`~.ab.PLOT_HINT` and writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .ab import _criterion, report_tail, require_matplotlib
from .overrides import format_overrides, merge_overrides
from .validate import BASELINE, POLICIES, WORKLOADS, cell_title, split_cell
from .verdict import GO, NO_GO

if TYPE_CHECKING:
    from .validate import ValidateResult

__all__ = ["format_scorecard", "report_markdown", "write_report"]


def _kib(x: float) -> str:
    return f"{x / 1024:,.0f}"


#: Scorecard rows: title, table key, format.
_ROWS: tuple[tuple[str, str, Callable[[float], str]], ...] = (
    ("peak resident (heap, exact), KiB", "peak_resident_bytes", _kib),
    ("mean resident (heap, per op), KiB", "mean_resident_bytes", _kib),
    ("mean resident (heap, per second), KiB", "mean_resident_seconds_bytes", _kib),
    ("final resident (heap), KiB", "final_resident_bytes", _kib),
    ("LazyFree final (heap), KiB", "final_lazyfree_bytes", _kib),
    ("LazyFree peak (heap, samples), KiB", "peak_lazyfree_bytes", _kib),
    ("throughput mean, ops/s", "ops_per_s_mean", lambda v: f"{v:,.0f}"),
    ("throughput CV, epochs", "epoch_cv_pct", lambda v: f"{v:.2f}%"),
    ("throughput CV, runs", "ops_per_s_cv_pct", lambda v: f"{v:.2f}%"),
    ("resident drift, first->last", "drift_pct", lambda v: f"{v:+.2f}%"),
    ("resident drift, settled", "drift_settled_pct", lambda v: f"{v:+.2f}%"),
    ("syscalls/op", "syscalls_per_op", lambda v: f"{v:.3g}"),
    ("lean_decommit", "lean_decommit", lambda v: f"{int(v)}"),
    ("lean_retire", "lean_retire", lambda v: f"{int(v)}"),
    ("madvise_calls", "madvise_calls", lambda v: f"{int(v)}"),
    ("process VmHWM incl. Python interpreter, KiB", "process_peak_rss_bytes", _kib),
)


def _table_rows(res: ValidateResult, cells: list[str]) -> list[list[str]]:
    rows = [["metric", *(POLICIES[split_cell(c)[1]][0] for c in cells)]]
    for title, key, fmt in _ROWS:
        if key == "ops_per_s_cv_pct" and res.spec.runs < 2:
            continue
        rows.append([title, *(fmt(float(res.tables[c].get(key) or 0)) for c in cells)])
    rows.append(["verdict vs FAST", *(res.judgments[c].label if c in res.judgments else
                                      ("(baseline)" if split_cell(c)[1] == BASELINE else "-")
                                      for c in cells)])
    return rows


def _workload_cells(res: ValidateResult) -> list[tuple[str, list[str]]]:
    return [(w, [c for c in res.cells if split_cell(c)[0] == w]) for w in res.spec.workloads()]


def _settings_line(res: ValidateResult) -> str:
    s = res.spec
    if s.by_time:
        run = f"{s.duration:g} s per run in {s.epoch_seconds:g} s epochs (soak: workload passes on one heap)"
    else:
        run = f"{s.epochs} epochs x {s.samples_per_epoch} resident samples per run"
    return (f"{len(res.cells)} cells x {s.runs} run(s), {run}, seed {s.seed}, kernel {res.kernel}"
            + (", isolated processes" if s.isolate else ""))


def format_scorecard(res: ValidateResult) -> str:
    """The scorecard for a terminal: per workload a table (FAST | LEAN+FREE | LEAN+DONTNEED),
    each LEAN cell's judgment with every criterion, then the summary."""
    s = res.spec
    lines = [f"simalloc validate: Phase 54 full validation ({_settings_line(res)})"]
    for p, (title, ov) in POLICIES.items():
        if any(split_cell(c)[1] == p for c in res.cells):
            lines.append(f"  {title}: {format_overrides(merge_overrides(s.overrides, ov))}")
    lines += ["heap figures: the heap's own mappings, exact (resident-page model = pagemap), timed part "
              "only; LazyFree = MADV_FREE'd bytes still resident (counted in resident); VmHWM is the "
              "whole process, including the Python interpreter"]
    for wkey, cells in _workload_cells(res):
        ops = s.ops_for(wkey, res.kernel)
        lines += ["", f"== {WORKLOADS[wkey][2]} ({'pass of ' if s.by_time else ''}{ops:,} ops): "
                      f"{res.describe.get(wkey, '')}"]
        rows = _table_rows(res, cells)
        w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for n, r in enumerate(rows):
            lines.append("  " + "  ".join([f"{r[0]:<{w[0]}}", *(f"{x:>{w[i + 1]}}" for i, x in enumerate(r[1:]))]))
            if n == 0:
                lines.append("  " + "-" * (sum(w) + 2 * (len(w) - 1)))
        for c in cells:
            lines.append(f"  {POLICIES[split_cell(c)[1]][0]:<14} {res.tables[c].get('stats_line', '')}")
        for c in cells:
            v = res.judgments.get(c)
            if v is None:
                continue
            lines += ["", f"  {POLICIES[split_cell(c)[1]][0]} (B) vs FAST (A): {v.label}"]
            shown = {ch.line() for ch in v.checks}
            lines += [f"    {r}" for r in v.reasons if r not in shown]
            lines += [f"    {ch.line()}" for ch in v.checks]
            lines += [f"    note: {n}" for n in v.notes]
    lines += ["", "summary:"]
    for wkey, cells in _workload_cells(res):
        got = [f"{POLICIES[split_cell(c)[1]][0]} {res.judgments[c].label}" for c in cells if c in res.judgments]
        lines.append(f"  {WORKLOADS[wkey][2]:<14} " + (", ".join(got) if got else "(FAST only: nothing judged)"))
    if res.worst:
        lines.append(f"worst verdict: {res.worst}")
    lines.append(f"wall time {res.seconds:.1f} s (this invocation); runs file {res.out} ({res.measured} measured now"
                 + (f", {res.reused} reused" if res.reused else "") + ")")
    if res.added_baselines:
        lines.append(f"added as baselines: {', '.join(res.added_baselines)}")
    if res.failed_runs:
        lines += [f"FAILED RUNS ({len(res.failed_runs)}): the validation is incomplete"]
        lines += [f"  {e}" for e in res.failed_runs]
    return "\n".join(lines)


_COLORS = {"fast": "tab:blue", "lean-free": "tab:orange", "lean-dontneed": "tab:green"}
_WIDTHS = {"fast": 3.0, "lean-free": 1.8, "lean-dontneed": 1.0}


def _plot(res: ValidateResult, outdir: Path) -> list[Path]:
    """resident.png (heap resident KiB over the timed operations, dense samples; dashed: the
    exact peak; dotted: LazyFree) and throughput.png (ops/s per epoch), one panel per workload."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    groups = _workload_cells(res)
    out = []
    for name, ylabel in (("resident", "heap resident (KiB)"), ("throughput", "ops/s per epoch")):
        fig = Figure(figsize=(8, 3.2 * len(groups)), dpi=100)
        FigureCanvasAgg(fig)
        axes = fig.subplots(len(groups), 1, squeeze=False)[:, 0]
        for ax, (wkey, cells) in zip(axes, groups, strict=True):
            for c in cells:
                p = split_cell(c)[1]
                for i, r in enumerate(res.runs[c]):
                    lab = POLICIES[p][0] if i == 0 else None
                    if name == "resident":
                        ops = [0, *r.sample_ops]
                        kib = [b / 1024 for b in (r.resident_after_warmup_bytes, *r.sample_resident_bytes)]
                        ax.plot(ops[:len(kib)], kib, color=_COLORS[p], alpha=0.8, label=lab,
                                linewidth=_WIDTHS[p])  # FAST widest: equal curves stay visible
                        if any(r.sample_lazyfree_bytes):
                            ax.plot(r.sample_ops, [b / 1024 for b in r.sample_lazyfree_bytes],
                                    color=_COLORS[p], alpha=0.6, linestyle=":", linewidth=1,
                                    label=f"{POLICIES[p][0]} LazyFree" if i == 0 else None)
                        if r.peak_resident_bytes:
                            ax.axhline(r.peak_resident_bytes / 1024, color=_COLORS[p], alpha=0.4,
                                       linestyle="--", linewidth=0.8)
                    else:
                        ax.plot(range(1, len(r.epoch_ops_per_s) + 1), r.epoch_ops_per_s,
                                color=_COLORS[p], alpha=0.8, label=lab, marker=".")
            ax.set_title(f"{WORKLOADS[wkey][2]}", fontsize="medium")
            ax.set_ylabel(ylabel)
            ax.set_ylim(0, max(ax.get_ylim()[1], 1.0) * 1.15)  # flat curves off the frame
            ax.grid(True, alpha=0.3)
            ax.legend(loc="best", fontsize="small")
        axes[-1].set_xlabel("timed operations (0 = after the warm-up); dashed: exact peak; dotted: LazyFree"
                            if name == "resident" else "epoch")
        fig.tight_layout()
        path = outdir / f"{name}.png"
        fig.savefig(path)
        out.append(path)
    return out


def report_markdown(res: ValidateResult) -> str:
    """report.md: the scorecard in the style of the Phase 54 results document."""
    s = res.spec
    L = ["# Phase 54 full validation (simalloc validate)", ""]
    L += ["## Summary", "", f"{_settings_line(res)}; wall time {res.seconds:.0f} s"
          + (f" (this invocation; {res.reused} run(s) reused from the runs file)" if res.reused else "")
          + ". The runs of a workload are interleaved FAST, LEAN+FREE, LEAN+DONTNEED.", ""]
    L += ["| cell | peak KiB | mean KiB | final KiB | LazyFree KiB | ops/s mean | CV epochs | "
          "drift first->last | drift settled | syscalls/op | lean_decommit | lean_retire | verdict |",
          "|---|" + "---:|" * 12]
    for c in res.cells:
        t = res.tables[c]
        v = res.judgments.get(c)
        L.append(f"| {cell_title(c)} | {_kib(t['peak_resident_bytes'])} | {_kib(t['mean_resident_bytes'])} | "
                 f"{_kib(t['final_resident_bytes'])} | {_kib(t['final_lazyfree_bytes'])} | "
                 f"{t['ops_per_s_mean']:,.0f} | {t['epoch_cv_pct']:.2f}% | {t['drift_pct']:+.2f}% | "
                 f"{t['drift_settled_pct']:+.2f}% | {t['syscalls_per_op']:.3g} | {t['lean_decommit']} | "
                 f"{t['lean_retire']} | {v.label if v else '(baseline)'} |")
    L += ["", f"**Worst verdict: {res.worst}.**" if res.worst else "No LEAN cell was judged.", ""]
    L += ["Heap figures are the heap's own mappings, exact (the resident-page model, equal to "
          "pagemap), over the timed part; LazyFree is the MADV_FREE'd part of resident. Drift "
          "first->last is the report's definition (first epoch to last); settled drift is over the "
          "second half of the epochs. Process peak RSS (VmHWM) includes the Python interpreter.", ""]
    L += ["## Configuration", ""]
    for title, ov in POLICIES.values():
        L += [f"- {title}: `{format_overrides(merge_overrides(s.overrides, ov))}`"]
    L += [""]
    for wkey, cells in _workload_cells(res):
        L += [f"## {WORKLOADS[wkey][2]}", "", f"Workload: {res.describe.get(wkey, '')}", ""]
        rows = _table_rows(res, cells)
        L += ["| " + " | ".join(rows[0]) + " |", "|---|" + "---:|" * (len(rows[0]) - 1)]
        L += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        L += ["", "```"] + [f"{POLICIES[split_cell(c)[1]][0]:<14} {res.tables[c].get('stats_line', '')}"
                            for c in cells] + ["```", ""]
        for c in cells:
            v = res.judgments.get(c)
            if v is None:
                continue
            L += [f"### {POLICIES[split_cell(c)[1]][0]} (B) vs FAST (A): {v.label}", ""]
            L += ["GO (every one; N/A counts as met):"] + [_criterion(ch) for ch in v.checks if ch.gate == GO]
            L += ["", "NO-GO (any; PASS = did not happen):"]
            L += [_criterion(ch) for ch in v.checks if ch.gate == NO_GO]
            L += [""] + [f"- {r}" for r in v.reasons] + [f"- note: {n}" for n in v.notes] + [""]
        L += ["Why lean_retire is what it is:", ""]
        L += [f"- {POLICIES[split_cell(c)[1]][0]}: {res.tables[c].get('explain_lean')}" for c in cells] + [""]
    L += report_tail(res.failed_runs, "validation", res.kernel, f" Runs file: `{res.out}`.")
    return "\n".join(L)


def write_report(res: ValidateResult, outdir: str | Path) -> list[Path]:
    """Write ``report.md``, ``resident.png`` and ``throughput.png`` into ``outdir``.  Raises
    ``ImportError`` (the ``plot`` extra's one-line hint), writing nothing, without matplotlib."""
    require_matplotlib()
    d = Path(outdir)
    d.mkdir(parents=True, exist_ok=True)
    md = d / "report.md"
    md.write_text(report_markdown(res), encoding="utf-8")
    return [md, *_plot(res, d)]
