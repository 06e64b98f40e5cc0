"""Small helpers shared by the core tests (imported as ``heaputil``; conftest puts the repo
root on ``sys.path`` if simalloc is not installed, pytest puts ``tests/`` there)."""

from __future__ import annotations

import ctypes
from typing import Any

from simalloc import Heap
from simalloc.constants import SS_CACHED


def fill(heap: Heap, ptr: int, data: bytes) -> None:
    """Write ``data`` at the start of the live block ``ptr`` through ``heap.view``."""
    v = heap.view(ptr)
    try:
        v[: len(data)] = data
    finally:
        v.release()


def read(heap: Heap, ptr: int, n: int) -> bytes:
    """``n`` bytes of the live block ``ptr`` through ``heap.view``."""
    v = heap.view(ptr)
    try:
        return bytes(v[:n])
    finally:
        v.release()


def raw(addr: int, n: int) -> bytes:
    """``n`` bytes at ``addr`` read straight from memory (ctypes)."""
    return ctypes.string_at(addr, n)


def pattern(seed: int, n: int) -> bytes:
    """A distinct, non-zero byte pattern of length ``n`` derived from ``seed``."""
    return bytes(((seed * 131 + i * 7) % 251) + 1 for i in range(n))


def heap_mappings(heap: Heap, *, cached_only: bool = False) -> list[Any]:
    """The heap's superslab mappings (optionally only cached ones) plus, unless
    ``cached_only``, its large-block mappings.  Tests use this to force reclaim."""
    out = []
    for ss in heap._st.mapped():
        if cached_only and ss.state != SS_CACHED:
            continue
        out.append(ss.mapping)
    if not cached_only:
        out.extend(m for m, _size in heap._st.large.blocks.values())
    return out


def reclaim_all(heap: Heap, *, cached_only: bool = False) -> int:
    """MADV_PAGEOUT every mapping of ``heap``: the kernel takes lazily freed pages back now
    (the deterministic "memory pressure" hook of platform-notes section 1).  Returns the
    number of mappings advised."""
    maps = heap_mappings(heap, cached_only=cached_only)
    for m in maps:
        heap.os.reclaim(m, 0, m.size)
    return len(maps)
