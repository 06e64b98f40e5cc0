"""Memory-Lean behaviour measured with the kernel's own page accounting.

The emptying test (Phase 54's question, answered with real memory): fill ~128 MiB with small
blocks, free them all, trim, and read residency from /proc/self/pagemap:

* FAST keeps every empty superslab committed in the LRU: resident stays near the peak.
* LEAN + DONTNEED retires superslabs beyond the 10 MiB budget: resident collapses at once.
* LEAN + FREE retires them lazily: resident stays (LazyFree) until the kernel reclaims, which
  MADV_PAGEOUT forces; live blocks elsewhere in the heap keep their bytes.

Then: the Mixed loop (WS=400) never empties a superslab, so LEAN retires nothing and says why;
slab-granular purge reaches inside live superslabs; custom policies plug in by instance or by
``SIMALLOC_POLICY=module:Class``.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from heaputil import heap_mappings, pattern, reclaim_all

import simalloc
from simalloc import Config, DelayedSlabPurgePolicy, Release, ReleasePolicy
from simalloc import constants as K
from simalloc.experiments import explain_lean

MiB = 1 << 20
N_BLOCKS = 1 << 16  # 64 Ki blocks of 1000 bytes -> C7 (stride 2048) = 128 MiB of slabs
BLOCK = 1000


def _ops(n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """An operation stream: n mallocs (each writes its block's first byte), then n frees."""
    ops = np.zeros((2 * n, 3), np.int64)
    ops[:n, 0] = K.OP_MALLOC
    ops[:n, 1] = np.arange(n)
    ops[:n, 2] = size
    ops[n:, 0] = K.OP_FREE
    ops[n:, 1] = np.arange(n)
    return ops[:n], ops[n:]


def _live_blocks(heap: simalloc.Heap, count: int = 64) -> dict[int, bytes]:
    """Long-lived blocks of several classes, each holding a distinct pattern."""
    live = {}
    for i in range(count):
        size = (17, 100, 500, 2000)[i % 4]
        p = heap.malloc(size)
        data = pattern(i, size)
        ctypes.memmove(p, data, size)
        live[p] = data
    return live


def _assert_live(live: dict[int, bytes]) -> None:
    for p, data in live.items():
        assert ctypes.string_at(p, len(data)) == data, f"live block {p:#x} lost its bytes"


def _fill_and_empty(heap: simalloc.Heap) -> tuple[int, dict[int, bytes]]:
    """Live blocks first, then 128 MiB of C7 blocks (every page touched), freed and trimmed.
    Returns the peak resident bytes and the live blocks."""
    live = _live_blocks(heap)
    mallocs, frees = _ops(N_BLOCKS, BLOCK)
    slots = np.zeros(N_BLOCKS, np.uint64)
    heap.replay(mallocs, slots)
    assert np.count_nonzero(slots) == N_BLOCKS
    peak = heap.residency()["resident_bytes"]
    assert peak >= N_BLOCKS * 2048 * 0.95, f"peak {peak >> 20} MiB: pages were not touched"
    heap.replay(frees, slots)
    heap.trim()
    heap.check()
    st = heap.stats()
    assert st["live_blocks"] == len(live)
    _assert_live(live)
    return peak, live


def test_fast_keeps_empty_superslabs_resident(make_heap):
    heap = make_heap()
    peak, live = _fill_and_empty(heap)
    res = heap.residency()
    st = heap.stats()
    assert res["resident_bytes"] >= 0.9 * peak
    assert st["superslabs_cached"] > 0 and st["superslabs_active"] >= 1
    assert st["lean_retire"] == 0 and st["lean_decommit"] == 0
    assert st["madvise_by_advice"]["DONTNEED"] == st["madvise_by_advice"]["FREE"] == 0
    assert st["munmap_total"] == 0
    assert res["resident_cached_bytes"] >= 0.8 * peak


def test_lean_dontneed_returns_memory(make_heap):
    heap = make_heap(mem_lean=True, mem_lean_decommit="DONTNEED")  # default 10 MiB budget
    peak, live = _fill_and_empty(heap)
    res = heap.residency()
    st = heap.stats()
    assert res["resident_bytes"] <= 0.1 * peak, (res["resident_bytes"] >> 20, peak >> 20)
    assert st["lean_retire"] > 0 and st["lean_decommit"] > 0
    assert st["madvise_by_advice"]["DONTNEED"] == st["lean_decommit"]
    assert st["superslabs_cached_decommitted"] == st["lean_decommit"]
    # the budget: warm (committed) cached superslabs plus active ones stay within 10 MiB
    warm = st["superslabs_cached"] - st["superslabs_cached_decommitted"]
    assert (warm + st["superslabs_active"]) * heap.ss_bytes <= 10 * MiB
    assert "lean_retire=" in explain_lean(heap) and "lean_retire=0" not in explain_lean(heap)
    # the heap reuses decommitted superslabs transparently
    again = [heap.malloc(BLOCK) for _ in range(5000)]
    for i, p in enumerate(again):
        ctypes.memset(p, i & 0xFF, BLOCK)
    assert heap.stats()["ss_from_lru"] > 0
    heap.check()
    _assert_live(live)


def test_lean_free_is_lazy_until_reclaimed(make_heap):
    heap = make_heap(mem_lean=True, mem_lean_decommit="FREE")
    peak, live = _fill_and_empty(heap)
    res = heap.residency()
    st = heap.stats()
    assert st["lean_retire"] > 0 and st["lean_decommit"] > 0
    assert st["madvise_by_advice"]["FREE"] == st["lean_decommit"]
    # MADV_FREE does not lower RSS: the pages are only marked lazily free
    assert res["resident_bytes"] >= 0.8 * peak
    assert res["lazyfree_bytes"] >= 0.5 * peak, (res["lazyfree_bytes"] >> 20, peak >> 20)
    # the kernel reclaims them (forced by MADV_PAGEOUT on every cached superslab mapping)
    assert reclaim_all(heap, cached_only=True) > 0
    res2 = heap.residency()
    assert res2["resident_bytes"] <= 0.2 * peak, (res2["resident_bytes"] >> 20, peak >> 20)
    _assert_live(live)
    # PAGEOUT on the live superslabs too: their dirty pages (live blocks) stay
    reclaim_all(heap)
    _assert_live(live)
    heap.check()
    # and the heap keeps working on reclaimed memory
    again = [heap.malloc(BLOCK) for _ in range(3000)]
    for p in again:
        ctypes.memset(p, 0x5A, BLOCK)
    for p in again:
        assert ctypes.string_at(p, 4) == b"\x5a" * 4
    heap.check()
    _assert_live(live)


def test_lean_unmap_retire(make_heap):
    heap = make_heap(mem_lean=True, lean_retire="unmap", mem_lean_target_mb=4)
    peak, live = _fill_and_empty(heap)
    st = heap.stats()
    assert st["lean_retire"] > 0 and st["lean_decommit"] == 0
    assert st["munmap_total"] >= st["lean_retire"]
    # what stays mapped: superslabs within the 4 MiB budget (active + warm cached)
    assert sum(m.size for m in heap_mappings(heap)) <= 4 * MiB
    assert heap.residency()["resident_bytes"] <= 0.1 * peak
    _assert_live(live)


def test_mixed_ws400_never_retires(make_heap):
    heap = make_heap(mem_lean=True, mem_lean_decommit="DONTNEED")
    slots = np.zeros(400, np.uint64)
    from simalloc.workloads.mixed import run_mixed

    run_mixed(heap, 20_000, 400, 1 + 0xDEADBEEF, slots)  # warm-up
    run_mixed(heap, 200_000, 400, 1, slots)
    st = heap.stats()
    assert st["ops"] > 200_000
    assert st["lean_retire"] == 0 and st["lean_decommit"] == 0
    assert st["superslabs_active"] >= 1
    why = explain_lean(heap)
    assert "lean_retire=0" in why and "release guard" in why
    heap.check()
    heap.drain_slots(slots)
    heap.check()


def test_lean_off_decommit_is_prewarm_suppression_only(make_heap):
    heap = make_heap(mem_lean=True, mem_lean_decommit="OFF", mem_lean_target_mb=0)
    assert heap.stats()["prewarm_blocks"] == 0
    ptrs = [heap.malloc(2000) for _ in range(3000)]
    for p in ptrs:
        heap.free(p)
    heap.trim()
    st = heap.stats()
    assert st["lean_retire"] == 0 and st["superslabs_cached"] >= 2


# ---------------------------------------------------------------- slab-granular purge


@pytest.mark.parametrize("advice", ["DONTNEED", "FREE"])
def test_delayed_slab_purge_inside_live_superslab(make_heap, advice):
    heap = make_heap(tiny_prewarm=False, policy=DelayedSlabPurgePolicy(0, advice))
    keeper = heap.malloc(2000)  # long-lived C7 block: the superslab never empties
    ctypes.memmove(keeper, pattern(1, 2000), 2000)
    small = heap.malloc(40)  # and one of another class
    ctypes.memmove(small, pattern(2, 40), 40)
    base = keeper & ~(heap.ss_bytes - 1)
    ptrs = [heap.malloc(2000) for _ in range(900)]  # ~29 slabs of the same superslab
    assert {p & ~(heap.ss_bytes - 1) for p in ptrs} == {base}
    for p in ptrs:
        ctypes.memset(p, 0x77, 2000)
    before = heap.residency()["resident_bytes"]
    for p in ptrs:
        heap.free(p)
    heap.trim()
    st = heap.stats()
    assert st["superslabs_active"] == 1 and st["ss_empty_events"] == 0  # guard never held
    assert st["slab_decommits"] >= 20 and st["slabs_decommitted"] >= 20
    if advice == "FREE":
        reclaim_all(heap)  # lazily freed slabs go back only when the kernel reclaims
    after = heap.residency()["resident_bytes"]
    assert after <= before - 20 * K.SLAB_SIZE, (before >> 10, after >> 10)
    assert ctypes.string_at(keeper, 2000) == pattern(1, 2000)
    assert ctypes.string_at(small, 40) == pattern(2, 40)
    heap.check()
    # decommitted slabs are reclaimed (reformatted) by later allocations
    again = [heap.malloc(2000) for _ in range(100)]
    assert {p & ~(heap.ss_bytes - 1) for p in again} == {base}
    for p in again:
        ctypes.memset(p, 0x33, 2000)
    heap.check()
    assert ctypes.string_at(keeper, 2000) == pattern(1, 2000)


def test_delayed_slab_purge_with_delay(make_heap):
    pol = DelayedSlabPurgePolicy(delay_ops=1000)
    heap = make_heap(tiny_prewarm=False, policy=pol)
    keeper = heap.malloc(10)
    ptrs = [heap.malloc(2000) for _ in range(200)]
    for p in ptrs:
        heap.free(p)
    heap.trim()
    assert heap.stats()["slab_decommits"] == 0  # still within the delay
    for _ in range(600):  # advance the operation clock
        heap.free(heap.malloc(10))
    heap.tick()
    assert heap.stats()["slab_decommits"] > 0
    heap.free(keeper)
    heap.check()


def test_delayed_slab_purge_ticks_from_the_hot_path(make_heap):
    """With tick_interval_ops the hot path itself calls tick(): no manual tick needed."""
    heap = make_heap(tiny_prewarm=False, tick_interval_ops=64,
                     policy=DelayedSlabPurgePolicy(delay_ops=500))
    keeper = heap.malloc(10)
    ptrs = [heap.malloc(2000) for _ in range(200)]
    for p in ptrs:
        heap.free(p)
    heap.trim()
    assert heap.stats()["slab_decommits"] == 0
    slots = np.zeros(64, np.uint64)
    from simalloc.workloads.mixed import run_mixed

    run_mixed(heap, 2000, 64, 7, slots)  # kernel loop (apply): ticks every 64 ops
    assert heap.stats()["slab_decommits"] > 0
    heap.drain_slots(slots)
    heap.free(keeper)
    heap.check()


def test_lean_slab_purge_string_policy(make_heap):
    heap = make_heap(policy="slab-purge", tiny_prewarm=False)
    keep = heap.malloc(16)
    ptrs = [heap.malloc(2000) for _ in range(300)]
    for p in ptrs:
        heap.free(p)
    heap.trim()
    assert heap.stats()["slab_decommits"] > 0
    heap.free(keep)
    heap.check()


# ---------------------------------------------------------------- custom policies


class UnmapEveryEmpty(ReleasePolicy):
    """A custom policy in four lines: unmap every empty superslab."""

    name = "unmap-every-empty"

    def on_superslab_empty(self, ctx, ev):
        return Release.unmap()


def _churn(heap: simalloc.Heap) -> None:
    ptrs = [heap.malloc(2000) for _ in range(3000)]  # ~3 superslabs
    for p in ptrs:
        ctypes.memset(p, 1, 2000)
    for p in ptrs:
        heap.free(p)
    heap.trim()


def test_custom_policy_instance(make_heap):
    heap = make_heap(policy=UnmapEveryEmpty())
    assert heap.policy.describe() == "unmap-every-empty"
    _churn(heap)
    st = heap.stats()
    assert st["superslabs_cached"] == 0 and st["superslabs_active"] == 0
    assert st["ss_unmapped"] >= 3 and st["munmap_total"] >= 3
    assert heap.residency()["mapped_bytes"] == 0
    heap.check()
    heap.free(heap.malloc(5))
    heap.check()


def test_custom_policy_via_simalloc_policy(make_heap, monkeypatch, request):
    monkeypatch.syspath_prepend(str(request.path.parent))  # tests/ holds policies_for_tests.py
    cfg = Config.from_env({"SIMALLOC_POLICY": "policies_for_tests:UnmapEmpty"})
    heap = make_heap(cfg)
    assert type(heap.policy).__name__ == "UnmapEmpty"
    assert heap.stats()["prewarm_blocks"] > 0  # the base class allows prewarm
    _churn(heap)
    st = heap.stats()
    assert st["ss_unmapped"] >= 3 and st["superslabs_cached"] == 0
    heap.check()
    heap2 = make_heap(policy="policies_for_tests:DecommitAll")
    assert heap2.stats()["prewarm_blocks"] == 0
    _churn(heap2)
    st2 = heap2.stats()
    assert st2["superslabs_cached_decommitted"] >= 3 and st2["lean_retire"] == 0
    assert st2["madvise_by_advice"]["DONTNEED"] >= 3
    heap2.check()


def test_policy_context_is_narrow(make_heap):
    seen = {}

    class Spy(ReleasePolicy):
        name = "spy"

        def on_superslab_empty(self, ctx, ev):
            seen["ev"] = ev
            seen["bytes"] = ctx.superslab_bytes()
            seen["active"] = ctx.active_count()
            seen["cached"] = ctx.cached_count()
            seen["committed"] = ctx.committed_superslab_bytes()
            seen["clock"] = ctx.clock()
            seen["lean"] = ctx.config.mem_lean
            return Release.decommit("FREE")

        def on_slab_empty(self, ctx, ev):
            seen.setdefault("slab_events", []).append(ev)
            seen["empty_slabs"] = ctx.empty_slabs()

    heap = make_heap(policy=Spy(), tiny_prewarm=False)
    keep = heap.malloc(10)
    ptrs = [heap.malloc(2000) for _ in range(100)]
    for p in ptrs:
        heap.free(p)
    heap.trim()
    assert seen["slab_events"] and all(ev.cls == 7 for ev in seen["slab_events"])
    assert seen["empty_slabs"]
    heap.free(keep)
    heap.trim()
    assert isinstance(seen["ev"], simalloc.SuperslabEvent)
    assert seen["bytes"] == heap.ss_bytes and seen["active"] == 0 and seen["cached"] == 0
    assert seen["clock"].ops > 0 and seen["lean"] is False
    st = heap.stats()
    assert st["madvise_by_advice"]["FREE"] == 1 and st["superslabs_cached_decommitted"] == 1
    assert len(heap_mappings(heap, cached_only=True)) == 1


def test_bad_policy_decision_is_reported(make_heap):
    class Broken(ReleasePolicy):
        def on_superslab_empty(self, ctx, ev):
            return "unmap"

    heap = make_heap(policy=Broken(), tiny_prewarm=False)
    p = heap.malloc(10)
    with pytest.raises(TypeError, match="Release"):
        heap.free(p)
        heap.trim()
    with pytest.raises(ValueError):
        Release("burn")
    with pytest.raises(ValueError):
        Release.decommit("PAGEOUT")
