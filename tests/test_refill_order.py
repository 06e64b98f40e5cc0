"""Refill order as a policy choice (issue 9 item 4; simalloc/refillorder.py): the partial stage
takes the lowest-address, the fullest (obmalloc) or the last partial slab, as the policy's
``refill_order`` (or the ``refill_order`` option) says; the heap's invariants hold under each
order on both kernels."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from simalloc import ConfigError, FastPolicy
from simalloc import constants as K
from simalloc.presets import ObmallocPolicy
from simalloc.refillorder import ORDERS, LifoSlabSet, MostFullSlabSet, resolve_order
from simalloc.workloads import get_workload

C7_SIZE = 2000  # stride 2048: 32 blocks per slab


class OrderedFast(FastPolicy):
    """FAST with a chosen refill order (a policy attribute, as a preset declares it)."""

    def __init__(self, order: str) -> None:
        self.refill_order = order


def refill_pick(heap: Any, freed: tuple[int, int, int]) -> tuple[list[int], int]:
    """Three full C7 slabs A, B, C (lowest address first) get ``freed`` blocks back, in that
    order (each drained at once, so they join the partial list A, B, C); then the current slab
    is used up and the next malloc refills.  Returns the slab ids [A, B, C] and the id of the
    slab the refill took (slab id = address >> SLAB_LG)."""
    heap.malloc(10)  # slab 0 (31 C7 blocks: the header) goes to C0
    ptrs = [heap.malloc(C7_SIZE) for _ in range(3 * 32 + 1)]
    by_slab: dict[int, list[int]] = {}
    for p in ptrs:
        by_slab.setdefault(p >> K.SLAB_LG, []).append(p)
    current = ptrs[-1] >> K.SLAB_LG
    abc = sorted(s for s in by_slab if s != current)
    assert [len(by_slab[s]) for s in abc] == [32, 32, 32]
    for s, n in zip(abc, freed, strict=True):
        for p in by_slab[s][:n]:
            heap.free(p)
        heap.trim()  # drain: the slab's used count drops now (partial at a quarter free)
    for _ in range(31):  # use up the current slab
        assert heap.malloc(C7_SIZE) >> K.SLAB_LG == current
    before = heap.stats()["stage_partial"]
    p = heap.malloc(C7_SIZE)
    assert heap.stats()["stage_partial"] == before + 1
    return abc, p >> K.SLAB_LG


@pytest.mark.parametrize(("order", "pick"), [("lowest-address", 0), ("most-full", 1), ("lifo", 2)])
def test_partial_stage_follows_the_policys_refill_order(make_heap: Any, order: str, pick: int) -> None:
    """A has 12 free blocks, B 8 (the fullest), C 10 (partial last): lowest-address takes A,
    most-full B, lifo C."""
    heap = make_heap(policy=OrderedFast(order), tiny_prewarm=False, warm_pool_size=0)
    assert heap._st.refill_order == order
    abc, took = refill_pick(heap, (12, 8, 10))
    assert took == abc[pick]
    heap.check()


def test_most_full_sees_frees_made_after_a_slab_became_partial(make_heap: Any) -> None:
    """B is the fullest when it joins the list, but gets more blocks back later: the lazy heap
    re-reads it, and C (now the fullest) is taken."""
    heap = make_heap(policy=OrderedFast("most-full"), tiny_prewarm=False, warm_pool_size=0)
    heap.malloc(10)  # slab 0 (31 C7 blocks: the header) goes to C0
    ptrs = [heap.malloc(C7_SIZE) for _ in range(3 * 32 + 1)]
    by_slab: dict[int, list[int]] = {}
    for p in ptrs:
        by_slab.setdefault(p >> K.SLAB_LG, []).append(p)
    current = ptrs[-1] >> K.SLAB_LG
    a, b, c = sorted(s for s in by_slab if s != current)
    for s, n in ((a, 12), (b, 8), (c, 10)):
        for p in by_slab[s][:n]:
            heap.free(p)
        heap.trim()
    for p in by_slab[b][8:14]:  # B: 14 free now
        heap.free(p)
    heap.trim()
    for _ in range(31):
        heap.malloc(C7_SIZE)
    assert heap.malloc(C7_SIZE) >> K.SLAB_LG == c
    heap.check()


def test_obmalloc_preset_refills_most_full_first(make_heap: Any) -> None:
    heap = make_heap(policy="obmalloc", tiny_prewarm=False, warm_pool_size=0)
    assert isinstance(heap.policy, ObmallocPolicy) and heap._st.refill_order == "most-full"
    abc, took = refill_pick(heap, (12, 8, 10))
    assert took == abc[1]
    heap.check()


def test_the_option_overrides_the_policy(make_heap: Any) -> None:
    heap = make_heap(policy="obmalloc", refill_order="lifo", tiny_prewarm=False)
    assert heap._st.refill_order == "lifo"
    assert make_heap(tiny_prewarm=False)._st.refill_order == "lowest-address"  # FAST's
    with pytest.raises(ConfigError, match="refill_order"):
        make_heap(policy=OrderedFast("random"))
    with pytest.raises(ConfigError):
        make_heap(refill_order="random")


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("workload", ["mixed", "churn"])
def test_invariants_hold_under_every_order(make_heap: Any, order: str, workload: str) -> None:
    """A workload with a refill order on each kernel: ``check()`` after every slow-path event
    (debug=2) and at the end; every block is freed by the final drain."""
    params: dict[str, Any] = ({"burst_mb": 1.0, "rounds": 2, "steady_max": 1039, "idle_ratio": 2.0,
                               "free_order": "random"} if workload == "churn" else {})
    w = get_workload(workload, ops=8000, ws=1000, seed=3, **params)
    # small front caches and no warm pool: slabs go partial and refills reach the partial stage
    heap = make_heap(refill_order=order, debug=2, tiny_prewarm=False, warm_pool_size=0,
                     front_cache_cap=4, front_drain_batch=2, front_refill_batch=2)
    slots = w.new_slots()
    w.warmup(heap, slots)
    ops = w.op_stream()
    heap.replay(ops[:-w.drain_ops], slots)
    assert heap.stats()["stage_partial"] > 0  # the partial stage ran
    heap.check()
    heap.replay(ops[-w.drain_ops:], slots)
    assert not slots.any()
    heap.check()


# ====================================================================== the sets themselves
def test_most_full_set_pops_the_true_minimum_under_growing_counts() -> None:
    """Random adds, discards, frees into members (counts only grow) and pops against a brute
    force minimum (ties: lowest key)."""
    rng = random.Random(7)
    free: dict[tuple[int, int], int] = {}
    s = MostFullSlabSet(lambda k: free[k])
    members: set[tuple[int, int]] = set()
    for _ in range(5000):
        r = rng.random()
        if r < 0.35:
            k = (rng.randrange(20), rng.randrange(32))
            if k not in members:
                free[k] = rng.randrange(8, 32)
                s.add(k)
                members.add(k)
        elif r < 0.7 and members:
            k = rng.choice(sorted(members))
            free[k] = min(free[k] + rng.randrange(1, 4), 40)
        elif r < 0.8 and members:
            k = rng.choice(sorted(members))
            s.discard(k)
            members.discard(k)
        elif members:
            want = min(members, key=lambda k: (free[k], k))
            assert s.pop_next() == want
            members.discard(want)
        assert len(s) == len(members) and set(s) == members
        s.check()


def test_lifo_set_pops_the_last_added() -> None:
    s = LifoSlabSet()
    for k in [(0, 5), (2, 1), (1, 9)]:
        s.add(k)
    s.discard((2, 1))
    assert s.pop_next() == (1, 9) and s.pop_next() == (0, 5) and not s
    with pytest.raises(KeyError):
        s.pop_next()


def test_resolve_order() -> None:
    assert resolve_order("policy", "lowest") == "lowest-address"  # the presets' old spelling
    assert resolve_order("most-full", "lifo") == "most-full"
    with pytest.raises(ConfigError):
        resolve_order("policy", None)
    assert np.array_equal(np.array(ORDERS), np.array(["lowest-address", "most-full", "lifo"]))
