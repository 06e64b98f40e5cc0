"""The OS layer: every mapping, decommit and unmap simalloc makes goes through here, counted.

Two tiers, as in mimalloc's ``prim`` / ``os.c``: :mod:`.posix` holds the raw primitives (the only
code that calls ``mmap``/``madvise``/``munmap``; an AST test enforces it), and :class:`OSLayer`
here page-aligns, checks, counts every call and byte, and raises one error type.

Intents, and what each does to the kernel's accounting:

============  ========================  ==================================================
verb          syscall                   effect on RSS
============  ========================  ==================================================
reserve       mmap(PRIVATE|ANONYMOUS)   none until pages are touched (first write faults)
decommit      madvise(MADV_DONTNEED)    falls at once; the pages read zero afterwards
reset         madvise(MADV_FREE)        unchanged (counted as LazyFree) until the kernel
                                        reclaims under pressure; rewritten pages are kept
reclaim       madvise(MADV_PAGEOUT)     lazily freed pages go now (test hook only)
release       munmap                    the range and its pages are gone
============  ========================  ==================================================

Alignment: a superslab must be aligned to its own size so ``ptr & ~(size-1)`` finds it.  The
layer first maps exactly ``size`` bytes (Linux returns multiples of 2 MiB 2 MiB-aligned in
practice); if the base is not aligned it unmaps and maps ``2 * size``, using the aligned window
inside.  Python's ``mmap`` cannot unmap part of a mapping, so the unused head and tail of such a
mapping stay reserved but are never touched (never resident); they appear as
``alignment_waste`` in the memory report.

Decommit ranges are rounded *inwards* to whole pages, so a decommit can never cover a byte
outside the range the caller proved free (live blocks and live metadata are always outside it).
"""

from __future__ import annotations

import mmap
from collections.abc import Callable
from dataclasses import dataclass, field

from ..constants import PAGE_SIZE
from ..errors import OSLayerError
from . import posix
from .residency import (
    lazyfree_bytes,
    mincore_resident,
    pagemap_resident,
    process_memory,
    reset_peak_rss,
)

__all__ = ["FaultInjectingOSLayer", "Mapping", "OSLayer", "lazyfree_bytes", "mincore_resident", "pagemap_resident",
           "process_memory", "reset_peak_rss"]


@dataclass(eq=False)
class Mapping:
    """One private anonymous mapping and the aligned window the allocator uses.

    ``addr``/``size`` describe the window; ``map_size`` is what was really mapped."""

    mm: mmap.mmap
    offset: int  # window start inside the mapping
    size: int  # window length
    addr: int  # window start address
    map_size: int  # bytes actually mapped (size, or 2*size when aligning)
    kind: str = "superslab"
    view: memoryview | None = field(default=None, repr=False)  # the window, long-lived export

    @property
    def alignment_waste(self) -> int:
        return self.map_size - self.size


