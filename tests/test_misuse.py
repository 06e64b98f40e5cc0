"""The misuse battery: every way a caller can abuse the heap raises the documented error, and
afterwards the heap still works (malloc, free and check() succeed)."""

from __future__ import annotations

import ctypes
import gc

import numpy as np
import pytest
from heaputil import fill, pattern, raw, read
from policies_for_tests import UnmapEmpty

import simalloc
from simalloc import (
    AllocatorError,
    DoubleFreeError,
    HeapClosedError,
    HeapCorruptionError,
    InvalidPointerError,
    InvalidSizeError,
)
from simalloc import constants as K


def still_works(heap: simalloc.Heap) -> None:
    """Proof that a heap survived misuse: allocate, write, read back, free, check."""
    ptrs = [heap.malloc(s) for s in (0, 10, 100, 1000, 2047, 5000)]
    for i, p in enumerate(ptrs):
        data = pattern(i, min(8, heap.usable_size(p)))
        fill(heap, p, data)
        assert raw(p, len(data)) == data
    for p in ptrs:
        heap.free(p)
    heap.check()


def test_all_exceptions_subclass_allocator_error():
    for name in simalloc.__all__:
        obj = getattr(simalloc, name)
        if isinstance(obj, type) and issubclass(obj, Exception) and not issubclass(obj, Warning):
            assert issubclass(obj, AllocatorError), name
    assert issubclass(InvalidPointerError, ValueError)
    assert issubclass(InvalidSizeError, ValueError)
    assert issubclass(simalloc.OSLayerError, OSError)
    assert issubclass(simalloc.HeapExhaustedError, MemoryError)
    assert issubclass(simalloc.TraceError, AllocatorError)


# ---------------------------------------------------------------- double free


@pytest.mark.parametrize("size", [1, 100, 2047])
def test_double_free_tiny(make_heap, size):
    heap = make_heap()
    keep = heap.malloc(size)  # keeps the slab and superslab alive
    p = heap.malloc(size)
    heap.free(p)
    with pytest.raises(DoubleFreeError):
        heap.free(p)
    heap.trim()  # now the block sits on its slab's free list
    with pytest.raises(DoubleFreeError):
        heap.free(p)
    with pytest.raises(DoubleFreeError):
        heap.realloc(p, 10)
    with pytest.raises(DoubleFreeError):
        heap.usable_size(p)
    heap.free(keep)
    heap.trim()  # the superslab emptied (FAST: cached); a stale pointer is still a double free
    with pytest.raises(DoubleFreeError):
        heap.free(keep)
    still_works(heap)


def test_double_free_after_slab_emptied(make_heap):
    heap = make_heap(tiny_prewarm=False)
    keep = heap.malloc(10)  # another class keeps the superslab alive
    ptrs = [heap.malloc(2000) for _ in range(100)]  # several C7 slabs
    for p in ptrs:
        heap.free(p)
    heap.trim()
    assert heap.stats()["slabs_empty"] >= 1
    for p in ptrs[:40]:
        with pytest.raises(DoubleFreeError):
            heap.free(p)
    heap.free(keep)
    still_works(heap)


def test_double_free_large(make_heap):
    heap = make_heap()
    p = heap.malloc(100000)
    heap.free(p)
    with pytest.raises(DoubleFreeError):
        heap.free(p)
    with pytest.raises(DoubleFreeError):
        heap.realloc(p, 5)
    still_works(heap)


# ---------------------------------------------------------------- bad pointers


def test_foreign_pointers(make_heap):
    heap = make_heap()
    buf = bytearray(64)
    foreign = ctypes.addressof((ctypes.c_char * 64).from_buffer(buf))
    for ptr in (foreign, 12345, 0x10, 1 << 47):
        with pytest.raises(InvalidPointerError):
            heap.free(ptr)
        with pytest.raises(InvalidPointerError):
            heap.usable_size(ptr)
        with pytest.raises(InvalidPointerError):
            heap.view(ptr)
        with pytest.raises(InvalidPointerError):
            heap.realloc(ptr, 10)
    assert buf == bytearray(64)  # nothing was written to the foreign memory
    for ptr in ("0x10", 1.5, b"\x10"):
        with pytest.raises(InvalidPointerError):
            heap.free(ptr)
        with pytest.raises(InvalidPointerError):
            heap.usable_size(ptr)
    still_works(heap)


