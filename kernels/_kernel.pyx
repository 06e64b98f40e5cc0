# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The hot path in C: the Cython twin of ``simalloc/_kernel_py.py`` (compiled to ``simalloc._kernel``).

Same class name, same method names, same storage, same decisions.  The only difference is that
memory is reached through raw pointers (``ss_base[idx] + offset``) instead of memoryviews, and
that whole operation streams (``apply``, ``run_mixed``, ``drain_slots``) loop in C, returning to
Python only for slow-path events (the heap's ``refill_slow``, ``slab_empty``, ``slab_partial``,
``free_slow`` / ``free_error``, ``malloc_large``, ``tick``).

Read ``_kernel_py.py`` for the commented logic; keep the two in step (the parity test runs both
on the same streams and compares every decision).
"""

cimport cython
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport int8_t, int32_t, int64_t, uint8_t, uint32_t, uint64_t

import numpy as np

from simalloc.errors import TraceError

KERNEL_NAME = "cython"

# Layout constants (must match simalloc/constants.py; checked in Kernel.__init__).
cdef enum:
    ALLOC_TAG = 0xA0
    FREE_TAG = 0xF0
    BLOCK_HEADER = 1
    SS_MAGIC = 0x5353504C
    META0 = 16
    META_WORDS = 8
    SLAB_LG = 16
    H_MAGIC = 0
    H_ACTIVE_SLABS = 4
    H_TOTAL_ACTIVE = 5
    M_FREELIST = 0
    M_USED = 1
    M_CARVED = 2
    M_CAPACITY = 3
    M_CLASS = 4
    M_STATE = 5
    M_STRIDE = 6
    M_DATA = 7
    SLAB_ACTIVE = 1
    NUM_CLASSES = 8
    OP_MALLOC = 0
    OP_FREE = 1
    C_OPS = 0
    C_LIVE = 1
    C_REFILLS = 2
    C_DRAINS = 3
    C_SLOW = 4
    C_NEXT_TICK = 5
    N_COUNTERS = 8



@cython.final
cdef class Kernel:
    """Hot-path state and operations of one heap (C twin of ``_kernel_py.Kernel``)."""

    cdef public object slow
    cdef public int lg
    cdef public uint64_t ss_mask
    cdef public int front_cap, refill_batch, drain_batch
    cdef public int64_t tick_interval
    cdef public int tiny_max
    cdef public uint64_t reg_mask
    cdef public object ss_base, reg_key, reg_val, fc, fc_count, cur_ss, cur_slab, counters, lut, strides
    cdef public str name
    cdef uint64_t[::1] _base
    cdef uint64_t[::1] _rk
    cdef int32_t[::1] _rv
    cdef int64_t[:, ::1] _fc
    cdef int32_t[::1] _fcn
    cdef int32_t[::1] _cs
    cdef int32_t[::1] _cl
    cdef int64_t[::1] _ctr
    cdef int8_t[::1] _lut

    def __init__(self, slow, int lg, int max_superslabs, int front_cap, int refill_batch,
                 int drain_batch, lut, strides, tick_interval):
        from simalloc import constants as K
        assert (K.ALLOC_TAG, K.FREE_TAG, K.SS_MAGIC, K.SS_META_OFFSET // 4, K.SLAB_META_WORDS,
                K.SLAB_LG, K.NUM_CLASSES) == (ALLOC_TAG, FREE_TAG, SS_MAGIC, META0, META_WORDS,
                                              SLAB_LG, NUM_CLASSES), "kernel layout out of date"
        self.name = KERNEL_NAME
        self.slow = slow
        self.lg = lg
        self.ss_mask = (<uint64_t>1 << lg) - 1
        self.front_cap = front_cap
        self.refill_batch = refill_batch
        self.drain_batch = drain_batch
        self.tick_interval = tick_interval
        self.tiny_max = len(lut) - 1
        self.ss_base = np.zeros(max_superslabs, dtype=np.uint64)
        regsize = 1
        while regsize < 2 * max_superslabs:
            regsize <<= 1
        self.reg_mask = regsize - 1
        self.reg_key = np.zeros(regsize, dtype=np.uint64)
        self.reg_val = np.full(regsize, -1, dtype=np.int32)
        self.fc = np.zeros((NUM_CLASSES, max(front_cap, 1)), dtype=np.int64)
        self.fc_count = np.zeros(NUM_CLASSES, dtype=np.int32)
        self.cur_ss = np.full(NUM_CLASSES, -1, dtype=np.int32)
        self.cur_slab = np.full(NUM_CLASSES, -1, dtype=np.int32)
        self.counters = np.zeros(N_COUNTERS, dtype=np.int64)
        self.counters[C_NEXT_TICK] = tick_interval if tick_interval > 0 else 2**62
        self.lut = np.ascontiguousarray(lut, dtype=np.int8)
        self.strides = np.asarray(strides, dtype=np.int32)
        self._base = self.ss_base
        self._rk = self.reg_key
        self._rv = self.reg_val
        self._fc = self.fc
        self._fcn = self.fc_count
        self._cs = self.cur_ss
        self._cl = self.cur_slab
        self._ctr = self.counters
        self._lut = self.lut

    # ------------------------------------------------------------------ superslab binding
    def attach(self, int idx, uint64_t base, window):
        self._base[idx] = base

    def detach(self, int idx):
        self._base[idx] = 0

    def release(self):
        self._base[:] = 0

    # ------------------------------------------------------------------ registry
    cdef inline int _lookup(self, uint64_t addr) noexcept:
        cdef uint64_t base = addr & ~self.ss_mask
        cdef uint64_t k = (base >> self.lg) & self.reg_mask
        cdef uint64_t key
        while True:
            key = self._rk[k]
            if key == base:
                return self._rv[k]
            if key == 0:
                return -1
            k = (k + 1) & self.reg_mask

    def lookup(self, uint64_t addr):
        return self._lookup(addr)

    cdef inline uint32_t* _w32(self, int idx) noexcept:
        return <uint32_t*><size_t>self._base[idx]

    cdef inline uint8_t* _w8(self, int idx) noexcept:
        return <uint8_t*><size_t>self._base[idx]

    # ------------------------------------------------------------------ allocation
    cdef int _tick(self) except -1:
        self._ctr[C_NEXT_TICK] = self._ctr[C_OPS] + self.tick_interval
        self.slow.tick()
        return 0

    cdef uint64_t _alloc_fast(self, int cls) except? 0:
        cdef int n = self._fcn[cls]
        cdef int64_t h
        cdef int idx
        cdef uint32_t off
        cdef uint8_t* w8
        if n == 0:
            self._refill(cls)
            n = self._fcn[cls]
        n -= 1
        self._fcn[cls] = n
        h = self._fc[cls, n]
        idx = <int>(h >> 32)
        off = <uint32_t>h
        w8 = self._w8(idx)
        if w8[off] != (FREE_TAG | cls):
            self._fcn[cls] = n + 1
            self.slow.corrupt_block(idx, off, "front cache")
            return 0
        w8[off] = ALLOC_TAG | cls
        self._ctr[C_LIVE] += 1
        self._ctr[C_OPS] += 1
        if self._ctr[C_OPS] >= self._ctr[C_NEXT_TICK]:
            self._tick()
        return self._base[idx] + off + BLOCK_HEADER

    def alloc_fast(self, int cls):
        return self._alloc_fast(cls)

    cdef uint64_t _malloc(self, int64_t size) except? 0:
        if 0 <= size <= self.tiny_max:
            return self._alloc_fast(self._lut[size])
        return <uint64_t>self.slow.malloc_large(size)

    def malloc(self, int64_t size):
        return self._malloc(size)

    cdef int _refill(self, int cls) except -1:
        cdef int got = 0
        cdef int want = min(self.refill_batch, self.front_cap)
        cdef int idx, slab, m
        cdef uint32_t head, carved, off, used
        cdef uint32_t* w32
        cdef uint8_t* w8
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
            m = META0 + slab * META_WORDS
            while got < want:
                head = w32[m + M_FREELIST]
                if head:
                    if head > self.ss_mask or w8[head] != (FREE_TAG | cls):
                        self._fcn[cls] = got
                        self.slow.corrupt_block(idx, head, "free list")
                        return -1
                    w32[m + M_FREELIST] = w32[(head + 4) >> 2]
                    off = head
                else:
                    carved = w32[m + M_CARVED]
                    if carved >= w32[m + M_CAPACITY]:
                        break
                    off = w32[m + M_DATA] + carved * w32[m + M_STRIDE]
                    w32[m + M_CARVED] = carved + 1
                    w8[off] = FREE_TAG | cls
                used = w32[m + M_USED] + 1
                w32[m + M_USED] = used
                if used == 1:
                    w32[H_ACTIVE_SLABS] += 1
                w32[H_TOTAL_ACTIVE] += 1
                self._fc[cls, got] = (<int64_t>idx << 32) | off
                got += 1
            if got < want:
                self._cs[cls] = -1
                self._cl[cls] = -1
        self._fcn[cls] = got
        return 0

    def refill(self, int cls):
        self._refill(cls)

    # ------------------------------------------------------------------ free
    cdef int _free_fast(self, uint64_t addr) except -1:
        cdef int idx = self._lookup(addr)
        cdef uint32_t* w32
        cdef uint8_t* w8
        cdef int64_t off, rel
        cdef int m, cls, n
        cdef uint32_t stride
        if idx < 0:
            self.slow.free_slow(addr)
            return 0
        w32 = self._w32(idx)
        w8 = self._w8(idx)
        off = <int64_t>(addr & self.ss_mask) - BLOCK_HEADER
        if w32[H_MAGIC] != SS_MAGIC or off < 0:
            self.slow.free_error(addr)
            return 0
        m = META0 + <int>(off >> SLAB_LG) * META_WORDS
        rel = off - <int64_t>w32[m + M_DATA]
        stride = w32[m + M_STRIDE]
        cls = <int>w32[m + M_CLASS]
        if (w32[m + M_STATE] != SLAB_ACTIVE or rel < 0 or rel & (stride - 1)
                or rel >= <int64_t>w32[m + M_CARVED] * stride or w8[off] != (ALLOC_TAG | cls)):
            self.slow.free_error(addr)
            return 0
        self._ctr[C_OPS] += 1
        n = self._fcn[cls]
        if n >= self.front_cap:
            # drain first, while this block is still live (callbacks may check() the heap)
            self._drain(cls, self.drain_batch)
            n = self._fcn[cls]
        w8[off] = FREE_TAG | cls
        self._ctr[C_LIVE] -= 1
        if self.front_cap:
            self._fc[cls, n] = (<int64_t>idx << 32) | off
            self._fcn[cls] = n + 1
        else:
            self._return_block(cls, idx, <uint32_t>off)
        if self._ctr[C_OPS] >= self._ctr[C_NEXT_TICK]:
            self._tick()
        return 0

    def free_fast(self, uint64_t addr):
        self._free_fast(addr)

    cdef int _drain(self, int cls, int count) except -1:
        cdef int n = self._fcn[cls]
        cdef int i
        cdef int64_t h
        cdef int64_t old[4096]
        cdef int64_t* buf = old
        if count > n:
            count = n
        if count > 4096:
            buf = <int64_t*>PyMem_Malloc(count * sizeof(int64_t))
            if buf == NULL:
                raise MemoryError()
        self._ctr[C_DRAINS] += 1
        try:
            for i in range(count):
                buf[i] = self._fc[cls, i]
            for i in range(n - count):
                self._fc[cls, i] = self._fc[cls, i + count]
            # drained blocks go on top (oldest last) and leave one at a time, so the cache
            # holds every block not yet returned when a slow-path callback looks at it
            for i in range(count):
                self._fc[cls, n - 1 - i] = buf[i]
            for i in range(count):
                h = buf[i]
                self._fcn[cls] = n - 1 - i
                self._return_block(cls, <int>(h >> 32), <uint32_t>h)
        finally:
            if buf != old:
                PyMem_Free(buf)
        return 0

    def drain(self, int cls, int count):
        self._drain(cls, count)

    cdef int _return_block(self, int cls, int idx, uint32_t off) except -1:
        cdef uint32_t* w32 = self._w32(idx)
        cdef int slab = <int>(off >> SLAB_LG)
        cdef int m = META0 + slab * META_WORDS
        cdef uint32_t used, cap, thr
        w32[(off + 4) >> 2] = w32[m + M_FREELIST]
        w32[m + M_FREELIST] = off
        used = w32[m + M_USED] - 1
        w32[m + M_USED] = used
        w32[H_TOTAL_ACTIVE] -= 1
        if used == 0:
            w32[H_ACTIVE_SLABS] -= 1
            self.slow.slab_empty(idx, slab)
        else:
            cap = w32[m + M_CAPACITY]
            thr = cap >> 2
            if thr == 0:
                thr = 1
            if used == cap - thr and (self._cs[cls] != idx or self._cl[cls] != slab):
                self.slow.slab_partial(idx, slab)
        return 0

    def return_block(self, int cls, int idx, uint32_t off):
        self._return_block(cls, idx, off)

    def flush(self):
        cdef int cls
        for cls in range(NUM_CLASSES):
            if self._fcn[cls]:
                self._drain(cls, self._fcn[cls])

    # ------------------------------------------------------------------ memory access
    cdef int _write_byte(self, uint64_t addr, int value) except -1:
        cdef int idx = self._lookup(addr)
        if idx < 0:
            self.slow.write_byte_slow(addr, value)
        else:
            self._w8(idx)[addr & self.ss_mask] = <uint8_t>(value & 0xFF)
        return 0

    def write_byte(self, uint64_t addr, int value):
        self._write_byte(addr, value)

    # ------------------------------------------------------------------ batch entry points
    def apply(self, ops, slots):
        """Replay ``ops`` (int64 rows kind, slot, size) with ``slots`` (uint64, in place)."""
        cdef int64_t[:, ::1] o = ops
        cdef uint64_t[::1] sl = slots
        cdef Py_ssize_t i, n = o.shape[0], nslots = sl.shape[0]
        cdef int64_t kind, slot, size
        cdef uint64_t p
        for i in range(n):
            kind = o[i, 0]
            slot = o[i, 1]
            size = o[i, 2]
            if slot < 0 or slot >= nslots:
                raise TraceError(f"slot {slot} out of range 0..{nslots - 1}")
            if kind == OP_MALLOC:
                if sl[slot]:
                    raise TraceError(f"malloc into occupied slot {slot}")
                p = self._malloc(size)
                (<uint8_t*><size_t>p)[0] = <uint8_t>(size & 0xFF)  # = _write_byte: p is live
                sl[slot] = p
            elif kind == OP_FREE:
                p = sl[slot]
                if not p:
                    raise TraceError(f"free of empty slot {slot}")
                self._free_fast(p)
                sl[slot] = 0
            else:
                sl[slot] = self.slow.apply_other(kind, sl[slot], size)

    def run_mixed(self, int64_t cycles, int64_t ws, uint64_t seed, slots):
        """bench_random_mixed's loop in C (see ``_kernel_py.Kernel.run_mixed``)."""
        cdef uint64_t[::1] sl = slots
        cdef uint32_t s = <uint32_t>seed
        cdef int64_t c, i
        cdef uint64_t p
        if ws <= 0 or ws > sl.shape[0]:
            raise TraceError(f"ws={ws} must be in 1..{sl.shape[0]}")
        for c in range(cycles):
            s ^= s << 13
            s ^= s >> 17
            s ^= s << 5
            i = s % ws
            p = sl[i]
            if p:
                self._free_fast(p)
                sl[i] = 0
            else:
                p = self._malloc(16 + (s & 0x3FF))
                (<uint8_t*><size_t>p)[0] = <uint8_t>(s & 0xFF)  # = _write_byte: p is live
                sl[i] = p
        return s

    def drain_slots(self, slots):
        cdef uint64_t[::1] sl = slots
        cdef Py_ssize_t i
        cdef int64_t freed = 0
        cdef uint64_t p
        for i in range(sl.shape[0]):
            p = sl[i]
            if p:
                self._free_fast(p)
                sl[i] = 0
                freed += 1
        return freed
