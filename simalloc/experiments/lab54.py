"""The policy lab's answer to Phase 54: which release rule meets the report's GO criteria
against FAST, on which workload -- or why none can (``simalloc lab54``).

Phase 54 judged LEAN on Mixed WS=400 and asked for three more workloads (Mixed WS=4000, heavy
churn, and -- the commonest complaint in real allocators' trackers -- a program that goes idle).
Its GO criteria, against FAST: resident -70 %, throughput no worse than -10 %, syscalls
< 1e-6/op, drift 0, CV < 2 %.  This module answers in two parts.

**1. The live-data bound.**  No release policy can push the heap's resident memory below what
its live blocks occupy.  Blocks never straddle pages here (power-of-two strides, 2 KiB-aligned
slab data), so every page holds blocks of one class, and at any instant ``t``::

    resident(t) >= header page + sum over classes c of ceil(live_c(t) * stride_c / 4096) * 4096

(``live_c(t)``: blocks of class ``c`` live at ``t``, replayed from the workload's own op
stream).  :func:`live_bound` computes the peak of this bound over the timed part and its mean
over virtual time (each op lasts ``ns_per_op``, an idle phase its own length).
When FAST's peak x 0.3 is below the peak bound, the report's "-70 % peak RSS" is unreachable by
*any* policy on that workload: the policy can only give back memory nobody uses.  Only the mean
(time spent above the live set) is a policy's to win.

**2. The trials.**  Every candidate (hakmem's LEAN variants, the slab purge, the presets of
real allocators) runs ``runs`` times on the workload's stream, alternating with FAST on the
same stream (A B A B, as ``simalloc ab``); each is judged by
:func:`simalloc.experiments.verdict.judge` twice: on the peak, and on the mean resident figure
over virtual time (``mean_resident_virtual_bytes``: what a program holds while idle counts for
as long as it idles).  The report's absolute target (10 MB of *process* RSS, the binary
included in hakmem's measurement) is scaled to the heap: the target is FAST's own figure x 0.3,
so the relative criterion always applies.  Drift is judged with a tolerance of
:data:`DRIFT_PAGES` pages (a short run's first-touch creep; the report's "0 %" holds after
~1e8 warm-up operations, see ``benchmarks/soak_drift.py``).  Rows stream to a CSV as each candidate finishes.

The figures are the heap's own pages (the exact resident model), never the interpreter's.
Throughput and CV come from a shared, noisy machine: CV < 2 % essentially never passes here, so
each row also says whether the candidate would be GO *but for* the CV criterion.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import constants as K
from ..errors import ConfigError
from ..policy import policy_overrides
from .ab import aggregate
from .metrics import RunResult, RunSpec, run_once
from .verdict import FAIL, GO, NO_GO, Criteria, judge

__all__ = ["CANDIDATES", "WORKLOADS", "LabRow", "LiveBound", "format_lab", "live_bound", "run_lab"]

PAGE = 4096

#: The workloads of the lab: name -> (workload, ws, params).  ``idle`` has idle phases.
WORKLOADS: dict[str, tuple[str, int | None, dict[str, Any]]] = {
    "mixed-400": ("mixed", 400, {}),
    "mixed-4000": ("mixed", 4000, {}),
    "churn": ("churn", None, {}),
    "idle": ("idle", None, {}),
}

#: Candidates judged against FAST: name -> config overrides (the policy names' own overrides,
#: :func:`simalloc.policy.policy_overrides`, plus LEAN with no budget).
CANDIDATES: dict[str, dict[str, Any]] = {
    name: policy_overrides(name)
    for name in ("lean-free", "lean-dontneed", "slab-purge", "jemalloc-decay", "mimalloc-purge",
                 "tcmalloc-release", "gperftools-scavenge", "glibc-trim", "obmalloc")
}
CANDIDATES["lean-dontneed-0mb"] = {**policy_overrides("lean-dontneed"), "mem_lean_target_mb": 0}

FAST: dict[str, Any] = policy_overrides("fast")


@dataclass(frozen=True)
class LiveBound:
    """The live-data lower bound on a workload's heap resident bytes (module docstring)."""

    workload: str
    ops: int
    peak_payload_bytes: int  # requested bytes live at the worst instant
    peak_bound_bytes: int  # the page bound at its worst instant (header page included)
    mean_bound_bytes: float  # the page bound averaged over virtual time (idle rows weigh their length)


