"""One run of a ``simalloc validate`` cell: by operations or by time, always a RunResult.

A :class:`Job` is one run of one cell (workload, config overrides, size, seed, epochs or
duration).  :func:`measure` runs it on a fresh heap, in this process or (``isolate``) in a fresh
interpreter:

* **by operations** (``duration`` None): :func:`~.metrics.run_once` -- the workload's untimed
  warm-up, then ``ops`` timed operations in ``epochs`` epochs with ``samples_per_epoch``
  samples of the heap's resident model each;
* **by time** (``duration`` seconds): a soak as ``simalloc soak`` runs one -- one heap, the
  workload pass after pass (pass ``p`` with seed ``seed + p``; a pass is ``ops`` timed
  operations plus its warm-up and drain; the first warm-up untimed, then the heap's resident
  statistics are reset), epochs of ``epoch`` seconds until ``duration`` has passed (an epoch
  ends at the first piece boundary after ``epoch`` timed seconds, so the last one is whole),
  about :data:`PIECES_PER_EPOCH` pieces per epoch, the heap's resident model sampled after
  each piece (outside the timing).  The piece size follows the measured rate from the next
  pass on.  The figures are derived exactly as :func:`~.metrics.run_once` derives them: peak
  and means from the exact resident-page model, drift first->last and settled over the
  epoch-end samples, syscalls/op over the timed part, the lean counters.
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import multiprocessing
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..heap import Heap
from ..oslayer import process_memory, reset_peak_rss
from .metrics import RunResult, RunSpec, read_resident_model, run_once, summarise

__all__ = ["PIECES_PER_EPOCH", "Job", "measure"]

#: Pieces (resident samples) per epoch of a run by time.
PIECES_PER_EPOCH = 20


@dataclass(frozen=True)
class Job:
    """One run of one cell (picklable: an isolated run ships it to a fresh interpreter)."""

    cell: str
    run: int
    workload: str
    ws: int | None
    params: dict[str, Any]
    ops: int
    overrides: dict[str, Any]
    seed: int
    epochs: int
    samples_per_epoch: int
    duration: float | None
    epoch: float | None
    kernel: str

    def key(self) -> dict[str, Any]:
        """The settings a resumed run must share (JSON-normalised)."""
        d = asdict(self)
        if self.duration is None:
            d.pop("epoch")
        else:
            d.pop("epochs")
            d.pop("samples_per_epoch")
        return json.loads(json.dumps(d, default=str))

    def run_spec(self) -> RunSpec:
        return RunSpec(workload=self.workload, ops=self.ops, ws=self.ws, seed=self.seed,
                       params=dict(self.params), overrides=dict(self.overrides),
                       epochs=self.epochs, label=self.cell,
                       samples_per_epoch=self.samples_per_epoch)



def measure(job: Job, isolate: bool = False, progress: bool = True) -> RunResult:
    """Run ``job`` on a fresh heap (in a fresh interpreter with ``isolate``; a child that dies
    is an error result).  Runs by time show a per-epoch tqdm bar when ``progress`` and stderr
    is a terminal."""
    if not isolate:
        return _measure_timed(job, progress) if job.duration is not None else run_once(job.run_spec())
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        try:
            res = RunResult.from_dict(pool.submit(_measure_child, job, progress).result())
        except concurrent.futures.process.BrokenProcessPool as exc:
            res = RunResult(label=job.cell, workload=job.workload, describe=job.workload,
                            seed=job.seed, config=dict(job.overrides), error=f"process died: {exc}")
    res.isolated = True
    return res


def _measure_child(job: Job, progress: bool) -> dict[str, Any]:
    """Entry point of an isolated run."""
    return measure(job, isolate=False, progress=progress).as_dict()


def _safe(fn: Callable[[], Any], default: Any) -> Any:
    try:
        return fn()
    except Exception:
        return default


def _passes(heap: Heap, job: Job, first: Any, slots: np.ndarray,
            state: dict[str, int]) -> Generator[int, None, None]:
    """Operations per piece, forever: the first pass's timed part (its warm-up was run
    untimed), then pass after pass (warm-up, timed part, drain) with seed ``seed + p``.
    ``state["piece_ops"]`` sets the piece size from the next pass on; ``state["passes"]``
    counts completed passes."""
    from ..workloads import get_workload

    w = first
    while True:
        if state["passes"]:
            w = get_workload(job.workload, ops=job.ops, ws=job.ws, seed=job.seed + state["passes"],
                             **job.params)
            if len(slots) < w.nslots:
                slots = np.zeros(w.nslots, dtype=np.uint64)
            n = w.warmup(heap, slots)
            if n:
                yield int(n)
        yield from w.run_chunks(heap, slots, max(1, job.ops // state["piece_ops"]))
        state["passes"] += 1


def _measure_timed(job: Job, progress: bool = True) -> RunResult:
    """A run by time (module docstring), measured like :func:`~.metrics.run_once`."""
    from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]

    from ..workloads import get_workload

    assert job.duration is not None and job.epoch is not None
    w = get_workload(job.workload, ops=job.ops, ws=job.ws, seed=job.seed, **job.params)
    res = RunResult(label=job.cell, workload=w.name, describe=w.describe(), seed=job.seed,
                    config={}, ws=w.ws)
    res.process_peak_reset = reset_peak_rss()
    try:
        heap = Heap(**job.overrides)
    except ConfigError:
        raise
    except Exception as exc:
        res.error = f"heap construction failed: {type(exc).__name__}: {exc}"
        return res
    st: Mapping[str, Any] = {}
    n_epochs = max(1, math.ceil(job.duration / job.epoch - 1e-9))
    bar = tqdm(total=n_epochs, unit="epoch", desc=job.cell, leave=False, position=1,
               disable=None if progress else True)
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
            state = {"passes": 0, "piece_ops": max(1_000, job.ops // PIECES_PER_EPOCH)}
            pieces = _passes(heap, job, w, slots, state)
            perf = time.perf_counter
            start = perf()
            done = 0
            lazy_peak = 0
            while perf() - start < job.duration - 1e-9:
                e_ops, e_dt = 0, 0.0
                while e_dt < job.epoch:
                    t0 = perf()
                    n = next(pieces)
                    e_dt += perf() - t0
                    e_ops += n
                    done += n
                    m = heap.resident()
                    res.sample_ops.append(done)
                    res.sample_resident_bytes.append(int(m["resident_bytes"]))
                    res.sample_lazyfree_bytes.append(int(m["lazyfree_bytes"]))
                    lazy_peak = max(lazy_peak, int(m["lazyfree_bytes"]))
                rate = e_ops / e_dt if e_dt > 0 else 0.0
                res.epoch_ops.append(e_ops)
                res.epoch_seconds.append(e_dt)
                res.epoch_ops_per_s.append(rate)
                res.epoch_resident_bytes.append(res.sample_resident_bytes[-1])
                res.epoch_lazyfree_bytes.append(res.sample_lazyfree_bytes[-1])
                res.epoch_vm_rss_bytes.append(process_memory()["vm_rss_bytes"])
                state["piece_ops"] = max(1_000, min(job.ops, int(rate * job.epoch / PIECES_PER_EPOCH)))
                bar.update(1)
                bar.set_postfix_str(f"{rate:,.0f} ops/s, {res.sample_resident_bytes[-1] >> 10} KiB")
            pieces.close()
            read_resident_model(res, heap, lazy_peak)
            st = heap.stats()
            res.syscalls = int(st["syscalls"]) - sys0
        except ConfigError:
            raise
        except Exception as exc:  # the allocator under test failed: a result (NO-GO)
            res.error = f"{type(exc).__name__}: {exc}"
            st = _safe(heap.stats, {})
        summarise(res, heap, st)
    finally:
        bar.close()
        try:
            heap.close()
        except Exception as exc:
            res.error = res.error or f"close failed: {type(exc).__name__}: {exc}"
    return res
