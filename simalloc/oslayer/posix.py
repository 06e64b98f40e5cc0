"""POSIX primitives: the only code in simalloc that calls mmap, madvise and munmap.

These functions are thin and uncounted; :class:`simalloc.oslayer.OSLayer` above them rounds,
checks, counts and decides.  Preconditions (stated once, here): ``offset`` and ``length`` are
page-aligned and ``length > 0``; the mapping is private and anonymous.

Why ``MAP_PRIVATE | MAP_ANONYMOUS`` explicitly: ``mmap.mmap(-1, n)`` defaults to a *shared*
mapping (shmem), where MADV_FREE fails with EINVAL and MADV_DONTNEED frees nothing (the data
even reads back).  See ``platform-notes.md`` section 1.
"""

from __future__ import annotations

import ctypes
import mmap

__all__ = [
    "ADVICE",
    "MADV_COLD",
    "MADV_PAGEOUT",
    "MADV_POPULATE_READ",
    "MADV_POPULATE_WRITE",
    "address_of",
    "advise",
    "lock_unlock_page",
    "map_anonymous",
    "unmap",
]

# Advice values CPython 3.11 does not export; the kernel (>= 5.4 / 5.14) accepts them raw.
MADV_COLD = 20
MADV_PAGEOUT = 21
MADV_POPULATE_READ = 22
MADV_POPULATE_WRITE = 23

#: Advice by name -> value, the single table the OS layer maps intents through.
ADVICE: dict[str, int] = {
    "DONTNEED": mmap.MADV_DONTNEED,  # drop pages now: RSS falls at once, next touch reads zero
    "FREE": mmap.MADV_FREE,  # lazy: pages stay in RSS (LazyFree) until the kernel needs them
    "NOHUGEPAGE": mmap.MADV_NOHUGEPAGE,  # 4 KiB pages only: residency is reproducible
    "PAGEOUT": MADV_PAGEOUT,  # reclaim now (forces lazily freed pages back; test hook)
    "POPULATE_WRITE": MADV_POPULATE_WRITE,  # prefault writable pages (HAKMEM_SS_PREFAULT=1)
    "WILLNEED": mmap.MADV_WILLNEED,  # hakmem's per-acquisition hint on each new superslab
}


def map_anonymous(size: int) -> mmap.mmap:
    """``mmap(NULL, size, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)``."""
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                     prot=mmap.PROT_READ | mmap.PROT_WRITE)


def advise(mm: mmap.mmap, advice: int, offset: int, length: int) -> None:
    """``madvise(base + offset, length, advice)``; raises OSError if the kernel refuses."""
    mm.madvise(advice, offset, length)


def unmap(mm: mmap.mmap) -> None:
    """``munmap`` the whole mapping; raises BufferError while views of it are alive."""
    mm.close()


def lock_unlock_page() -> bool:
    """``mlock`` then ``munlock`` one fresh private page (the kernel drains this CPU's LRU
    batches on mlock).  Returns False if the kernel refused (RLIMIT_MEMLOCK)."""
    mm = map_anonymous(mmap.PAGESIZE)
    try:
        buf = ctypes.c_char.from_buffer(mm)
        try:
            addr = ctypes.c_void_p(ctypes.addressof(buf))
            size = ctypes.c_size_t(mmap.PAGESIZE)
            if _libc.mlock(addr, size) != 0:
                return False
            _libc.munlock(addr, size)
            return True
        finally:
            del buf
    finally:
        mm.close()


_libc = ctypes.CDLL(None, use_errno=True)


def address_of(mm: mmap.mmap) -> int:
    """The mapping's base address (a buffer export that is released at once)."""
    c = ctypes.c_char.from_buffer(mm)
    try:
        return ctypes.addressof(c)
    finally:
        del c
