"""The heap's public contract: real addresses, size classes, calloc/realloc, views, stats,
memory accounting, superslab layout, geometry options, prewarm and lifecycle."""

from __future__ import annotations

import ctypes

import pytest
from heaputil import fill, pattern, raw, read

import simalloc
from simalloc import Config, InvalidSizeError
from simalloc import constants as K

MiB = 1 << 20
SSPL = K.SS_MAGIC.to_bytes(4, "little")

# (request size, stride of the class that must serve it): both sides of every class boundary
BOUNDARIES = [(0, 8), (1, 8), (6, 8), (7, 8)]
for _lo, _hi in zip(K.CLASS_STRIDES, K.CLASS_STRIDES[1:], strict=False):
    BOUNDARIES += [(_lo - 1, _lo), (_lo, _hi), (_hi - 2, _hi), (_hi - 1, _hi)]
BOUNDARIES = sorted(set(BOUNDARIES))
LARGE_SIZES = [2048, 2049, 4032, 4033, 100000]


def memory_report_ok(heap: simalloc.Heap) -> dict[str, int]:
    rep = heap.memory_report()
    parts = {k: v for k, v in rep.items() if k != "mapped_total"}
    assert all(v >= 0 for v in parts.values()), rep
    assert sum(parts.values()) == rep["mapped_total"] == heap.stats()["mapped_bytes"]
    return rep


# ---------------------------------------------------------------- addresses and classes


def test_malloc_returns_real_addresses(make_heap):
    heap = make_heap()
    for i, size in enumerate([1, 7, 8, 100, 500, 2047, 2048, 100000]):
        p = heap.malloc(size)
        assert isinstance(p, int) and p > 0
        data = pattern(i, size)
        fill(heap, p, data)
        # the address is real memory: ctypes at that address sees what the view wrote
        assert ctypes.string_at(p, size) == read(heap, p, size) == data
        # and a ctypes write shows up in the view
        ctypes.memset(p, 0x5A, 1)
        assert read(heap, p, 1) == b"\x5a"
    heap.check()


def test_addresses_inside_mappings(make_heap):
    heap = make_heap()
    ptrs = [heap.malloc(s) for s in (1, 64, 1000, 3000)]
    for p in ptrs:
        n = heap.usable_size(p)
        spans = [(ss.base, ss.base + ss.size) for ss in heap._st.mapped()]
        spans += [(m.addr, m.addr + m.size) for m, _ in heap._st.large.blocks.values()]
        assert any(lo <= p and p + n <= hi for lo, hi in spans), hex(p)


@pytest.mark.parametrize(("size", "stride"), BOUNDARIES)
def test_size_class_boundaries(make_heap, size, stride):
    heap = make_heap()
    p = heap.malloc(size)
    assert heap.usable_size(p) == stride - K.BLOCK_HEADER >= size
    # tiny: the block lives in a superslab (aligned base with the SSPL magic), 8-aligned block
    assert raw(p & ~(heap.ss_bytes - 1), 4) == SSPL
    assert (p - K.BLOCK_HEADER) % 8 == 0
    assert heap.stats()["live_large"] == 0
    data = pattern(size, size)
    fill(heap, p, data)
    assert raw(p, size) == data
    heap.free(p)
    heap.check()


@pytest.mark.parametrize("size", LARGE_SIZES)
def test_large_path(make_heap, size):
    heap = make_heap()
    before = heap.stats()
    p = heap.malloc(size)
    st = heap.stats()
    assert st["live_large"] == 1 and st["large_allocs"] == 1
    assert st["mmap_total"] == before["mmap_total"] + 1
    assert (p - K.LARGE_HEADER) % K.PAGE_SIZE == 0
    assert raw(p - K.LARGE_HEADER, 4) == K.LARGE_MAGIC.to_bytes(4, "little")
    usable = heap.usable_size(p)
    assert usable >= size and (usable + K.LARGE_HEADER) % K.PAGE_SIZE == 0
    data = pattern(7, size)
    fill(heap, p, data)
    assert raw(p, size) == data
    assert heap.stats()["live_bytes"] >= size
    memory_report_ok(heap)
    heap.free(p)
    st = heap.stats()
    assert st["live_large"] == 0 and st["large_frees"] == 1
    assert st["munmap_total"] == before["munmap_total"] + 1
    heap.check()