def test_pointer_from_another_heap(make_heap):
    a, b = make_heap(), make_heap()
    p = a.malloc(100)
    with pytest.raises(InvalidPointerError):
        b.free(p)
    a.free(p)
    still_works(a)
    still_works(b)


@pytest.mark.parametrize("size", [1, 24, 100, 1000, 2047])
def test_interior_pointer_tiny(make_heap, size):
    heap = make_heap()
    p = heap.malloc(size)
    stride = heap.usable_size(p) + 1
    for delta in {1, 3, 7, stride // 2, stride - 1} - {0}:
        with pytest.raises(InvalidPointerError):
            heap.free(p + delta)
        with pytest.raises(InvalidPointerError):
            heap.realloc(p + delta, 5)
    with pytest.raises(InvalidPointerError):
        heap.free(p - 1)  # the header byte itself
    heap.free(p)
    still_works(heap)


def test_interior_pointer_large(make_heap):
    heap = make_heap()
    p = heap.malloc(50000)
    for delta in (1, 64, 4096, 40000):
        with pytest.raises(InvalidPointerError):
            heap.free(p + delta)
    with pytest.raises(InvalidPointerError):
        heap.free(p - K.LARGE_HEADER)  # the mapping start, not the user pointer
    heap.free(p)
    still_works(heap)


def test_pointer_into_metadata(make_heap):
    heap = make_heap()
    p = heap.malloc(10)
    base = p & ~(heap.ss_bytes - 1)
    for off in (1, 4, K.SS_META_OFFSET + 1, K.header_bytes(heap.lg) - 7):
        with pytest.raises(InvalidPointerError, match="metadata"):
            heap.free(base + off)
    with pytest.raises(InvalidPointerError):
        heap.free(base)  # superslab base: offset -1 from a "header"
    assert raw(base, 4) == K.SS_MAGIC.to_bytes(4, "little")
    heap.free(p)
    still_works(heap)


def test_never_allocated_blocks(make_heap):
    heap = make_heap(tiny_prewarm=False)
    p = heap.malloc(1000)  # C7: lazy carving of the slab
    base = p & ~(heap.ss_bytes - 1)
    stride = 2048
    # a block boundary beyond what lazy carving reached in this slab (16 of 31 C7 blocks)
    slab0 = base + K.slab_data_start(heap.lg, 0) + K.BLOCK_HEADER
    assert slab0 <= p < slab0 + 16 * stride
    for i in (16, 30):
        with pytest.raises(InvalidPointerError, match="never handed out"):
            heap.free(slab0 + i * stride)
    # a block boundary in a slab that was never claimed
    unused = base + (heap.nslabs - 1) * K.SLAB_SIZE + K.BLOCK_HEADER
    with pytest.raises(InvalidPointerError, match="unused slab"):
        heap.free(unused)
    # the past-the-end block of the superslab's window
    with pytest.raises(InvalidPointerError):
        heap.free(base + heap.ss_bytes - stride + 1)
    heap.free(p)
    still_works(heap)


# ---------------------------------------------------------------- closed heap


def test_use_after_close(make_heap):
    heap = make_heap()
    p = heap.malloc(10)
    big = heap.malloc(10000)
    heap.close()
    slots = np.zeros(4, np.uint64)
    ops = np.zeros((1, 3), np.int64)
    from simalloc.workloads.mixed import run_mixed

    calls = [
        lambda: heap.malloc(10), lambda: heap.free(p), lambda: heap.free(big),
        lambda: heap.free(0), lambda: heap.calloc(2, 2), lambda: heap.realloc(p, 20),
        lambda: heap.realloc(0, 20), lambda: heap.usable_size(p), lambda: heap.view(p),
        lambda: heap.view(big), lambda: heap.trim(), lambda: heap.tick(), lambda: heap.stats(),
        lambda: heap.residency(), lambda: heap.memory_report(), lambda: heap.check(),
        lambda: heap.empty_report(),
        lambda: heap.replay(ops, slots), lambda: run_mixed(heap, 10, 4, 1, slots),
        lambda: heap.drain_slots(slots),
    ]
    for call in calls:
        with pytest.raises(HeapClosedError):
            call()
    heap.close()
    assert heap.closed


# ---------------------------------------------------------------- bad sizes


BAD_SIZES = [-1, -(2**40), 1.0, 3.5, "10", None, True, False, 2**40 + 1, 2**64, b"1", [1]]


@pytest.mark.parametrize("size", BAD_SIZES, ids=repr)
def test_bad_sizes(make_heap, size):
    heap = make_heap()
    before = heap.stats()["mmap_total"]
    p = heap.malloc(16)
    with pytest.raises(InvalidSizeError):
        heap.malloc(size)
    with pytest.raises(InvalidSizeError):
        heap.calloc(size, 1)
    with pytest.raises(InvalidSizeError):
        heap.calloc(1, size)
    with pytest.raises(InvalidSizeError):
        heap.realloc(p, size)
    with pytest.raises(InvalidSizeError):
        heap.realloc(0, size)
    assert heap.stats()["mmap_total"] == before
    assert heap.usable_size(p) == 31  # the realloc'd block is untouched
    heap.free(p)
    still_works(heap)


# ---------------------------------------------------------------- corruption


@pytest.mark.parametrize("size", [1, 100, 2000])
def test_corrupted_block_header(make_heap, size):
    heap = make_heap()
    p = heap.malloc(size)
    tag = raw(p - 1, 1)[0]
    assert tag & K.TAG_MASK == K.ALLOC_TAG
    ctypes.memset(p - 1, 0x00, 1)  # the user scribbled over the header byte
    with pytest.raises(HeapCorruptionError, match="header"):
        heap.free(p)
    with pytest.raises(HeapCorruptionError):
        heap.usable_size(p)
    with pytest.raises(HeapCorruptionError):
        heap.check()
    ctypes.memset(p - 1, tag, 1)  # restore: the heap is whole again
    heap.check()
    heap.free(p)
    still_works(heap)


def test_corrupted_large_header(make_heap):
    heap = make_heap()
    p = heap.malloc(10000)
    ctypes.memset(p - K.LARGE_HEADER, 0, 4)
    with pytest.raises(HeapCorruptionError):
        heap.free(p)
    ctypes.memmove(p - K.LARGE_HEADER, K.LARGE_MAGIC.to_bytes(4, "little"), 4)
    heap.free(p)
    still_works(heap)


def test_corrupted_superslab_magic(make_heap):
    heap = make_heap()
    p = heap.malloc(100)
    q = heap.malloc(100)
    base = p & ~(heap.ss_bytes - 1)
    saved = raw(base, 4)
    assert saved == b"LPSS"
    ctypes.memset(base, 0x41, 4)
    with pytest.raises(HeapCorruptionError, match="magic"):
        heap.free(p)
    with pytest.raises(HeapCorruptionError, match="magic"):
        heap.usable_size(q)
    with pytest.raises(HeapCorruptionError):
        heap.check()
    ctypes.memmove(base, saved, 4)  # restore the magic
    heap.check()
    heap.free(p)
    heap.free(q)
    still_works(heap)


def test_use_after_free_write_on_free_list(make_heap):
    heap = make_heap(tiny_prewarm=False)
    before = [heap.malloc(1000) for _ in range(5)]
    p = heap.malloc(1000)
    after = [heap.malloc(1000) for _ in range(5)]
    heap.free(p)
    heap.trim()  # p goes from the front cache to its slab's free list (the slab stays live)
    tag = raw(p - 1, 1)[0]
    assert tag == K.FREE_TAG | 7
    ctypes.memset(p - 1, 0x00, 1)  # use after free: a write over the freed block's header
    with pytest.raises(HeapCorruptionError, match="use after free"):
        for _ in range(1000):  # allocate until the allocator pops the damaged block
            heap.malloc(1000)
    ctypes.memset(p - 1, tag, 1)  # repair; the heap goes on
    more = [heap.malloc(1000) for _ in range(40)]
    assert p in more
    heap.check()
    for q in before + after + more:
        heap.free(q)
    still_works(heap)


def test_use_after_free_write_in_front_cache(make_heap):
    heap = make_heap()
    p = heap.malloc(100)
    heap.free(p)  # p sits in the front cache
    tag = raw(p - 1, 1)[0]
    ctypes.memset(p - 1, 0x11, 1)
    with pytest.raises(HeapCorruptionError):
        heap.malloc(100)
    ctypes.memset(p - 1, tag, 1)
    assert heap.malloc(100) == p  # LIFO: the repaired block comes back first
    heap.free(p)
    still_works(heap)


def test_free_list_link_corruption_detected_by_check(make_heap):
    heap = make_heap(tiny_prewarm=False)
    keep = [heap.malloc(200) for _ in range(10)]
    heap.free(keep[3])
    heap.trim()
    link = keep[3] - 1 + K.NEXT_LINK_OFFSET
    saved = raw(link, 4)
    ctypes.memset(link, 0xEE, 4)  # point the free list into the weeds
    with pytest.raises(HeapCorruptionError):
        heap.check()
    ctypes.memmove(link, saved, 4)
    heap.check()
    for p in keep[:3] + keep[4:]:
        heap.free(p)
    still_works(heap)


# ---------------------------------------------------------------- views and releases


@pytest.mark.parametrize("how", ["policy", "lean-unmap"])
def test_view_outlives_superslab_release(make_heap, how):
    if how == "policy":
        heap = make_heap(tiny_prewarm=False, policy=UnmapEmpty())
    else:
        heap = make_heap(mem_lean=True, lean_retire="unmap", mem_lean_target_mb=0)
    p = heap.malloc(100)
    view = heap.view(p)
    view[:4] = b"live"
    heap.free(p)
    heap.trim()  # the superslab empties and the policy unmaps it while `view` is alive
    st = heap.stats()
    assert st["ss_unmapped"] == 1 and st["superslabs_active"] == 0
    assert st["deferred_unmaps"] == 1
    # the view still reads (the pages were dropped, so zeros) -- no crash, no dangling mapping
    assert len(view) == 127
    assert bytes(view[:4]) in (b"live", b"\0\0\0\0")
    view[0] = 1  # and writes only to memory nobody else uses
    with pytest.raises(InvalidPointerError):
        heap.free(p)  # the superslab is gone: p is now foreign
    still_works(heap)
    munmaps = heap.stats()["munmap_total"]
    view.release()
    del view
    gc.collect()
    q = heap.malloc(100)
    heap.free(q)
    heap.trim()  # the next release retries the deferred unmap
    assert heap.stats()["munmap_total"] >= munmaps + 1
    assert heap.os._deferred == []
    heap.close()
    assert heap.os.mmap_total == heap.os.munmap_total


def test_view_of_large_block_outlives_free(make_heap):
    heap = make_heap()
    p = heap.malloc(10000)
    view = heap.view(p)
    view[:3] = b"abc"
    heap.free(p)  # the unmap is deferred while the view lives; its pages are dropped
    assert heap.stats()["deferred_unmaps"] == 1 and heap.stats()["live_large"] == 0
    assert bytes(view[:3]) in (b"abc", b"\0\0\0")
    view[0] = 0x41  # still mapped memory, no crash
    view.release()
    still_works(heap)
    heap.close()
    assert heap.os.mmap_total == heap.os.munmap_total


def test_errors_leave_counters_consistent(make_heap):
    heap = make_heap()
    p = heap.malloc(50)
    st = heap.stats()
    for bad in (p + 1, 12345):
        with pytest.raises(InvalidPointerError):
            heap.free(bad)
    with pytest.raises(InvalidSizeError):
        heap.malloc(-5)
    st2 = heap.stats()
    for key in ("live_blocks", "live_bytes", "ops", "mmap_total", "madvise_calls"):
        assert st2[key] == st[key], key
    assert read(heap, p, 0) == b""
    heap.free(p)
    still_works(heap)


def test_superslab_table_exhausted(make_heap):
    heap = make_heap(max_superslabs=4, tiny_prewarm=False)
    ptrs = []
    with pytest.raises(simalloc.HeapExhaustedError, match="MAX_SUPERSLABS"):
        for _ in range(10_000):
            ptrs.append(heap.malloc(2000))
    assert len(ptrs) > 3000 and heap.stats()["superslabs_active"] == 4
    with pytest.raises(MemoryError):  # HeapExhaustedError is a MemoryError too
        heap.malloc(2000)
    heap.check()
    big = heap.malloc(100_000)  # the large path does not need a superslab slot
    heap.free(big)
    for p in ptrs[:200]:
        heap.free(p)
    heap.trim()
    assert heap.malloc(10)  # an emptied slab is reformatted for another class
    for p in ptrs[200:]:
        heap.free(p)
    still_works(heap)


def test_view_outlives_close(make_heap):
    heap = make_heap()
    p = heap.malloc(100)
    big = heap.malloc(10000)
    v, w = heap.view(p), heap.view(big)
    v[:2] = b"ok"
    w[:2] = b"OK"
    heap.close()  # the unmaps are deferred to the views' death; no crash reading them
    assert bytes(v[:2]) in (b"ok", b"\0\0") and bytes(w[:2]) in (b"OK", b"\0\0")
    v.release()
    w.release()
    with pytest.raises(HeapClosedError):
        heap.view(p)
