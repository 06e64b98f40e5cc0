"""bench_random_mixed's operation stream, generated in chunks of int64 rows.

ONE source for two builds (Cython "pure Python mode", like ``simalloc/_kernel_py.py``): imported
as ``simalloc.workloads._mixedgen_py`` this is plain Python; ``setup.py`` compiles a copy of it
with the C types of ``kernels/_mixedgen.pxd`` to ``simalloc.workloads._mixedgen``, about 100x
faster, which :mod:`simalloc.workloads.mixed` uses when it was built.

Each cycle: ``r = xorshift32(state)`` (shifts 13/17/5 on 32 bits), slot ``r % ws``; if the slot
is occupied the row is ``(OP_FREE, slot, 0)``, else ``(OP_MALLOC, slot, 16 + (r & 0x3FF))``.
The generator keeps its own occupancy (one byte per slot), so rows can be generated ahead of
their replay; it is the stream of ``simalloc/native/driver.c`` and of the reference
:func:`simalloc.workloads.mixed.mixed_ops`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

try:
    import cython
except ImportError:  # Cython is a build requirement only; uncompiled code just asks `compiled`
    from types import SimpleNamespace

    cython = SimpleNamespace(compiled=False)

if not cython.compiled:  # compiled, these are C constants generated from constants.py (setup.py)
    from ..constants import OP_FREE, OP_MALLOC

__all__ = ["COMPILED", "MIN_SIZE", "SIZE_MASK", "MixedGen"]

#: True in the compiled module.
COMPILED = bool(cython.compiled)
#: bench_random_mixed's request size: ``MIN_SIZE + (r & SIZE_MASK)`` bytes (16..1039).
MIN_SIZE = 16
SIZE_MASK = 0x3FF
_MASK32 = 0xFFFFFFFF


def _bytes(arr: Any) -> memoryview:
    """A flat byte view of a C-contiguous numpy array's buffer."""
    return memoryview(arr).cast("B")


class MixedGen:
    """The Mixed stream after xorshift32 state ``state`` over ``ws`` slots whose occupancy is
    ``occ`` (one value per slot, nonzero = occupied; default: all empty).

    ``state`` (the last output) and ``occ`` (uint8 array) advance with every cycle generated."""

    def __init__(self, ws: int, state: int, occ: np.ndarray | None = None) -> None:
        if not 0 < ws <= _MASK32:
            raise ValueError(f"ws={ws} must be in 1..{_MASK32}")
        self.ws = ws
        self.state = state & _MASK32
        self.occ = np.zeros(ws, dtype=np.uint8)
        if occ is not None:
            if len(occ) != ws:
                raise ValueError(f"occupancy has {len(occ)} slots, expected ws={ws}")
            self.occ[:] = np.asarray(occ) != 0
        self._occ = _bytes(self.occ)

    def fill(self, rows: np.ndarray, n: int) -> int:
        """Write the next ``n`` cycles into ``rows[:n]`` (C-contiguous int64, shape ``(m, 3)``,
        ``n <= m``) as ``(kind, slot, size)``; returns ``n``."""
        m = len(rows)
        if n < 0 or n > m:
            raise ValueError(f"n={n} must be in 0..{m}")
        if n == 0:
            return 0
        out = _bytes(rows).cast("q", [m, 3])
        occ = self._occ
        # The loop's constants as locals.  In C the mask is then a known all-ones uint32 and
        # compiles to nothing (xorshift's 6-op chain is this loop's critical path), and the
        # others stay in registers (a byte store to occ may alias any global).
        mask = 0xFFFFFFFF
        size_mask = SIZE_MASK
        min_size = MIN_SIZE
        op_malloc = OP_MALLOC
        op_step = OP_FREE - OP_MALLOC
        s = self.state
        ws = self.ws
        for i in range(n):
            s = (s ^ (s << 13)) & mask
            s ^= s >> 17
            s = (s ^ (s << 5)) & mask
            j = s % ws
            # branch-free: the kernel's apply branches on the kind; a second unpredictable
            # branch here would cost as much as the rest of the generator
            occupied = occ[j]
            occ[j] = occupied ^ 1
            out[i, 0] = op_malloc + occupied * op_step
            out[i, 1] = j
            out[i, 2] = (min_size + (s & size_mask)) * (occupied ^ 1)
        self.state = s
        return n

    def advance(self, n: int) -> None:
        """Skip ``n`` cycles: the state and the occupancy move on, no rows are written."""
        occ = self._occ
        mask = 0xFFFFFFFF
        s = self.state
        ws = self.ws
        for _i in range(n):
            s = (s ^ (s << 13)) & mask
            s ^= s >> 17
            s = (s ^ (s << 5)) & mask
            occ[s % ws] ^= 1
        self.state = s