def test_usable_size(make_heap):
    heap = make_heap()
    for cls, stride in enumerate(K.CLASS_STRIDES):
        p = heap.malloc(stride - 1)
        assert heap.usable_size(p) == stride - 1, cls
        assert len(heap.view(p)) == stride - 1
    assert heap.tiny_max == K.TINY_MAX_SIZE == 2047


def test_tiny_max_class_option(make_heap):
    heap = make_heap(tiny_max_class=5)  # C5 = 256: 255 is tiny, 256 goes large
    p = heap.malloc(255)
    assert heap.usable_size(p) == 255 and heap.stats()["live_large"] == 0
    q = heap.malloc(256)
    assert heap.stats()["live_large"] == 1 and heap.usable_size(q) >= 256
    heap.check()


def test_malloc_zero_returns_unique_blocks(make_heap):
    heap = make_heap()
    ptrs = {heap.malloc(0) for _ in range(100)}
    assert len(ptrs) == 100 and 0 not in ptrs
    for p in ptrs:
        heap.free(p)
    heap.free(0)  # free(NULL) is a no-op
    heap.check()


def test_numpy_integer_sizes(make_heap):
    np = pytest.importorskip("numpy")
    heap = make_heap()
    p = heap.malloc(np.int64(100))
    assert heap.usable_size(p) == 127
    q = heap.calloc(np.int32(3), np.uint16(5))
    assert read(heap, q, 15) == bytes(15)


# ---------------------------------------------------------------- calloc


def test_calloc_zeroes_recycled_memory(make_heap):
    heap = make_heap()
    for size in (5, 100, 1000, 2047, 5000):
        p = heap.malloc(size)
        fill(heap, p, b"\xff" * size)
        heap.free(p)
        q = heap.calloc(1, size)  # LIFO front cache / reused mapping: very likely the same block
        assert read(heap, q, size) == bytes(size)
        heap.free(q)
    # recycle many blocks of one class through calloc
    ptrs = [heap.malloc(60) for _ in range(200)]
    for p in ptrs:
        fill(heap, p, b"\xab" * 60)
    for p in ptrs:
        heap.free(p)
    again = [heap.calloc(6, 10) for _ in range(200)]
    assert set(again) & set(ptrs), "expected recycled blocks"
    for q in again:
        assert raw(q, 60) == bytes(60)
    heap.check()


def test_calloc_shapes(make_heap):
    heap = make_heap()
    p = heap.calloc(0, 10)
    assert p and heap.usable_size(p) >= 0
    q = heap.calloc(10, 0)
    assert q
    r = heap.calloc(300, 10)  # 3000 bytes: large path
    assert heap.usable_size(r) >= 3000 and read(heap, r, 3000) == bytes(3000)
    heap.check()


@pytest.mark.parametrize(("n", "size"), [(1 << 30, 1 << 30), (1 << 21, 1 << 20), (2**40, 2)])
def test_calloc_overflow(make_heap, n, size):
    heap = make_heap()
    before = heap.stats()["mmap_total"]
    with pytest.raises(InvalidSizeError):
        heap.calloc(n, size)
    assert heap.stats()["mmap_total"] == before  # refused before asking the kernel
    heap.free(heap.calloc(2, 3))
    heap.check()


# ---------------------------------------------------------------- realloc


def test_realloc_same_class_keeps_block(make_heap):
    heap = make_heap()
    p = heap.malloc(100)  # C4 (stride 128): 64..127 stay in place
    data = pattern(1, 100)
    fill(heap, p, data)
    assert heap.realloc(p, 127) == p
    assert heap.realloc(p, 64) == p
    assert read(heap, p, 64) == data[:64]
    heap.check()


def test_realloc_grow_and_shrink_preserve_bytes(make_heap):
    heap = make_heap()
    p = heap.malloc(20)
    data = pattern(2, 20)
    fill(heap, p, data)
    q = heap.realloc(p, 500)  # grow across classes
    assert q != p and read(heap, q, 20) == data
    fill(heap, q, pattern(3, 500))
    r = heap.realloc(q, 10)  # shrink to a smaller class: new block, prefix kept
    assert read(heap, r, 10) == pattern(3, 500)[:10]
    assert heap.usable_size(r) == 15
    heap.free(r)
    assert heap.stats()["live_blocks"] == 0
    heap.check()


