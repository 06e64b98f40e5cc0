"""The heap's own resident-page model equals the kernel's page accounting.

The model (``Heap.resident()``, and the ``resident_*`` / ``lazyfree_bytes`` keys of
``stats()``) counts the pages the allocator touched and has not given back; these tests compare
it with ``/proc/self/pagemap`` (present and exclusive) and smaps' LazyFree at many random
points, on both kernels and under every policy."""

from __future__ import annotations

import random

import numpy as np
import pytest

from simalloc.workloads import get_workload

POLICIES = {
    "fast": {},
    "lean-free": {"mem_lean": True, "mem_lean_decommit": "FREE", "mem_lean_target_mb": 2},
    "lean-dontneed": {"mem_lean": True, "mem_lean_decommit": "DONTNEED", "mem_lean_target_mb": 2},
    "lean-all-unmap": {"mem_lean": True, "mem_lean_decommit": "DONTNEED", "mem_lean_target_mb": 0,
                       "lean_range": "all", "lean_retire": "unmap"},
    "slab-purge": {"policy": "slab-purge"},
    "glibc-trim": {"policy": "glibc-trim"},
    "jemalloc-decay": {"policy": "jemalloc-decay"},
    "mimalloc-purge": {"policy": "mimalloc-purge"},
    "gperftools-scavenge": {"policy": "gperftools-scavenge"},
    "obmalloc": {"policy": "obmalloc"},
    "prefault-touch": {"ss_prefault": 2},
    "prefault-populate": {"ss_prefault": 1},
    "mid-tier": {"tiny_max_size": 1023, "mid_tier": True},
}


def _agree(heap) -> None:  # type: ignore[no-untyped-def]
    model = heap.resident()
    real = heap.residency()
    assert model["resident_bytes"] == real["resident_bytes"], (model, real)
    assert model["lazyfree_bytes"] == real["lazyfree_bytes"], (model, real)
    assert model["resident_peak_bytes"] >= model["resident_bytes"]


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_model_equals_pagemap_at_random_points(make_heap, policy):
    heap = make_heap(**POLICIES[policy])
    rng = random.Random(hash(policy) & 0xFFFF)
    live: list[int] = []
    _agree(heap)
    for step in range(4000):
        if live and (rng.random() < 0.48 or len(live) > 3000):
            heap.free(live.pop(rng.randrange(len(live))))
        else:
            size = rng.choice((8, 24, 100, 500, 1000, 2000, 5000, 70_000))
            p = heap.malloc(size)
            live.append(p)
            v = heap.view(p)
            if len(v) > 2047:  # a view of a large / Mid block counts as written: write it all
                v[:] = b"\x5a" * len(v)
            else:
                v[0] = step & 0xFF
            v.release()
        if step % 500 == 0:
            _agree(heap)
            if step % 1500 == 0:
                heap.trim()
                _agree(heap)
    # burst and release: superslabs empty and meet the policy
    for p in live:
        heap.free(p)
    heap.trim()
    _agree(heap)
    heap.force_reclaim()
    _agree(heap)
    assert heap.resident()["lazyfree_bytes"] == 0


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_model_equals_pagemap_on_churn_replay(make_heap, policy):
    heap = make_heap(**POLICIES[policy])
    w = get_workload("churn", ops=60_000, seed=3)
    slots = np.zeros(w.nslots, dtype=np.uint64)
    w.warmup(heap, slots)
    for _n in w.run_chunks(heap, slots, 12):
        _agree(heap)


def test_exact_peak_is_not_missed_between_samples(make_heap):
    heap = make_heap(mem_lean=True, mem_lean_decommit="DONTNEED", mem_lean_target_mb=0)
    ptrs = [heap.malloc(1000) for _ in range(5000)]  # ~10 MiB of C7 blocks
    at_peak = heap.residency()["resident_bytes"]
    for p in ptrs:
        heap.free(p)
    heap.trim()
    r = heap.resident()
    assert r["resident_bytes"] < at_peak // 4  # released
    assert r["resident_peak_bytes"] >= at_peak  # but the peak was seen, exactly
    heap.reset_resident_stats()
    assert heap.resident()["resident_peak_bytes"] == heap.resident()["resident_bytes"]


def test_means_are_weighted_by_ops_and_seconds(make_heap):
    heap = make_heap()
    heap.reset_resident_stats()
    r0 = heap.resident()
    ptrs = [heap.malloc(100) for _ in range(20_000)]
    for p in ptrs:
        heap.free(p)
    r = heap.resident()
    assert r0["resident_bytes"] <= r["resident_mean_ops_bytes"] <= r["resident_peak_bytes"]
    assert r0["resident_bytes"] <= r["resident_mean_seconds_bytes"] <= r["resident_peak_bytes"]
