"""The heap: public API and slow paths of simalloc's superslab allocator.

Layers, each with one job (only the bottom one makes syscalls)::

    Heap.malloc/free/realloc/...     public API, argument checks            (this module)
       |  hot path                   front cache, carving, free lists       (kernel: _kernel_py / _kernel)
       |  slow path                  refill stages, slab/superslab events   (this module)
       |     policy                  keep / decommit / unmap decisions      (policy.py)
       |     LRU cache               empty superslabs, count/bytes/TTL      (lru.py)
    OSLayer                          mmap / madvise / munmap, counted       (oslayer/)

Refill stages when a class's current slab is exhausted (hakmem's shared pool, numbered;
within a stage the lowest superslab index wins, so young superslabs can drain -- see
``slabset.py``):

1. an EMPTY slab of the same class (Stage 0.5: its free list is reused as is);
2. a partial slab of the same class (Stage 1: free-slot reuse);
3. an EMPTY slab of another class, reformatted (Stage 0.5, across classes);
4. an UNUSED slab of an active superslab (Stage 2; lowest superslab index first);
5. a new superslab: the LRU cache first, then a fresh mmap (Stage 3).

The hot path calls back into ``refill_slow``, ``slab_empty``, ``slab_partial``, ``free_slow``,
``free_error``, ``malloc_large`` and ``tick``; a policy sees the heap only through
:class:`PolicyContext`.
"""

from __future__ import annotations

import heapq
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import constants as K
from .errors import (
    AllocatorError,
    DoubleFreeError,
    HeapClosedError,
    HeapCorruptionError,
    HeapExhaustedError,
    InvalidPointerError,
    InvalidSizeError,
    TraceError,
)
from .kernel import load_kernel
from .lru import SuperslabCache
from .options import Config
from .oslayer import Mapping, OSLayer, lazyfree_bytes, pagemap_resident, process_memory
from .policy import Release, ReleasePolicy, SlabEvent, SuperslabEvent, make_policy
from .slabset import SlabSet
from .superslab import Superslab

__all__ = ["Clock", "Heap", "PolicyContext"]

_COUNTERS = (
    "ss_acquired", "ss_from_lru", "ss_fresh", "ss_cached", "ss_unmapped", "lru_evictions",
    "lean_decommit", "lean_retire", "slab_decommits", "slab_empty_events", "ss_empty_events",
    "stage_empty_same", "stage_partial", "stage_empty_other", "stage_unused", "stage_new_ss",
    "large_allocs", "large_frees", "prewarm_blocks", "prewarm_superslabs",
)


@dataclass(frozen=True)
class Clock:
    """The heap's clock: operations applied and seconds since the heap opened."""

    ops: int
    seconds: float


class PolicyContext:
    """What a release policy may see and do (a narrow view of the heap)."""

    def __init__(self, heap: Heap) -> None:
        self._heap = heap

    @property
    def config(self) -> Config:
        return self._heap.config

    def clock(self) -> Clock:
        return self._heap.clock()

    def superslab_bytes(self) -> int:
        return self._heap.ss_bytes

    def active_count(self) -> int:
        return self._heap._n_active

    def cached_count(self) -> int:
        return len(self._heap.lru)

    def warm_cached_count(self) -> int:
        return self._heap.lru.warm_count()

    def committed_superslab_bytes(self) -> int:
        """Bytes of superslabs whose pages are committed: active ones plus warm cached ones
        (the LEAN budget is compared with this)."""
        h = self._heap
        return (h._n_active + h.lru.warm_count()) * h.ss_bytes

    def empty_slabs(self) -> list[tuple[int, int]]:
        """(superslab, slab) of every EMPTY (not yet decommitted) slab in live superslabs."""
        h = self._heap
        return [k for d in h._empty for k in d if h._ss[k[0]].slab_state(k[1]) == K.SLAB_EMPTY]  # type: ignore[union-attr]

    def decommit_slab(self, ss: int, slab: int, advice: str = "DONTNEED") -> bool:
        """Decommit an EMPTY slab's pages (slab 0 keeps its header page).  Returns False (and
        does nothing) if the slab is no longer EMPTY or is some class's current slab."""
        return self._heap._decommit_slab(ss, slab, advice)