def test_realloc_to_and_from_large(make_heap):
    heap = make_heap()
    p = heap.malloc(1500)
    data = pattern(4, 1500)
    fill(heap, p, data)
    big = heap.realloc(p, 50000)  # tiny -> large
    assert heap.stats()["live_large"] == 1
    assert read(heap, big, 1500) == data
    tail = pattern(5, 50000)
    fill(heap, big, tail)
    same = heap.realloc(big, 40000)  # large shrink that still fits stays in place
    assert same == big and read(heap, big, 40000) == tail[:40000]
    bigger = heap.realloc(big, 200000)  # large -> larger large
    assert read(heap, bigger, 40000) == tail[:40000]
    small = heap.realloc(bigger, 100)  # large -> tiny
    assert heap.stats()["live_large"] == 0
    assert heap.usable_size(small) == 127 and read(heap, small, 100) == tail[:100]
    heap.free(small)
    heap.check()


def test_realloc_null_and_zero(make_heap):
    heap = make_heap()
    p = heap.realloc(0, 40)  # realloc(NULL, n) == malloc(n)
    assert p and heap.usable_size(p) == 63
    assert heap.realloc(p, 0) == 0  # realloc(p, 0) frees (glibc)
    assert heap.stats()["live_blocks"] == 0
    with pytest.raises(simalloc.DoubleFreeError):
        heap.free(p)
    big = heap.malloc(10000)
    assert heap.realloc(big, 0) == 0
    assert heap.stats()["live_large"] == 0
    heap.check()


# ---------------------------------------------------------------- views


def test_view_writable_and_length(make_heap):
    heap = make_heap()
    for size in (0, 1, 100, 2047, 3000):
        p = heap.malloc(size)
        v = heap.view(p)
        assert not v.readonly and v.format == "B"
        assert len(v) == heap.usable_size(p)
        v[-1] = 0x77  # the last usable byte is writable
        assert raw(p + len(v) - 1, 1) == b"\x77"
        v.release()
    heap.check()  # writing the last usable byte did not touch the neighbour's header


# ---------------------------------------------------------------- stats and residency

STATS_KEYS = {"mmap_total", "munmap_total", "madvise_calls", "lean_decommit", "lean_retire",
              "superslabs_active", "superslabs_cached", "slabs_empty", "live_blocks", "live_bytes"}
RESIDENCY_KEYS = {"mapped_bytes", "resident_bytes", "lazyfree_bytes"}


def test_stats_contract(make_heap, kernel):
    heap = make_heap(tiny_prewarm=False)
    st = heap.stats()
    assert STATS_KEYS <= set(st)
    assert st["kernel"] == kernel
    assert all(isinstance(st[k], int) for k in STATS_KEYS)
    assert st["live_blocks"] == 0 and st["live_bytes"] == 0 and st["mmap_total"] == 0
    ptrs = [heap.malloc(100) for _ in range(10)]
    st = heap.stats()
    assert st["live_blocks"] == 10 and st["live_bytes"] == 10 * 127
    assert st["superslabs_active"] == 1 and st["mmap_total"] == 1
    for p in ptrs:
        heap.free(p)
    heap.trim()
    st = heap.stats()
    assert st["live_blocks"] == 0 and st["superslabs_active"] == 0
    assert st["superslabs_cached"] == 1  # FAST keeps it in the LRU
    assert st["munmap_total"] == 0


def test_residency_contract(make_heap):
    heap = make_heap(tiny_prewarm=False)
    r0 = heap.residency()
    assert RESIDENCY_KEYS <= set(r0) and r0["resident_bytes"] == 0
    ptrs = [heap.malloc(2000) for _ in range(512)]  # 1 MiB of C7 blocks
    for p in ptrs:
        ctypes.memset(p, 1, 2000)
    r1 = heap.residency()
    assert r1["mapped_bytes"] == heap.stats()["mapped_bytes"] >= 2 * MiB
    assert MiB <= r1["resident_bytes"] <= r1["mapped_bytes"]
    assert r1["resident_active_bytes"] == r1["resident_bytes"]
    assert r1["lazyfree_bytes"] == 0


# ---------------------------------------------------------------- accounting and invariants


def _scenario_classes(heap):
    ptrs = [heap.malloc(s) for s in range(0, 2048, 13)]
    for i, p in enumerate(ptrs):
        fill(heap, p, pattern(i, 1))
    return ptrs


