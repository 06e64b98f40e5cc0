"""Refaults: the page model's count of pages written again after a release equals the kernel's.

A *refault* (``stats()["refaults"]``, simalloc/pages.py) is a write to a page the heap had
written and then gave back -- MADV_DONTNEED, or MADV_FREE followed by the kernel reclaiming the
page (forced here with MADV_PAGEOUT, ``Heap.force_reclaim``).  Each one costs a minor page fault,
so the model is checked against the process's own minor-fault counter (``ru_minflt``):

    fill N pages with blocks  ->  free them all, trim  ->  the policy gives the superslab back
    ->  (reclaim)  ->  allocate the same blocks again: model refaults == N == minflt delta

within a small tolerance for the interpreter's own faults.  The tolerance is measured, not
assumed: the same cycle under a policy that keeps the pages (``mem_lean_decommit=OFF``) is the
control, and must fault (almost) nothing.  A MADV_FREE'd page written before reclaim is a
*rescue*: no fault, not a refault.  A munmap'd superslab's pages are fresh when mapped again:
they fault (first touches), but are not refaults.  Every test runs on both kernels.
"""

from __future__ import annotations

import resource
from typing import Any

import numpy as np
import pytest

from simalloc import Release, ReleasePolicy
from simalloc import constants as K
from simalloc.experiments.ab import aggregate, delta
from simalloc.experiments.bench import BenchResult, format_bench
from simalloc.experiments.metrics import RunSpec, run_once

#: C7 blocks (stride 2048: two per page) filling exactly two superslabs, so a second round
#: lands in the same pages whatever order the LRU hands the superslabs back in.
SIZE = 2000
_LG = K.SS_LG_DEFAULT
BLOCKS = 2 * sum(K.slab_capacity(_LG, s, K.NUM_CLASSES - 1) for s in range(K.nslabs(_LG)))
#: The interpreter's own minor faults during a measured loop, at most (the control measures it;
#: 10 repetitions of every case here measured 0..1 on both kernels once the loop keeps no int
#: objects of the first round alive -- 2046 of them cost ~16-24 pages of new pymalloc pools).
NOISE_PAGES = 16

LEAN = {"mem_lean": True, "mem_lean_target_mb": 0}


def _minflt() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _pages(ptrs: np.ndarray, skip_first: bool) -> set[int]:
    """OS pages holding the blocks (a tiny block never straddles a page); ``skip_first``
    leaves out each superslab's page 0, which holds the header and stays resident when only
    the data range is decommitted (``lean_range=data``)."""
    mask = K.ss_size(K.SS_LG_DEFAULT) - 1
    return {int(p) >> K.PAGE_SHIFT for p in ptrs if not (skip_first and (int(p) & mask) >> K.PAGE_SHIFT == 0)}


def _cycle(heap: Any, between: str = "", blocks: int = BLOCKS) -> dict[str, Any]:
    """Fill, free and trim (the policy releases), optionally force reclaim, then allocate
    again; returns the model's and the kernel's figures of the second allocation round."""
    ptrs = [0] * blocks
    for i in range(blocks):
        ptrs[i] = heap.malloc(SIZE)
    first = np.array(ptrs, dtype=np.uint64)  # values, not int objects: round 2's ints reuse their memory
    for i in range(blocks):
        heap.free(ptrs[i])
    heap.trim()
    if between == "reclaim":
        assert heap.force_reclaim() > 0
    s0 = heap.stats()
    f0 = _minflt()
    for i in range(blocks):
        ptrs[i] = heap.malloc(SIZE)
    f1 = _minflt()
    s1 = heap.stats()
    # pages that became resident: refaults plus first touches (a rescued page stays resident)
    grown = (s1["resident_bytes"] - s0["resident_bytes"]) // K.PAGE_SIZE
    return {"faults": f1 - f0, "first": first, "second": np.array(ptrs, dtype=np.uint64), "grown": grown,
            **{k: s1[k] - s0[k] for k in ("refaults", "refault_bytes", "rescues", "rescued_bytes",
                                          "ss_fresh", "ss_from_lru")},
            "model": heap.resident(), "pagemap": heap.residency()}


