"""The hot path: ONE source for both kernels (Cython "pure Python mode").

This file is the algorithm.  Imported as ``simalloc._kernel_py`` it runs as ordinary Python
(``KERNEL_NAME == "python"``: step through it in pdb; it needs neither Cython nor a compiler).
At build time ``setup.py`` copies it to ``kernels/_kernel.py`` and Cython compiles that copy to
``simalloc._kernel`` (``KERNEL_NAME == "cython"``) with the C types of ``kernels/_kernel.pxd``
(an *augmenting* .pxd: typed attributes, ``cpdef`` signatures and ``@cython.locals``).  The
two kernels therefore cannot drift apart; the parity tests still feed both the same streams.

Everything a single malloc or free touches in the common case lives here, over flat storage:

* the superslab header and slab meta records *inside the mappings* (see ``constants``);
* free lists threaded through the freed blocks themselves (u32 superslab offsets);
* per-heap numpy tables: superslab bases, the address registry (open addressing), the per-class
  front caches (handles ``index << 32 | offset``), the current slab of each class, counters.

Plain Python and C differ only in ``if cython.compiled`` branches: how the bytes of a superslab
are reached (:meth:`Kernel._w8` / :meth:`Kernel._w32`: a memoryview of the mapping in Python, a
pointer ``ss_base[idx]`` in C), the first-byte store of a fresh tiny block
(:meth:`Kernel._store_tiny_byte`), and where the layout constants come from: Python imports
them from ``constants``; C has them compiled in (``setup.py`` generates them from the same
file, as C constants: as typed globals they cost ~8% on Mixed).

Rules for editing (the code must mean the same as Python and as C): name every number from
``constants`` (a new one goes into the import block; a value the running system decides, like
PAGE_SHIFT, is imported unconditionally and typed in the .pxd); keep integers in C range (no
``or`` on numbers, no literals above 2**31 in C expressions, ``idx`` wide enough for ``<< 32``);
do not alias numpy views into locals in per-operation methods (in C each alias costs a reference
count); give every new local of a hot method a C type in the .pxd (``cython -a`` shows what is
left).

When the hot path cannot proceed it calls the slow path (a :class:`simalloc.kernel.SlowPath`,
the heap), written in ordinary Python: a class whose current slab is exhausted
(``refill_slow``), a slab that became empty or partial (``slab_empty`` / ``slab_partial`` ->
the release policy), a large request, a pointer that fails a check (``free_error`` diagnoses and
raises), and the policy clock (``tick``).  Set a breakpoint in any of those to watch a decision
happen::

    SIMALLOC_KERNEL=python python -m pdb -c "b simalloc/policy.py:LeanPolicy.on_superslab_empty" ...
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

try:
    import cython
except ImportError:  # Cython is a build requirement only; uncompiled code just asks `compiled`
    from types import SimpleNamespace

    cython = SimpleNamespace(compiled=False)

if not cython.compiled:  # compiled, these are C constants generated from constants.py (setup.py)
    from .constants import (
        ALLOC_TAG,
        BLOCK_HEADER,
        C_DRAINS,
        C_LAZY,
        C_LIVE,
        C_NEXT_TICK,
        C_OPS,
        C_REFILLS,
        C_RES,
        C_RES_LAST_NS,
        C_RES_LAST_OPS,
        C_RES_NS_AREA,
        C_RES_OPS_AREA,
        C_RES_PEAK,
        C_RES_SINCE_NS,
        C_RES_SINCE_OPS,
        C_SLOW,
        FREE_TAG,
        H_ACTIVE_SLABS,
        H_MAGIC,
        H_TOTAL_ACTIVE,
        M_CAPACITY,
        M_CARVED,
        M_CLASS,
        M_DATA,
        M_FREELIST,
        M_STATE,
        M_STRIDE,
        M_USED,
        N_COUNTERS,
        NEXT_LINK_OFFSET,
        NUM_CLASSES,
        OP_FREE,
        OP_MALLOC,
        PAGE_LAZY,
        PAGE_RESIDENT,
        PAGE_UNTOUCHED,
        SLAB_ACTIVE,
        SLAB_LG,
        SLAB_META_WORDS,
        SS_MAGIC,
        SS_META_WORD,
    )
from .constants import PAGE_SHIFT  # the running system's page size: a value at run time
from .errors import TraceError

if TYPE_CHECKING:
    from .kernel import SlowPath

__all__ = ["KERNEL_NAME", "Kernel", "TraceError"]  # TraceError is re-exported from simalloc.errors

KERNEL_NAME = "cython" if cython.compiled else "python"

_monotonic_ns = time.monotonic_ns  # the resident model's clock (called once per page change)


def _mv(arr: Any, fmt: str, shape: list[int] | None = None) -> Any:
    """A memoryview of a numpy array's buffer with item format ``fmt`` (and ``shape``).

    Python indexes it (cheap item access); in C it fills a typed memoryview."""
    m: Any = memoryview(arr).cast("B")
    return m.cast(fmt) if shape is None else m.cast(fmt, shape)


class Kernel:
    """Hot-path state and operations of one heap.

    Constructed by the heap with its slow path ``slow`` and geometry; owns the flat tables."""

    name = KERNEL_NAME

    def __init__(self, slow: SlowPath, lg: int, max_superslabs: int, front_cap: int,
                 refill_batch: int, drain_batch: int, lut: np.ndarray, strides: tuple[int, ...],
                 tick_interval: int) -> None:
        self.slow = slow
        self.lg = lg
        self.ss_mask = (1 << lg) - 1
        self.front_cap = front_cap
        self.refill_batch = refill_batch
        self.drain_batch = drain_batch
        self.tick_interval = tick_interval
        self.tiny_max = len(lut) - 1
        # --- shared numpy storage (public: the slow path, reports and checks read it)
        self.ss_base = np.zeros(max_superslabs, dtype=np.uint64)
        regsize = 1
        while regsize < 2 * max_superslabs:
            regsize <<= 1
        self.reg_mask = regsize - 1
        self.reg_key = np.zeros(regsize, dtype=np.uint64)  # 0 empty, 1 tombstone, else base
        self.reg_val = np.full(regsize, -1, dtype=np.int32)
        cap = max(front_cap, 1)
        self.fc = np.zeros((NUM_CLASSES, cap), dtype=np.int64)
        self.fc_count = np.zeros(NUM_CLASSES, dtype=np.int32)
        self.cur_ss = np.full(NUM_CLASSES, -1, dtype=np.int32)
        self.cur_slab = np.full(NUM_CLASSES, -1, dtype=np.int32)
        self.counters = np.zeros(N_COUNTERS, dtype=np.int64)
        self.counters[C_NEXT_TICK] = tick_interval if tick_interval > 0 else 2**62
        self.lut = np.ascontiguousarray(lut, dtype=np.int8)
        self.strides = np.asarray(strides, dtype=np.int32)
        # --- the hot path's views of the same storage (Python: memoryviews; C: typed views)
        self._base = _mv(self.ss_base, "Q")
        self._rk = _mv(self.reg_key, "Q")
        self._rv = _mv(self.reg_val, "i")
        self._fc = _mv(self.fc, "q", [NUM_CLASSES, cap])
        self._fcn = _mv(self.fc_count, "i")
        self._cs = _mv(self.cur_ss, "i")
        self._cl = _mv(self.cur_slab, "i")
        self._ctr = _mv(self.counters, "q")
        self._lut = _mv(self.lut, "b")
        # --- the resident-page model (simalloc/pages.py): one state byte per page of each superslab
        self.pps = 1 << (lg - PAGE_SHIFT)  # pages per superslab
        self.pstate = np.zeros(max_superslabs * self.pps, dtype=np.uint8)
        self._ps = _mv(self.pstate, "B")
        self.res_reset(_monotonic_ns())
        self._v8: list[Any] = [None] * max_superslabs  # memoryviews of attached superslabs
        self._v32: list[Any] = [None] * max_superslabs

    # ------------------------------------------------------------------ superslab memory
    def _w8(self, idx: int) -> memoryview:
        """The bytes of superslab ``idx``: a memoryview (Python), a ``uint8_t*`` (C)."""
        if cython.compiled:
            return cython.cast(cython.p_uchar, cython.cast(cython.size_t, self._base[idx]))
        else:
            return self._v8[idx]

    def _w32(self, idx: int) -> memoryview:
        """Superslab ``idx`` as u32 words: a memoryview (Python), a ``uint32_t*`` (C)."""
        if cython.compiled:
            return cython.cast(cython.p_uint, cython.cast(cython.size_t, self._base[idx]))
        else:
            return self._v32[idx]

    def _store_tiny_byte(self, addr: int, value: int) -> int:
        """Store one byte at ``addr``, a tiny block this kernel has just handed out: C writes
        through the pointer, Python goes through :meth:`write_byte`.  Returns 0 (in C an int
        error flag)."""
        if cython.compiled:
            cython.cast(cython.p_uchar, addr)[0] = value & 0xFF
        else:
            self.write_byte(addr, value)
        return 0

    def attach(self, idx: int, base: int, window: memoryview) -> None:
        """Make superslab ``idx`` (window at ``base``) visible to the hot path."""
        self._v8[idx] = window.cast("B")
        self._v32[idx] = window.cast("I")
        self._base[idx] = base

    def detach(self, idx: int) -> None:
        """Forget superslab ``idx`` (before it is unmapped)."""
        for views in (self._v8, self._v32):
            v = views[idx]
            if v is not None:
                v.release()
            views[idx] = None
        self._base[idx] = 0

    def release(self) -> None:
        """Drop every view (heap close)."""
        for idx in range(len(self._v8)):
            if self._v8[idx] is not None:
                self.detach(idx)

    # ------------------------------------------------------------------ current slabs
    def bind(self, cls: int, idx: int, slab: int) -> None:
        """Make slab ``slab`` of superslab ``idx`` the current slab of class ``cls``."""
        self._cs[cls] = idx
        self._cl[cls] = slab

    def unbind(self, cls: int) -> None:
        """Class ``cls`` has no current slab (the next refill asks the slow path)."""
        self._cs[cls] = -1
        self._cl[cls] = -1

    # ------------------------------------------------------------------ resident-page model
    def _touch_page(self, pi: int) -> None:
        """Page ``pi`` of the page-state table was written: resident (no longer lazily freed)."""
        if self._ps[pi] == PAGE_LAZY:
            self._ctr[C_LAZY] -= 1
        else:
            self._res_change(1)
        self._ps[pi] = PAGE_RESIDENT

    def _res_change(self, delta: int) -> None:
        """Resident pages change by ``delta``: close the areas under the old value, keep the
        exact peak."""
        ctr = self._ctr
        ops = ctr[C_OPS]
        now = _monotonic_ns()
        res = ctr[C_RES]
        ctr[C_RES_OPS_AREA] += res * (ops - ctr[C_RES_LAST_OPS])
        ctr[C_RES_NS_AREA] += res * (now - ctr[C_RES_LAST_NS])
        ctr[C_RES_LAST_OPS] = ops
        ctr[C_RES_LAST_NS] = now
        res += delta
        ctr[C_RES] = res
        if res > ctr[C_RES_PEAK]:
            ctr[C_RES_PEAK] = res

    def page_range(self, idx: int, first: int, last: int, how: int) -> None:
        """Pages ``first..last-1`` of superslab ``idx`` were written (``how`` 0), dropped by
        MADV_DONTNEED or munmap (1), lazily freed by MADV_FREE (2) or reclaimed by MADV_PAGEOUT
        (3: lazily freed pages go, written ones stay).  See simalloc/pages.py."""
        if first < 0 or last > self.pps or idx < 0 or idx * self.pps >= len(self.pstate):
            raise ValueError(f"page range {first}..{last} of superslab {idx} out of bounds")
        base = idx * self.pps
        res = 0
        for pi in range(base + first, base + last):
            st = self._ps[pi]
            if how == 0:
                if st == PAGE_LAZY:
                    self._ctr[C_LAZY] -= 1
                elif st == PAGE_UNTOUCHED:
                    res += 1
                self._ps[pi] = PAGE_RESIDENT
            elif how == 1:
                if st == PAGE_LAZY:
                    self._ctr[C_LAZY] -= 1
                if st != PAGE_UNTOUCHED:
                    res -= 1
                self._ps[pi] = PAGE_UNTOUCHED
            elif how == 2:
                if st == PAGE_RESIDENT:
                    self._ctr[C_LAZY] += 1
                    self._ps[pi] = PAGE_LAZY
            elif st == PAGE_LAZY:
                self._ctr[C_LAZY] -= 1
                res -= 1
                self._ps[pi] = PAGE_UNTOUCHED
        if res:
            self._res_change(res)

    def res_adjust(self, delta_pages: int) -> None:
        """Pages outside superslabs (Mid regions, large blocks) became resident or went."""
        self._res_change(delta_pages)

    def res_reset(self, now_ns: int) -> None:
        """Start a new measurement phase: the peak is now, the areas start from zero."""
        ctr = self._ctr
        ctr[C_RES_PEAK] = ctr[C_RES]
        ctr[C_RES_OPS_AREA] = 0
        ctr[C_RES_NS_AREA] = 0
        ctr[C_RES_LAST_OPS] = ctr[C_OPS]
        ctr[C_RES_SINCE_OPS] = ctr[C_OPS]
        ctr[C_RES_LAST_NS] = now_ns
        ctr[C_RES_SINCE_NS] = now_ns

    # ------------------------------------------------------------------ registry
    def lookup(self, addr: int) -> int:
        """Superslab index holding ``addr`` (O(1): mask, then linear probing), or -1."""
        base = addr & ~self.ss_mask
        mask = self.reg_mask
        k = (base >> self.lg) & mask
        while True:
            key = self._rk[k]
            if key == base:
                return self._rv[k]
            if key == 0:
                return -1
            k = (k + 1) & mask

    # ------------------------------------------------------------------ allocation
    def alloc_fast(self, cls: int) -> int:
        """Pop a block of class ``cls`` from its front cache (refilling it if empty); returns
        the user address."""
        n = self._fcn[cls]
        if n == 0:
            self.refill(cls)
            n = self._fcn[cls]
        n -= 1
        self._fcn[cls] = n
        h = self._fc[cls, n]
        idx = h >> 32
        off = h - (idx << 32)
        w8 = self._w8(idx)
        if w8[off] != FREE_TAG | cls:
            self._fcn[cls] = n + 1
            self.slow.corrupt_block(idx, off, "front cache")
        w8[off] = ALLOC_TAG | cls
        self._ctr[C_LIVE] += 1
        self._ctr[C_OPS] += 1
        if self._ctr[C_OPS] >= self._ctr[C_NEXT_TICK]:
            self._tick()
        return self._base[idx] + off + BLOCK_HEADER

    def malloc(self, size: int) -> int:
        """Size -> class (LUT) -> :meth:`alloc_fast`; large sizes go to the slow path."""
        if 0 <= size <= self.tiny_max:
            return self.alloc_fast(self._lut[size])
        return self.slow.malloc_large(size)

    def refill(self, cls: int) -> None:
        """Move up to ``refill_batch`` blocks of the current slab (its free list first, then
        fresh carving) into the front cache; ask the slow path for a new current slab when the
        current one is exhausted."""
        got = 0
        want = min(self.refill_batch, self.front_cap)
        if want == 0:
            want = 1
        self._ctr[C_REFILLS] += 1
        while got < want:
            idx = self._cs[cls]
            if idx < 0:
                if got:
                    break
                self._ctr[C_SLOW] += 1
                self.slow.refill_slow(cls)
                continue
            slab = self._cl[cls]
            w32 = self._w32(idx)
            w8 = self._w8(idx)
            m = SS_META_WORD + slab * SLAB_META_WORDS
            while got < want:
                head = w32[m + M_FREELIST]
                if head:
                    if head > self.ss_mask or w8[head] != FREE_TAG | cls:
                        self._fcn[cls] = got
                        self.slow.corrupt_block(idx, head, "free list")
                    w32[m + M_FREELIST] = w32[(head + NEXT_LINK_OFFSET) >> 2]
                    off = head
                else:
                    carved = w32[m + M_CARVED]
                    if carved >= w32[m + M_CAPACITY]:
                        break
                    off = w32[m + M_DATA] + carved * w32[m + M_STRIDE]
                    w32[m + M_CARVED] = carved + 1
                    w8[off] = FREE_TAG | cls
                    pi = idx * self.pps + (off >> PAGE_SHIFT)
                    if self._ps[pi] != PAGE_RESIDENT:  # the first block written in this page
                        self._touch_page(pi)
                used = w32[m + M_USED] + 1
                w32[m + M_USED] = used
                if used == 1:
                    w32[H_ACTIVE_SLABS] += 1
                w32[H_TOTAL_ACTIVE] += 1
                self._fc[cls, got] = (idx << 32) | off
                got += 1
            if got < want:
                # exhausted: unbind; the next loop turn asks the slow path for a new slab
                self.unbind(cls)
        self._fcn[cls] = got

    # ------------------------------------------------------------------ free
    def free_fast(self, addr: int) -> None:
        """Validate ``addr`` (registry, magic, slab state, block boundary, header byte) and push
        it on its class's front cache (draining the cache first if it is full)."""
        self._free_fast(addr)

    def _free_fast(self, addr: int) -> int:
        """:meth:`free_fast`; returns 0 (in C an int return is an error flag, cheaper to check
        than a ``void`` function's)."""
        idx = self.lookup(addr)
        if idx < 0:
            self.slow.free_slow(addr)
            return 0
        w32 = self._w32(idx)
        w8 = self._w8(idx)
        off = (addr & self.ss_mask) - BLOCK_HEADER
        if w32[H_MAGIC] != SS_MAGIC or off < 0:
            self.slow.free_error(addr)
            return 0
        m = SS_META_WORD + (off >> SLAB_LG) * SLAB_META_WORDS
        rel = off - w32[m + M_DATA]
        stride = w32[m + M_STRIDE]
        cls = w32[m + M_CLASS]
        if (w32[m + M_STATE] != SLAB_ACTIVE or rel < 0 or rel & (stride - 1)
                or rel >= w32[m + M_CARVED] * stride or w8[off] != ALLOC_TAG | cls):
            self.slow.free_error(addr)
            return 0
        self._ctr[C_OPS] += 1
        n = self._fcn[cls]
        if n >= self.front_cap:
            # drain first, while this block is still live: slow-path callbacks during the
            # drain (debug check(), policies) must not see it half freed
            self.drain(cls, self.drain_batch)
            n = self._fcn[cls]
        w8[off] = FREE_TAG | cls
        self._ctr[C_LIVE] -= 1
        if self.front_cap:
            self._fc[cls, n] = (idx << 32) | off
            self._fcn[cls] = n + 1
        else:
            self._return_block(cls, idx, off)
        if self._ctr[C_OPS] >= self._ctr[C_NEXT_TICK]:
            self._tick()
        return 0

    def _tick(self) -> None:
        """Every ``tick_interval`` operations: let the slow path run the policy clock."""
        self._ctr[C_NEXT_TICK] = self._ctr[C_OPS] + self.tick_interval
        self.slow.tick()

    def drain(self, cls: int, count: int) -> None:
        """Return the ``count`` oldest front-cache blocks of ``cls`` (the bottom of the stack)
        to their slabs and slide the rest down.  Draining the cold end means no block can sit
        in the cache forever, pinning its superslab against release."""
        n = self._fcn[cls]
        if count > n:
            count = n
        self._ctr[C_DRAINS] += 1
        # [old | rest] -> [rest | old reversed]: the drained blocks go on top (oldest last) and
        # leave one at a time, so the cache holds every block not yet returned when a
        # slow-path callback looks at it.  Two reversals, no buffer.
        self._reverse(cls, 0, n)
        self._reverse(cls, 0, n - count)
        for i in range(count):
            top = n - 1 - i
            h = self._fc[cls, top]
            self._fcn[cls] = top
            idx = h >> 32
            self._return_block(cls, idx, h - (idx << 32))

    def _reverse(self, cls: int, lo: int, hi: int) -> None:
        """Reverse front-cache entries ``lo..hi-1`` of class ``cls`` in place."""
        hi -= 1
        while lo < hi:
            h = self._fc[cls, lo]
            self._fc[cls, lo] = self._fc[cls, hi]
            self._fc[cls, hi] = h
            lo += 1
            hi -= 1

    def return_block(self, cls: int, idx: int, off: int) -> None:
        """Push a free block onto its slab's free list; report slab-partial (a quarter free) and
        slab-empty (``used == 0``) to the slow path."""
        self._return_block(cls, idx, off)

    def _return_block(self, cls: int, idx: int, off: int) -> int:
        """:meth:`return_block`; returns 0 (see :meth:`_free_fast`)."""
        w32 = self._w32(idx)
        slab = off >> SLAB_LG
        m = SS_META_WORD + slab * SLAB_META_WORDS
        w32[(off + NEXT_LINK_OFFSET) >> 2] = w32[m + M_FREELIST]
        w32[m + M_FREELIST] = off
        used = w32[m + M_USED] - 1
        w32[m + M_USED] = used
        w32[H_TOTAL_ACTIVE] -= 1
        if used == 0:
            w32[H_ACTIVE_SLABS] -= 1
            self.slow.slab_empty(idx, slab)
        else:
            # a full, unbound slab becomes "partial" once a quarter of it is free again, so a
            # refill from it is worth the slow-path call (one event per slab per cycle)
            cap = w32[m + M_CAPACITY]
            quarter = cap >> 2
            if quarter == 0:
                quarter = 1
            if used == cap - quarter and (self._cs[cls] != idx or self._cl[cls] != slab):
                self.slow.slab_partial(idx, slab)
        return 0

    def flush(self) -> None:
        """Drain every front cache completely (used by ``Heap.trim()`` and ``close()``)."""
        for cls in range(NUM_CLASSES):
            if self._fcn[cls]:
                self.drain(cls, self._fcn[cls])

    # ------------------------------------------------------------------ memory access
    def write_byte(self, addr: int, value: int) -> None:
        """Store one byte at ``addr`` inside a registered superslab, or hand it to the slow path
        (a large block)."""
        idx = self.lookup(addr)
        if idx < 0:
            self.slow.write_byte_slow(addr, value)
        else:
            self._w8(idx)[addr & self.ss_mask] = value & 0xFF

    # ------------------------------------------------------------------ batch entry points
    def apply(self, ops: np.ndarray, slots: np.ndarray) -> None:
        """Replay an operation stream: ``ops`` is C-contiguous int64 ``(n, 3)`` rows ``(kind,
        slot, size)``; ``slots`` (C-contiguous uint64) holds the live address of each slot
        (0 = empty) and is updated in place.  A malloc writes ``size & 0xFF`` as the block's
        first byte (bench_random_mixed writes one byte too); other kinds go to the slow path's
        ``apply_other``."""
        n = len(ops)
        if n == 0:
            return
        o = _mv(ops, "q", [n, 3])
        sl = _mv(slots, "Q")
        nslots = len(slots)
        for i in range(n):
            kind = o[i, 0]
            slot = o[i, 1]
            size = o[i, 2]
            if slot < 0 or slot >= nslots:
                raise TraceError(f"slot {slot} out of range 0..{nslots - 1}")
            if kind == OP_MALLOC:
                if sl[slot]:
                    raise TraceError(f"malloc into occupied slot {slot}")
                if 0 <= size <= self.tiny_max:  # malloc(), its tiny path inlined
                    p = self.alloc_fast(self._lut[size])
                    self._store_tiny_byte(p, size)
                else:  # large: the slow path, and write_byte (the page model sees the page)
                    p = self.slow.malloc_large(size)
                    self.write_byte(p, size)
                sl[slot] = p
            elif kind == OP_FREE:
                p = sl[slot]
                if not p:
                    raise TraceError(f"free of empty slot {slot}")
                self._free_fast(p)
                sl[slot] = 0
            else:
                sl[slot] = self.slow.apply_other(kind, sl[slot], size)

    def drain_slots(self, slots: np.ndarray) -> int:
        """Free every non-empty slot in index order (the benchmark's final drain)."""
        sl = _mv(slots, "Q")
        freed = 0
        for i in range(len(slots)):
            p = sl[i]
            if p:
                self._free_fast(p)
                sl[i] = 0
                freed += 1
        return freed
