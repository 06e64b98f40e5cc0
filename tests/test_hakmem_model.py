"""The hakmem model (docs/hakmem-model.md): warm pool, Pool/Mid tier, tiny limit, prefault and
per-acquisition advice, hakmem's refill stage names, and the ``[SS_OS_STATS]`` line with
hakmem's field meanings.  Every test runs on both kernels (``make_heap``)."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from heaputil import fill, pattern, raw, read

import simalloc
from simalloc import (
    Config,
    DoubleFreeError,
    Heap,
    HeapCorruptionError,
    InvalidPointerError,
)
from simalloc import constants as K
from simalloc.oslayer import FaultInjectingOSLayer
from simalloc.reports import OS_STATS_FIELDS

MiB = 1 << 20
#: hakmem's documented defaults where simalloc's option defaults differ (see the docs).
HAKMEM = {"tiny_max_size": 1023, "mid_tier": True}
NO_FC = {"front_cache_cap": 0, "front_refill_batch": 1, "front_drain_batch": 1}  # slab by slab
STAGES = ("stage_warm_pool", "stage_0_5_reuse", "stage_1_free_slot", "stage_partial",
          "stage_2_unused", "stage_2_empty_other", "stage_3_new_ss")


def still_works(heap: Heap) -> None:
    ptrs = [heap.malloc(s) for s in (0, 100, 1000, 1500, 5000, 20000, 40000)]
    for i, p in enumerate(ptrs):
        data = pattern(i, min(8, heap.usable_size(p)))
        fill(heap, p, data)
        assert raw(p, len(data)) == data
    for p in ptrs:
        heap.free(p)
    heap.check()


# ---------------------------------------------------------------------------- options
def test_defaults_and_hakmem_env_names(clean_env):
    c = Config.defaults()
    assert (c.warm_pool_size, c.warm_pool_prefill, c.warm_pool_prefill_source) == (16, 2, "shared")
    assert (c.superslab_reuse, c.ss_prefault, c.ss_acquire_advice) == (0, 0, "mmap")
    assert (c.tiny_max_size, c.mid_tier) == (2047, False)
    c = Config.from_env({"HAKMEM_WARM_POOL_SIZE": "4", "HAKMEM_SS_PREFAULT": "2",
                         "HAKMEM_SUPERSLAB_REUSE": "1", "SIMALLOC_TINY_MAX_SIZE": "1023",
                         "SIMALLOC_MID_TIER": "1"})
    assert (c.warm_pool_size, c.ss_prefault, c.superslab_reuse, c.tiny_max_size, c.mid_tier) == \
        (4, 2, 1, 1023, True)
    for bad in ({"HAKMEM_SS_PREFAULT": "3"}, {"HAKMEM_SUPERSLAB_REUSE": "2"},
                {"SIMALLOC_TINY_MAX_SIZE": "2048"}, {"SIMALLOC_WARM_POOL_PREFILL_SOURCE": "x"}):
        with pytest.raises(simalloc.ConfigError, match=next(iter(bad))):
            Config.from_env(bad)


# ---------------------------------------------------------------------------- tiny limit
def test_tiny_limit_option(make_heap):
    assert make_heap(tiny_prewarm=False).tiny_max == 2047  # simalloc's default: C7's stride
    heap = make_heap(tiny_prewarm=False, tiny_max_size=1023)  # hakmem's
    assert heap.tiny_max == 1023
    p, q = heap.malloc(1023), heap.malloc(1024)
    assert heap.usable_size(p) == 2047  # C7 block (stride 2048)
    assert heap.stats()["live_large"] == 1 and heap.usable_size(q) >= 1024  # no Mid tier: mmap
    heap.free(p)
    heap.free(q)
    # the class limit still caps it
    assert make_heap(tiny_prewarm=False, tiny_max_class=5, tiny_max_size=1023).tiny_max == 255
    heap.check()


def test_tiny_limit_realloc_stays_in_c7(make_heap):
    heap = make_heap(tiny_prewarm=False, **HAKMEM)
    p = heap.malloc(600)  # C7
    fill(heap, p, pattern(1, 600))
    assert heap.realloc(p, 1000) == p  # same class
    q = heap.realloc(p, 1500)  # above the tiny limit: Mid, even though C7's stride holds it
    assert q != p and heap.stats()["live_mid"] == 1 and read(heap, q, 600) == pattern(1, 600)
    heap.free(q)
    heap.check()


# ---------------------------------------------------------------------------- Mid tier
def test_mid_no_mmap_per_request(make_heap):
    heap = make_heap(tiny_prewarm=False, mid_tier=True)
    before = heap.stats()
    sizes = [2048, 2049, 4096, 8191, 8192, 8193, 16384, 16385, 30000, 32768]
    ptrs = [heap.malloc(s) for s in sizes for _ in range(5)]
    st = heap.stats()
    assert st["mmap_total"] - before["mmap_total"] == 1  # one Mid region, not 50 mappings
    assert st["live_mid"] == 50 and st["large_allocs"] == 0 and st["mid_regions"] == 1
    assert st["live_blocks"] == 50
    for p in ptrs:
        heap.free(p)
    st = heap.stats()
    assert st["munmap_total"] == before["munmap_total"] and st["mid_frees"] == 50
    assert st["live_mid"] == 0 and st["mid_regions"] == 1  # the empty region is kept
    big = heap.malloc(32769)  # above the Mid tier: its own mapping
    assert heap.stats()["live_large"] == 1 and heap.stats()["large_allocs"] == 1
    heap.free(big)
    heap.check()


@pytest.mark.parametrize("size,usable", [(2048, 8192), (8192, 8192), (8193, 16384),
                                         (16384, 16384), (16385, 32768), (32768, 32768)])
def test_mid_usable_size_and_view(make_heap, size, usable):
    heap = make_heap(tiny_prewarm=False, mid_tier=True)
    p = heap.malloc(size)
    assert heap.usable_size(p) == usable and p % 8192 == 0  # headerless, class-aligned blocks
    v = heap.view(p)
    assert len(v) == usable
    v[-1] = 0x5A
    v.release()
    assert raw(p + usable - 1, 1) == b"\x5a"
    heap.free(p)
    heap.check()


def test_mid_realloc_across_tiers(make_heap):
    heap = make_heap(tiny_prewarm=False, **HAKMEM)
    data = pattern(7, 100)
    p = heap.malloc(100)
    fill(heap, p, data)
    p = heap.realloc(p, 3000)  # tiny -> Mid 8K
    assert heap.stats()["live_mid"] == 1 and read(heap, p, 100) == data
    assert heap.realloc(p, 8000) == p  # same Mid class: in place
    q = heap.realloc(p, 20000)  # Mid 8K -> Mid 32K
    assert q != p and heap.usable_size(q) == 32768 and read(heap, q, 100) == data
    r = heap.realloc(q, 100_000)  # Mid -> large
    assert heap.stats()["live_large"] == 1 and heap.stats()["live_mid"] == 0
    assert read(heap, r, 100) == data
    s = heap.realloc(r, 9000)  # large -> Mid
    assert heap.stats()["live_large"] == 0 and heap.usable_size(s) == 16384
    t = heap.realloc(s, 50)  # Mid -> tiny
    assert heap.stats()["live_mid"] == 0 and read(heap, t, 50) == data[:50]
    assert heap.realloc(t, 0) == 0
    assert heap.stats()["live_blocks"] == 0
    heap.check()


def test_mid_misuse_raises_documented_errors(make_heap):
    heap = make_heap(tiny_prewarm=False, mid_tier=True)
    p = heap.malloc(10000)  # 16K class: its page holds 4 blocks, 1 carved
    keep = heap.malloc(10000)  # keeps the page claimed
    region = p & ~(K.MID_REGION_SIZE - 1)
    with pytest.raises(InvalidPointerError, match="interior"):
        heap.free(p + 8)
    with pytest.raises(InvalidPointerError, match="header page"):
        heap.free(region + 64)
    with pytest.raises(InvalidPointerError, match="unused Mid page"):
        heap.free(region + (K.MID_PAGES - 1) * K.MID_PAGE_SIZE)
    with pytest.raises(InvalidPointerError, match="never handed out"):
        heap.free(keep + 16384)  # the 3rd block of the page
    for call in (heap.usable_size, heap.view):
        with pytest.raises(InvalidPointerError):
            call(p + 1)
    heap.free(p)
    with pytest.raises(DoubleFreeError):
        heap.free(p)
    with pytest.raises(DoubleFreeError):
        heap.usable_size(p)
    heap.free(keep)  # the page's last block: the page goes back to UNUSED
    with pytest.raises(DoubleFreeError):
        heap.free(keep)  # still a double free (remembered), not a foreign pointer
    heap.check()
    still_works(heap)


def test_mid_check_walks_regions(make_heap):
    heap = make_heap(tiny_prewarm=False, mid_tier=True)
    p = heap.malloc(9000)
    region = p & ~(K.MID_REGION_SIZE - 1)
    heap.check()
    saved = raw(region, 4)
    ctypes.memmove(region, b"XXXX", 4)  # overwrite the region's magic
    with pytest.raises(HeapCorruptionError, match="Mid region"):
        heap.check()
    ctypes.memmove(region, saved, 4)
    heap._st.mid.live += 1  # a count that disagrees with the page table
    with pytest.raises(HeapCorruptionError, match="Mid live"):
        heap.check()
    heap._st.mid.live -= 1
    heap.free(p)
    heap.check()


def test_mid_regions_keep_one_empty(make_heap):
    heap = make_heap(tiny_prewarm=False, mid_tier=True)
    per_region = (K.MID_PAGES - K.MID_HEADER_PAGES) * (K.MID_PAGE_SIZE // 32768)
    ptrs = [heap.malloc(32768) for _ in range(per_region + 10)]
    assert heap.stats()["mid_regions"] == 2
    for i, p in enumerate(ptrs):
        heap.free(p)
        if i % 17 == 0:
            heap.check()
    st = heap.stats()
    assert st["mid_regions"] == 1 and st["mid_regions_unmapped"] == 1 and st["live_mid"] == 0
    heap.check()


def test_mid_memory_report_and_residency(make_heap):
    heap = make_heap(tiny_prewarm=False, mid_tier=True)
    ptrs = [heap.malloc(s) for s in (3000, 3000, 12000, 31000, 100, 70000)]
    for p in ptrs:
        ctypes.memset(p, 1, 1000)
    rep = heap.memory_report()
    assert rep["mapped_total"] == heap.stats()["mapped_bytes"]  # the parts add up exactly
    assert rep["mid_live"] == 2 * 8192 + 16384 + 32768
    assert rep["mid_metadata"] == K.MID_HEADER_PAGES * K.MID_PAGE_SIZE
    mid = sum(v for k, v in rep.items() if k.startswith("mid_"))
    assert mid == K.MID_REGION_SIZE
    res = heap.residency()
    assert res["resident_mid_bytes"] >= 5 * K.PAGE_SIZE  # header page + 4 touched blocks
    assert res["resident_bytes"] >= res["resident_mid_bytes"] + res["resident_large_bytes"]
    for p in ptrs:
        heap.free(p)
    assert heap.memory_report()["mid_live"] == 0
    heap.check()


def test_mid_replay_writes_first_byte(make_heap):
    heap = make_heap(tiny_prewarm=False, mid_tier=True)
    ops = np.array([[K.OP_MALLOC, 0, 9000], [K.OP_MALLOC, 1, 20000], [K.OP_FREE, 0, 0]],
                   dtype=np.int64)
    slots = np.zeros(2, dtype=np.uint64)
    heap.replay(ops, slots)
    assert slots[0] == 0 and raw(int(slots[1]), 1) == bytes([20000 & 0xFF])
    assert heap.stats()["mid_allocs"] == 2 and heap.stats()["ops"] == 3
    heap.drain_slots(slots)
    heap.check()


# ---------------------------------------------------------------------------- warm pool
def test_warm_pool_off_and_on(make_heap):
    off = make_heap(tiny_prewarm=False, warm_pool_size=0)
    on = make_heap(tiny_prewarm=False)
    for heap in (off, on):
        ptrs = [heap.malloc(1000) for _ in range(200)]  # C7: ~7 slabs, several refills
        st = heap.stats()
        assert st["stage_3_new_ss"] == 1 and st["mmap_total"] == 1
        assert sum(st[k] for k in STAGES) == st["slow_refills"]  # one stage per refill
        for p in ptrs:
            heap.free(p)
        heap.check()
    assert off.stats()["stage_warm_pool"] == off.stats()["warm_pool_entries"] == 0
    st = on.stats()
    assert st["warm_pool_misses"] == 1 and st["stage_warm_pool"] == st["slow_refills"] - 1
    assert on._st.warm.entries(7) == [0]


def test_warm_pool_prefill_shared_never_maps(make_heap):
    heap = make_heap(tiny_prewarm=False, max_superslabs=8, **NO_FC)
    c7 = [heap.malloc(1000) for _ in range(1100)]  # more than one superslab of C7
    assert heap.stats()["superslabs_active"] == 2
    base0 = heap._st.superslab(0).base
    slab5 = [p for p in c7 if p - base0 >> K.SLAB_LG == 5]
    for p in slab5:  # superslab 0 gets an EMPTY slab: room for any class (Stage 2's last resort)
        heap.free(p)
    st0 = heap.stats()
    p = heap.malloc(100)  # C4 misses its empty pool: the superslabs with room, no mmap
    st = heap.stats()
    assert st["mmap_total"] == st0["mmap_total"] and st["warm_pool_misses"] == st0["warm_pool_misses"] + 1
    assert st["stage_2_unused"] == st0["stage_2_unused"] + 1  # superslab 1's UNUSED slab
    assert st["warm_pool_prefilled"] - st0["warm_pool_prefilled"] == 1
    assert heap._st.warm.entries(4) == [1, 0]  # the one in use, then the prefilled on top
    for q in [p, *(q for q in c7 if q not in set(slab5))]:
        heap.free(q)
    assert heap.stats()["superslabs_active"] == 0 and heap.stats()["warm_pool_entries"] == 0
    heap.check()


def test_warm_pool_prefill_fresh_maps_extra_superslabs(make_heap):
    heap = make_heap(tiny_prewarm=False, warm_pool_prefill_source="fresh", warm_pool_prefill=2)
    p = heap.malloc(100)
    st = heap.stats()
    assert st["superslabs_active"] == 3 and st["ss_mmap_calls"] == 3 and st["warm_pool_prefilled"] == 2
    pool = heap._st.warm.entries(4)
    assert len(pool) == 3 and pool[0] == 0  # the superslab in use first, the prefilled on top
    assert heap.os_stats_line().startswith("[SS_OS_STATS] alloc=3 free=0 madvise=3 ")
    res = heap.residency()
    assert res["resident_active_bytes"] < 3 * heap.ss_bytes // 4  # prefilled ones stay cold
    q = heap.malloc(100)
    heap.free(p)
    heap.free(q)
    heap.check()
    small = make_heap(tiny_prewarm=False, warm_pool_prefill_source="fresh", warm_pool_size=1)
    small.malloc(100)
    assert small.stats()["warm_pool_entries"] == 1  # the pool drops its oldest entry
    small.check()


def test_warm_pool_prefill_fresh_stops_when_the_table_is_full(make_heap):
    heap = make_heap(tiny_prewarm=False, warm_pool_prefill_source="fresh", warm_pool_prefill=8,
                     max_superslabs=4)
    p = heap.malloc(100)  # served; the prefill stops quietly at the table's end
    assert heap.stats()["superslabs_active"] == 4 and heap.stats()["warm_pool_prefilled"] == 3
    heap.free(p)
    heap.check()


# ---------------------------------------------------------------------------- stages
def _c7_empties(heap: Heap) -> list[int]:
    """Leave EMPTY C7 slabs in a live superslab; returns the blocks still held (slab 0)."""
    ptrs = [heap.malloc(1000) for _ in range(31 + 32 * 5)]  # slab 0 (31 blocks) + 5 full slabs
    for p in ptrs[31:]:
        heap.free(p)
    assert heap.stats()["slabs_empty"] == 4  # slabs 1..4 (slab 5 is still C7's current slab)
    return ptrs[:31]


@pytest.mark.parametrize("reuse", [0, 1])
def test_superslab_reuse_stage_0_5(make_heap, reuse):
    heap = make_heap(tiny_prewarm=False, warm_pool_size=0, superslab_reuse=reuse, **NO_FC)
    keep = _c7_empties(heap)
    before = heap.stats()
    p = heap.malloc(100)  # C4
    st = heap.stats()
    if reuse:
        assert st["stage_0_5_reuse"] == before["stage_0_5_reuse"] + 1  # an EMPTY C7 slab, reformatted
        assert st["slabs_empty"] == before["slabs_empty"] - 1
    else:
        assert st["stage_2_unused"] == before["stage_2_unused"] + 1  # EMPTY slabs serve C7 only
        assert st["slabs_empty"] == before["slabs_empty"]
    more = [heap.malloc(1000) for _ in range(40)]  # exhausts C7's current slab: C7 refills
    st2 = heap.stats()
    key = "stage_0_5_reuse" if reuse else "stage_1_free_slot"
    assert st2[key] == st[key] + 1 and st2["stage_2_unused"] == st["stage_2_unused"]
    for x in (p, *more, *keep):
        heap.free(x)
    heap.check()


def test_stage_2_last_resort_and_stage_3(make_heap):
    heap = make_heap(tiny_prewarm=False, warm_pool_size=0, max_superslabs=4, **NO_FC)
    cap = sum(K.slab_capacity(heap.lg, s, 7) for s in range(heap.nslabs))
    ptrs = [heap.malloc(1000) for _ in range(cap)]  # every slab of the superslab is C7
    assert heap.stats()["stage_3_new_ss"] == 1 and not heap._st.has_unused
    base = heap._st.superslab(0).base
    slab8 = [p for p in ptrs if p - base >> K.SLAB_LG == 8]
    for p in slab8:  # empty one slab
        heap.free(p)
    p = heap.malloc(100)  # no UNUSED slab left: the EMPTY C7 slab serves C4 before any mmap
    st = heap.stats()
    assert st["stage_2_empty_other"] == 1 and st["stage_3_new_ss"] == 1 and st["mmap_total"] == 1
    q = heap.malloc(100)
    heap.free(p)
    heap.free(q)
    more = heap.malloc(1000)  # C7 is full and nothing is EMPTY: Stage 3 maps a superslab
    assert heap.stats()["stage_3_new_ss"] == 2
    for x in (more, *(x for x in ptrs if x not in set(slab8))):
        heap.free(x)
    heap.check()


def test_stage_counters_sum_to_slow_refills_on_mixed(make_heap):
    mixed = pytest.importorskip("simalloc.workloads.mixed")
    if not hasattr(mixed, "run_mixed"):
        pytest.skip("the Mixed runner is being replaced (kernel rewrite)")
    heap = make_heap(**HAKMEM, front_cache_cap=8, front_refill_batch=4, front_drain_batch=4)
    slots = np.zeros(400, dtype=np.uint64)
    mixed.run_mixed(heap, 3000, 400, 1 + 0xDEADBEEF, slots)
    mixed.run_mixed(heap, 20_000, 400, 1, slots)
    heap.check()
    st = heap.stats()
    assert sum(st[k] for k in STAGES) == st["slow_refills"]
    assert st["mid_allocs"] > 0 and st["large_allocs"] == 0  # 1024..1039 B: Mid, not mmap
    heap.drain_slots(slots)
    heap.check()


# ---------------------------------------------------------------------------- prefault, advice
def test_acquisition_advice_default_willneed(make_heap):
    heap = make_heap(tiny_prewarm=False)
    p = heap.malloc(100)
    st = heap.stats()
    assert st["madvise_by_advice"]["WILLNEED"] == 1 == st["ss_advise_calls"]
    assert st["madvise_by_advice"]["NOHUGEPAGE"] == 1  # simalloc's own: not in hakmem's madvise=
    assert heap.residency()["resident_active_bytes"] < MiB  # WILLNEED does not populate anonymous memory
    heap.free(p)


def test_acquisition_advice_off_and_every(make_heap):
    off = make_heap(tiny_prewarm=False, ss_acquire_advice="off")
    off.malloc(100)
    assert off.stats()["ss_advise_calls"] == 0 and off.stats()["madvise_disabled"] == 1
    every = make_heap(tiny_prewarm=False, ss_acquire_advice="every")
    p = every.malloc(100)
    every.free(p)
    every.trim()  # the superslab empties into the LRU
    every.malloc(100)  # LRU pop: advised again
    st = every.stats()
    assert st["ss_from_lru"] == 1 and st["ss_advise_calls"] == 2 and st["mmap_total"] == 1


@pytest.mark.parametrize("prefault", [1, 2])
def test_prefault_populates_the_superslab(make_heap, prefault):
    heap = make_heap(tiny_prewarm=False, ss_prefault=prefault)
    heap.malloc(100)
    st = heap.stats()
    if prefault == 1:
        if st["madvise_disabled"]:  # a kernel older than 5.14 refuses MADV_POPULATE_WRITE
            pytest.skip("MADV_POPULATE_WRITE not supported here")
        assert st["madvise_by_advice"]["POPULATE_WRITE"] == 1 and st["madvise_by_advice"]["WILLNEED"] == 0
    else:
        assert st["prefault_pages"] == heap.ss_bytes // K.PAGE_SIZE
        assert st["madvise_by_advice"]["WILLNEED"] == 1
    assert heap.residency()["resident_active_bytes"] >= heap.ss_bytes  # every page resident
    heap.check()


def test_refused_advice_is_counted_not_fatal(kernel):
    os = FaultInjectingOSLayer(fail_madvise_at=1, advice="WILLNEED")
    with Heap(Config.defaults(kernel=kernel, tiny_prewarm=False, max_superslabs=8), os=os) as heap:
        ptrs = [heap.malloc(1000) for _ in range(1100)]  # two superslabs
        st = heap.stats()
        assert st["superslabs_ever"] == 2 and st["madvise_disabled"] == 2 and st["ss_advise_calls"] == 0
        assert os.injected == 1  # after a refusal no more advice is tried
        for p in ptrs:
            heap.free(p)
        heap.check()


# ---------------------------------------------------------------------------- [SS_OS_STATS]
def test_os_stats_line_fields_after_close(make_heap, capsys):
    heap = make_heap(os_stats=True, tiny_prewarm=False, **HAKMEM)
    ptrs = [heap.malloc(s) for s in (100, 1024, 5000, 40000)]  # tiny, Mid, Mid, large
    for p in ptrs:
        heap.free(p)
    heap.trim()  # the superslab passes the release guard: one superslab_free
    capsys.readouterr()
    heap.close()
    line = capsys.readouterr().err.strip()
    assert line.count("[SS_OS_STATS]") == 1
    fields = dict(f.split("=") for f in line.split()[1:])
    assert list(fields) == [name for name, _doc, _get in OS_STATS_FIELDS]
    assert list(fields)[:7] == ["alloc", "free", "madvise", "madvise_disabled", "mmap_total",
                                "fallback_mmap", "huge_alloc"]
    got = {k: int(v) for k, v in fields.items()}
    # superslabs only: the Mid region and the large block are not superslab mmaps
    assert got["alloc"] == 1 and got["free"] == 1 and got["madvise"] == 1
    assert got["mmap_total"] == 1 + got["fallback_mmap"] and got["huge_alloc"] == 1
    assert got["madvise_disabled"] == got["lean_decommit"] == got["lean_retire"] == 0
    assert heap.os.mmap_total == heap.os.munmap_total  # printed after everything was unmapped


def test_os_stats_lean_decommit_counts_as_madvise(make_heap):
    heap = make_heap(tiny_prewarm=False, mem_lean=True, mem_lean_target_mb=0,
                     mem_lean_decommit="DONTNEED")
    p = heap.malloc(100)
    heap.free(p)
    heap.trim()
    line = heap.os_stats_line()
    assert "alloc=1 free=1 madvise=2 " in line and "lean_decommit=1 lean_retire=1" in line


# ---------------------------------------------------------------------------- all tiers at once
@pytest.mark.parametrize("extra", [{}, {"warm_pool_prefill_source": "fresh", "superslab_reuse": 1,
                                        **NO_FC}])
def test_random_ops_across_tiers_keep_contents(make_heap, extra):
    heap = make_heap(**HAKMEM, **extra)
    rng = np.random.default_rng(54)
    live: dict[int, bytes] = {}
    for i in range(3000):
        if live and rng.random() < 0.45:
            p = list(live)[int(rng.integers(len(live)))]
            data = live.pop(p)
            assert read(heap, p, len(data)) == data
            if rng.random() < 0.3:  # realloc instead of free, maybe across a tier
                q = heap.realloc(p, int(rng.choice([50, 900, 1500, 9000, 30000, 50000])))
                assert read(heap, q, min(len(data), heap.usable_size(q))) == data[:heap.usable_size(q)]
                live[q] = read(heap, q, min(len(data), heap.usable_size(q)))
            else:
                heap.free(p)
        else:
            size = int(rng.choice([16, 100, 1000, 1023, 1024, 1039, 4000, 8192, 20000, 32768, 40000]))
            p = heap.malloc(size)
            data = pattern(i, min(size, 24))
            fill(heap, p, data)
            live[p] = data
        if i % 250 == 0:
            heap.check()
            assert heap.memory_report()["mapped_total"] == heap.stats()["mapped_bytes"]
    for p, data in live.items():
        assert read(heap, p, len(data)) == data
        heap.free(p)
    heap.trim()
    st = heap.stats()
    assert st["live_blocks"] == 0 and st["live_mid"] == 0
    # every superslab that held a block passed the release guard; a fresh prefill that never got
    # one stays ACTIVE (the guard runs on a free, as in hakmem), holding nothing
    assert all(ss.h(K.H_TOTAL_ACTIVE) == 0 for ss in heap._st.active())
    if not extra:
        assert st["superslabs_active"] == 0
    heap.check()


def test_touch_prefault_without_advice(make_heap):
    heap = make_heap(tiny_prewarm=False, ss_prefault=2, ss_acquire_advice="off")
    heap.malloc(100)
    st = heap.stats()
    assert st["madvise_disabled"] == 1 and st["ss_advise_calls"] == 0
    assert st["prefault_pages"] == heap.ss_bytes // K.PAGE_SIZE
    assert heap.residency()["resident_active_bytes"] >= heap.ss_bytes
