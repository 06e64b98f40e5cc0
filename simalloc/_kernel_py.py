"""The hot path: ONE source for both kernels (Cython "pure Python mode").

Imported as ``simalloc._kernel_py`` this file runs as ordinary Python (``KERNEL_NAME ==
"python"``: step through it in pdb; no Cython or compiler needed).  ``setup.py`` copies it to
``kernels/_kernel.py`` and Cython compiles the copy to ``simalloc._kernel`` (``"cython"``) with
the C types of ``kernels/_kernel.pxd`` (an augmenting .pxd: typed attributes, ``cpdef``
signatures, ``@cython.locals``), so the two kernels cannot drift apart (the parity tests still
feed both the same streams).  It works over flat storage: superslab headers and slab meta
records inside the mappings (``constants``); free lists threaded through the freed blocks (u32
superslab offsets); per-heap numpy tables (superslab bases, the address registry, the per-class
front caches of handles ``index << 32 | offset``, the current slab of each class, counters).

Plain Python and C differ only in ``if cython.compiled`` branches: how a superslab's bytes are
reached (:meth:`Kernel._w8` / :meth:`Kernel._w32`: a memoryview in Python, a pointer in C), the
first-byte store of a fresh tiny block, the secure mode's junk fill (:meth:`Kernel._junk`), and
where the layout constants come from (C has them compiled in: as typed globals they cost ~8%).

Rules for editing (the code must mean the same as Python and as C): name every number from
``constants`` (a value the running system decides, like PAGE_SHIFT, is imported unconditionally
and typed in the .pxd); keep integers in C range (no ``or`` on numbers, no literals above 2**31
in C expressions, no negative indexes); do not alias numpy views into locals in per-operation
methods; type every new local of a hot method in the .pxd (``cython -a`` shows what is left).
Every value read from heap memory is checked before it is used as an index or an address.

When the hot path cannot proceed it calls the slow path (:class:`simalloc.kernel.SlowPath`, the
heap, ordinary Python): ``refill_slow``, ``slab_empty`` / ``slab_partial`` (-> the release
policy), large requests, ``free_error`` / ``corrupt_*`` (diagnose and raise), ``tick``; in a
batch (``counters[C_BATCH]``) slab-partial and -empty events are queued in ``evq`` instead and
delivered by ``flush_queue``.  Set a breakpoint in any of those to watch a decision happen::

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
    # (in isort's order, wrapped by hand: one name per line would make this block 50 lines)
    from .constants import (  # noqa: I001
        ALLOC_TAG, BLOCK_HEADER, C_BATCH, C_DEFERRED, C_DRAINS, C_LAZY, C_LIVE, C_NEXT_TICK, C_OPS, C_QUEUED,
        C_REFAULTS, C_REFILLS, C_RES, C_RES_LAST_NS, C_RES_LAST_OPS, C_RES_NS_AREA, C_RES_OPS_AREA, C_RES_PEAK,
        C_RES_SINCE_NS, C_RES_SINCE_OPS, C_RESCUES, C_SLOW, C_TICK_DUE, EV_EMPTY, EV_EMPTY_CURRENT, EV_PARTIAL, EVQ_CAP,
        FREE_JUNK, FREE_TAG, H_ACTIVE_SLABS, H_MAGIC, H_TOTAL_ACTIVE, M_CAPACITY, M_CARVED, M_CLASS, M_DATA,
        M_FREELIST, M_STATE, M_STRIDE, M_USED, N_COUNTERS, NEXT_LINK_OFFSET, NUM_CLASSES, OP_FREE, OP_MALLOC,
        OP_REALLOC, PAGE_LAZY, PAGE_RELEASED, PAGE_RESIDENT, PAGE_UNTOUCHED, SECURE_LINK_SHIFT, SLAB_ACTIVE, SLAB_LG,
        SLAB_META_WORDS, SS_MAGIC, SS_META_WORD,
    )
    memcmp: Any = None  # compiled: libc's memcmp, memset and memcpy (the .pxd cimports them)
    memset: Any = None
    memcpy: Any = None
from .constants import PAGE_SHIFT, header_bytes  # the page size: a value at run time
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

    Constructed by the heap with its slow path ``slow`` and geometry; owns the flat tables.
    ``secure`` turns on the hardened mode (links encoded with ``link_key``, junk-filled blocks)."""

    name = KERNEL_NAME

    def __init__(self, slow: SlowPath, lg: int, max_superslabs: int, front_cap: int,
                 refill_batch: int, drain_batch: int, lut: np.ndarray, strides: tuple[int, ...],
                 tick_interval: int, secure: bool = False, link_key: int = 0) -> None:
        self.slow = slow
        self.lg = lg
        self.ss_mask = (1 << lg) - 1
        self.hdr = header_bytes(lg)  # slab 0's data start (slab s > 0: s << SLAB_LG)
        self.nslabs = 1 << (lg - SLAB_LG)
        self.ss_blocks = (1 << lg) // strides[0]  # more blocks than a superslab can count
        self.secure = 1 if secure else 0
        self.link_key = link_key % (1 << 32) if secure else 0
        self.link_mix = (1 << 32) - 1 if secure else 0
        self._junk_bytes = bytes([FREE_JUNK]) * max(strides)  # (no negative indexes: wraparound is off)
        self.applied = 0  # rows done by the last apply() (also when it raised)
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
        self.counters[C_NEXT_TICK] = self.counters[C_TICK_DUE] = tick_interval if tick_interval > 0 else 2**62
        self.lut = np.ascontiguousarray(lut, dtype=np.int8)
        self.strides = np.asarray(strides, dtype=np.int32)
        self._str = _mv(self.strides, "i")
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
        self.evq = np.zeros((EVQ_CAP, 4), dtype=np.int64)  # queued events (C_BATCH, _enqueue)
        self._evq = _mv(self.evq, "q", [EVQ_CAP, 4])
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
        """Store a byte at ``addr``, a tiny block just handed out (C: the pointer).  Returns 0."""
        if cython.compiled:
            cython.cast(cython.p_uchar, addr)[0] = value & 0xFF
        else:
            self.write_byte(addr, value)
        return 0

    def _junk(self, idx: int, off: int, stride: int, fill: int) -> int:
        """Secure mode: with ``fill`` write FREE_JUNK over the user bytes of the free block at
        ``off`` (its page is already written: the resident model does not change); else return
        1 if bytes 1..3 and 8.. still hold it (4..7 hold the free-list link), 0 if not."""
        a = NEXT_LINK_OFFSET + 4
        if cython.compiled:  # libc's memset / memcmp (vectorised), against the kernel's junk bytes
            p = cython.cast(cython.p_uchar, self._w8(idx)) + off
            if fill:
                memset(p + BLOCK_HEADER, FREE_JUNK, stride - BLOCK_HEADER)
                return 1
            j = cython.cast(cython.p_uchar, cython.cast(cython.p_char, self._junk_bytes))
            return (memcmp(p + BLOCK_HEADER, j, NEXT_LINK_OFFSET - BLOCK_HEADER) == 0
                    and memcmp(p + a, j, stride - a) == 0)
        v, j = self._w8(idx), self._junk_bytes
        if fill:
            v[off + BLOCK_HEADER:off + stride] = j[:stride - BLOCK_HEADER]
            return 1
        return int(v[off + BLOCK_HEADER:off + NEXT_LINK_OFFSET] == j[:NEXT_LINK_OFFSET - BLOCK_HEADER]
                   and v[off + a:off + stride] == j[:stride - a])

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
        """Page ``pi`` was written: resident; if lazily freed, rescued; if released, refaulted."""
        st = self._ps[pi]
        if st == PAGE_LAZY:
            self._ctr[C_LAZY] -= 1
            self._ctr[C_RESCUES] += 1
        else:
            self._ctr[C_REFAULTS] += st == PAGE_RELEASED
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
        """Pages ``first..last-1`` of superslab ``idx`` were written (``how`` 0), given back by
        MADV_DONTNEED (1), MADV_FREE (2), MADV_PAGEOUT (3) or munmap (4): the state table of
        simalloc/pages.py (a write refaults a RELEASED page, rescues a LAZY one)."""
        if first < 0 or last > self.pps or idx < 0 or idx * self.pps >= len(self.pstate) or how < 0 or how > 4:
            raise ValueError(f"page range {first}..{last} of superslab {idx} (how {how}) out of bounds")
        base = idx * self.pps
        res = 0
        for pi in range(base + first, base + last):
            st = self._ps[pi]
            if how == 0:
                if st == PAGE_LAZY:
                    self._ctr[C_LAZY] -= 1
                    self._ctr[C_RESCUES] += 1
                elif st != PAGE_RESIDENT:
                    res += 1
                    self._ctr[C_REFAULTS] += st == PAGE_RELEASED
                self._ps[pi] = PAGE_RESIDENT
            elif how == 2:
                if st == PAGE_RESIDENT:
                    self._ctr[C_LAZY] += 1
                    self._ps[pi] = PAGE_LAZY
            elif how == 3:
                if st == PAGE_LAZY:
                    self._ctr[C_LAZY] -= 1
                    res -= 1
                    self._ps[pi] = PAGE_RELEASED
            else:  # 1 DONTNEED: written pages RELEASED; 4 munmap: all UNTOUCHED (a new mapping is fresh)
                if st == PAGE_LAZY or st == PAGE_RESIDENT:
                    res -= 1
                    self._ctr[C_LAZY] -= st == PAGE_LAZY
                self._ps[pi] = PAGE_UNTOUCHED if how == 4 or st == PAGE_UNTOUCHED else PAGE_RELEASED
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
        the user address.  Nothing runs after the hand-out: an exception never loses a block."""
        return self._alloc(cls, self.secure)

    def _alloc(self, cls: int, sec: int) -> int:
        """:meth:`alloc_fast`, the secure flag ``sec`` an argument (C: inlined in the batch loop)."""
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
        if w8[off] != FREE_TAG | cls or (sec and not self._junk(idx, off, self._str[cls], 0)):
            self._fcn[cls] = n + 1
            self.slow.corrupt_block(idx, off, "front cache")
        w8[off] = ALLOC_TAG | cls
        self._ctr[C_LIVE] += 1
        self._ctr[C_OPS] += 1
        return self._base[idx] + off + BLOCK_HEADER

    def malloc(self, size: int) -> int:
        """Size -> class (LUT) -> :meth:`alloc_fast`; large sizes go to the slow path.  A due
        policy tick runs first, before the operation changes anything."""
        if self._ctr[C_OPS] >= self._ctr[C_NEXT_TICK]:
            self._tick()
        if 0 <= size <= self.tiny_max:
            return self._alloc(self._lut[size], self.secure)
        return self.slow.malloc_large(size)

    def refill(self, cls: int) -> None:
        """Move up to ``refill_batch`` blocks of the current slab (its free list first, then
        fresh carving) into the front cache; ask the slow path for a new current slab when the
        current one is exhausted.  Every value read from the slab's memory is checked before it
        is used as an index or an address (``corrupt_meta`` / ``corrupt_block`` raise)."""
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
            data = w32[m + M_DATA]  # the slab's record, checked once per refill: exact geometry
            stride = w32[m + M_STRIDE]
            cap = w32[m + M_CAPACITY]
            carved = w32[m + M_CARVED]
            if (w32[m + M_CLASS] != cls or w32[m + M_STATE] != SLAB_ACTIVE or stride != self._str[cls]
                    or data != (slab << SLAB_LG if slab else self.hdr)
                    or cap != (((slab + 1) << SLAB_LG) - data) // stride or carved > cap):
                self._fcn[cls] = got
                self.slow.corrupt_meta(idx, slab, "refill")
            while got < want:
                used = w32[m + M_USED]
                head = w32[m + M_FREELIST]
                total = w32[H_TOTAL_ACTIVE]
                if total >= self.ss_blocks or (used == 0 and w32[H_ACTIVE_SLABS] >= self.nslabs):
                    self._fcn[cls] = got
                    self.slow.corrupt_meta(idx, slab, "superslab counts")
                if head:
                    # a link must name a carved block of this slab, tagged free, and the counts
                    # must say a block is free (a cycle runs out of them)
                    if (head < data or head - data >= carved * stride or (head - data) & (stride - 1)
                            or used >= carved or w8[head] != FREE_TAG | cls):
                        self._fcn[cls] = got
                        self.slow.corrupt_block(idx, head, "free list")
                    w32[m + M_FREELIST] = (w32[(head + NEXT_LINK_OFFSET) >> 2] ^ self.link_key
                                           ^ ((head << SECURE_LINK_SHIFT) & self.link_mix))
                    off = head
                else:
                    if carved >= cap:
                        break
                    if used != carved:  # free blocks, but none listed: a link was cut
                        self._fcn[cls] = got
                        self.slow.corrupt_meta(idx, slab, "free list")
                    off = data + carved * stride
                    carved += 1
                    w32[m + M_CARVED] = carved
                    w8[off] = FREE_TAG | cls
                    if self.secure:
                        self._junk(idx, off, stride, 1)
                    pi = idx * self.pps + (off >> PAGE_SHIFT)
                    if self._ps[pi] != PAGE_RESIDENT:  # the first block written in this page
                        self._touch_page(pi)
                w32[m + M_USED] = used + 1
                if used == 0:
                    w32[H_ACTIVE_SLABS] += 1
                w32[H_TOTAL_ACTIVE] = total + 1
                self._fc[cls, got] = (idx << 32) | off
                got += 1
            if got < want:
                # exhausted: unbind; the next loop turn asks the slow path for a new slab
                self.unbind(cls)
        self._fcn[cls] = got

    # ------------------------------------------------------------------ free
    def free_fast(self, addr: int) -> None:
        """Validate ``addr`` (registry, magic, the slab's record, block boundary, header byte)
        and push it on its class's front cache (draining the cache first if it is full).  A due
        policy tick runs first."""
        if self._ctr[C_OPS] >= self._ctr[C_NEXT_TICK]:
            self._tick()
        self._free_fast(addr, self.secure)

    def free_now(self, addr: int) -> None:
        """:meth:`free_fast` without the tick (a realloc's second half: a due tick waits)."""
        self._free_fast(addr, self.secure)

    def _free_fast(self, addr: int, sec: int) -> int:
        """:meth:`free_fast` without the tick (``sec``: the secure flag, as in :meth:`_alloc`);
        returns 0 (an int is a cheaper error flag than ``void``).  The free takes effect
        (``C_OPS``) after every check and callback that can refuse it; only a direct free's
        (``front_cap`` 0) slab-empty event follows it."""
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
        slab = off >> SLAB_LG
        m = SS_META_WORD + slab * SLAB_META_WORDS
        cls = w32[m + M_CLASS]  # memory: checked before it indexes (stride and data start are the
        carved = w32[m + M_CARVED]  # kernel's own geometry; stride 0 refuses every block below)
        stride = self._str[cls] if cls < NUM_CLASSES else 0
        data = slab << SLAB_LG if slab else self.hdr
        if (w32[m + M_STATE] != SLAB_ACTIVE or off < data or (off - data) & (stride - 1)
                or off - data >= carved * stride or w8[off] != ALLOC_TAG | cls):
            self.slow.free_error(addr)
            return 0
        if not self.front_cap:
            return self._return_block(cls, idx, off, -1)
        n = self._fcn[cls]
        if n >= self.front_cap:
            # drain first, while this block is still live: callbacks during the drain must not
            # see it half freed, and an exception from one leaves it live
            self.drain(cls, self.drain_batch)
            n = self._fcn[cls]
        w8[off] = FREE_TAG | cls
        if sec:
            self._junk(idx, off, stride, 1)
        self._ctr[C_LIVE] -= 1
        self._ctr[C_OPS] += 1
        self._fc[cls, n] = (idx << 32) | off
        self._fcn[cls] = n + 1
        return 0

    def _tick(self) -> None:
        """At an operation's start once ``C_OPS`` reaches ``C_NEXT_TICK``: deliver signals held
        since (an operation boundary: a handler may raise), then the policy clock if it is due."""
        if self._ctr[C_DEFERRED]:
            self.slow.op_boundary()  # puts C_NEXT_TICK back to C_TICK_DUE once released
        if self._ctr[C_OPS] >= self._ctr[C_TICK_DUE]:
            self._ctr[C_TICK_DUE] = self._ctr[C_OPS] + self.tick_interval
            if not self._ctr[C_DEFERRED]:
                self._ctr[C_NEXT_TICK] = self._ctr[C_TICK_DUE]
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
            idx = h >> 32
            self._return_block(cls, idx, h - (idx << 32), top)

    def _reverse(self, cls: int, lo: int, hi: int) -> None:
        """Reverse front-cache entries ``lo..hi-1`` of class ``cls`` in place."""
        hi -= 1
        while lo < hi:
            h = self._fc[cls, lo]
            self._fc[cls, lo] = self._fc[cls, hi]
            self._fc[cls, hi] = h
            lo += 1
            hi -= 1

    def _return_block(self, cls: int, idx: int, off: int, top: int) -> int:
        """Push block ``off`` (class ``cls``) on its slab's free list, from the front cache (whose
        count becomes ``top``) or, ``top`` -1, freed directly.  Slab-partial is reported before
        the block moves, slab-empty (``used == 0``) after; counts cannot underflow.  Returns 0."""
        w32 = self._w32(idx)
        slab = off >> SLAB_LG
        m = SS_META_WORD + slab * SLAB_META_WORDS
        used = w32[m + M_USED]
        if used == 0 or w32[H_TOTAL_ACTIVE] == 0 or (used == 1 and w32[H_ACTIVE_SLABS] == 0):
            self.slow.corrupt_meta(idx, slab, "block return")
        used -= 1
        cap = w32[m + M_CAPACITY]
        quarter = cap >> 2
        if quarter == 0:
            quarter = 1
        # a full, unbound slab becomes "partial" once a quarter of it is free again, so a refill
        # from it is worth the slow-path call (one event per slab per cycle)
        cur = self._cs[cls] == idx and self._cl[cls] == slab
        if used and used == cap - quarter and not cur:
            if self._ctr[C_BATCH]:
                self._enqueue(EV_PARTIAL, idx, slab)
            else:
                self.slow.slab_partial(idx, slab)
        if top >= 0:
            self._fcn[cls] = top
        else:
            self._w8(idx)[off] = FREE_TAG | cls
            if self.secure:
                self._junk(idx, off, self._str[cls], 1)
            self._ctr[C_LIVE] -= 1
            self._ctr[C_OPS] += 1
        w32[(off + NEXT_LINK_OFFSET) >> 2] = (w32[m + M_FREELIST] ^ self.link_key
                                              ^ ((off << SECURE_LINK_SHIFT) & self.link_mix))
        w32[m + M_FREELIST] = off
        w32[m + M_USED] = used
        w32[H_TOTAL_ACTIVE] -= 1
        if used == 0:
            w32[H_ACTIVE_SLABS] -= 1
            if self._ctr[C_BATCH] > 1 and w32[H_TOTAL_ACTIVE]:  # not the superslab's last slab
                self._enqueue(EV_EMPTY_CURRENT if cur else EV_EMPTY, idx, slab)
            else:
                self.slow.slab_empty(idx, slab)
        return 0

    def _enqueue(self, kind: int, idx: int, slab: int) -> int:
        """Queue an event instead of calling back (``C_BATCH``; the slow path takes the queue
        before anything else it does, and at the batch's end).  The event is stored first and a
        queue it filled is delivered at once: a delivery that raises loses nothing.  Returns 0."""
        q = self._ctr[C_QUEUED]
        if q >= EVQ_CAP:  # (a batch starts with an empty queue, and a full one is delivered)
            raise RuntimeError("the kernel's event queue is full")
        self._evq[q, 0] = kind
        self._evq[q, 1] = idx
        self._evq[q, 2] = slab
        self._evq[q, 3] = self._ctr[C_OPS]
        self._ctr[C_QUEUED] = q + 1
        if q + 1 == EVQ_CAP:
            self.slow.flush_queue()
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
    def apply(self, ops: np.ndarray, slots: np.ndarray) -> int:
        """Replay an operation stream: ``ops`` is C-contiguous int64 ``(n, 3)`` rows ``(kind,
        slot, size)``; ``slots`` (C-contiguous uint64) holds the live address of each slot
        (0 = empty) and is updated in place.  A malloc writes ``size & 0xFF`` as the block's
        first byte (bench_random_mixed writes one byte too); a realloc of a tiny block to a tiny
        size with front caches on runs here (:meth:`_realloc_small`); other rows (large or Mid
        reallocs, ``OP_IDLE``, unknown kinds) go to the slow path's ``apply_other``.  Returns the
        rows applied.  A row is atomic: its slot changes when its op takes effect (``C_OPS``
        moves); ticks and held signals (:meth:`_tick`) run between rows.  If anything raises,
        the batch stops at a row boundary: ``self.applied`` rows are done (a free or realloc
        whose event callback raised after it took effect counts; realloc: ``realloc_result``)."""
        n = len(ops)
        self.applied = 0
        if n == 0:
            return 0
        o = _mv(ops, "q", [n, 3])
        sl = _mv(slots, "Q")
        nslots = len(slots)
        sec, tiny_max, realloc_ok = self.secure, self.tiny_max, self.front_cap > 0  # C: registers
        i = 0
        ops0 = self._ctr[C_OPS]  # (an interrupt before row 0 starts: nothing took effect)
        try:
            for i in range(n):
                ops0 = self._ctr[C_OPS]
                kind, slot, size = o[i, 0], o[i, 1], o[i, 2]
                if slot < 0 or slot >= nslots:  # C: slot is unsigned, one compare
                    raise TraceError(f"slot {o[i, 1]} out of range 0..{nslots - 1}")
                if ops0 >= self._ctr[C_NEXT_TICK]:
                    self._tick()
                if kind == OP_MALLOC:
                    if sl[slot]:
                        raise TraceError(f"malloc into occupied slot {slot}")
                    if 0 <= size <= tiny_max:  # malloc(), its tiny path inlined
                        p = self._alloc(self._lut[size], sec)
                        self._store_tiny_byte(p, size)
                        sl[slot] = p
                    else:  # large: the slow path, and write_byte (the page model sees the page)
                        p = self.slow.malloc_large(size)
                        sl[slot] = p
                        self.write_byte(p, size)
                elif kind == OP_FREE:
                    p = sl[slot]
                    if not p:
                        raise TraceError(f"free of empty slot {slot}")
                    self._free_fast(p, sec)
                    sl[slot] = 0
                elif kind == OP_REALLOC and 0 < size <= tiny_max and realloc_ok and sl[slot]:
                    p = self._realloc_small(sl[slot], size, sec)
                    sl[slot] = p if p else self.slow.apply_other(kind, sl[slot], size)
                else:
                    sl[slot] = self.slow.apply_other(kind, sl[slot], size)
        except BaseException as exc:
            done = i  # the row is read again: its fields need not stay live in the loop (C)
            kind, slot, size = o[i, 0], o[i, 1], o[i, 2]
            if self._ctr[C_OPS] != ops0:  # did the row take effect before the exception?
                if kind == OP_MALLOC:
                    done += 1
                elif kind == OP_FREE:  # the free took effect, then an event callback raised
                    sl[slot] = 0
                    done += 1
                elif kind == OP_REALLOC and (size == 0 or getattr(exc, "realloc_result", None)):
                    sl[slot] = getattr(exc, "realloc_result", 0) if size else 0  # likewise
                    done += 1
            self.applied = done
            raise
        self.applied = n
        return n

    def _realloc_small(self, addr: int, size: int, sec: int) -> int:
        """A realloc row to a tiny ``size`` (front caches on): the tiny block at ``addr`` stays
        if ``size`` maps to its class, else moves to a new block with its first ``min(usable,
        size)`` bytes (a malloc and a free, as ``Heap.realloc``).  Returns the address, or 0 with
        nothing done if ``addr`` is not a valid tiny block (the slow path handles it).  Atomic:
        callbacks (refill of the new class, drain of the old) run before the new block is taken;
        an exception leaves the old block live and takes none; the move itself calls nothing."""
        idx = self.lookup(addr)
        if idx < 0:
            return 0
        w32 = self._w32(idx)
        off = (addr & self.ss_mask) - BLOCK_HEADER
        if w32[H_MAGIC] != SS_MAGIC or off < 0:
            return 0
        slab = off >> SLAB_LG
        m = SS_META_WORD + slab * SLAB_META_WORDS
        cls = w32[m + M_CLASS]  # the same checks as _free_fast
        if cls >= NUM_CLASSES:
            return 0
        carved = w32[m + M_CARVED]
        stride = self._str[cls]
        data = slab << SLAB_LG if slab else self.hdr
        if (w32[m + M_STATE] != SLAB_ACTIVE or off < data or (off - data) & (stride - 1)
                or off - data >= carved * stride or self._w8(idx)[off] != ALLOC_TAG | cls):
            return 0
        new_cls = self._lut[size]
        if new_cls == cls:
            return addr
        while True:  # every callback first (each may change both caches: look again after one)
            if self._fcn[new_cls] == 0:
                self.refill(new_cls)
            elif self._fcn[cls] >= self.front_cap:
                self.drain(cls, self.drain_batch)
            else:
                break
        new = self._alloc(new_cls, sec)  # no refill, no callback from here on
        self._copy(new, addr, min(stride - BLOCK_HEADER, size))
        self._free_fast(addr, sec)  # the old class's cache has room: no drain
        return new

    def _copy(self, dst: int, src: int, n: int) -> int:
        """Copy ``n`` bytes from live tiny block ``src`` to ``dst`` (user addresses): ``memcpy``
        in C, the superslabs' memoryviews in Python.  Returns 0."""
        if cython.compiled:
            memcpy(cython.cast(cython.p_uchar, dst), cython.cast(cython.p_uchar, src), n)
            return 0
        d, s = dst & self.ss_mask, src & self.ss_mask
        self._w8(self.lookup(dst))[d:d + n] = self._w8(self.lookup(src))[s:s + n]
        return 0
