"""The resident-page model: the heap's own resident pages, kept exactly, as the kernel counts them.

The allocator knows every page it writes and every page it gives back, so it can keep the
heap's resident memory as a counter instead of sampling ``/proc/self/pagemap``.  That gives an
*exact* high-water mark (no peak is missed between samples) and exact time-weighted means, at
the cost of one byte of state per page and a check when a block is carved.  The same state
says what a release costs later: a page written again after it was given back is a *refault*.

Superslab pages (one state byte per 4 KiB page, in the kernel's ``pstate`` table)::

    UNTOUCHED --write--> RESIDENT --MADV_FREE--> LAZY --PAGEOUT/reclaim, DONTNEED--> RELEASED
                          ^  ^  |                  |                                   |
                          |  |  +---------------------------MADV_DONTNEED------------->|
                          |  +--write: a RESCUE ---+                                   |
                          +-------------------------------------write: a REFAULT-------+

    state      | write                | DONTNEED | FREE     | PAGEOUT  | munmap
    -----------+----------------------+----------+----------+----------+----------
    UNTOUCHED  | RESIDENT             | UNTOUCHED| UNTOUCHED| UNTOUCHED| UNTOUCHED
    RESIDENT   | RESIDENT             | RELEASED | LAZY     | RESIDENT | UNTOUCHED
    LAZY       | RESIDENT (a rescue)  | RELEASED | LAZY     | RELEASED | UNTOUCHED
    RELEASED   | RESIDENT (a refault) | RELEASED | RELEASED | RELEASED | UNTOUCHED

* written: the header page when a superslab is formatted; a block's page when it is carved (a
  block never straddles a page: strides are powers of two <= 2048 and slab data starts are
  2048-aligned, so the tag, the free-list link and the user's bytes share one page); every page
  with ``ss_prefault`` (POPULATE_WRITE or TOUCH);
* given back: decommits (slab, superslab, cached superslab) page-inward, as the OS layer rounds
  them; unmaps; PAGEOUT (``force_reclaim``) drops lazy pages only (dirty anonymous pages stay:
  this machine type has no swap);
* LAZY pages are resident (pagemap: present) and counted as ``lazyfree_bytes`` (smaps LazyFree).

**Refaults** (``stats()["refaults"]``, ``["refault_bytes"]``; counter ``C_REFAULTS``): writes to
a RELEASED page, i.e. a page the heap had written, then gave back with MADV_DONTNEED, or with
MADV_FREE after which the kernel reclaimed it (MADV_PAGEOUT, ``Heap.force_reclaim``), and now
writes again -- by carving a block into it, formatting a header in it, or prefaulting it
(POPULATE_WRITE / TOUCH).  Each is one minor page fault and one zeroed page that the release
caused (tests/test_refaults.py checks the count against the process's ``ru_minflt``).  Not
refaults:

* the first write of a page never written (UNTOUCHED), even one that was "given back" unwritten;
* writes into a fresh mapping, also after a munmap of the same superslab slot or address
  (munmap forgets the pages: the next mapping's faults are first touches, the cost of mmap);
* **rescues** (``stats()["rescues"]``, counter ``C_RESCUES``): a write to a LAZY page, given back
  with MADV_FREE and not yet reclaimed.  The page is still mapped and writable, so the write
  takes no fault and the page simply stops being lazily freed: MADV_FREE's advantage over
  MADV_DONTNEED is exactly the rescues.  (Under memory pressure the kernel may reclaim lazy
  pages on its own; the model cannot see that, see "exact under two conditions" below.)

Counts are per page, at the first write after the release (later writes of the same page are
free), and all-time like the syscall counters (a run reports its timed part's delta).  Faults
can be more than refaults: a *read* of a released page before its first write maps the shared
zero page, and the write then copies it -- two minor faults for one refault.  The carving and
header writes and the TOUCH prefault are plain stores (one fault each, as POPULATE_WRITE's),
as measured in tests/test_refaults.py.

Mid regions and large blocks (outside superslabs, few pages each): a set of touched pages.
Written: the region's / block's header page; a block's first byte (replay); every page of a
block whose bytes were *exposed* through ``view()`` (and so ``realloc`` copies and ``calloc``),
which the model counts as written.  A view of a large or Mid block that is never written is
therefore counted as resident: the one place the model can be above the kernel.  Tests that
compare the model with pagemap write the views they take.  No policy gives these pages back
except by munmap (which is not a refault), so today they never refault; a MADV_DONTNEED of
written pages of a live Mid region or large block would make them RELEASED (a second set)
and a later touch a refault, as for superslabs.

Figures (``Heap.resident()``; the ``resident_*`` keys of ``stats()``), all heap-own pages, never
the interpreter's:

* ``resident_bytes``, ``lazyfree_bytes``: now;
* ``resident_peak_bytes``: the most at any instant since the last reset;
* ``resident_mean_ops_bytes``: resident bytes averaged over operations since the reset;
* ``resident_mean_seconds_bytes``: averaged over wall time since the reset;
* ``resident_mean_virtual_bytes``: averaged over *virtual* time since the reset (each op lasts
  ``ns_per_op``; idle spans, ``Heap.idle`` and ``OP_IDLE`` rows, last their length at the
  resident figure they had -- a background policy's ticks split a span).  The figure to read
  for programs that go idle: the ops mean gives an idle hour no weight at all;
* ``refaults`` / ``refault_bytes``, ``rescues`` / ``rescued_bytes``: all time (above);
  ``refaults_since_reset`` / ``rescues_since_reset``: since the reset (a run's timed part);
  :meth:`PageModel.refault_counts` reads just the two all-time counters.

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

__all__ = ["HOW_DROP", "HOW_LAZY", "HOW_RECLAIM", "HOW_TOUCH", "HOW_UNMAP", "PageModel"]

#: ``Kernel.page_range`` actions.
HOW_TOUCH = 0  # written (a RELEASED page refaults, a LAZY one is rescued)
HOW_DROP = 1  # MADV_DONTNEED: written pages become RELEASED
HOW_LAZY = 2  # MADV_FREE
HOW_RECLAIM = 3  # MADV_PAGEOUT: lazy pages go (RELEASED), dirty ones stay
HOW_UNMAP = 4  # munmap: every page UNTOUCHED (a new mapping is fresh)

_ADVICE = {"DONTNEED": HOW_DROP, "UNMAP": HOW_UNMAP, "FREE": HOW_LAZY, "PAGEOUT": HOW_RECLAIM,
           "POPULATE_WRITE": HOW_TOUCH}


class PageModel:
    """The heap's resident-page model (see the module docstring)."""

    def __init__(self, kernel: KernelLike) -> None:
        self.kernel = kernel
        self._extra: set[int] = set()  # touched page numbers (addr >> PAGE_SHIFT) outside superslabs
        self._released: set[int] = set()  # pages written, then given back (DONTNEED): not in _extra
        self._superslabs: dict[int, int] = {}  # mapping window address -> superslab index
        self._since = (0, 0)  # (refaults, rescues) at the last reset
        self.ns_per_op = 0.0  # the heap's virtual ns per operation (HeapState sets it)
        self._idle_area = 0  # resident pages x idle ns since the last reset
        self._idle_ns = 0  # idle ns since the last reset

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
        elif how == HOW_UNMAP or (how == HOW_DROP and m.view is None):
            # munmap; or the DONTNEED standing in for an unmap deferred by a user's view (the
            # mapping is already released): the pages are forgotten, never RELEASED
            self.forget(m.addr + offset, length)
        elif how == HOW_DROP:
            self.forget(m.addr + offset, length, released=True)
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
        new = refaults = 0
        extra, released = self._extra, self._released
        for pg in range(addr >> K.PAGE_SHIFT, ((addr + length - 1) >> K.PAGE_SHIFT) + 1):
            if pg not in extra:
                extra.add(pg)
                new += 1
                if pg in released:
                    released.discard(pg)
                    refaults += 1
        if refaults:
            self.kernel.counters[K.C_REFAULTS] += refaults
        if new:
            self.kernel.res_adjust(new)

    def forget(self, addr: int, length: int, released: bool = False) -> None:
        """The mapping ``[addr, addr+length)`` was unmapped, or (``released``) its pages wholly
        inside were given back with MADV_DONTNEED: the written ones become RELEASED."""
        gone = 0
        extra, rel = self._extra, self._released
        if released:
            first, last = (addr + K.PAGE_SIZE - 1) >> K.PAGE_SHIFT, (addr + length) >> K.PAGE_SHIFT
        else:
            first, last = addr >> K.PAGE_SHIFT, (addr + length + K.PAGE_SIZE - 1) >> K.PAGE_SHIFT
        for pg in range(first, last):
            if pg in extra:
                extra.discard(pg)
                gone += 1
                if released:
                    rel.add(pg)
            elif not released:
                rel.discard(pg)
        if gone:
            self.kernel.res_adjust(-gone)

    # ------------------------------------------------------------------ figures
    def refault_counts(self) -> tuple[int, int]:
        """``(refaults, rescues)`` in pages, all time: two counter reads (cheap enough for a
        decision-log record or a per-tick sample).  Bytes: multiply by ``PAGE_SIZE``."""
        c = self.kernel.counters
        return int(c[K.C_REFAULTS]), int(c[K.C_RESCUES])

    def reset(self) -> None:
        """Start a new measurement phase: peak = now, means and ``*_since_reset`` counts from now."""
        self.kernel.res_reset(time.monotonic_ns())
        self._since = self.refault_counts()
        self._idle_area = self._idle_ns = 0

    def idled(self, ns: int) -> None:
        """``ns`` of virtual time passed with no operation at the current resident figure."""
        if ns > 0:
            self._idle_area += int(self.kernel.counters[K.C_RES]) * ns
            self._idle_ns += ns

    def _virtual_mean(self, ops_area: int, d_ops: int, res: int) -> float:
        span = d_ops * self.ns_per_op + self._idle_ns
        return (ops_area * self.ns_per_op + self._idle_area) / span if span > 0 else float(res)

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
            "resident_mean_virtual_bytes": self._virtual_mean(ops_area, d_ops, res) * page,
            "resident_since_ops": d_ops,
            "resident_since_seconds": d_ns / 1e9,
            "refaults": int(c[K.C_REFAULTS]),
            "refault_bytes": int(c[K.C_REFAULTS]) * page,
            "rescues": int(c[K.C_RESCUES]),
            "rescued_bytes": int(c[K.C_RESCUES]) * page,
            "refaults_since_reset": int(c[K.C_REFAULTS]) - self._since[0],
            "rescues_since_reset": int(c[K.C_RESCUES]) - self._since[1],
        }