class OSLayer:
    """Counts and guards every memory syscall of one heap (no global state)."""

    def __init__(self, nohugepage: bool = True) -> None:
        self.nohugepage = nohugepage
        self.mmap_total = 0  # mmap calls that succeeded (including alignment retries)
        self.munmap_total = 0  # munmap calls (mappings released)
        self.madvise_calls: dict[str, int] = {name: 0 for name in posix.ADVICE}
        self.decommitted_bytes = 0  # bytes passed to DONTNEED or FREE, all time
        self.mapped_bytes = 0  # bytes currently mapped (incl. alignment windows)
        self.mapped_peak = 0
        self.deferred_unmaps = 0  # releases delayed because the user still held a view
        self.align_retries = 0  # first mapping was misaligned: unmapped, remapped at 2x
        self.alignment_waste = 0  # bytes currently mapped only to align windows
        self._deferred: list[Mapping] = []
        #: Called as ``observer(mapping, advice, offset, length)`` after every madvise that
        #: succeeded and (advice ``"UNMAP"``) before every release: the heap's resident-page
        #: model follows the OS calls from here (simalloc/pages.py).
        self.observer: Callable[[Mapping, str, int, int], None] | None = None

    # ------------------------------------------------------------------ reserve / release
    def reserve(self, size: int, align: int = PAGE_SIZE, kind: str = "superslab") -> Mapping:
        """Map ``size`` bytes (a page multiple) whose start is ``align``-aligned."""
        if size <= 0 or size % PAGE_SIZE:
            raise OSLayerError(f"reserve: size {size} is not a positive multiple of {PAGE_SIZE}")
        mm = self._map(size)
        addr = posix.address_of(mm)
        offset, map_size = 0, size
        if addr % align:
            posix.unmap(mm)
            self.munmap_total += 1
            self.align_retries += 1
            mm = self._map(size + align)
            base = posix.address_of(mm)
            offset = (-base) % align
            addr, map_size = base + offset, size + align
        self.mapped_bytes += map_size
        self.alignment_waste += map_size - size
        self.mapped_peak = max(self.mapped_peak, self.mapped_bytes)
        m = Mapping(mm, offset, size, addr, map_size, kind)
        m.view = memoryview(mm)[offset:offset + size]
        if self.nohugepage:
            try:
                self._advise(m, "NOHUGEPAGE", 0, size)
            except BaseException:
                self.release(m)  # never leak a mapping nobody holds
                raise
        return m

    def _map(self, size: int) -> mmap.mmap:
        try:
            mm = posix.map_anonymous(size)
        except (OSError, OverflowError, ValueError) as exc:
            raise OSLayerError(f"mmap({size}) failed: {exc}") from exc
        self.mmap_total += 1
        return mm

    def release(self, m: Mapping) -> None:
        """munmap the mapping.  If the user still holds a view of it, the pages are dropped
        now (DONTNEED) and the unmap is deferred until the last view goes away."""
        if self.observer is not None:
            self.observer(m, "UNMAP", 0, m.size)
        if m.view is not None:
            m.view.release()
            m.view = None
        self.mapped_bytes -= m.map_size
        self.alignment_waste -= m.alignment_waste
        try:
            posix.unmap(m.mm)
            self.munmap_total += 1
        except BufferError:
            # A user memoryview is alive: never pull memory out from under it.
            self._advise(m, "DONTNEED", 0, m.size)
            self.deferred_unmaps += 1
            self._deferred.append(m)
        self._retry_deferred()

    def _retry_deferred(self) -> None:
        still = []
        for m in self._deferred:
            try:
                posix.unmap(m.mm)
                self.munmap_total += 1
            except BufferError:
                still.append(m)
        self._deferred = still

    def close(self) -> None:
        """Retry deferred unmaps; what is still exported is dropped (CPython unmaps it when
        the last view dies)."""
        self._retry_deferred()
        self._deferred = []

    # ------------------------------------------------------------------ advice
    def _advise(self, m: Mapping, name: str, offset: int, length: int) -> None:
        try:
            posix.advise(m.mm, posix.ADVICE[name], m.offset + offset, length)
        except OSError as exc:
            raise OSLayerError(f"madvise({name}, +{offset}, {length}) failed: {exc}") from exc
        self.madvise_calls[name] += 1
        if self.observer is not None:
            self.observer(m, name, offset, length)

    @staticmethod
    def page_inward(offset: int, length: int) -> tuple[int, int]:
        """Round ``[offset, offset+length)`` inwards to whole pages (may return length 0)."""
        lo = (offset + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        hi = (offset + length) & ~(PAGE_SIZE - 1)
        return lo, max(0, hi - lo)

    def decommit(self, m: Mapping, offset: int, length: int, how: str = "DONTNEED") -> int:
        """Give the pages wholly inside ``[offset, offset+length)`` of the window back to the
        kernel with ``how`` = DONTNEED (eager) or FREE (lazy).  Returns the bytes advised."""
        if how not in ("DONTNEED", "FREE"):
            raise OSLayerError(f"decommit: unknown advice {how!r}")
        lo, n = self.page_inward(offset, length)
        if n == 0:
            return 0
        self._advise(m, how, lo, n)
        self.decommitted_bytes += n
        return n

    def reclaim(self, m: Mapping, offset: int, length: int) -> None:
        """MADV_PAGEOUT the range: the kernel reclaims lazily freed (clean) pages at once.
        Dirty anonymous pages stay (no swap).  Used by tests to force MADV_FREE to bite."""
        lo, n = self.page_inward(offset, length)
        if n:
            self._advise(m, "PAGEOUT", lo, n)

    # ------------------------------------------------------------------ accounting
    @property
    def madvise_total(self) -> int:
        return sum(self.madvise_calls.values())

    @property
    def syscalls(self) -> int:
        """mmap + munmap + madvise calls, all time."""
        return self.mmap_total + self.munmap_total + self.madvise_total
from .faults import FaultInjectingOSLayer  # noqa: E402  (subclass of OSLayer, defined above)
