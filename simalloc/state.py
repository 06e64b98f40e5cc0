"""The heap's state: one object that owns everything below the public API.

``Heap`` (heap.py) is a thin facade over a :class:`HeapState`; the slow path (slowpath.py)
changes it, the reports (reports.py) and the invariant walk (checker.py) read it, and the hot
path (the kernel) shares its numpy tables and the mappings' bytes::

    Heap (API, argument checks, life cycle)                        heap.py
      '-- HeapState: config, geometry, counters, clock              state.py
            |-- superslabs[idx] -> Superslab (state machine)        superslab.py
            |-- empty[cls], partial[cls]: SlabSets of (idx, slab)   slabset.py
            |     (partial[cls] pops in the refill order)           refillorder.py
            |-- clock: ops, wall s, virtual ns (ops x ns_per_op + idle)
            |-- has_unused: superslabs with an UNUSED slab
            |-- lru: empty superslabs kept                          lru.py
            |-- warm: per-class warm pools of superslabs           warmpool.py
            |-- mid: Pool/Mid tier regions (8/16/32 KiB)            mid.py
            |-- large: direct-mapped blocks                         large.py
            |-- registry: base -> idx (writer)                      registry.py
            |-- policy + its PolicyContext                          policy.py
            |-- os: every mmap / madvise / munmap, counted          oslayer/
            '-- kernel: hot path + its tables (front caches,        _kernel_py.py / _kernel
                current slab per class, counters, registry table)

Nothing here calls the OS or decides anything; it holds and answers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

import numpy as np

from . import constants as K
from .lru import SuperslabCache
from .mid import MidTier
from .oslayer import OSLayer
from .policy import Clock, ReleasePolicy
from .refillorder import make_slab_set, resolve_order
from .slabset import SlabSet
from .superslab import Superslab
from .warmpool import WarmPools

if TYPE_CHECKING:
    from .events import EventLog
    from .large import LargeBlocks
    from .options import Config
    from .oslayer.signals import SignalDeferral
    from .pages import PageModel
    from .registry import Registry

__all__ = ["HeapState", "KernelLike", "SLOW_COUNTERS"]

#: Slow-path event counters (``stats()`` keys; see reports.STAT_FIELDS for what each means).
#: The refill stages carry hakmem's names (Stage W = warm pool, then the shared pool's
#: Stage 0.5 / 1 / 2 / 3; ``stage_partial`` is simalloc's own, between 1 and 2).
SLOW_COUNTERS = (
    "ss_acquired", "ss_from_lru", "ss_fresh", "ss_cached", "ss_unmapped", "lru_evictions",
    "lean_decommit", "lean_retire", "slab_decommits", "cached_decommits", "slab_empty_events", "ss_empty_events",
    "stage_warm_pool", "stage_0_5_reuse", "stage_1_free_slot", "stage_partial", "stage_2_unused",
    "stage_2_empty_other", "stage_3_new_ss", "warm_pool_misses", "warm_pool_prefilled",
    "ss_mmap_calls", "ss_fallback_mmap", "ss_advise_calls", "madvise_disabled", "prefault_pages",
    "large_allocs", "large_frees", "prewarm_blocks", "prewarm_superslabs",
)


class KernelLike(Protocol):
    """What the slow path, reports and checks use of a kernel (both kernels provide it)."""

    name: str
    tiny_max: int
    reg_mask: int
    ss_base: np.ndarray
    reg_key: np.ndarray
    reg_val: np.ndarray
    fc: np.ndarray
    fc_count: np.ndarray
    cur_ss: np.ndarray
    cur_slab: np.ndarray
    counters: np.ndarray
    lut: np.ndarray
    evq: np.ndarray  # a batch's queued events, rows (kind, superslab, slab, ops) (slowpath.flush_queue)
    applied: int  # rows done by the last apply()
    link_key: int  # secure mode: free-list links are stored as next ^ link_key ^ (off << 11 & link_mix)
    link_mix: int

    def attach(self, idx: int, base: int, window: memoryview) -> None: ...
    def page_range(self, idx: int, first: int, last: int, how: int) -> None: ...
    def res_adjust(self, delta_pages: int) -> None: ...
    def res_reset(self, now_ns: int) -> None: ...
    def detach(self, idx: int) -> None: ...
    def release(self) -> None: ...
    def lookup(self, addr: int) -> int: ...
    def bind(self, cls: int, idx: int, slab: int) -> None: ...
    def unbind(self, cls: int) -> None: ...
    def alloc_fast(self, cls: int) -> int: ...
    def malloc(self, size: int) -> int: ...
    def free_fast(self, addr: int) -> None: ...
    def free_now(self, addr: int) -> None: ...  # free_fast without the tick (realloc's second half)
    def flush(self) -> None: ...
    def write_byte(self, addr: int, value: int) -> None: ...
    def apply(self, ops: np.ndarray, slots: np.ndarray) -> int: ...


class HeapState:
    """Everything a heap holds below its API (see the module docstring)."""

    kernel: KernelLike
    registry: Registry
    pages: PageModel
    large: LargeBlocks
    sig: SignalDeferral  # the heap's signal mask (oslayer/signals.py)

    def __init__(self, config: Config, os: OSLayer, policy: ReleasePolicy) -> None:
        self.config: Config = config
        self.os: OSLayer = os
        self.policy: ReleasePolicy = policy
        self.lg = config.ss_lg
        self.ss_bytes = K.ss_size(self.lg)
        self.nslabs = K.nslabs(self.lg)
        self.superslabs: list[Superslab | None] = [None] * config.max_superslabs
        self.free_idx = list(range(config.max_superslabs))  # a heap (lowest index first)
        self.n_active: int = 0
        self.ever_superslabs: int = 0
        self.has_unused: set[int] = set()
        self.empty = [SlabSet() for _ in range(K.NUM_CLASSES)]  # EMPTY/DECOMMITTED slabs
        #: The partial stage's order (option, else the policy's ``refill_order``; refillorder.py).
        self.refill_order = resolve_order(config.refill_order, getattr(policy, "refill_order", ""))
        self.partial = [make_slab_set(self.refill_order, self._free_blocks)  # non-current, used < cap
                        for _ in range(K.NUM_CLASSES)]
        self.lru: SuperslabCache = SuperslabCache(config.ss_max_cached, config.ss_max_memory_mb << 20,
                                  config.ss_ttl_sec, self.ss_bytes)
        self.counters: dict[str, int] = dict.fromkeys(SLOW_COUNTERS, 0)
        self.warm: WarmPools = WarmPools(K.NUM_CLASSES, config.warm_pool_size)
        self.mid: MidTier = MidTier(os, config.mid_tier)
        self.t0 = time.monotonic()
        self.ns_per_op: float = config.ns_per_op
        self.idle_ns: int = 0  # virtual time spent idle (Heap.idle, OP_IDLE rows)
        #: The decision log (events.py), None when off: slow-path sites test it, nothing else.
        self.log: EventLog | None = None

    # ------------------------------------------------------------------ clock
    def seconds(self) -> float:
        return time.monotonic() - self.t0

    def ops(self) -> int:
        ops: int = self.kernel.counters.item(K.C_OPS)  # a Python int, no numpy scalar
        return ops

    def virtual_ns(self, ops: int | None = None) -> int:
        """Virtual time: ``ops x ns_per_op`` plus the time spent idle."""
        return int((self.ops() if ops is None else ops) * self.ns_per_op) + self.idle_ns

    def clock(self) -> Clock:
        ops: int = self.kernel.counters.item(K.C_OPS)  # (policies read it on every event)
        return Clock(ops, time.monotonic() - self.t0, self.virtual_ns(ops))

    def _free_blocks(self, key: tuple[int, int]) -> int:
        """Free blocks of slab ``key`` now (the ``most-full`` refill order reads it)."""
        ss = self.superslab(key[0])
        return ss.meta(key[1], K.M_CAPACITY) - ss.meta(key[1], K.M_USED)

    # ------------------------------------------------------------------ superslabs
    def superslab(self, idx: int) -> Superslab:
        ss = self.superslabs[idx]
        assert ss is not None, f"superslab {idx} is not mapped"
        return ss

    def mapped(self) -> Iterator[Superslab]:
        """Every mapped superslab (active and cached), lowest index first."""
        return (ss for ss in self.superslabs if ss is not None)

    def active(self) -> Iterator[Superslab]:
        return (ss for ss in self.superslabs if ss is not None and ss.state == K.SS_ACTIVE)

    def is_current(self, cls: int, idx: int, slab: int) -> bool:
        kern = self.kernel
        return kern.cur_ss.item(cls) == idx and kern.cur_slab.item(cls) == slab

    def bind(self, cls: int, idx: int, slab: int) -> None:
        """Make (idx, slab) the current slab of ``cls`` (-1, -1: none)."""
        if idx < 0:
            self.kernel.unbind(cls)
        else:
            self.kernel.bind(cls, idx, slab)

    def bound(self) -> dict[tuple[int, int], int]:
        """(superslab, slab) -> class, for every class's current slab."""
        kern = self.kernel
        return {(int(kern.cur_ss[c]), int(kern.cur_slab[c])): c for c in range(K.NUM_CLASSES)
                if kern.cur_ss[c] >= 0}

    def fc_by_slab(self) -> dict[tuple[int, int], int]:
        """(superslab, slab) -> blocks of it held in the front caches."""
        out: dict[tuple[int, int], int] = {}
        kern = self.kernel
        for cls in range(K.NUM_CLASSES):
            for h in kern.fc[cls, :kern.fc_count[cls]].tolist():
                key = (h >> 32, (h & 0xFFFFFFFF) >> K.SLAB_LG)
                out[key] = out.get(key, 0) + 1
        return out

    def front_cache_blocks(self) -> int:
        return int(self.kernel.fc_count.sum())

    def committed_superslab_bytes(self) -> int:
        """Active superslabs plus warm cached ones (the LEAN budget is compared with this)."""
        return (self.n_active + self.lru.warm_count()) * self.ss_bytes