@pytest.mark.parametrize("overrides", [
    {},
    {"tiny_prewarm": False},
    {"mem_lean": True, "mem_lean_decommit": "DONTNEED", "mem_lean_target_mb": 0},
    {"mem_lean": True, "mem_lean_decommit": "FREE", "mem_lean_target_mb": 2},
    {"policy": "slab-purge"},
    {"ss_lg": 20, "front_cache_cap": 4, "front_drain_batch": 2, "front_refill_batch": 4},
    {"lean_retire": "unmap", "mem_lean": True, "mem_lean_target_mb": 0},
])
def test_memory_report_sums_after_scenarios(make_heap, overrides):
    heap = make_heap(**overrides)
    memory_report_ok(heap)
    heap.check()
    ptrs = _scenario_classes(heap)
    large = [heap.malloc(n) for n in (3000, 70000)]
    memory_report_ok(heap)
    heap.check()
    # fill several superslabs with C7 then free every other block, then all
    c7 = [heap.malloc(2000) for _ in range(2000)]
    memory_report_ok(heap)
    heap.check()
    for p in c7[::2]:
        heap.free(p)
    memory_report_ok(heap)
    heap.check()
    for p in c7[1::2] + ptrs:
        heap.free(p)
    heap.free(large[0])
    memory_report_ok(heap)
    heap.check()
    heap.trim()
    rep = memory_report_ok(heap)
    heap.check()
    assert rep["large_live"] == 70000
    assert heap.stats()["live_blocks"] == 1  # only the large block
    again = [heap.malloc(300) for _ in range(300)]
    memory_report_ok(heap)
    heap.check()
    for p in again:
        heap.free(p)
    heap.free(large[1])
    heap.trim()
    rep = memory_report_ok(heap)
    heap.check()
    assert rep["live_blocks"] == rep["large_live"] == rep["front_cache_blocks"] == 0


# ---------------------------------------------------------------- superslab layout


def test_superslab_alignment_and_magic(make_heap):
    heap = make_heap()
    assert heap.ss_bytes == 2 * MiB
    bases = set()
    for size in (1, 30, 60, 120, 250, 500, 1000, 2000):
        for _ in range(50):
            p = heap.malloc(size)
            base = p & ~(2 * MiB - 1)
            assert raw(base, 4) == SSPL == b"LPSS"
            assert ctypes.c_uint32.from_address(base).value == 0x5353504C
            assert p - base >= K.header_bytes(21)  # never inside the header
            bases.add(base)
    for base in bases:
        assert base % (2 * MiB) == 0
    heap.check()


def _check_1mib(heap):
    assert heap.lg == 20 and heap.ss_bytes == MiB and heap.nslabs == 16
    ptrs = [heap.malloc(2000) for _ in range(1000)]  # ~2 MiB: at least two superslabs
    bases = {p & ~(MiB - 1) for p in ptrs}
    assert len(bases) >= 2
    for base in bases:
        assert raw(base, 4) == SSPL
        assert ctypes.c_uint32.from_address(base + 4).value == 20  # H_LG
    st = heap.stats()
    assert st["superslabs_active"] == len(bases)
    for p in ptrs:
        heap.free(p)
    heap.check()
    memory_report_ok(heap)


def test_one_mib_superslabs(make_heap):
    _check_1mib(make_heap(ss_lg=20))


def test_one_mib_superslabs_from_env(make_heap):
    cfg = Config.from_env({"HAKMEM_TINY_SS_FORCE_LG": "20"})
    assert cfg.ss_lg == 20
    _check_1mib(make_heap(cfg))


# ---------------------------------------------------------------- prewarm


def test_default_prewarm_fills_front_caches(make_heap):
    heap = make_heap()
    st = heap.stats()
    assert st["prewarm_blocks"] == sum(Config.defaults().prewarm_counts().values())
    assert st["front_cache_blocks"] > 0 and st["superslabs_active"] == 1
    assert st["live_blocks"] == 0  # prewarmed blocks are cached, not live
    heap.check()


def test_prewarm_counts_options(make_heap):
    heap = make_heap(tiny_prewarm_all=3)
    assert heap.stats()["prewarm_blocks"] == 12
    heap2 = make_heap(tiny_prewarm=False)
    st = heap2.stats()
    assert st["prewarm_blocks"] == 0 and st["front_cache_blocks"] == 0 and st["mmap_total"] == 0


