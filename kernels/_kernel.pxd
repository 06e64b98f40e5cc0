# The C types of the hot path; the code is simalloc/_kernel_py.py (Cython pure Python mode).
#
# setup.py copies simalloc/_kernel_py.py to kernels/_kernel.py (generated, git-ignored) and
# compiles it as simalloc._kernel with this augmenting .pxd (staged as
# build/cython-pxd/simalloc/_kernel.pxd: Cython looks a module's .pxd up by qualified name).
# Only types live here: every value (layout constants, counter slots, op kinds) is assigned in
# the .py from simalloc/constants.py.  Hot methods are cpdef on a final class (direct C calls
# inside, the same names from Python); their locals are typed with @cython.locals.  The hot
# procedures have cdef int workers (_free_fast, _return_block): an int error flag is cheaper to
# check than a void function's (that costs a PyErr_Occurred call per operation).

cimport cython
from libc.stdint cimport int8_t, int32_t, int64_t, uint8_t, uint32_t, uint64_t

ctypedef uint8_t* u8p
ctypedef unsigned int* u32p  # uint32_t on every Linux ABI; cython.p_uint in the .py

# module-level names: C globals, values from simalloc.constants (assigned once, at import)
cdef int ALLOC_TAG, FREE_TAG, BLOCK_HEADER, NEXT_LINK_OFFSET, SLAB_LG, SLAB_META_WORDS
cdef int SS_META_OFFSET, NUM_CLASSES, N_COUNTERS
cdef int H_MAGIC, H_ACTIVE_SLABS, H_TOTAL_ACTIVE
cdef int M_FREELIST, M_USED, M_CARVED, M_CAPACITY, M_CLASS, M_STATE, M_STRIDE, M_DATA
cdef int C_OPS, C_LIVE, C_REFILLS, C_DRAINS, C_SLOW, C_NEXT_TICK
cdef int C_RES, C_LAZY, C_RES_PEAK, C_RES_OPS_AREA, C_RES_NS_AREA, C_RES_LAST_OPS, C_RES_LAST_NS
cdef int C_RES_SINCE_OPS, C_RES_SINCE_NS, PAGE_UNTOUCHED, PAGE_RESIDENT, PAGE_LAZY, PAGE_SHIFT
cdef object _monotonic_ns
cdef int64_t OP_MALLOC, OP_FREE
cdef uint32_t SS_MAGIC, SLAB_ACTIVE  # compared with u32 words
cdef int _META0
cdef int64_t _MASK32


@cython.final
cdef class Kernel:
    cdef public object slow
    cdef public int lg
    cdef public uint64_t ss_mask
    cdef public int front_cap, refill_batch, drain_batch
    cdef public int64_t tick_interval
    cdef public int tiny_max
    cdef public uint64_t reg_mask
    cdef public object ss_base, reg_key, reg_val, fc, fc_count, cur_ss, cur_slab, counters
    cdef public object lut, strides
    cdef uint64_t[::1] _base
    cdef uint64_t[::1] _rk
    cdef int32_t[::1] _rv
    cdef int64_t[:, ::1] _fc
    cdef int32_t[::1] _fcn
    cdef int32_t[::1] _cs
    cdef int32_t[::1] _cl
    cdef int64_t[::1] _ctr
    cdef int8_t[::1] _lut
    cdef list _v8, _v32
    cdef public int64_t pps
    cdef public object pstate
    cdef uint8_t[::1] _ps

    cdef void _touch_page(self, int64_t pi) except *
    @cython.locals(ctr=int64_t[::1], ops=int64_t, now=int64_t, res=int64_t)
    cdef void _res_change(self, int64_t delta) except *
    @cython.locals(base=int64_t, res=int64_t, pi=int64_t, st=uint8_t)
    cpdef void page_range(self, int idx, int64_t first, int64_t last, int how) except *
    cpdef void res_adjust(self, int64_t delta_pages) except *
    @cython.locals(ctr=int64_t[::1])
    cpdef void res_reset(self, int64_t now_ns) except *

    cdef inline u8p _w8(self, int idx) noexcept
    cdef inline u32p _w32(self, int idx) noexcept
    cdef inline void _store_byte(self, uint64_t addr, int64_t value) except *  # C: a store (tiny), else write_byte

    cpdef void attach(self, int idx, uint64_t base, window) except *
    cpdef void detach(self, int idx) except *

    cpdef void bind(self, int cls, int idx, int slab) noexcept
    cpdef void unbind(self, int cls) noexcept

    @cython.locals(base=uint64_t, mask=uint64_t, k=uint64_t, key=uint64_t)
    cpdef int lookup(self, uint64_t addr) noexcept

    @cython.locals(n=int, h=int64_t, idx=int, off=uint32_t, w8=u8p)
    cpdef uint64_t alloc_fast(self, int cls) except? 0

    cpdef uint64_t malloc(self, int64_t size) except? 0

    @cython.locals(got=int, want=int, idx=int64_t, slab=int, m=int, head=uint32_t,
                   carved=uint32_t, off=uint32_t, used=uint32_t, w32=u32p, w8=u8p, pi=int64_t)
    cpdef void refill(self, int cls) except *

    cpdef void free_fast(self, uint64_t addr) except *
    @cython.locals(idx=int64_t, w32=u32p, w8=u8p, off=int64_t, m=int, rel=int64_t,
                   stride=uint32_t, cls=int, n=int)
    cdef int _free_fast(self, uint64_t addr) except -1

    cdef void _tick(self) except *

    @cython.locals(n=int, i=int, top=int, h=int64_t)
    cpdef void drain(self, int cls, int count) except *

    @cython.locals(h=int64_t)
    cdef void _reverse(self, int cls, int lo, int hi) noexcept

    cpdef void return_block(self, int cls, int idx, uint32_t off) except *
    @cython.locals(w32=u32p, slab=int, m=int, used=uint32_t, cap=uint32_t, quarter=uint32_t)
    cdef int _return_block(self, int cls, int idx, uint32_t off) except -1

    @cython.locals(idx=int)
    cpdef void write_byte(self, uint64_t addr, int64_t value) except *

    @cython.locals(o=int64_t[:, ::1], sl=uint64_t[::1], n=Py_ssize_t, nslots=Py_ssize_t,
                   i=Py_ssize_t, kind=int64_t, slot=int64_t, size=int64_t, p=uint64_t)
    cpdef apply(self, ops, slots)

    @cython.locals(sl=uint64_t[::1], i=Py_ssize_t, freed=int64_t, p=uint64_t)
    cpdef int64_t drain_slots(self, slots) except -1
