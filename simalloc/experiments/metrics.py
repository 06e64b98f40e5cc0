"""One measured run: fresh heap, warm-up, timed epochs, the heap's exact resident figures.

:func:`run_once` takes a :class:`RunSpec` (workload, size, seed, config overrides, epochs) and
returns a :class:`RunResult`:

* the workload's untimed ``warmup`` runs first (bench_random_mixed's prefault), then the heap's
  resident statistics are reset (``Heap.reset_resident_stats``), so every figure below covers
  the timed part only;
* the timed part runs as ``epochs`` epochs (``Workload.run_chunks``; the final drain is in the
  last, as hakmem's timed region includes it), each split into ``samples_per_epoch`` pieces;
  each piece is timed with ``time.perf_counter`` and, outside the timing, the heap's resident
  model is read (``Heap.resident()``: a few counters, no syscall) -- a dense curve for plots;
* **peak / mean resident are exact**, not maxima of samples: the heap's resident-page model
  (``simalloc/pages.py``) counts every page the allocator writes or gives back, so its high-water
  mark is the true peak of the heap's own resident bytes over the timed part (tests prove the
  model equals ``/proc/self/pagemap`` and smaps' LazyFree); the means are weighted by
  operations (``mean_resident_bytes``), by wall time (``mean_resident_seconds_bytes``) and by
  virtual time (``mean_resident_virtual_bytes``: ops x ``ns_per_op`` plus idle spans at their
  length -- the figure for workloads that go idle);
* ``lazyfree`` figures (MADV_FREE'd pages still resident) appear next to every resident one;
* syscalls/op is the heap's OS-call counter delta over the timed part divided by its ops;
  refaults/op and refault bytes/op the same for the page model's refaults (pages written again
  after a release: one page fault each, ``simalloc/pages.py``), and ``rescues`` the MADV_FREE'd
  pages written again before the kernel reclaimed them (no fault);
* at the end ``heap.residency()`` (pagemap) is read once more, as ``resident_pagemap_bytes``.

**Drift**, two definitions, both on the heap's own resident bytes at epoch ends:

* ``drift_pct`` -- the report's: first epoch -> last epoch::

    drift_pct = 100 * (last - first) / first            if first > 0
              = 100 * (last - first) / peak             if first == 0 and peak > 0
              = 0.0                                     if every sample is 0

* ``drift_settled_pct`` -- the same formula from the end of the first half of the epochs
  (sample ``(n - 1) // 2``) to the last.  Why both: a heap's resident set is the high-water
  mark of the pages its slabs ever carved into, and in a short run that mark still creeps up by
  a page or two whenever one class's live count sets a new record.  The creep is bounded by
  the slabs' size and stops; a leak does not.  hakmem's soaks take their first epoch after
  ~10^8 operations, when the mark has settled; the settled figure is the short-run equivalent,
  and it is what the verdict judges by default (``Criteria.drift_metric``).

**Process figures include the Python interpreter.**  ``process_peak_rss_bytes`` (VmHWM) and
``process_rss_bytes`` (VmRSS) are the whole process: the interpreter (~30 MB), numpy, and, in one
long-lived process, every earlier run.  Before each run the HWM is reset when the kernel allows
it (``process_peak_reset`` says whether it worked).  For a clean per-run figure use
``isolate=True``: each run then executes in a fresh interpreter (multiprocessing ``spawn``).
"""

from __future__ import annotations

import concurrent.futures
import math
import multiprocessing
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import numpy as np

from ..constants import PAGE_SIZE
from ..errors import ConfigError
from ..events import Sink, run_sink
from ..heap import Heap
from ..oslayer import process_memory, reset_peak_rss
from .explain import explain_lean

__all__ = ["RunResult", "RunSpec", "cv_pct", "drift_pct", "drift_settled_pct", "finite",
           "read_resident_model", "run_once", "summarise"]

T = TypeVar("T")


