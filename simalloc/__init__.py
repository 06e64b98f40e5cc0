"""simalloc: a slab-allocator simulator with real memory behind it.

It models hakmem's superslab allocator and its Memory-Lean release experiment: superslabs are
real private anonymous mappings carved into slabs per size class, free lists are written into
that memory, empty superslabs go to an LRU cache, release policies decide what to keep, what to
``madvise`` and what to unmap, and the kernel's own page accounting shows the effect.

Layers (only the OS layer makes memory syscalls)::

    +--------------------------------------------------------------+
    | Heap: malloc / free / realloc / calloc / view / stats        |  heap.py
    |   hot path: front cache -> current slab -> free list/carve   |  _kernel_py.py | _kernel (Cython)
    |   slow path: refill stages, slab/superslab events            |  heap.py
    +-------------------------+------------------------------------+
    | ReleasePolicy (FAST,    |  LRU cache of empty superslabs     |  policy.py, lru.py
    | LEAN, slab purge, ...)  |  (count / bytes / TTL)             |
    +-------------------------+------------------------------------+
    | OSLayer: reserve=mmap, decommit=MADV_DONTNEED,               |  oslayer/
    | reset=MADV_FREE, release=munmap -- every call counted        |
    +--------------------------------------------------------------+
    | Linux: private anonymous mappings, pagemap / smaps residency |
    +--------------------------------------------------------------+

    superslab (2 MiB, size-aligned)  = header page + 32 slabs x 64 KiB
    slab (one size class)            = blocks of stride 8..2048 (1-byte header + user bytes)

Size classes (stride includes the 1-byte header; a request of n bytes needs n+1):

    class   C0  C1  C2  C3  C4   C5   C6   C7    large
    stride   8  16  32  64  128  256  512  2048  own mmap (n > 2047)

Glossary: *OS page* (4 KiB, the kernel's residency unit) vs *slab* (64 KiB carving unit);
*decommit* gives pages back (DONTNEED: now; FREE: lazily); *retire* is LEAN's word for an
empty superslab it will not keep warm.

Quick start::

    import simalloc
    with simalloc.Heap(mem_lean=True, mem_lean_decommit="DONTNEED") as heap:
        p = heap.malloc(100)
        heap.view(p)[:5] = b"hello"
        heap.free(p)
        print(heap.stats()["lean_retire"], heap.residency()["resident_bytes"])
"""

from __future__ import annotations

from .errors import (
    AllocatorError,
    ConcurrentUseError,
    ConfigError,
    DoubleFreeError,
    HeapClosedError,
    HeapCorruptionError,
    HeapExhaustedError,
    InvalidPointerError,
    InvalidSizeError,
    OSLayerError,
    TraceError,
    UnmodelledOptionWarning,
)
from .heap import Heap
from .kernel import available_kernels, kernel_name
from .options import OPTIONS, Config, Option
from .policy import (
    Clock,
    DelayedSlabPurgePolicy,
    FastPolicy,
    LeanPolicy,
    PolicyContext,
    Release,
    ReleasePolicy,
    SlabEvent,
    SuperslabEvent,
)

__version__ = "0.1.0"  # the one place the version is written (setup.cfg reads it)

_toc = {
    "heap": ["Heap", "Config", "Option", "OPTIONS", "Clock", "kernel_name", "available_kernels"],
    "policies": ["ReleasePolicy", "FastPolicy", "LeanPolicy", "DelayedSlabPurgePolicy", "Release",
                 "SlabEvent", "SuperslabEvent", "PolicyContext"],
    "errors": ["AllocatorError", "DoubleFreeError", "InvalidPointerError", "HeapCorruptionError",
               "InvalidSizeError", "HeapClosedError", "ConfigError", "OSLayerError",
               "HeapExhaustedError", "TraceError", "ConcurrentUseError"],
    "warnings": ["UnmodelledOptionWarning"],
}

__all__ = [
    "Heap", "Config", "Option", "OPTIONS", "Clock", "kernel_name", "available_kernels",
    "ReleasePolicy", "FastPolicy", "LeanPolicy", "DelayedSlabPurgePolicy", "Release",
    "SlabEvent", "SuperslabEvent", "PolicyContext",
    "AllocatorError", "DoubleFreeError", "InvalidPointerError", "HeapCorruptionError",
    "InvalidSizeError", "HeapClosedError", "ConfigError", "OSLayerError",
    "HeapExhaustedError", "TraceError", "ConcurrentUseError",
    "UnmodelledOptionWarning",
]
# Keep the documented table of contents and the implementation in step (SimPy's _toc guard).
assert __all__ == [name for group in _toc.values() for name in group]
