"""The resident-page model: the heap's own resident pages, kept exactly, as the kernel counts them.

The allocator knows every page it writes and every page it gives back, so it can keep the
heap's resident memory as a counter instead of sampling ``/proc/self/pagemap``.  That gives an
*exact* high-water mark (no peak is missed between samples) and exact time-weighted means, at
the cost of one byte of state per page and a check when a block is carved.

Superslab pages (one state byte per 4 KiB page, in the kernel's ``pstate`` table)::

    UNTOUCHED --write (carve, header, prefault)--> RESIDENT --MADV_FREE--> LAZY
        ^                                            |                       |
        +-------- MADV_DONTNEED / munmap ------------+----- write ----> RESIDENT
        +-------- MADV_PAGEOUT (lazy pages only) / MADV_DONTNEED / munmap ---+

* written: the header page when a superslab is formatted; a block's page when it is carved (a
  block never straddles a page: strides are powers of two <= 2048 and slab data starts are
  2048-aligned, so the tag, the free-list link and the user's bytes share one page); every page
  with ``ss_prefault`` (POPULATE_WRITE or TOUCH);
* given back: decommits (slab, superslab, cached superslab) page-inward, as the OS layer rounds
  them; unmaps; PAGEOUT (``force_reclaim``) drops lazy pages only (dirty anonymous pages stay:
  this machine type has no swap);
* LAZY pages are resident (pagemap: present) and counted as ``lazyfree_bytes`` (smaps LazyFree).

Mid regions and large blocks (outside superslabs, few pages each): a set of touched pages.
Written: the region's / block's header page; a block's first byte (replay); every page of a
block whose bytes were *exposed* through ``view()`` (and so ``realloc`` copies and ``calloc``),
which the model counts as written.  A view of a large or Mid block that is never written is
therefore counted as resident: the one place the model can be above the kernel.  Tests that
compare the model with pagemap write the views they take.

Figures (``Heap.resident()``; the ``resident_*`` keys of ``stats()``), all heap-own pages, never
the interpreter's:

* ``resident_bytes``, ``lazyfree_bytes``: now;
* ``resident_peak_bytes``: the most at any instant since the last reset;
* ``resident_mean_ops_bytes``: resident bytes averaged over operations since the reset;
* ``resident_mean_seconds_bytes``: averaged over wall time since the reset.

Exact under two conditions, both defaults: ``nohugepage`` (4 KiB pages only) and no memory
pressure (the kernel does not reclaim lazily freed pages on its own).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from . import constants as K

if TYPE_CHECKING:
    from .oslayer import Mapping
    from .state import KernelLike

__all__ = ["HOW_DROP", "HOW_LAZY", "HOW_RECLAIM", "HOW_TOUCH", "PageModel"]

#: ``Kernel.page_range`` actions.
HOW_TOUCH = 0  # written
HOW_DROP = 1  # MADV_DONTNEED or munmap
HOW_LAZY = 2  # MADV_FREE
HOW_RECLAIM = 3  # MADV_PAGEOUT: lazy pages go, dirty ones stay

_ADVICE = {"DONTNEED": HOW_DROP, "UNMAP": HOW_DROP, "FREE": HOW_LAZY, "PAGEOUT": HOW_RECLAIM,
           "POPULATE_WRITE": HOW_TOUCH}


class PageModel:
    """The heap's resident-page model (see the module docstring)."""

    def __init__(self, kernel: KernelLike) -> None:
        self.kernel = kernel
        self._extra: set[int] = set()  # touched page numbers (addr >> PAGE_SHIFT) outside superslabs
        self._superslabs: dict[int, int] = {}  # mapping window address -> superslab index

    def register(self, addr: int, idx: int) -> None:
        """The mapping at ``addr`` is superslab ``idx`` (its pages live in ``pstate``)."""
        self._superslabs[addr] = idx

    def observe(self, m: Mapping, advice: str, offset: int, length: int) -> None:
        """The OS layer's observer: an madvise that succeeded, or an unmap (``"UNMAP"``)."""
        how = _ADVICE.get(advice)
        if how is None:
            return  # NOHUGEPAGE, WILLNEED: no page changes state
        idx = self._superslabs.get(m.addr)
        if idx is not None:
            self.superslab(idx, offset, offset + length, how)
            if advice == "UNMAP":
                del self._superslabs[m.addr]
        elif how == HOW_DROP:
            self.forget(m.addr + offset, length)
        elif how == HOW_TOUCH:
            self.touch(m.addr + offset, length)
        # MADV_FREE / PAGEOUT outside superslabs: no policy advises Mid regions or large blocks

    # ------------------------------------------------------------------ superslab pages
    def superslab(self, idx: int, lo: int, hi: int, how: int) -> None:
        """Apply ``how`` to the pages of superslab ``idx`` between byte offsets ``lo`` and
        ``hi``: pages wholly inside for give-backs (the OS layer rounds inwards), every page
        touched for writes."""
        if how == HOW_TOUCH:
            first, last = lo >> K.PAGE_SHIFT, (hi + K.PAGE_SIZE - 1) >> K.PAGE_SHIFT
        else:
            first, last = (lo + K.PAGE_SIZE - 1) >> K.PAGE_SHIFT, hi >> K.PAGE_SHIFT
        if last > first:
            self.kernel.page_range(idx, first, last, how)

    def advised(self, idx: int, lo: int, hi: int, advice: str) -> None:
        """Superslab ``idx`` got ``madvise(advice)`` on ``[lo, hi)``."""
        how = _ADVICE.get(advice)
        if how is not None:
            self.superslab(idx, lo, hi, how)

    # ------------------------------------------------------------------ other mappings
    def touch(self, addr: int, length: int) -> None:
        """Bytes ``[addr, addr+length)`` of a Mid region or large block were written (or
        exposed to the user)."""
        if length <= 0:
            return
        new = 0
        extra = self._extra
        for pg in range(addr >> K.PAGE_SHIFT, ((addr + length - 1) >> K.PAGE_SHIFT) + 1):
            if pg not in extra:
                extra.add(pg)
                new += 1
        if new:
            self.kernel.res_adjust(new)

    def forget(self, addr: int, length: int) -> None:
        """The mapping ``[addr, addr+length)`` was unmapped."""
        gone = 0
        extra = self._extra
        for pg in range(addr >> K.PAGE_SHIFT, (addr + length + K.PAGE_SIZE - 1) >> K.PAGE_SHIFT):
            if pg in extra:
                extra.discard(pg)
                gone += 1
        if gone:
            self.kernel.res_adjust(-gone)

    # ------------------------------------------------------------------ figures
    def reset(self) -> None:
        """Start a new measurement phase: peak = now, means from now."""
        self.kernel.res_reset(time.monotonic_ns())

    def figures(self) -> dict[str, float]:
        """The model's figures in bytes (module docstring)."""
        c = self.kernel.counters
        now_ns = time.monotonic_ns()
        ops = int(c[K.C_OPS])
        res = int(c[K.C_RES])
        ops_area = int(c[K.C_RES_OPS_AREA]) + res * (ops - int(c[K.C_RES_LAST_OPS]))
        ns_area = int(c[K.C_RES_NS_AREA]) + res * (now_ns - int(c[K.C_RES_LAST_NS]))
        d_ops = ops - int(c[K.C_RES_SINCE_OPS])
        d_ns = now_ns - int(c[K.C_RES_SINCE_NS])
        page = K.PAGE_SIZE
        return {
            "resident_bytes": res * page,
            "lazyfree_bytes": int(c[K.C_LAZY]) * page,
            "resident_peak_bytes": max(int(c[K.C_RES_PEAK]), res) * page,
            "resident_mean_ops_bytes": (ops_area / d_ops if d_ops > 0 else res) * page,
            "resident_mean_seconds_bytes": (ns_area / d_ns if d_ns > 0 else res) * page,
            "resident_since_ops": d_ops,
            "resident_since_seconds": d_ns / 1e9,
        }