@dataclass(frozen=True)
class RunSpec:
    """What to run: a workload (name, size, seed, extra parameters), the heap's config
    overrides (option or environment names, values as strings or Python values) and how many
    timed epochs to split it into.  ``label`` names the side in an A/B ("A", "B")."""

    workload: str = "mixed"
    ops: int = 200_000
    ws: int | None = 400  # None: the workload's default
    seed: int = 1
    params: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    epochs: int = 10
    label: str = ""
    samples_per_epoch: int = 10  # resident samples per epoch (the dense curve for plots)
    events_path: str = ""  # write the decision log there as JSON lines (simalloc.events)
    break_kind: str = ""  # stop in pdb at the first decision-log record of this kind

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.ops < 1:
            raise ValueError(f"ops must be >= 1, got {self.ops}")


@dataclass
class RunResult:
    """Everything one run measured (see the module docstring for definitions).

    Byte figures of the heap come from ``Heap.residency()`` sampled after each timed epoch;
    ``peak``/``mean``/``final`` are over those samples.  ``error`` is set (and the figures are
    whatever was measured before it) when the run raised or its process died."""

    label: str
    workload: str
    describe: str
    seed: int
    config: dict[str, Any]
    ws: int = 0
    kernel: str = ""
    policy: str = ""
    ops: int = 0
    warmup_ops: int = 0
    seconds: float = 0.0
    ops_per_s: float = 0.0
    epoch_ops: list[int] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    epoch_ops_per_s: list[float] = field(default_factory=list)
    epoch_resident_bytes: list[int] = field(default_factory=list)
    epoch_lazyfree_bytes: list[int] = field(default_factory=list)
    epoch_vm_rss_bytes: list[int] = field(default_factory=list)
    sample_ops: list[int] = field(default_factory=list)  # cumulative timed ops at each sample
    sample_resident_bytes: list[int] = field(default_factory=list)
    sample_lazyfree_bytes: list[int] = field(default_factory=list)
    mean_resident_seconds_bytes: float = 0.0
    mean_resident_virtual_bytes: float = 0.0  # over virtual time: idle spans weigh their length
    peak_lazyfree_bytes: int = 0
    final_lazyfree_bytes: int = 0
    resident_pagemap_bytes: int = 0  # the kernel's figure at the end (pagemap), a cross-check
    epoch_cv_pct: float = 0.0
    resident_after_warmup_bytes: int = 0
    peak_resident_bytes: int = 0
    mean_resident_bytes: float = 0.0
    final_resident_bytes: int = 0
    mapped_peak_bytes: int = 0
    process_peak_rss_bytes: int = 0
    process_rss_bytes: int = 0
    process_peak_reset: bool = False
    isolated: bool = False
    drift_pct: float = 0.0
    drift_bytes: int = 0
    drift_settled_pct: float = 0.0
    syscalls: int = 0
    syscalls_per_op: float = 0.0
    refaults: int = 0  # pages written again after a release, timed part (simalloc/pages.py)
    refault_bytes: int = 0
    refaults_per_op: float = 0.0
    refault_bytes_per_op: float = 0.0
    rescues: int = 0  # MADV_FREE'd pages written again before reclaim (no fault), timed part
    rescues_per_op: float = 0.0
    lean_decommit: int = 0
    lean_retire: int = 0
    madvise_calls: int = 0
    mmap_total: int = 0
    munmap_total: int = 0
    stats_line: str = ""
    explain_lean: str = ""
    empty_report: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunResult:
        return cls(**d)

    def summary(self) -> str:
        """One line for progress output."""
        if self.error:
            return f"ERROR {self.error}"
        return (f"{self.ops_per_s:>12,.0f} ops/s  peak resident {self.peak_resident_bytes / 1024:,.0f} KiB  "
                f"drift {self.drift_pct:+.2f}% (settled {self.drift_settled_pct:+.2f}%)  "
                f"syscalls {self.syscalls}  refaults {self.refaults}  "
                f"lean_retire={self.lean_retire}")


def cv_pct(values: list[float] | np.ndarray) -> float:
    """Coefficient of variation in %: sample standard deviation (ddof=1) / mean.  0.0 for
    fewer than two values or a zero mean."""
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return 0.0
    m = float(x.mean())
    if m == 0.0:
        return 0.0
    return 100.0 * float(x.std(ddof=1)) / m


def drift_pct(samples: list[int] | list[float]) -> float:
    """Resident drift first sample -> last sample in % (definition in the module docstring)."""
    if not samples:
        return 0.0
    first, last, peak = float(samples[0]), float(samples[-1]), float(max(samples))
    if first > 0:
        return 100.0 * (last - first) / first
    if peak > 0:
        return 100.0 * (last - first) / peak
    return 0.0