def _control(make_heap: Any) -> int:
    """The same cycle with the pages kept: no refault, and (nearly) no fault -- the noise."""
    heap = make_heap(**LEAN, mem_lean_decommit="OFF")
    r = _cycle(heap)
    assert r["refaults"] == 0 and r["rescues"] == 0
    assert r["ss_fresh"] == 0 and r["grown"] == 0
    assert r["faults"] <= NOISE_PAGES, f"control faulted {r['faults']} pages: the machine is too noisy"
    return int(r["faults"])


def _agree(r: dict[str, Any]) -> None:
    """The resident model still equals pagemap after the cycle (RELEASED pages are not resident)."""
    assert r["model"]["resident_bytes"] == r["pagemap"]["resident_bytes"]


@pytest.mark.parametrize("lean_range", ["data", "all"])
def test_dontneed_refaults_equal_minor_faults(make_heap, lean_range):
    noise = _control(make_heap)
    heap = make_heap(**LEAN, mem_lean_decommit="DONTNEED", lean_range=lean_range)
    r = _cycle(heap)
    assert r["ss_fresh"] == 0 and r["ss_from_lru"] >= 1  # the same superslabs, given back and reused
    assert set(r["second"].tolist()) == set(r["first"].tolist())
    # every page written in round 1 was given back, except (lean_range=data) each header page
    n = len(_pages(r["second"], skip_first=lean_range == "data"))
    assert n > BLOCKS // 2 - 8
    assert r["refaults"] == n == r["grown"]
    assert r["refault_bytes"] == n * K.PAGE_SIZE
    assert r["rescues"] == 0
    assert abs(r["faults"] - n) <= NOISE_PAGES + noise, (r["faults"], n)
    _agree(r)


def test_free_then_reclaim_refaults_equal_minor_faults(make_heap):
    noise = _control(make_heap)
    heap = make_heap(**LEAN, mem_lean_decommit="FREE")
    r = _cycle(heap, between="reclaim")
    n = len(_pages(r["second"], skip_first=True))
    assert r["ss_fresh"] == 0
    assert r["refaults"] == n == r["grown"] and r["rescues"] == 0
    assert abs(r["faults"] - n) <= NOISE_PAGES + noise, (r["faults"], n)
    _agree(r)


def test_free_without_reclaim_rescues_without_faults(make_heap):
    noise = _control(make_heap)
    heap = make_heap(**LEAN, mem_lean_decommit="FREE")
    r = _cycle(heap)
    n = len(_pages(r["second"], skip_first=True))
    assert r["refaults"] == 0 and r["grown"] == 0
    assert r["rescues"] == n and r["rescued_bytes"] == n * K.PAGE_SIZE
    assert r["faults"] <= NOISE_PAGES + noise, r["faults"]  # the lazily freed pages were still there
    assert r["model"]["lazyfree_bytes"] == 0  # every lazy page was written again
    _agree(r)


def test_munmap_is_not_a_refault(make_heap):
    """Superslabs unmapped on release: the next ones are fresh mappings.  Their pages fault in
    (first touches, the cost of mmap), but none is a refault."""
    heap = make_heap(**LEAN, mem_lean_decommit="DONTNEED", lean_retire="unmap")
    r = _cycle(heap)
    assert r["ss_fresh"] >= 1 and r["ss_from_lru"] == 0
    n = len(_pages(r["second"], skip_first=False))
    assert r["refaults"] == 0 and r["rescues"] == 0
    assert r["grown"] >= n  # first touches (blocks' pages and each new header page)
    assert abs(r["faults"] - r["grown"]) <= NOISE_PAGES, (r["faults"], r["grown"])  # they do fault
    _agree(r)


