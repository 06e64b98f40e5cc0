"""Soak: one heap, one workload run over and over for a wall-clock duration, sampled per epoch.

The simulator's counterpart of hakmem's ``scripts/soak_mixed_single_process.sh`` (``DURATION_SEC``,
``EPOCH_SEC``, ``WS=400``; hakmem-design.md s7).  :func:`run_soak` opens one heap and runs
passes of the workload (pass ``p`` uses seed ``seed + p``; each pass is warm-up + timed part +
final drain, so the heap sees the workload's whole life cycle again and again) in pieces of
about ``chunk_ops`` operations.  An epoch ends at the first piece boundary after ``epoch``
seconds; then, outside the epoch's timing, the heap's residency and counters are sampled.
After each epoch the piece size is set to about 1/20 of an epoch at the measured rate (at
least ``chunk_ops``), taking effect from the next pass.

Per-epoch CSV columns (:data:`CSV_COLUMNS`)::

    epoch, t_s (seconds since the soak started, at the epoch's end), seconds (timed length),
    ops, ops_per_s, resident_bytes (heap's own mappings, pagemap), lazyfree_bytes (smaps),
    vm_rss_bytes (the whole process's VmRSS, the Python interpreter included), mapped_bytes,
    syscalls (OS calls during the epoch), syscalls_total, refaults (pages written again after a
    release during the epoch: simalloc/pages.py), refaults_total, lean_decommit, lean_retire
    (cumulative counters), passes (completed)

Summary: resident drift first -> last epoch (:func:`~.metrics.drift_pct`), throughput CV over
epochs, and the low-throughput tail p1 / p0.1 of per-epoch ops/s (hakmem's
``analyze_epoch_tail_csv.py`` takes tail percentiles on the latency proxy 1e9/throughput;
the low-throughput percentile is the same ranking).
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Generator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..constants import PAGE_SIZE
from ..errors import ConfigError
from ..heap import Heap
from ..oslayer import process_memory
from .explain import explain_lean
from .metrics import cv_pct, drift_pct, drift_settled_pct

__all__ = ["CSV_COLUMNS", "SoakEpoch", "SoakResult", "SoakSpec", "format_soak", "run_soak",
           "write_csv"]


@dataclass(frozen=True)
class SoakSpec:
    """What to soak: workload, heap config overrides, duration and epoch in seconds, and the
    size of one pass (``pass_ops`` timed operations) and of one piece (``chunk_ops``)."""

    workload: str = "mixed"
    ws: int | None = 400  # None: the workload's default
    seed: int = 1
    params: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    duration: float = 10.0
    epoch: float = 1.0
    pass_ops: int = 200_000
    chunk_ops: int = 2_000

    def __post_init__(self) -> None:
        if not self.duration > 0 or not self.epoch > 0:
            raise ValueError("duration and epoch must be > 0")
        if self.epoch > self.duration:
            raise ValueError(f"epoch ({self.epoch} s) is longer than the duration ({self.duration} s)")
        if self.pass_ops < 1 or self.chunk_ops < 1:
            raise ValueError("pass_ops and chunk_ops must be >= 1")


@dataclass
class SoakEpoch:
    """One CSV row."""

    epoch: int
    t_s: float
    seconds: float
    ops: int
    ops_per_s: float
    resident_bytes: int
    lazyfree_bytes: int
    vm_rss_bytes: int
    mapped_bytes: int
    syscalls: int
    syscalls_total: int
    refaults: int
    refaults_total: int
    lean_decommit: int
    lean_retire: int
    passes: int


CSV_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(SoakEpoch))

#: What the memory figures cover (the ``descriptions`` of ``--json``): heap figures are the
#: heap's own mappings, process figures the whole process with the Python interpreter.
SOAK_DESCRIPTIONS: dict[str, str] = {
    "resident_bytes": "heap only: resident bytes of the heap's own mappings at the epoch's end (exact "
                      "page model = pagemap)",
    "peak_resident_bytes": "heap only: most resident bytes at any instant of the soak (exact, not sampled)",
    "mean_resident_bytes": "heap only: resident bytes averaged over operations (exact)",
    "mean_resident_seconds_bytes": "heap only: resident bytes averaged over wall time (exact)",
    "lazyfree_bytes": "heap only: of the resident bytes, those given back with MADV_FREE (LazyFree)",
    "drift_pct": "heap only: resident change first epoch -> last epoch, in %",
    "refaults": "heap only: pages written again after the heap gave them back (one page fault each) "
                "during the epoch",
    "vm_rss_bytes": "whole process, including the Python interpreter: VmRSS at the epoch's end",
    "vm_rss_drift_pct": "whole process, including the Python interpreter: VmRSS change first -> last "
                        "epoch, in %",
}


@dataclass
class SoakResult:
    """The epochs and the summary figures (module docstring)."""

    spec: SoakSpec
    kernel: str
    policy: str
    epochs: list[SoakEpoch]
    ops: int = 0
    seconds: float = 0.0
    ops_per_s_mean: float = 0.0
    cv_pct: float = 0.0
    p1_ops_per_s: float = 0.0
    p01_ops_per_s: float = 0.0
    drift_pct: float = 0.0
    drift_settled_pct: float = 0.0
    peak_resident_bytes: int = 0
    mean_resident_bytes: float = 0.0
    mean_resident_seconds_bytes: float = 0.0
    vm_rss_drift_pct: float = 0.0
    syscalls_per_op: float = 0.0
    refaults_per_op: float = 0.0
    refault_bytes_per_op: float = 0.0
    stats_line: str = ""
    explain_lean: str = ""
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["spec"] = asdict(self.spec)
        d["descriptions"] = dict(SOAK_DESCRIPTIONS)
        return d


class _Passes:
    """Operations per piece, forever: pass after pass of the workload on one heap.

    ``piece_ops`` (operations per piece) may be raised between passes; ``passes`` counts the
    completed ones."""

    def __init__(self, heap: Heap, spec: SoakSpec) -> None:
        self.heap = heap
        self.spec = spec
        self.piece_ops = spec.chunk_ops
        self.passes = 0

    def pieces(self) -> Generator[int, None, None]:
        from ..workloads import get_workload

        spec = self.spec
        slots: np.ndarray | None = None
        while True:
            w = get_workload(spec.workload, ops=spec.pass_ops, ws=spec.ws,
                             seed=spec.seed + self.passes, **spec.params)
            if slots is None or len(slots) < w.nslots:
                slots = np.zeros(w.nslots, dtype=np.uint64)
            n = w.warmup(self.heap, slots)
            if n:
                yield n
            yield from w.run_chunks(self.heap, slots, max(1, spec.pass_ops // self.piece_ops))
            self.passes += 1


#: Pieces per epoch the soak aims at (epoch boundaries land within ~1/20 of an epoch).
PIECES_PER_EPOCH = 20


def run_soak(spec: SoakSpec, progress: bool = True) -> SoakResult:
    """Run the soak (module docstring).  ``progress``: a tqdm bar on stderr, updated per epoch
    (``disable=None``: off when stderr is not a terminal)."""
    from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]

    try:
        heap = Heap(**spec.overrides)
    except ConfigError:
        raise  # a usage error, not a crash
    except Exception as exc:  # e.g. a policy that raises while the heap prewarms: the soak failed
        return SoakResult(spec=spec, kernel="", policy="", epochs=[],
                          error=f"heap construction failed: {type(exc).__name__}: {exc}")
    res = SoakResult(spec=spec, kernel=heap.kernel_name, epochs=[],
                     policy=_safe_describe(heap))
    n_epochs = max(1, math.ceil(spec.duration / spec.epoch - 1e-9))
    bar = tqdm(total=n_epochs, unit="epoch", desc="soak", disable=None if progress else True,
               leave=False)
    try:
        driver = _Passes(heap, spec)
        pieces = driver.pieces()
        start = time.perf_counter()
        st = heap.stats()
        sys_prev, rf_prev = int(st["syscalls"]), int(st["refaults"])
        try:
            while time.perf_counter() - start < spec.duration - 1e-9:
                ops = 0
                t0 = time.perf_counter()
                while True:
                    ops += next(pieces)
                    dt = time.perf_counter() - t0
                    if dt >= spec.epoch:
                        break
                r = dict(heap.resident())
                r["vm_rss_bytes"] = process_memory()["vm_rss_bytes"]
                r["mapped_bytes"] = heap.stats()["mapped_bytes"]
                st = heap.stats()
                sys_now, rf_now = int(st["syscalls"]), int(st["refaults"])
                res.epochs.append(SoakEpoch(
                    epoch=len(res.epochs) + 1, t_s=time.perf_counter() - start, seconds=dt,
                    ops=ops, ops_per_s=ops / dt, resident_bytes=int(r["resident_bytes"]),
                    lazyfree_bytes=int(r["lazyfree_bytes"]), vm_rss_bytes=int(r["vm_rss_bytes"]),
                    mapped_bytes=int(r["mapped_bytes"]), syscalls=sys_now - sys_prev,
                    syscalls_total=sys_now, refaults=rf_now - rf_prev, refaults_total=rf_now,
                    lean_decommit=int(st["lean_decommit"]),
                    lean_retire=int(st["lean_retire"]), passes=driver.passes))
                sys_prev, rf_prev = sys_now, rf_now
                # pieces of ~epoch/20 at the measured rate (fewer calls into the heap; the
                # kernel's per-call cost is not what a soak measures)
                driver.piece_ops = max(spec.chunk_ops, min(spec.pass_ops, int(
                    ops / dt * spec.epoch / PIECES_PER_EPOCH)))
                bar.update(1)
                bar.set_postfix_str(f"{ops / dt:,.0f} ops/s, {int(r['resident_bytes']) >> 10} KiB")
        except ConfigError:
            raise
        except Exception as exc:  # the allocator under test failed: report it, keep the epochs
            res.error = f"{type(exc).__name__}: {exc}"
        pieces.close()
        try:
            model = heap.resident()
            res.peak_resident_bytes = int(model["resident_peak_bytes"])
            res.mean_resident_bytes = float(model["resident_mean_ops_bytes"])
            res.mean_resident_seconds_bytes = float(model["resident_mean_seconds_bytes"])
            res.stats_line = heap.os_stats_line()
            res.explain_lean = explain_lean(heap)
        except Exception as exc:  # observing a heap the failure left behind: record, go on
            res.error = res.error or f"{type(exc).__name__}: {exc}"
    finally:
        bar.close()
        try:
            heap.close()
        except Exception as exc:  # closing after a failure: record it, never mask the first error
            res.error = res.error or f"close failed: {type(exc).__name__}: {exc}"
    _summarise(res)
    return res


def _safe_describe(heap: Heap) -> str:
    """The policy's description, or its class name if ``describe()`` raises."""
    try:
        return heap.policy.describe()
    except Exception:
        return type(heap.policy).__name__