def drift_settled_pct(samples: list[int] | list[float]) -> float:
    """Drift over the second half: from sample ``(n - 1) // 2`` to the last (module docstring)."""
    return drift_pct(list(samples)[(len(samples) - 1) // 2:])


def _safe(fn: Callable[[], T], default: T) -> T:
    """``fn()``, or ``default`` if the (possibly corrupted) heap raises while being observed."""
    try:
        return fn()
    except Exception:
        return default


def _measure(spec: RunSpec, isolated: bool = False) -> RunResult:
    """Run ``spec`` in this process (see :func:`run_once`), with the decision log's sink when
    ``spec`` asks for one (``events_path``, ``break_kind``), closed (flushed) when the run ends."""
    sink = run_sink(spec.events_path, spec.break_kind)
    try:
        return _measure_with(spec, isolated, sink)
    finally:
        if sink is not None:
            sink.close()


def _measure_with(spec: RunSpec, isolated: bool, events: Sink | None) -> RunResult:
    from ..workloads import get_workload

    w = get_workload(spec.workload, ops=spec.ops, ws=spec.ws, seed=spec.seed, **spec.params)
    res = RunResult(label=spec.label, workload=w.name, describe=w.describe(), seed=spec.seed,
                    config={}, ws=w.ws, isolated=isolated)
    res.process_peak_reset = reset_peak_rss()
    try:
        heap = Heap(events=events, **spec.overrides)
    except ConfigError:
        raise  # a usage error, not a crash
    except Exception as exc:  # e.g. a policy that raises while the heap prewarms: the run failed
        res.error = f"heap construction failed: {type(exc).__name__}: {exc}"
        return res
    try:
        res.config = dict(heap.config.diff())
        res.kernel = heap.kernel_name
        res.policy = _safe(heap.policy.describe, type(heap.policy).__name__)
        slots = np.zeros(w.nslots, dtype=np.uint64)
        try:
            res.warmup_ops = int(w.warmup(heap, slots))
            heap.reset_resident_stats()
            res.resident_after_warmup_bytes = int(heap.resident()["resident_bytes"])
            sys0 = int(heap.stats()["syscalls"])
            sub = max(1, spec.samples_per_epoch)
            chunks = iter(w.run_chunks(heap, slots, spec.epochs * sub))
            perf = time.perf_counter
            done = 0
            lazy_peak = 0
            for _epoch in range(spec.epochs):
                e_ops, e_dt = 0, 0.0
                for _piece in range(sub):
                    t0 = perf()
                    n = next(chunks, None)
                    dt = perf() - t0
                    if n is None:
                        break
                    e_ops += int(n)
                    e_dt += dt
                    done += int(n)
                    m = heap.resident()
                    res.sample_ops.append(done)
                    res.sample_resident_bytes.append(int(m["resident_bytes"]))
                    res.sample_lazyfree_bytes.append(int(m["lazyfree_bytes"]))
                    lazy_peak = max(lazy_peak, int(m["lazyfree_bytes"]))
                res.epoch_ops.append(e_ops)
                res.epoch_seconds.append(e_dt)
                res.epoch_ops_per_s.append(e_ops / e_dt if e_dt > 0 else 0.0)
                res.epoch_resident_bytes.append(res.sample_resident_bytes[-1] if res.sample_resident_bytes else 0)
                res.epoch_lazyfree_bytes.append(res.sample_lazyfree_bytes[-1] if res.sample_lazyfree_bytes else 0)
                res.epoch_vm_rss_bytes.append(process_memory()["vm_rss_bytes"])
            read_resident_model(res, heap, lazy_peak)
            st = heap.stats()
            res.syscalls = int(st["syscalls"]) - sys0
        except ConfigError:
            raise
        except Exception as exc:  # a crash of the allocator under test is a result (NO-GO)
            res.error = f"{type(exc).__name__}: {exc}"
            st = _safe(heap.stats, {})
        summarise(res, heap, st)
    finally:
        try:
            heap.close()
        except Exception as exc:  # closing after a failure: record it, never mask the first error
            res.error = res.error or f"close failed: {type(exc).__name__}: {exc}"
    return res


def read_resident_model(res: RunResult, heap: Heap, lazy_peak: int) -> None:
    """The exact resident figures of the timed part, from the heap's page model (plus the
    kernel's own pagemap figure at the end, as a cross-check)."""
    model = heap.resident()
    res.peak_resident_bytes = int(model["resident_peak_bytes"])
    res.mean_resident_bytes = float(model["resident_mean_ops_bytes"])
    res.mean_resident_seconds_bytes = float(model["resident_mean_seconds_bytes"])
    res.mean_resident_virtual_bytes = float(model.get("resident_mean_virtual_bytes", res.mean_resident_bytes))
    res.peak_lazyfree_bytes = lazy_peak
    res.final_lazyfree_bytes = int(model["lazyfree_bytes"])
    res.resident_pagemap_bytes = int(heap.residency()["resident_bytes"])
    res.refaults = int(model["refaults_since_reset"])  # the timed part (the reset ends the warm-up)
    res.rescues = int(model["rescues_since_reset"])


def summarise(res: RunResult, heap: Heap, st: Mapping[str, Any]) -> None:
    """A run's summary figures from its epochs, the heap's counters ``st`` and the process."""
    res.ops = sum(res.epoch_ops)
    res.seconds = sum(res.epoch_seconds)
    res.ops_per_s = res.ops / res.seconds if res.seconds > 0 else 0.0
    res.epoch_cv_pct = cv_pct(res.epoch_ops_per_s)
    rb = res.epoch_resident_bytes
    if rb:
        if not res.peak_resident_bytes:  # the run failed before the model was read
            res.peak_resident_bytes = max(rb)
            res.mean_resident_bytes = float(np.mean(rb))
        res.final_resident_bytes = rb[-1]
        res.drift_pct = drift_pct(rb)
        res.drift_settled_pct = drift_settled_pct(rb)
        res.drift_bytes = rb[-1] - rb[0]
    res.syscalls_per_op = res.syscalls / res.ops if res.ops else 0.0
    res.refault_bytes = res.refaults * PAGE_SIZE
    res.refaults_per_op = res.refaults / res.ops if res.ops else 0.0
    res.refault_bytes_per_op = res.refault_bytes / res.ops if res.ops else 0.0
    res.rescues_per_op = res.rescues / res.ops if res.ops else 0.0
    for key in ("lean_decommit", "lean_retire", "madvise_calls", "mmap_total", "munmap_total"):
        setattr(res, key, int(st.get(key, 0)))
    res.mapped_peak_bytes = int(st.get("mapped_peak_bytes", 0))
    res.stats_line = _safe(heap.os_stats_line, "")
    res.explain_lean = _safe(lambda: explain_lean(heap), "")
    no_report: dict[str, int] = {}
    res.empty_report = dict(_safe(heap.empty_report, no_report))
    pm = process_memory()
    res.process_peak_rss_bytes = pm["vm_hwm_bytes"]
    res.process_rss_bytes = pm["vm_rss_bytes"]


def _measure_child(spec: RunSpec) -> dict[str, Any]:
    """Entry point of an isolated run (a spawned interpreter): plain dict back."""
    return _measure(spec, isolated=True).as_dict()


def run_once(spec: RunSpec, isolate: bool = False) -> RunResult:
    """Run ``spec`` on a fresh heap and measure it.

    ``isolate=True`` runs it in a fresh interpreter (multiprocessing ``spawn``), so
    ``process_peak_rss_bytes`` is that run's own VmHWM; a child that dies (a segfault in a
    kernel) is reported as an error result, not raised.  Raises ConfigError for a bad config
    either way (validate configs before starting an experiment)."""
    if not isolate:
        return _measure(spec)
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        try:
            return RunResult.from_dict(pool.submit(_measure_child, spec).result())
        except concurrent.futures.process.BrokenProcessPool as exc:
            return RunResult(label=spec.label, workload=spec.workload, describe=spec.workload,
                             seed=spec.seed, config=dict(spec.overrides), isolated=True,
                             error=f"process died: {exc}")


def finite(x: float) -> float | None:
    """``x`` or None when it is NaN/inf (for strict JSON)."""
    return x if math.isfinite(x) else None