@pytest.mark.parametrize(("prefault", "faults_per_page"), [(1, 1), (2, 1)])
def test_prefault_of_released_pages_refaults(make_heap, prefault, faults_per_page):
    """With ``ss_acquire_advice=every`` a superslab popped from the LRU is prefaulted again
    (POPULATE_WRITE or TOUCH): every data page written before and released refaults then,
    in the acquisition, not when blocks are carved.  A refault is a page and one fault: the
    TOUCH prefault is a plain store per page (a read first, ``page |= 0``, would map the
    shared zero page and take a second fault to copy it)."""
    noise = _control(make_heap)
    heap = make_heap(**LEAN, mem_lean_decommit="DONTNEED", ss_prefault=prefault, ss_acquire_advice="every")
    r = _cycle(heap)
    assert r["ss_fresh"] == 0 and r["ss_from_lru"] >= 1
    # round 1 prefaulted whole superslabs: all their pages but the header page were written and released
    per_ss = K.ss_size(K.SS_LG_DEFAULT) // K.PAGE_SIZE - 1
    assert r["refaults"] == r["ss_from_lru"] * per_ss
    assert abs(r["faults"] - faults_per_page * r["refaults"]) <= NOISE_PAGES + noise, (r["faults"], r["refaults"])
    _agree(r)


class FreeThenDontneed(ReleasePolicy):
    """Cache every empty superslab lazily freed (MADV_FREE), then purge the cache with
    MADV_DONTNEED at the next tick: LAZY pages dropped eagerly become RELEASED."""

    name = "free-then-dontneed"

    def on_superslab_empty(self, ctx, ev):  # type: ignore[no-untyped-def]
        return Release.decommit("FREE")

    def tick(self, ctx):  # type: ignore[no-untyped-def]
        for idx, _since, _decommitted in ctx.cached_superslabs():
            ctx.decommit_cached(idx, "DONTNEED")

    def allow_prewarm(self):  # type: ignore[no-untyped-def]
        return False


class PurgeSlabs(ReleasePolicy):
    """Slab-granular purge: every slab that empties inside a live superslab is DONTNEED'd."""

    name = "purge-slabs"

    def on_slab_empty(self, ctx, ev):  # type: ignore[no-untyped-def]
        ctx.decommit_slab(ev.ss, ev.slab, "DONTNEED")

    def allow_prewarm(self):  # type: ignore[no-untyped-def]
        return False


def test_dontneed_of_lazy_pages_refaults(make_heap):
    noise = _control(make_heap)
    heap = make_heap(policy=FreeThenDontneed())
    r = _cycle(heap)
    n = len(_pages(r["second"], skip_first=True))
    assert heap.stats()["cached_decommits"] >= 1  # the FREE'd superslabs were DONTNEED'd too
    assert r["refaults"] == n == r["grown"] and r["rescues"] == 0
    assert abs(r["faults"] - n) <= NOISE_PAGES + noise, (r["faults"], n)
    _agree(r)