def _summarise(res: SoakResult) -> None:
    ep = res.epochs
    if not ep:
        return
    tput = np.array([e.ops_per_s for e in ep])
    res.ops = sum(e.ops for e in ep)
    res.seconds = sum(e.seconds for e in ep)
    res.ops_per_s_mean = res.ops / res.seconds if res.seconds else 0.0
    res.cv_pct = cv_pct(tput)
    res.p1_ops_per_s = float(np.percentile(tput, 1))
    res.p01_ops_per_s = float(np.percentile(tput, 0.1))
    res.drift_pct = drift_pct([e.resident_bytes for e in ep])
    res.drift_settled_pct = drift_settled_pct([e.resident_bytes for e in ep])
    res.vm_rss_drift_pct = drift_pct([e.vm_rss_bytes for e in ep])
    res.syscalls_per_op = sum(e.syscalls for e in ep) / res.ops if res.ops else 0.0
    res.refaults_per_op = sum(e.refaults for e in ep) / res.ops if res.ops else 0.0
    res.refault_bytes_per_op = res.refaults_per_op * PAGE_SIZE


def write_csv(res: SoakResult, path: str | Path) -> Path:
    """The per-epoch CSV (header :data:`CSV_COLUMNS`)."""
    p = Path(path)
    if p.parent != Path(""):
        p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", newline="", encoding="utf-8") as f:
        wr = csv.DictWriter(f, fieldnames=list(CSV_COLUMNS))
        wr.writeheader()
        for e in res.epochs:
            row = asdict(e)
            row["t_s"] = f"{e.t_s:.4f}"
            row["seconds"] = f"{e.seconds:.4f}"
            row["ops_per_s"] = f"{e.ops_per_s:.1f}"
            wr.writerow(row)
    return p


