"""Residency read from the kernel: which of our pages are in RAM, and which are lazily freed.

Three probes, each with what it can and cannot see (measured in ``platform-notes.md``):

* ``/proc/self/pagemap`` -- one u64 per virtual page; *present* (bit 63) and *exclusively
  mapped* (bit 56).  ``present & exclusive`` matches smaps ``Rss`` exactly and excludes pages
  that were only read (mapped to the shared zero page).  Cannot see LazyFree.  Default.
* ``mincore(2)`` -- per page, fast, but counts zero-page reads as resident; fallback.
* ``/proc/self/smaps`` -- per VMA ``Rss`` and ``LazyFree``.  Adjacent superslabs merge into
  one VMA, so LazyFree is summed over every VMA that overlaps one of our ranges.

Process-wide ``VmRSS`` / ``VmHWM`` come from ``/proc/self/status``.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterable

import numpy as np

from ..constants import PAGE_SIZE
from . import posix

__all__ = ["lazyfree_bytes", "mincore_resident", "pagemap_resident", "process_memory",
           "reset_peak_rss"]

_PRESENT = np.uint64(1 << 63)
_EXCLUSIVE = np.uint64(1 << 56)


def pagemap_resident(ranges: Iterable[tuple[int, int]]) -> int:
    """Bytes of ``(addr, length)`` ranges that are present and exclusively ours (pagemap)."""
    total = 0
    fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    try:
        for addr, length in ranges:
            first, npages = addr // PAGE_SIZE, (length + PAGE_SIZE - 1) // PAGE_SIZE
            raw = os.pread(fd, 8 * npages, 8 * first)
            words = np.frombuffer(raw, dtype=np.uint64)
            total += int(np.count_nonzero(((words & _PRESENT) != 0) & ((words & _EXCLUSIVE) != 0)))
    finally:
        os.close(fd)
    return total * PAGE_SIZE


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]


def mincore_resident(ranges: Iterable[tuple[int, int]]) -> int:
    """Bytes of the ranges resident according to ``mincore`` (counts zero-page reads)."""
    total = 0
    for addr, length in ranges:
        npages = (length + PAGE_SIZE - 1) // PAGE_SIZE
        vec = ctypes.create_string_buffer(npages)
        if _libc.mincore(addr, npages * PAGE_SIZE, vec):
            err = ctypes.get_errno()
            raise OSError(err, f"mincore: {os.strerror(err)}")
        total += sum(b & 1 for b in vec.raw)
    return total * PAGE_SIZE


def _smaps_entries() -> list[tuple[int, int, int]]:
    """``(start, end, lazyfree_bytes)`` for every VMA of this process."""
    out: list[tuple[int, int, int]] = []
    start = end = lazy = 0
    have = False
    with open("/proc/self/smaps", encoding="ascii", errors="replace") as f:
        for line in f:
            head = line.split(None, 1)[0]
            if "-" in head and not head.endswith(":"):
                if have:
                    out.append((start, end, lazy))
                lo, hi = head.split("-")
                start, end, lazy, have = int(lo, 16), int(hi, 16), 0, True
            elif head == "LazyFree:":
                lazy = int(line.split()[1]) * 1024
    if have:
        out.append((start, end, lazy))
    return out


def drain_lru_batches() -> bool:
    """Make the kernel move pages waiting in its per-CPU LRU batches (up to 15 per CPU) onto
    their lists, so smaps' LazyFree counts every page already given back with MADV_FREE.

    Without it LazyFree lags by up to 15 pages per CPU (platform-notes s1).  ``mlock`` drains
    the batches of the CPU it runs on, so this runs it once on each CPU this process may use
    (one private page, locked and unlocked at once).  Returns False where it could not."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except OSError:
        return False
    ok = True
    try:
        for cpu in cpus:
            os.sched_setaffinity(0, {cpu})
            ok = posix.lock_unlock_page() and ok
    finally:
        os.sched_setaffinity(0, set(cpus))
    return ok


def lazyfree_bytes(ranges: Iterable[tuple[int, int]]) -> int:
    """LazyFree bytes of every VMA overlapping one of the ranges (VMAs merge; see module doc),
    after draining the kernel's per-CPU LRU batches (:func:`drain_lru_batches`)."""
    spans = sorted(ranges)
    if not spans:
        return 0
    drain_lru_batches()
    total = 0
    for vstart, vend, lazy in _smaps_entries():
        if lazy and any(a < vend and vstart < a + n for a, n in spans):
            total += lazy
    return total


def process_memory() -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of this process in bytes (``/proc/self/status``)."""
    out = {"vm_rss_bytes": 0, "vm_hwm_bytes": 0}
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                out["vm_rss_bytes"] = int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                out["vm_hwm_bytes"] = int(line.split()[1]) * 1024
    return out


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM to its current RSS (``/proc/self/clear_refs`` = 5), so the
    next run's peak is its own.  Returns False where the kernel refuses (then VmHWM stays the
    process lifetime peak)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return False
    return True