def test_slab_purge_refaults(make_heap):
    """Slabs decommitted inside a superslab kept alive by one block: carving into them again
    refaults each page they had (all but the slabs the purge may not touch: the one holding
    the kept block, the class's current slab)."""
    noise = _control(make_heap)
    heap = make_heap(policy=PurgeSlabs())
    keep = heap.malloc(SIZE)  # pins the superslab (and its slab 0) for the whole test
    r = _cycle(heap, blocks=BLOCKS // 2 - 1)  # the rest of that one superslab
    per_slab = K.SLAB_SIZE // K.PAGE_SIZE
    assert heap.stats()["slab_decommits"] >= K.nslabs(_LG) - 2
    assert (K.nslabs(_LG) - 2) * per_slab <= r["refaults"] == r["grown"]
    assert abs(r["faults"] - r["refaults"]) <= NOISE_PAGES + noise, (r["faults"], r["refaults"])
    _agree(r)
    heap.free(keep)


def test_deferred_unmap_of_a_large_block_is_not_a_refault(make_heap):
    """A large block freed while a view of it is alive: the OS layer drops its pages
    (DONTNEED) and unmaps later.  The mapping is gone, so a new block's pages are fresh."""
    heap = make_heap()
    p = heap.malloc(100_000)
    v = heap.view(p)
    v[:] = b"\x11" * len(v)
    heap.free(p)  # deferred: the view pins the mapping
    assert heap.stats()["deferred_unmaps"] == 1
    v.release()
    before = heap.stats()["refaults"]
    q = heap.malloc(100_000)
    w = heap.view(q)
    w[:] = b"\x22" * len(w)
    w.release()
    assert heap.stats()["refaults"] == before
    assert heap.resident()["resident_bytes"] == heap.residency()["resident_bytes"]


def test_large_block_pages_given_back_then_rewritten_refault(make_heap):
    """No policy gives a live large block's pages back today; if one did (MADV_DONTNEED through
    the OS layer), its written pages would be RELEASED and exposing them again would refault,
    as the kernel does."""
    heap = make_heap()
    npages = 64
    p = heap.malloc(npages * K.PAGE_SIZE - K.LARGE_HEADER)
    v = heap.view(p)
    v[:] = b"\x33" * len(v)
    v.release()
    (m, _size), = heap._st.large.blocks.values()
    heap._st.os.decommit(m, K.PAGE_SIZE, m.size - K.PAGE_SIZE, "DONTNEED")  # the header page stays
    assert heap.resident()["resident_bytes"] == heap.residency()["resident_bytes"]
    data = b"\x44" * (npages * K.PAGE_SIZE - K.LARGE_HEADER)  # allocated before the count starts
    before = heap.stats()["refaults"]
    f0 = _minflt()
    w = heap.view(p)
    w[:] = data
    f1 = _minflt()
    w.release()
    assert heap.stats()["refaults"] - before == npages - 1
    assert abs(f1 - f0 - (npages - 1)) <= NOISE_PAGES, f1 - f0
    assert heap.resident()["resident_bytes"] == heap.residency()["resident_bytes"]
    heap._st.os.decommit(m, K.PAGE_SIZE, m.size - K.PAGE_SIZE, "DONTNEED")
    heap.free(p)  # the unmap forgets the released pages: a new mapping there is fresh
    q = heap.malloc(npages * K.PAGE_SIZE - K.LARGE_HEADER)
    heap.view(q).release()
    assert heap.stats()["refaults"] - before == npages - 1


def test_figures_and_stats_agree(make_heap):
    heap = make_heap(**LEAN, mem_lean_decommit="DONTNEED")
    _cycle(heap)
    st, model = heap.stats(), heap.resident()
    assert st["refaults"] > 0
    for key in ("refaults", "refault_bytes", "rescues", "rescued_bytes"):
        assert st[key] == model[key]
    assert st["refault_bytes"] == st["refaults"] * K.PAGE_SIZE


def test_run_reports_refaults_per_op(kernel):
    """``run_once`` (behind ``simalloc run``, ``ab``, ``bench``): heavy churn under a zero-budget
    LEAN policy.  The same stream and decisions with either advice: the pages DONTNEED makes
    refault are exactly the pages FREE lets the heap rescue."""
    got = {}
    for advice in ("DONTNEED", "FREE"):
        spec = RunSpec(workload="churn", ops=30_000, ws=None, seed=3,
                       params={"burst_mb": 4.0, "rounds": 3, "idle_ratio": 0.5},
                       overrides={"kernel": kernel, **LEAN, "mem_lean_decommit": advice}, epochs=2,
                       samples_per_epoch=1)
        r = got[advice] = run_once(spec)
        assert r.error is None
        assert r.refault_bytes == r.refaults * K.PAGE_SIZE
        assert r.refaults_per_op == pytest.approx(r.refaults / r.ops)
        assert r.refault_bytes_per_op == pytest.approx(r.refault_bytes / r.ops)
        assert r.rescues_per_op == pytest.approx(r.rescues / r.ops)
    d, f = got["DONTNEED"], got["FREE"]
    assert d.refaults > 0 and d.rescues == 0
    assert f.refaults == 0 and f.rescues == d.refaults
    assert d.ops == f.ops and d.syscalls == f.syscalls
    # the A/B and bench tables carry them next to syscalls/op
    side_a, side_b = aggregate([f]), aggregate([d])
    dd = delta(side_a, side_b)
    assert dd["refaults_per_op"]["b"] == d.refaults_per_op and dd["refaults_per_op"]["a"] == 0
    assert dd["rescues_per_op"]["a"] == f.rescues_per_op
    assert side_b["refault_bytes_per_op"] == d.refault_bytes_per_op
    text = format_bench(BenchResult(spec=spec, runs=[d], table=side_b))
    assert "refaults/op" in text and f"{d.refaults_per_op:.3g}" in text