def test_lean_suppresses_prewarm(make_heap):
    heap = make_heap(mem_lean=True, prewarm_superslabs=2)
    st = heap.stats()
    assert st["prewarm_blocks"] == 0 and st["prewarm_superslabs"] == 0
    assert st["front_cache_blocks"] == 0 and st["mmap_total"] == 0
    assert heap.residency()["mapped_bytes"] == 0
    heap.check()


def test_prewarm_superslabs(make_heap):
    cfg = Config.from_env({"HAKMEM_PREWARM_SUPERSLABS": "2"})
    heap = make_heap(cfg, tiny_prewarm=False)
    st = heap.stats()
    assert st["prewarm_superslabs"] == 2
    assert st["superslabs_cached"] == 2 and st["superslabs_active"] == 0
    assert st["mmap_total"] == 2
    heap.check()
    p = heap.malloc(10)  # served from the LRU, no new mmap
    st = heap.stats()
    assert st["ss_from_lru"] == 1 and st["mmap_total"] == 2 and st["superslabs_cached"] == 1
    heap.free(p)
    # with the hot prewarm as well, the prewarmed superslabs are used first
    heap2 = make_heap(cfg)
    st2 = heap2.stats()
    assert st2["mmap_total"] == 2 and st2["superslabs_cached"] + st2["superslabs_active"] == 2
    heap2.check()


# ---------------------------------------------------------------- lifecycle


def test_os_stats_line_at_close(make_heap, capsys):
    heap = make_heap(os_stats=True)
    heap.free(heap.malloc(100))
    capsys.readouterr()
    heap.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("[SS_OS_STATS]")
    # hakmem's fields (munmap calls and simalloc's other counters are in stats())
    for key in ("alloc=", "free=", "mmap_total=", "madvise=", "lean_decommit=", "lean_retire="):
        assert key in err[0]
    heap.close()  # idempotent: no second line
    assert capsys.readouterr().err == ""


def test_os_stats_off_prints_nothing(make_heap, capsys):
    heap = make_heap()
    heap.close()
    assert capsys.readouterr().err == ""


def test_close_idempotent(make_heap):
    heap = make_heap()
    p = heap.malloc(10)
    big = heap.malloc(10000)
    assert p and big and not heap.closed
    heap.close()
    assert heap.closed
    heap.close()
    assert heap.closed and "closed" in repr(heap)


def test_close_unmaps_everything(make_heap):
    heap = make_heap()
    for _ in range(3000):
        heap.malloc(2000)
    heap.malloc(100000)
    maps = heap.stats()["mmap_total"] - heap.stats()["munmap_total"]
    assert maps >= 2
    heap.close()
    assert heap.os.mmap_total == heap.os.munmap_total
    assert heap.os.mapped_bytes == 0


def test_context_manager(kernel):
    with simalloc.Heap(Config.defaults(kernel=kernel)) as heap:
        p = heap.malloc(50)
        fill(heap, p, b"ctx")
        assert heap.kernel_name == kernel and not heap.closed
    assert heap.closed
    with pytest.raises(simalloc.HeapClosedError):
        heap.malloc(1)


def test_heap_overrides_and_repr(make_heap, kernel):
    heap = make_heap(mem_lean=True, mem_lean_decommit="DONTNEED", mem_lean_target_mb=4)
    assert isinstance(heap.policy, simalloc.LeanPolicy)
    assert heap.config.mem_lean and heap.config.kernel == kernel
    text = repr(heap)
    assert "lean" in text and kernel in text
    clock = heap.clock()
    assert clock.ops == 0 and clock.seconds >= 0
    heap.free(heap.malloc(1))
    assert heap.clock().ops == 2


@pytest.mark.parametrize("level", [1, 2, 3])
def test_debug_levels_check_as_they_go(make_heap, kernel, level):
    """debug >= 2 runs check() inside slow-path callbacks, i.e. in the middle of a kernel
    drain: the kernel must keep blocks it has not yet returned visible in the front cache and
    tag a freed block only after the drain (both kernels)."""
    heap = make_heap(debug=level, front_cache_cap=4, front_drain_batch=2, front_refill_batch=4)
    ptrs = [heap.malloc(s) for s in (1, 20, 200, 2000) * 40]
    for p in ptrs[::2]:
        heap.free(p)
    heap.trim()
    for p in ptrs[1::2]:
        heap.free(p)
    heap.trim()
    assert heap.stats()["live_blocks"] == 0
    heap.check()