def _row_classes(sizes: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Class of each request (the heap's own size table; large requests -> NUM_CLASSES)."""
    out = np.full(len(sizes), K.NUM_CLASSES, dtype=np.int64)
    small = sizes < len(lut)
    out[small] = lut[sizes[small]]
    return out


def live_bound(workload: str, ops: int, ws: int | None = None, seed: int = 1,
               params: Mapping[str, Any] | None = None, ns_per_op: float | None = None) -> LiveBound:
    """Replay the workload's warm-up and timed stream as counts (no heap) and return the bound.

    Only tiny-class blocks count (large and Mid requests are left out, so the bound stays a
    lower bound).  Realloc rows count as a free of the old block and a malloc of the new one.
    The mean is over virtual time, as the heap's ``resident_mean_virtual_bytes``: each op lasts
    ``ns_per_op`` (default: the option's), an idle row its own length."""
    from ..options import Config
    from ..workloads import get_workload

    w = get_workload(workload, ops=ops, ws=ws, seed=seed, **dict(params or {}))
    warm, timed = w.warmup_stream(), w.op_stream()
    rows = np.concatenate([warm, timed]) if len(warm) else timed
    lut = K.build_size_lut()
    strides = np.array([*K.CLASS_STRIDES, 0], dtype=np.int64)  # index NUM_CLASSES: not counted
    kind, slot, size = rows[:, 0], rows[:, 1], rows[:, 2]
    cls = _row_classes(size, lut)
    # the block a free / realloc row gives back is the one its slot's previous malloc or
    # realloc row made: sort rows by (slot, position), carry the last allocating row forward
    n_all = len(rows)
    order = np.lexsort((np.arange(n_all), slot))
    s_sorted = slot[order]
    k_sorted = kind[order]
    allocs = (k_sorted == K.OP_MALLOC) | (k_sorted == K.OP_REALLOC)
    pos = np.arange(n_all)
    gstart = np.maximum.accumulate(np.where(np.r_[True, s_sorted[1:] != s_sorted[:-1]], pos, 0))
    last = np.maximum.accumulate(np.where(allocs, pos, -1))
    prev = np.r_[-1, last[:-1]]
    prev[prev < gstart] = -1  # no earlier allocation in this slot
    gives_back = ((k_sorted == K.OP_FREE) | (k_sorted == K.OP_REALLOC)) & (prev >= 0)
    old_cls = np.full(n_all, -1, dtype=np.int64)
    old_size = np.zeros(n_all, dtype=np.int64)
    old_cls[order[gives_back]] = cls[order[prev[gives_back]]]
    old_size[order[gives_back]] = size[order[prev[gives_back]]]
    is_alloc = (kind == K.OP_MALLOC) | (kind == K.OP_REALLOC)
    d_cls = np.stack([old_cls, np.where(is_alloc, cls, -1)], axis=1)
    d_pay = np.where(is_alloc, size, 0) - old_size
    counts = np.zeros((len(rows), K.NUM_CLASSES + 1), dtype=np.int32)
    for col, sign in ((0, -1), (1, 1)):
        ok = d_cls[:, col] >= 0
        np.add.at(counts, (np.nonzero(ok)[0], d_cls[ok, col]), sign)
    live = np.cumsum(counts, axis=0, dtype=np.int64)[len(warm):]
    pages = np.ceil(live * strides / PAGE).sum(axis=1) + (live.sum(axis=1) > 0)
    payload = np.cumsum(d_pay)[len(warm):]
    n = len(timed)
    step = float(Config().ns_per_op if ns_per_op is None else ns_per_op)
    tk = timed[:, 0]
    weight = np.where(tk == K.OP_IDLE, timed[:, 2].astype(np.float64), step)
    # an idle row lasts at the resident figure of the row before it (the bound after it is the same)
    mean = float((pages * weight).sum() / weight.sum()) if n and weight.sum() > 0 else 0.0
    return LiveBound(workload=w.describe(), ops=int((tk != K.OP_IDLE).sum()),
                     peak_payload_bytes=int(payload.max()) if n else 0,
                     peak_bound_bytes=int(pages.max()) * PAGE if n else 0,
                     mean_bound_bytes=mean * PAGE)


@dataclass
class LabRow:
    """One candidate on one workload, judged against FAST."""

    workload: str
    candidate: str
    overrides: dict[str, Any]
    fast_peak_bytes: int
    fast_mean_bytes: float
    peak_bytes: int
    mean_bytes: float
    peak_reduction_pct: float
    mean_reduction_pct: float
    throughput_delta_pct: float
    syscalls_per_op: float
    drift_settled_pct: float
    cv_pct: float
    verdict_peak: str
    verdict_mean: str
    go_but_cv_mean: bool  # every GO criterion but CV passes on the mean resident figure
    failed: list[str] = field(default_factory=list)  # criteria (GO or NO-GO) failed on the mean: their metrics
    bound_peak_bytes: int = 0
    bound_mean_bytes: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["overrides"] = ";".join(f"{k}={v}" for k, v in self.overrides.items())
        d["failed"] = ";".join(self.failed)
        return d


def _pct(a: float, b: float) -> float:
    return 100.0 * (a - b) / a if a else 0.0


#: Drift tolerated, in pages: a short run's resident high-water mark still creeps by a page or
#: two when one class's live count sets a new record (bounded by the slabs, unlike a leak; see
#: :mod:`simalloc.experiments.metrics`).  The tolerance is this many pages of the candidate's
#: final resident figure (the base drift is measured against).
DRIFT_PAGES = 4


def _judge_row(wname: str, cand: str, overrides: dict[str, Any], a: dict[str, Any], b: dict[str, Any],
               bound: LiveBound | None) -> LabRow:
    verdicts = {}
    failed: list[str] = []
    go_but_cv = False
    for metric, key in (("peak", "peak_resident_bytes"), ("virtual_mean", "mean_resident_virtual_bytes")):
        target = max(1, math.ceil(0.3 * float(a[key])))
        tol = 100.0 * DRIFT_PAGES * PAGE / max(float(b["final_resident_bytes"]), PAGE)
        v = judge(a, b, Criteria(resident_metric=metric, rss_target_bytes=target, drift_tolerance_pct=tol))
        verdicts["mean" if metric == "virtual_mean" else metric] = v.label
        if metric == "virtual_mean":
            bad = [c for c in v.checks if c.gate == GO and c.outcome == FAIL]
            bad += [c for c in v.checks if c.gate == NO_GO and c.outcome == FAIL]
            failed = sorted({c.metric for c in bad})
            go_but_cv = all(c.metric == "cv" for c in bad)
    ta, tb = float(a["ops_per_s_median"]), float(b["ops_per_s_median"])
    return LabRow(
        workload=wname, candidate=cand, overrides=overrides,
        fast_peak_bytes=int(a["peak_resident_bytes"]), fast_mean_bytes=float(a["mean_resident_virtual_bytes"]),
        peak_bytes=int(b["peak_resident_bytes"]), mean_bytes=float(b["mean_resident_virtual_bytes"]),
        peak_reduction_pct=_pct(a["peak_resident_bytes"], b["peak_resident_bytes"]),
        mean_reduction_pct=_pct(a["mean_resident_virtual_bytes"], b["mean_resident_virtual_bytes"]),
        throughput_delta_pct=100.0 * (tb - ta) / ta if ta else 0.0,
        syscalls_per_op=float(b["syscalls_per_op"]), drift_settled_pct=float(b["drift_settled_pct"]),
        cv_pct=float(b["ops_per_s_cv_pct"]), verdict_peak=verdicts["peak"], verdict_mean=verdicts["mean"],
        go_but_cv_mean=go_but_cv, failed=failed,
        bound_peak_bytes=bound.peak_bound_bytes if bound else 0,
        bound_mean_bytes=bound.mean_bound_bytes if bound else 0.0)


def run_lab(workloads: Sequence[str] = ("mixed-4000", "churn", "idle"),
            candidates: Iterable[str] | None = None, *, runs: int = 3, ops: int = 2_000_000,
            epochs: int = 10, seed: int = 1, kernel: str | None = None,
            on_row: Callable[[LabRow], None] | None = None,
            log: Callable[[str], None] | None = None
            ) -> tuple[dict[str, LiveBound], dict[str, dict[str, float]], list[LabRow]]:
    """Bound and trials for each workload (module docstring); ``on_row`` gets every row as it
    is judged (the CLI appends it to the CSV), ``log`` one line per run.  Returns the bounds,
    FAST's figures per workload (peak, mean, throughput) and the rows."""
    names = list(candidates) if candidates is not None else list(CANDIDATES)
    for n in names:
        if n not in CANDIDATES:
            raise ConfigError(f"unknown candidate {n!r}: expected one of {', '.join(CANDIDATES)}")
    for wn in workloads:
        if wn not in WORKLOADS:
            raise ConfigError(f"unknown lab workload {wn!r}: expected one of {', '.join(WORKLOADS)}")
    base = {"kernel": kernel} if kernel else {}
    bounds: dict[str, LiveBound] = {}
    fast: dict[str, dict[str, float]] = {}
    rows: list[LabRow] = []

    def one(wn: str, label: str, overrides: dict[str, Any], i: int) -> RunResult:
        wl, ws, params = WORKLOADS[wn]
        r = run_once(RunSpec(workload=wl, ops=ops, ws=ws, seed=seed, params=dict(params),
                             overrides={**base, **overrides}, epochs=epochs, label=label))
        if log:
            log(f"[lab54] {wn} {label} run {i + 1}/{runs}: {r.summary()}")
        return r

    for wn in workloads:
        wl, ws, params = WORKLOADS[wn]
        try:
            bounds[wn] = live_bound(wl, ops, ws, seed, params)
        except ConfigError:
            if wn == "idle":  # the idle workload is optional until it exists
                if log:
                    log(f"[lab54] {wn}: workload {wl!r} not available, skipped")
                continue
            raise
        if not names:  # bounds and FAST only
            a = aggregate([one(wn, "FAST", FAST, i) for i in range(runs)], FAST)
        for cand in names:  # FAST and the candidate alternate (A B A B), as `simalloc ab` does
            pairs = [(one(wn, "FAST", FAST, i), one(wn, cand, CANDIDATES[cand], i)) for i in range(runs)]
            a = aggregate([p[0] for p in pairs], FAST)
            b = aggregate([p[1] for p in pairs], CANDIDATES[cand])
            row = _judge_row(wn, cand, CANDIDATES[cand], a, b, bounds[wn])
            rows.append(row)
            if on_row:
                on_row(row)
        fast[wn] = {"peak_resident_bytes": float(a["peak_resident_bytes"]),
                    "mean_resident_bytes": float(a["mean_resident_virtual_bytes"]),
                    "ops_per_s_median": float(a["ops_per_s_median"])}
    return bounds, fast, rows


def _kib(x: float) -> str:
    return f"{x / 1024:,.0f}"


def format_lab(bounds: Mapping[str, LiveBound], fast: Mapping[str, Mapping[str, float]],
               rows: Sequence[LabRow]) -> str:
    """The lab's answer as text: per workload the bound, FAST's figures and the -70 % targets,
    then one line per candidate and the answer."""
    out: list[str] = []
    for wn, b in bounds.items():
        wrows = [r for r in rows if r.workload == wn]
        out.append(f"== {wn}: {b.workload}")
        out.append(f"   live-data bound (any policy): peak {_kib(b.peak_bound_bytes)} KiB, "
                   f"mean {_kib(b.mean_bound_bytes)} KiB; peak live payload {_kib(b.peak_payload_bytes)} KiB")
        f = fast.get(wn)
        if f:
            tpk, tmn = 0.3 * f["peak_resident_bytes"], 0.3 * f["mean_resident_bytes"]
            out.append(f"   FAST: peak {_kib(f['peak_resident_bytes'])} KiB, "
                       f"mean {_kib(f['mean_resident_bytes'])} KiB; "
                       f"-70% targets: peak {_kib(tpk)} KiB, mean {_kib(tmn)} KiB")
            for what, t, bd in (("peak", tpk, b.peak_bound_bytes), ("mean", tmn, b.mean_bound_bytes)):
                if t < bd:
                    out.append(f"   -> the {what} target is BELOW the live data ({_kib(t)} < {_kib(bd)} KiB): "
                               "unreachable by any release policy")
        if not wrows:
            continue
        out.append(f"   {'candidate':<20} {'peak':>6} {'mean':>6} {'tput':>7} {'sys/op':>8} {'drift':>6} "
                   f"{'CV':>5}  verdict(peak/mean)  GO-but-CV  failed (mean)")
        for r in wrows:
            out.append(f"   {r.candidate:<20} {-r.peak_reduction_pct:+5.0f}% {-r.mean_reduction_pct:+5.0f}% "
                       f"{r.throughput_delta_pct:+6.1f}% {r.syscalls_per_op:8.1e} {r.drift_settled_pct:+5.1f}% "
                       f"{r.cv_pct:4.1f}%  {r.verdict_peak:>7}/{r.verdict_mean:<8}  "
                       f"{'yes' if r.go_but_cv_mean else 'no':>9}  {', '.join(r.failed) or '-'}")
        winners = [r.candidate for r in wrows if r.go_but_cv_mean]
        answer = "GO but for CV: " + ", ".join(winners) if winners else "no candidate meets the GO criteria"
        out.append(f"   answer: {answer}")
    return "\n".join(out)


class CsvSink:
    """Append :class:`LabRow` dicts to ``path`` as they come (header written once)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._header = not self.path.exists() or self.path.stat().st_size == 0

    def __call__(self, row: LabRow) -> None:
        d = row.as_dict()
        with self.path.open("a", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=list(d))
            if self._header:
                w.writeheader()
                self._header = False
            w.writerow(d)
