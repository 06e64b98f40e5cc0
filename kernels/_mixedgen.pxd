# The C types of the Mixed stream generator; the code is simalloc/workloads/_mixedgen_py.py
# (Cython pure Python mode, compiled as simalloc.workloads._mixedgen by setup.py from the
# generated copy kernels/_mixedgen.py).  Values are assigned in the .py, except the constants of
# simalloc/constants.py (OP_MALLOC, OP_FREE), which are compiled in (see kernels/_kernel.pxd).

cimport cython
from libc.stdint cimport int64_t, uint8_t, uint32_t

include "simalloc_layout.pxi"

cdef uint32_t MIN_SIZE, SIZE_MASK, _MASK32


@cython.final
cdef class MixedGen:
    cdef public uint32_t ws, state
    cdef public object occ
    cdef uint8_t[::1] _occ

    @cython.locals(m=Py_ssize_t, out=int64_t[:, ::1], occ=uint8_t[::1], mask=uint32_t,
                   size_mask=uint32_t, min_size=int64_t, op_malloc=int64_t, op_step=int64_t,
                   s=uint32_t, ws=uint32_t, i=Py_ssize_t, j=uint32_t, occupied=int64_t)
    cpdef Py_ssize_t fill(self, rows, Py_ssize_t n) except -1

    @cython.locals(occ=uint8_t[::1], mask=uint32_t, s=uint32_t, ws=uint32_t, _i=Py_ssize_t)
    cpdef void advance(self, Py_ssize_t n) except *