def format_soak(res: SoakResult) -> str:
    """The summary lines."""
    ep = res.epochs
    lines = [f"soak: {len(ep)} epochs of {res.spec.epoch:g} s, {res.ops:,} ops, "
             f"{res.ops_per_s_mean:,.0f} ops/s mean",
             f"throughput CV {res.cv_pct:.2f}% (epochs); low tail p1 {res.p1_ops_per_s:,.0f} ops/s, "
             f"p0.1 {res.p01_ops_per_s:,.0f} ops/s"]
    if ep:
        lines.append(f"heap resident {ep[0].resident_bytes >> 10} KiB -> {ep[-1].resident_bytes >> 10} KiB "
                     f"(drift {res.drift_pct:+.2f}%); process VmRSS (incl. the Python interpreter) drift "
                     f"{res.vm_rss_drift_pct:+.2f}%")
        lines.append(f"syscalls/op {res.syscalls_per_op:.3g}; refaults/op {res.refaults_per_op:.3g} "
                     f"({res.refault_bytes_per_op:.3g} bytes/op); lean_decommit={ep[-1].lean_decommit} "
                     f"lean_retire={ep[-1].lean_retire}; passes completed {ep[-1].passes}")
    lines.append(res.stats_line)
    if res.error:
        lines.append(f"ERROR: {res.error}")
    return "\n".join(lines)
