"""simalloc's workloads: deterministic, seeded allocation benchmarks as operation streams.

=========  =================================================================================
name       what it is (module)
=========  =================================================================================
mixed      hakmem's bench_random_mixed, exactly (``mixed``); ws 400 (and 4000)
churn      bursts that fill and empty whole superslabs over a steady set (``churn``)
tiny-hot   hakmem's bench_tiny_hot: 100 x 64 B allocated, freed LIFO (``tiny_hot``)
larson     larson-like random replacement in a full table (``larson``)
mstress    mstress-like phases: allocate many, free most, some survive (``mstress``)
idle       bursts that grow and shrink the heap, each followed by an idle gap (``idle``)
trace      a recorded program's op stream from an ``.npz`` file, ``path=FILE`` (``trace``)
=========  =================================================================================

Usage::

    from simalloc.workloads import get_workload
    w = get_workload("churn", ops=200_000, seed=1)
    slots = w.new_slots()                      # np.zeros(w.nslots, np.uint64)
    with simalloc.Heap(mem_lean=True) as heap:
        w.warmup(heap, slots)                  # untimed
        for n in w.run_chunks(heap, slots, 20):
            ...                                # time / sample heap.residency() per chunk

Every workload also gives its timed stream as int64 rows (``w.op_stream()``), replayable with
``Heap.replay(rows, slots)``; :mod:`simalloc.workloads.base` documents the contract.
``run_mixed(heap, cycles, ws, seed, slots)`` runs bench_random_mixed's loop on a heap directly
(the stream from :class:`MixedGen`, compiled when built, replayed chunk by chunk).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from ..errors import ConfigError
from .base import Workload, XorshiftStream, xorshift32, xorshift32_array
from .churn import ChurnWorkload
from .idle import IdleWorkload
from .larson import LarsonWorkload
from .mixed import MixedGen, MixedWorkload, mixed_ops, run_mixed, run_mixed_on
from .mstress import MstressWorkload
from .opstream import OpStream, load_npz
from .tiny_hot import TinyHotWorkload
from .trace import TraceWorkload

__all__ = ["WORKLOADS", "ChurnWorkload", "IdleWorkload", "LarsonWorkload", "MixedGen", "MixedWorkload",
           "MstressWorkload", "OpStream", "TinyHotWorkload", "TraceWorkload", "Workload",
           "XorshiftStream", "get_workload", "load_npz", "mixed_ops", "run_mixed", "run_mixed_on",
           "xorshift32", "xorshift32_array"]

#: Workload name -> class (read-only).
WORKLOADS: MappingProxyType[str, type[Workload]] = MappingProxyType({
    cls.name: cls for cls in (MixedWorkload, ChurnWorkload, TinyHotWorkload, LarsonWorkload,
                              MstressWorkload, IdleWorkload, TraceWorkload)
})


def get_workload(name: str, *, ops: int, ws: int | None = None, seed: int = 1,
                 **params: Any) -> Workload:
    """The workload ``name`` (see :data:`WORKLOADS`) with ``ops`` timed operations (its
    meaning per workload is in the module docstrings), working set ``ws`` (None = the
    workload's default), ``seed`` and extra parameters.  Unknown names or parameters raise
    :class:`~simalloc.errors.ConfigError`."""
    cls = WORKLOADS.get(name)
    if cls is None:
        raise ConfigError(f"unknown workload {name!r}: expected one of {', '.join(WORKLOADS)}")
    try:
        return cls(ops=ops, ws=ws, seed=seed, **params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"workload {name!r}: {exc}") from exc