class Heap:
    """A superslab heap with real memory behind it.

    ``Heap()`` reads options from the environment (hakmem's names or ``SIMALLOC_*``);
    ``Heap(mem_lean=True)`` or ``Heap(config, **overrides)`` sets them in code.  A custom
    :class:`~simalloc.policy.ReleasePolicy` instance may be passed as ``policy=``.
    Use as a context manager, or call :meth:`close`."""

    def __init__(self, config: Config | None = None, *, policy: ReleasePolicy | None = None,
                 **overrides: Any) -> None:
        if isinstance(policy, str):  # Heap(policy="lean") names the option, not an instance
            overrides["policy"], policy = policy, None
        elif policy is not None and not isinstance(policy, ReleasePolicy):
            raise TypeError(f"policy must be a ReleasePolicy or an option string, not "
                            f"{type(policy).__name__}")
        if config is None:
            config = Config.from_env(**overrides)
        elif overrides:
            config = config.replace(**overrides)
        self.config = config
        self._closed = False
        self._check_every_op = config.debug >= 3  # read once: malloc/free consult it per call
        self.os = OSLayer(nohugepage=config.nohugepage)
        self.lg = config.ss_lg
        self.ss_bytes = K.ss_size(self.lg)
        self.nslabs = K.nslabs(self.lg)
        lut = K.build_size_lut(config.tiny_max_class)
        self.tiny_max = len(lut) - 1
        self._kmod = load_kernel(config.kernel)
        self.kernel = self._kmod.Kernel(
            self, self.lg, config.max_superslabs, config.front_cache_cap,
            config.front_refill_batch, config.front_drain_batch, lut, K.CLASS_STRIDES,
            config.tick_interval_ops)
        self.kernel_name: str = self._kmod.KERNEL_NAME
        self.policy: ReleasePolicy = policy if policy is not None else make_policy(config)
        self.ctx = PolicyContext(self)
        self.lru = SuperslabCache(config.ss_max_cached, config.ss_max_memory_mb << 20,
                                  config.ss_ttl_sec, self.ss_bytes)
        self._ss: list[Superslab | None] = [None] * config.max_superslabs
        self._free_idx = list(range(config.max_superslabs))
        self._n_active = 0
        self._has_unused: set[int] = set()
        self._empty = [SlabSet() for _ in range(K.NUM_CLASSES)]  # EMPTY/DECOMMITTED slabs
        self._partial = [SlabSet() for _ in range(K.NUM_CLASSES)]  # non-current, used < capacity
        self._large: dict[int, tuple[Mapping, int]] = {}  # user addr -> (mapping, size)
        self._freed_large: OrderedDict[int, None] = OrderedDict()
        self._tombstones = 0
        self.counters = dict.fromkeys(_COUNTERS, 0)
        self._t0 = time.monotonic()
        self._ever_superslabs = 0
        self._prewarm()

    # ================================================================== public API
    def malloc(self, size: int) -> int:
        """Allocate ``size`` bytes; returns the block's address (a real address in a mapping)."""
        if self._closed:
            raise HeapClosedError("heap is closed")
        if type(size) is not int:
            size = self._check_size(size)
        elif size < 0 or size > K.MAX_REQUEST:
            self._check_size(size)
        p: int = self.kernel.malloc(size)
        if self._check_every_op:
            self.check()
        return p

    def free(self, ptr: int) -> None:
        """Free the block at ``ptr`` (0 is ignored, like free(NULL))."""
        if self._closed:
            raise HeapClosedError("heap is closed")
        if not ptr:
            return
        if type(ptr) is not int:
            raise InvalidPointerError(f"pointer must be an int, not {type(ptr).__name__}")
        if not 0 < ptr < 1 << 64:
            raise InvalidPointerError(f"{ptr:#x} is not an address (foreign pointer)")
        self.kernel.free_fast(ptr)
        if self._check_every_op:
            self.check()

    def calloc(self, n: int, size: int) -> int:
        """Allocate ``n * size`` zeroed bytes (overflow of the product raises InvalidSizeError)."""
        n, size = self._check_size(n, "n"), self._check_size(size)
        total = n * size
        if total > K.MAX_REQUEST:
            raise InvalidSizeError(f"calloc({n}, {size}): {total} bytes overflows the request limit")
        p = self.malloc(total)
        if total:
            v = self.view(p)
            v[:total] = bytes(total)
            v.release()
        return p

    def realloc(self, ptr: int, size: int) -> int:
        """Resize the block at ``ptr``: same block if the size still fits its class, else a new
        block with the old bytes copied.  ``realloc(0, n)`` = malloc; ``realloc(p, 0)`` frees
        and returns 0 (glibc's behaviour)."""
        if self._closed:
            raise HeapClosedError("heap is closed")
        size = self._check_size(size)
        if not ptr:
            return self.malloc(size)
        old = self.usable_size(ptr)  # validates ptr (raises on bad pointers)
        if size == 0:
            self.free(ptr)
            return 0
        if ptr in self._large:
            if self.tiny_max < size <= old:
                self._large[ptr] = (self._large[ptr][0], size)
                return ptr
        elif size <= old and self.kernel.lut[size] == self.kernel.lut[old]:
            return ptr  # still the same class (``old`` is the class's usable size)
        new = self.malloc(size)
        src, dst = self.view(ptr), self.view(new)
        n = min(old, size)
        dst[:n] = src[:n]
        src.release()
        dst.release()
        self.free(ptr)
        return new

    def usable_size(self, ptr: int) -> int:
        """Bytes usable at ``ptr`` (class stride minus header; the mapped size for large)."""
        if self._closed:
            raise HeapClosedError("heap is closed")
        if ptr in self._large:
            m, _size = self._large[ptr]
            return m.size - K.LARGE_HEADER
        ss, slab, off, cls = self._locate_live(ptr)
        return K.CLASS_STRIDES[cls] - K.BLOCK_HEADER

    def view(self, ptr: int) -> memoryview:
        """A writable memoryview of the live block's bytes (``usable_size(ptr)`` long).

        The view pins the mapping: if a policy releases the superslab while the view is alive,
        the unmap is deferred (the pages are still dropped).  Release views when done."""
        if self._closed:
            raise HeapClosedError("heap is closed")
        if ptr in self._large:
            m, _size = self._large[ptr]
            assert m.view is not None
            return m.view[K.LARGE_HEADER:]
        ss, slab, off, cls = self._locate_live(ptr)
        return ss.w8[off + 1: off + K.CLASS_STRIDES[cls]]

    def trim(self) -> None:
        """Flush the front caches back to their slabs (malloc_trim-like): lets slabs and
        superslabs that only front-cache blocks kept alive become empty and meet the policy."""
        if self._closed:
            raise HeapClosedError("heap is closed")
        self.kernel.flush()
        self._maintain()

    def force_reclaim(self) -> int:
        """Make the kernel reclaim lazily freed pages now (MADV_PAGEOUT on cached superslabs
        and decommitted slabs), as memory pressure eventually would.  Shows what MADV_FREE
        really saves; live blocks are never in these ranges.  Returns the madvise calls made."""
        if self._closed:
            raise HeapClosedError("heap is closed")
        calls = 0
        for ss in self._ss:
            if ss is None:
                continue
            if ss.state == K.SS_CACHED:
                self.os.reclaim(ss.mapping, 0, ss.size)
                calls += 1
                continue
            for s in range(self.nslabs):
                if ss.slab_state(s) == K.SLAB_DECOMMITTED:
                    start = K.slab_data_start(self.lg, s)
                    self.os.reclaim(ss.mapping, start, (s + 1) * K.SLAB_SIZE - start)
                    calls += 1
        return calls

    def clock(self) -> Clock:
        return Clock(int(self.kernel.counters[0]), time.monotonic() - self._t0)

    def tick(self) -> None:
        """Advance the policy clock by hand (the hot path does this every tick_interval ops)."""
        if self._closed:
            raise HeapClosedError("heap is closed")
        self._maintain()

    # ------------------------------------------------------------------ batch API
    def replay(self, ops: np.ndarray, slots: np.ndarray) -> None:
        """Apply an operation stream (int64 rows ``kind, slot, size``; see
        :mod:`simalloc.workloads`) with ``slots`` (uint64 addresses, updated in place)."""
        if self._closed:
            raise HeapClosedError("heap is closed")
        ops = np.ascontiguousarray(ops, dtype=np.int64)
        if ops.ndim != 2 or ops.shape[1] != 3:
            raise TraceError(f"ops must have shape (n, 3), got {ops.shape}")
        self.kernel.apply(ops, self._check_slots(slots))

    @staticmethod
    def _check_slots(slots: np.ndarray) -> np.ndarray:
        if (not isinstance(slots, np.ndarray) or slots.dtype != np.uint64 or slots.ndim != 1
                or not slots.flags.c_contiguous or not slots.flags.writeable):
            raise TraceError("slots must be a writable, C-contiguous, 1-D numpy uint64 array")
        return slots

    def run_mixed(self, cycles: int, ws: int, seed: int, slots: np.ndarray) -> int:
        """Run ``cycles`` iterations of bench_random_mixed's loop in the kernel (see
        :func:`simalloc.workloads.mixed.run_mixed_on` for the full benchmark)."""
        if self._closed:
            raise HeapClosedError("heap is closed")
        return int(self.kernel.run_mixed(int(cycles), int(ws), int(seed) & 0xFFFFFFFF,
                                         self._check_slots(slots)))

    def drain_slots(self, slots: np.ndarray) -> int:
        if self._closed:
            raise HeapClosedError("heap is closed")
        return int(self.kernel.drain_slots(self._check_slots(slots)))

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Unmap everything.  Further use raises HeapClosedError.  Idempotent."""
        if self._closed:
            return
        if self.config.os_stats:
            print(self.os_stats_line(), file=sys.stderr)
        self._closed = True
        self.kernel.release()
        for ss in self._ss:
            if ss is not None:
                ss.release_views()
                self.os.release(ss.mapping)
        self._ss = []
        for m, _size in self._large.values():
            self.os.release(m)
        self._large.clear()
        self.os.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Heap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # best effort; never raise from a finaliser
        try:
            if not self._closed:
                self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self._n_active} active, {len(self.lru)} cached"
        return f"<simalloc.Heap kernel={self.kernel_name} policy={self.policy.describe()} {state}>"

    # ================================================================== observation
    def stats(self) -> dict[str, Any]:
        """Counters and gauges (OS calls, lean counters, superslab/slab/block counts)."""
        if self._closed:
            raise HeapClosedError("heap is closed")
        live_blocks, live_bytes, slabs_empty, slabs_decommitted = self._block_census()
        kc = self.kernel.counters
        out: dict[str, Any] = {
            "kernel": self.kernel_name,
            "policy": self.policy.describe(),
            "ops": int(kc[0]),
            "mmap_total": self.os.mmap_total,
            "munmap_total": self.os.munmap_total,
            "madvise_calls": self.os.madvise_total,
            "madvise_by_advice": dict(self.os.madvise_calls),
            "decommitted_bytes": self.os.decommitted_bytes,
            "syscalls": self.os.syscalls,
            "deferred_unmaps": self.os.deferred_unmaps,
            "align_retries": self.os.align_retries,
            "alignment_waste_bytes": self.os.alignment_waste,
            "superslabs_active": self._n_active,
            "superslabs_cached": len(self.lru),
            "superslabs_cached_decommitted": len(self.lru) - self.lru.warm_count(),
            "superslabs_ever": self._ever_superslabs,
            "slabs_empty": slabs_empty,
            "slabs_decommitted": slabs_decommitted,
            "live_blocks": live_blocks + len(self._large),
            "live_bytes": live_bytes + sum(s for _m, s in self._large.values()),
            "live_large": len(self._large),
            "front_cache_blocks": int(self.kernel.fc_count.sum()),
            "refills": int(kc[2]),
            "drains": int(kc[3]),
            "slow_refills": int(kc[4]),
            "mapped_bytes": self.os.mapped_bytes,
            "mapped_peak_bytes": self.os.mapped_peak,
        }
        out.update(self.counters)
        return out

    def os_stats_line(self) -> str:
        """hakmem's one-shot ``[SS_OS_STATS]`` line (plus simalloc's lean counters)."""
        o = self.os
        return (f"[SS_OS_STATS] alloc={self.counters['ss_acquired']} free={self.counters['ss_cached'] + self.counters['ss_unmapped']} "
                f"madvise={o.madvise_total} madvise_disabled=0 mmap_total={o.mmap_total} "
                f"munmap_total={o.munmap_total} fallback_mmap=0 huge_alloc={self.counters['large_allocs']} "
                f"lean_decommit={self.counters['lean_decommit']} lean_retire={self.counters['lean_retire']} "
                f"decommitted_bytes={o.decommitted_bytes}")

    def residency(self) -> dict[str, int]:
        """What the kernel says about this heap's own mappings, plus process VmRSS/VmHWM.

        ``resident_bytes``: present and exclusively mapped pages (``/proc/self/pagemap``);
        ``lazyfree_bytes``: LazyFree of the VMAs holding our mappings (smaps; VMAs merge);
        ``resident_active_bytes`` / ``resident_cached_bytes``: split by superslab state."""
        if self._closed:
            raise HeapClosedError("heap is closed")
        act: list[tuple[int, int]] = []
        cached: list[tuple[int, int]] = []
        large: list[tuple[int, int]] = []
        for ss in self._ss:
            if ss is not None:
                m = ss.mapping
                (cached if ss.state == K.SS_CACHED else act).append((m.addr, m.size))
        for m, _s in self._large.values():
            large.append((m.addr, m.size))
        r_act, r_cached, r_large = (pagemap_resident(x) for x in (act, cached, large))
        out = {
            "mapped_bytes": self.os.mapped_bytes,
            "resident_bytes": r_act + r_cached + r_large,
            "resident_active_bytes": r_act,
            "resident_cached_bytes": r_cached,
            "resident_large_bytes": r_large,
            "lazyfree_bytes": lazyfree_bytes(act + cached + large),
        }
        out.update(process_memory())
        return out

    def memory_report(self) -> dict[str, int]:
        """Split the mapped bytes into parts that add up exactly to ``mapped_bytes``
        (obmalloc's ``narenas * ARENA_SIZE == total``, asserted)."""
        if self._closed:
            raise HeapClosedError("heap is closed")
        parts = dict.fromkeys((
            "live_blocks", "front_cache_blocks", "free_list_blocks", "uncarved", "empty_slabs",
            "decommitted_slabs", "unused_slabs", "slab_tail_waste", "metadata",
            "cached_superslabs", "alignment_waste", "large_live", "large_overhead"), 0)
        fc = self._fc_by_slab()
        for ss in self._ss:
            if ss is None:
                continue
            parts["alignment_waste"] += ss.mapping.alignment_waste
            if ss.state == K.SS_CACHED:
                parts["cached_superslabs"] += ss.size
                continue
            parts["metadata"] += K.header_bytes(self.lg)
            for s in range(self.nslabs):
                st, dlen = ss.slab_state(s), ss.slab_data_len(s)
                if st == K.SLAB_UNUSED:
                    parts["unused_slabs"] += dlen
                    continue
                stride, cap = ss.meta(s, K.M_STRIDE), ss.meta(s, K.M_CAPACITY)
                parts["slab_tail_waste"] += dlen - cap * stride
                if st == K.SLAB_DECOMMITTED:
                    parts["decommitted_slabs"] += cap * stride
                elif st == K.SLAB_EMPTY:
                    parts["empty_slabs"] += cap * stride
                else:
                    used, carved = ss.meta(s, K.M_USED), ss.meta(s, K.M_CARVED)
                    infc = fc.get((ss.idx, s), 0)
                    parts["live_blocks"] += (used - infc) * stride
                    parts["front_cache_blocks"] += infc * stride
                    parts["free_list_blocks"] += (carved - used) * stride
                    parts["uncarved"] += (cap - carved) * stride
        for m, size in self._large.values():
            parts["large_live"] += size
            parts["large_overhead"] += m.map_size - size
        total = sum(parts.values())
        assert total == self.os.mapped_bytes, f"memory report {total} != mapped {self.os.mapped_bytes}"
        parts["mapped_total"] = total
        return parts

    def empty_report(self) -> dict[str, int]:
        """Why a superslab was (not) released: how many ever emptied, and how much empty
        memory sits in slabs inside live superslabs, where the release guard cannot reach."""
        if self._closed:
            raise HeapClosedError("heap is closed")
        empty_in_live = 0
        n_empty = 0
        n_active = 0
        for ss in self._ss:
            if ss is not None and ss.state == K.SS_ACTIVE:
                n_active += ss.h(K.H_ACTIVE_SLABS)
                for s in range(self.nslabs):
                    if ss.slab_state(s) in (K.SLAB_EMPTY, K.SLAB_DECOMMITTED):
                        n_empty += 1
                        if ss.slab_state(s) == K.SLAB_EMPTY:
                            empty_in_live += ss.slab_data_len(s)
        return {
            "superslabs_ever_empty": self.counters["ss_empty_events"],
            "slab_empty_events": self.counters["slab_empty_events"],
            "empty_slabs_in_live_superslabs": n_empty,
            "empty_slab_bytes_in_live_superslabs": empty_in_live,
            "superslabs_active": self._n_active,
            "active_slabs": n_active,
            "live_blocks": int(self.kernel.counters[1]) + len(self._large),
            "front_cache_blocks": int(self.kernel.fc_count.sum()),
        }

    def explain_lean(self) -> str:
        """One line saying why LEAN did (not) retire anything (Phase 54's question)."""
        e = self.empty_report()
        c = self.counters
        if c["lean_retire"]:
            return (f"lean_retire={c['lean_retire']}: {e['superslabs_ever_empty']} superslab(s) became fully "
                    f"empty; those over the {self.config.mem_lean_target_mb} MiB budget were retired.")
        if e["superslabs_ever_empty"] and self.policy.name == "lean":
            why = (f"{e['superslabs_ever_empty']} superslab(s) became fully empty but stayed within the "
                   f"{self.config.mem_lean_target_mb} MiB budget (or DECOMMIT=OFF)")
        else:
            why = f"{e['superslabs_ever_empty']} superslab(s) ever became fully empty"
        return (f"lean_retire=0 because {why}: the release guard needs every slab of a superslab "
                f"empty, and {e['live_blocks']} live block(s) plus {e['front_cache_blocks']} "
                f"front-cache block(s) in {e['active_slabs']} slab(s) keep "
                f"{e['superslabs_active']} superslab(s) alive. Slabs emptied "
                f"{e['slab_empty_events']} time(s) inside live superslabs; "
                f"{e['empty_slabs_in_live_superslabs']} empty slab(s) "
                f"({e['empty_slab_bytes_in_live_superslabs'] >> 10} KiB) sit there now, out of a "
                f"superslab policy's reach (a slab-granular policy such as slab-purge can take them).")

    # ------------------------------------------------------------------ check()
    def check(self) -> None:
        """Walk every invariant (slab and superslab state machines, free lists, front caches,
        LRU, registry, accounting).  Raises HeapCorruptionError on the first violation."""
        if self._closed:
            raise HeapClosedError("heap is closed")
        try:
            self._check()
        except AssertionError as exc:
            raise HeapCorruptionError(f"check() failed: {exc}") from exc

    def _check(self) -> None:
        kern = self.kernel
        fc = self._fc_by_slab()
        # front caches: each entry a distinct FREE-tagged block of an ACTIVE slab of its class
        seen = set()
        for cls in range(K.NUM_CLASSES):
            for h in kern.fc[cls, :kern.fc_count[cls]].tolist():
                idx, off = h >> 32, h & 0xFFFFFFFF
                assert h not in seen, f"front cache C{cls}: duplicate block"
                seen.add(h)
                ss = self._ss[idx]
                assert ss is not None and ss.state == K.SS_ACTIVE, f"front cache C{cls}: block in inactive superslab"
                s = off >> K.SLAB_LG
                assert ss.slab_state(s) == K.SLAB_ACTIVE and ss.slab_class(s) == cls
                assert ss.w8[off] == K.FREE_TAG | cls, f"front cache C{cls}: header {ss.w8[off]:#x}"
        live = 0
        n_active = 0
        bound = {(int(kern.cur_ss[c]), int(kern.cur_slab[c])): c for c in range(K.NUM_CLASSES)
                 if kern.cur_ss[c] >= 0}
        for idx, ss in enumerate(self._ss):
            if ss is None:
                assert kern.ss_base[idx] == 0
                continue
            assert kern.lookup(ss.base) == idx, f"registry does not map superslab {idx}"
            assert int(kern.ss_base[idx]) == ss.base
            if ss.state == K.SS_CACHED:
                assert idx in self.lru, f"cached superslab {idx} not in the LRU"
                assert not any(k[0] == idx for k in bound), "a class is bound to a cached superslab"
                continue
            n_active += 1
            assert idx not in self.lru
            lv, _used = ss.check({s: n for (i, s), n in fc.items() if i == idx})
            live += lv
            has_unused = False
            for s in range(self.nslabs):
                st = ss.slab_state(s)
                key = (idx, s)
                cls = ss.slab_class(s)
                in_empty = any(key in d for d in self._empty)
                in_partial = any(key in d for d in self._partial)
                if st == K.SLAB_UNUSED:
                    has_unused = True
                    assert not in_empty and not in_partial
                elif st in (K.SLAB_EMPTY, K.SLAB_DECOMMITTED):
                    assert key in self._empty[cls] and not in_partial, f"slab {key} EMPTY but not listed"
                    assert key not in bound
                else:
                    used, cap = ss.meta(s, K.M_USED), ss.meta(s, K.M_CAPACITY)
                    assert not in_empty, f"slab {key} ACTIVE but on an empty list"
                    if key in bound:
                        assert bound[key] == cls and not in_partial
                    elif used <= cap - ((cap >> 2) or 1):
                        assert key in self._partial[cls], f"slab {key} partial ({used}/{cap}) but not listed"
                    else:  # full, or less than a quarter free: waits for more frees
                        assert not in_partial, f"slab {key} listed partial at {used}/{cap}"

            assert has_unused == (idx in self._has_unused), f"superslab {idx} has_unused mismatch"
        assert n_active == self._n_active, f"active count {self._n_active} != {n_active}"
        assert live == int(kern.counters[1]), f"live headers {live} != kernel live count {int(kern.counters[1])}"
        for d in (*self._empty, *self._partial):
            d.check()
            for idx, _s in d:
                ss = self._ss[idx]
                assert ss is not None and ss.state == K.SS_ACTIVE
        self.lru.check()
        self.memory_report()

    # ================================================================== slow paths
    def refill_slow(self, cls: int) -> None:
        """Bind a new current slab for ``cls`` (stages 1-5 in the module docstring)."""
        self._maintain()
        key = None
        if self._empty[cls]:  # 1. EMPTY slab of this class
            key = self._empty[cls].pop_lowest()
            ss = self._ss[key[0]]
            assert ss is not None
            if ss.slab_state(key[1]) == K.SLAB_DECOMMITTED:
                ss.claim(key[1], cls)
            else:
                ss.set_meta(key[1], K.M_STATE, K.SLAB_ACTIVE)
            self.counters["stage_empty_same"] += 1
        elif self._partial[cls]:  # 2. partial slab of this class
            key = self._partial[cls].pop_lowest()
            self.counters["stage_partial"] += 1
        else:
            for other in range(K.NUM_CLASSES):  # 3. EMPTY slab of another class
                if self._empty[other]:
                    key = self._empty[other].pop_lowest()
                    ss = self._ss[key[0]]
                    assert ss is not None
                    ss.claim(key[1], cls)
                    self.counters["stage_empty_other"] += 1
                    break
        if key is None:
            if self._has_unused:  # 4. UNUSED slab in an active superslab
                idx = min(self._has_unused)
                self.counters["stage_unused"] += 1
            else:  # 5. new superslab (LRU, then mmap)
                idx = self._acquire_superslab()
                self.counters["stage_new_ss"] += 1
            ss = self._ss[idx]
            assert ss is not None
            slab = ss.first_unused()
            ss.claim(slab, cls)
            if ss.first_unused() < 0:
                self._has_unused.discard(idx)
            key = (idx, slab)
        self.kernel.cur_ss[cls] = key[0]
        self.kernel.cur_slab[cls] = key[1]
        if self.config.debug >= 2:
            self.check()

    def slab_empty(self, idx: int, slab: int) -> None:
        """The hot path saw a slab's ``used`` drop to 0."""
        ss = self._ss[idx]
        assert ss is not None
        cls = ss.slab_class(slab)
        kern = self.kernel
        current = kern.cur_ss[cls] == idx and kern.cur_slab[cls] == slab
        self.counters["slab_empty_events"] += 1
        if not current:
            self._partial[cls].discard((idx, slab))
            ss.set_meta(slab, K.M_STATE, K.SLAB_EMPTY)
            self._empty[cls].add((idx, slab))
        if ss.h(K.H_TOTAL_ACTIVE) == 0:
            self._superslab_empty(ss)
        elif not current:
            c = self.clock()
            self.policy.on_slab_empty(self.ctx, SlabEvent(idx, slab, cls, c.ops, c.seconds))
        if self.config.debug >= 2:
            self.check()

    def slab_partial(self, idx: int, slab: int) -> None:
        """A full, non-current slab got its first free block back."""
        ss = self._ss[idx]
        assert ss is not None
        self._partial[ss.slab_class(slab)].add((idx, slab))

    def free_slow(self, addr: int) -> None:
        """A pointer outside every superslab: a large block, or an error."""
        entry = self._large.get(addr)
        if entry is None:
            self.free_error(addr)
            return
        m, _size = entry
        assert m.view is not None
        if int.from_bytes(m.view[0:4], "little") != K.LARGE_MAGIC:
            raise HeapCorruptionError(f"large block {addr:#x}: header magic overwritten")
        del self._large[addr]
        self._freed_large[addr] = None
        if len(self._freed_large) > 4096:
            self._freed_large.popitem(last=False)
        self.os.release(m)
        self.counters["large_frees"] += 1
        self.kernel.counters[0] += 1

    def free_error(self, addr: int) -> None:
        """Diagnose a pointer the hot path rejected and raise the matching error."""
        self._locate_live(addr)
        raise HeapCorruptionError(f"free({addr:#x}): rejected by the hot path but looks valid")

    def corrupt_block(self, idx: int, off: int, where: str) -> None:
        ss = self._ss[idx]
        got = ss.w8[off] if ss is not None and 0 <= off < ss.size else -1
        raise HeapCorruptionError(
            f"block at superslab {idx} offset {off:#x} ({where}) has header {got:#x}: "
            "a freed block was written to (use after free?)")

    def malloc_large(self, size: int) -> int:
        """Direct-mapped path for requests above the tiny classes (own mapping, counted)."""
        size = self._check_size(size)
        n = (size + K.LARGE_HEADER + K.PAGE_SIZE - 1) & ~(K.PAGE_SIZE - 1)
        m = self.os.reserve(n, kind="large")
        assert m.view is not None
        m.view[0:4] = K.LARGE_MAGIC.to_bytes(4, "little")
        m.view[8:16] = size.to_bytes(8, "little")
        addr = m.addr + K.LARGE_HEADER
        self._large[addr] = (m, size)
        self._freed_large.pop(addr, None)
        self.counters["large_allocs"] += 1
        self.kernel.counters[0] += 1
        return addr

    def write_byte_slow(self, addr: int, value: int) -> None:
        entry = self._large.get(addr)
        if entry is None:
            raise InvalidPointerError(f"write to {addr:#x}: not in this heap")
        assert entry[0].view is not None
        entry[0].view[K.LARGE_HEADER] = value & 0xFF

    def apply_other(self, kind: int, cur: int, size: int) -> int:
        """Replay operations the kernel leaves to Python (realloc)."""
        if kind == K.OP_REALLOC:
            if not cur:
                raise TraceError("realloc of an empty slot")
            return self.realloc(cur, size)
        raise TraceError(f"unknown op kind {kind}")

    # ================================================================== internals
    def _maintain(self) -> None:
        """Clock-driven work: LRU TTL eviction and the policy's tick()."""
        now = time.monotonic() - self._t0
        for idx in self.lru.evict_over_limits(now):
            self.counters["lru_evictions"] += 1
            self._unmap_superslab(idx)
        self.policy.tick(self.ctx)

    def _check_size(self, size: Any, what: str = "size") -> int:
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
            raise InvalidSizeError(f"{what} must be an int, not {type(size).__name__}")
        size = int(size)
        if size < 0:
            raise InvalidSizeError(f"{what} must be >= 0, got {size}")
        if size > K.MAX_REQUEST:
            raise InvalidSizeError(f"{what}={size} exceeds the request limit {K.MAX_REQUEST}")
        return size

    def _locate_live(self, addr: int) -> tuple[Superslab, int, int, int]:
        """(superslab, slab, block offset, class) of the live block at ``addr``, or raise the
        error that says what is wrong with it.  The single diagnosis of bad pointers."""
        if type(addr) is not int:
            raise InvalidPointerError(f"pointer must be an int, not {type(addr).__name__}")
        if addr in self._large:
            raise InvalidPointerError(f"{addr:#x} is a large block")  # callers check _large first
        idx = self.kernel.lookup(addr) if 0 < addr < 1 << 64 else -1
        if idx < 0:
            if addr in self._freed_large:
                raise DoubleFreeError(f"{addr:#x}: large block already freed")
            for m, _s in self._large.values():
                if m.addr <= addr < m.addr + m.size:
                    raise InvalidPointerError(f"{addr:#x} is inside a large block, not its start")
            raise InvalidPointerError(f"{addr:#x} is not a pointer of this heap (foreign pointer)")
        ss = self._ss[idx]
        assert ss is not None
        off = (addr - ss.base) - K.BLOCK_HEADER
        if ss.state == K.SS_CACHED:
            raise DoubleFreeError(f"{addr:#x} points into an empty, cached superslab "
                                  "(already freed, or a dangling pointer)")
        if ss.h(K.H_MAGIC) != K.SS_MAGIC:
            raise HeapCorruptionError(f"superslab {idx} at {ss.base:#x}: magic {ss.h(K.H_MAGIC):#x} "
                                      f"!= SSPL ({K.SS_MAGIC:#x}); header overwritten")
        if off < K.header_bytes(self.lg):
            raise InvalidPointerError(f"{addr:#x} points into superslab metadata")
        slab = off >> K.SLAB_LG
        st = ss.slab_state(slab)
        if st == K.SLAB_UNUSED:
            raise InvalidPointerError(f"{addr:#x} points into an unused slab (never allocated)")
        cls, stride = ss.slab_class(slab), ss.meta(slab, K.M_STRIDE)
        rel = off - ss.meta(slab, K.M_DATA)
        if rel < 0 or rel % stride:
            raise InvalidPointerError(f"{addr:#x} is an interior pointer (C{cls} blocks are "
                                      f"{stride} bytes; block starts are 1 byte past a multiple)")
        if rel // stride >= ss.meta(slab, K.M_CARVED) or rel // stride >= ss.meta(slab, K.M_CAPACITY):
            if st in (K.SLAB_EMPTY, K.SLAB_DECOMMITTED):
                raise DoubleFreeError(f"{addr:#x}: block already freed (its slab is empty)")
            raise InvalidPointerError(f"{addr:#x} points at a block never handed out")
        tag = ss.w8[off]
        if tag == K.ALLOC_TAG | cls and st == K.SLAB_ACTIVE:
            return ss, slab, off, cls
        if tag == K.FREE_TAG | cls or st in (K.SLAB_EMPTY, K.SLAB_DECOMMITTED):
            raise DoubleFreeError(f"{addr:#x}: block already freed (double free)")
        raise HeapCorruptionError(f"{addr:#x}: block header {tag:#x} is neither allocated "
                                  f"({K.ALLOC_TAG | cls:#x}) nor free ({K.FREE_TAG | cls:#x}); "
                                  "the header byte was overwritten")

    def _fc_by_slab(self) -> dict[tuple[int, int], int]:
        out: dict[tuple[int, int], int] = {}
        kern = self.kernel
        for cls in range(K.NUM_CLASSES):
            for h in kern.fc[cls, :kern.fc_count[cls]].tolist():
                key = (h >> 32, (h & 0xFFFFFFFF) >> K.SLAB_LG)
                out[key] = out.get(key, 0) + 1
        return out

    def _block_census(self) -> tuple[int, int, int, int]:
        """(live tiny blocks, their usable bytes, EMPTY slabs, DECOMMITTED slabs) in live
        superslabs, read from the slab meta records and the front caches."""
        fc = self._fc_by_slab()
        live = live_bytes = n_empty = n_dec = 0
        for ss in self._ss:
            if ss is None or ss.state != K.SS_ACTIVE:
                continue
            for s in range(self.nslabs):
                st = ss.slab_state(s)
                if st == K.SLAB_ACTIVE:
                    n = ss.meta(s, K.M_USED) - fc.get((ss.idx, s), 0)
                    live += n
                    live_bytes += n * (ss.meta(s, K.M_STRIDE) - K.BLOCK_HEADER)
                elif st == K.SLAB_EMPTY:
                    n_empty += 1
                elif st == K.SLAB_DECOMMITTED:
                    n_dec += 1
        return live, live_bytes, n_empty + n_dec, n_dec

    # ------------------------------------------------------------------ superslab life
    def _acquire_superslab(self) -> int:
        """Stage 3: pop the LRU cache, else map a fresh superslab.  Returns its index."""
        self.counters["ss_acquired"] += 1
        e = self.lru.pop()
        if e is not None:
            ss = self._ss[e.idx]
            assert ss is not None
            self.counters["ss_from_lru"] += 1
        else:
            ss = self._map_superslab()
            self.counters["ss_fresh"] += 1
        ss.state = K.SS_ACTIVE
        ss.decommitted = False
        ss.format()
        self._n_active += 1
        self._has_unused.add(ss.idx)
        return ss.idx

    def _map_superslab(self) -> Superslab:
        if not self._free_idx:
            raise HeapExhaustedError(f"all {self.config.max_superslabs} superslab slots in use "
                                     "(raise SIMALLOC_MAX_SUPERSLABS)")
        idx = heapq.heappop(self._free_idx)
        try:
            m = self.os.reserve(self.ss_bytes, align=self.ss_bytes)
        except AllocatorError:
            heapq.heappush(self._free_idx, idx)
            raise
        ss = Superslab(idx, m, self.lg)
        self._ss[idx] = ss
        assert m.view is not None
        self.kernel.attach(idx, m.addr, m.view)
        self._reg_insert(m.addr, idx)
        self._ever_superslabs += 1
        return ss

    def _superslab_empty(self, ss: Superslab) -> None:
        """Release guard passed: every slab of ``ss`` is empty.  Ask the policy, then act."""
        assert ss.h(K.H_TOTAL_ACTIVE) == 0 and ss.h(K.H_ACTIVE_SLABS) == 0, "release guard"
        kern = self.kernel
        for cls in range(K.NUM_CLASSES):
            if kern.cur_ss[cls] == ss.idx:
                kern.cur_ss[cls] = -1
                kern.cur_slab[cls] = -1
        for s in range(self.nslabs):
            for d in (*self._empty, *self._partial):
                d.discard((ss.idx, s))
            if ss.slab_state(s) != K.SLAB_UNUSED:
                ss.set_meta(s, K.M_STATE, K.SLAB_EMPTY)
        self._has_unused.discard(ss.idx)
        self._n_active -= 1
        self.counters["ss_empty_events"] += 1
        c = self.clock()
        decision = self.policy.on_superslab_empty(self.ctx, SuperslabEvent(ss.idx, c.ops, c.seconds))
        self._release_superslab(ss, decision)

    def _release_superslab(self, ss: Superslab, decision: Release) -> None:
        """THE conversion point (hakmem's ``ss_maybe_decommit_superslab``): carry out a
        policy's decision on an empty superslab through the OS layer, and count it."""
        if not isinstance(decision, Release):
            raise TypeError(f"{type(self.policy).__name__}.on_superslab_empty must return a Release")
        if decision.retire:
            self.counters["lean_retire"] += 1
        now = time.monotonic() - self._t0
        if decision.action == "unmap":
            self._unmap_superslab(ss.idx)
            return
        ss.state = K.SS_CACHED
        ss.w32[K.H_STATE] = K.SS_CACHED
        if decision.action == "decommit":
            if self.config.lean_range == "all":
                lo = 0
            else:
                lo = K.header_bytes(self.lg)  # rounded up to the next page: header page stays
            self.os.decommit(ss.mapping, lo, ss.size - lo, decision.advice)
            self.counters["lean_decommit"] += 1
            ss.decommitted = True
        self.counters["ss_cached"] += 1
        self.lru.push(ss.idx, now, ss.decommitted)
        for idx in self.lru.evict_over_limits(now):
            self.counters["lru_evictions"] += 1
            self._unmap_superslab(idx)

    def _unmap_superslab(self, idx: int) -> None:
        ss = self._ss[idx]
        assert ss is not None
        self._reg_delete(ss.base)
        self.kernel.detach(idx)
        ss.release_views()
        self._ss[idx] = None
        heapq.heappush(self._free_idx, idx)
        self.os.release(ss.mapping)
        self.counters["ss_unmapped"] += 1

    def _decommit_slab(self, idx: int, slab: int, advice: str) -> bool:
        ss = self._ss[idx] if 0 <= idx < len(self._ss) else None
        if ss is None or ss.state != K.SS_ACTIVE or ss.slab_state(slab) != K.SLAB_EMPTY:
            return False
        kern = self.kernel
        cls = ss.slab_class(slab)
        if kern.cur_ss[cls] == idx and kern.cur_slab[cls] == slab:
            return False
        start = K.slab_data_start(self.lg, slab)
        self.os.decommit(ss.mapping, start, (slab + 1) * K.SLAB_SIZE - start, advice)
        ss.set_meta(slab, K.M_FREELIST, 0)
        ss.set_meta(slab, K.M_CARVED, 0)
        ss.set_meta(slab, K.M_STATE, K.SLAB_DECOMMITTED)
        self.counters["slab_decommits"] += 1
        return True

    def _prewarm(self) -> None:
        """hakmem's prewarm boxes (suppressed when the policy says so, e.g. LEAN)."""
        if not self.policy.allow_prewarm():
            return
        n = self.config.prewarm_superslabs
        if n:
            self.lru.grow_to_fit(n)
            fresh = [self._map_superslab() for _ in range(n)]
            now = time.monotonic() - self._t0
            for ss in fresh:
                ss.format()
                ss.state = K.SS_CACHED
                ss.w32[K.H_STATE] = K.SS_CACHED
                self.lru.push(ss.idx, now, False)
            self.counters["prewarm_superslabs"] += n
        if self.config.tiny_prewarm:
            for cls, count in self.config.prewarm_counts().items():
                if cls > self.config.tiny_max_class:
                    continue
                ptrs = [self.kernel.alloc_fast(cls) for _ in range(count)]
                for p in reversed(ptrs):
                    self.kernel.free_fast(p)
                self.counters["prewarm_blocks"] += count

    # ------------------------------------------------------------------ registry
    def _reg_insert(self, base: int, idx: int) -> None:
        kern = self.kernel
        mask = kern.reg_mask
        k = (base >> self.lg) & mask
        while kern.reg_key[k] > 1:
            k = (k + 1) & mask
        if kern.reg_key[k] == 1:
            self._tombstones -= 1
        kern.reg_key[k] = base
        kern.reg_val[k] = idx

    def _reg_delete(self, base: int) -> None:
        kern = self.kernel
        mask = kern.reg_mask
        k = (base >> self.lg) & mask
        while int(kern.reg_key[k]) != base:
            assert kern.reg_key[k] != 0, "registry: deleting an unknown base"
            k = (k + 1) & mask
        kern.reg_key[k] = 1  # tombstone
        kern.reg_val[k] = -1
        self._tombstones += 1
        if self._tombstones > (mask + 1) // 4:
            live = [(int(b), int(v)) for b, v in zip(kern.reg_key, kern.reg_val, strict=True) if b > 1]
            kern.reg_key[:] = 0
            kern.reg_val[:] = -1
            self._tombstones = 0
            for b, v in live:
                self._reg_insert(b, v)
