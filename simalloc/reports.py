"""Reports: what a heap says about itself, built from one declared table.

:data:`STAT_FIELDS` (in the spirit of mimalloc's ``MI_STAT_FIELDS``) lists every key of
``Heap.stats()``: its name, where it comes from and what it means.  ``stats()`` is that table
evaluated; the ``[SS_OS_STATS]`` line and ``memory_report()`` are built from the same state.

Sources (the ``source`` column):

* ``os``      -- the OS layer's counters (every mmap / munmap / madvise call and byte);
* ``kernel``  -- the hot path's counters (``constants.C_*`` slots of ``kernel.counters``);
* ``slow``    -- slow-path event counters (``state.SLOW_COUNTERS``);
* ``census``  -- a walk of the slab meta records and front caches at the time of the call;
* ``heap``    -- the heap's own tables (superslab table, LRU, warm pools, Mid regions, large blocks);
* ``model``   -- the resident-page model (``simalloc/pages.py``): resident bytes, refaults, rescues.

Every figure here is about the heap's own mappings, never the whole process; the process-wide
VmRSS / VmHWM in :func:`residency` include the Python interpreter and say so in their names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import constants as K
from .oslayer import lazyfree_bytes, pagemap_resident, process_memory

if TYPE_CHECKING:
    from .state import HeapState

__all__ = ["OS_STATS_FIELDS", "STAT_FIELDS", "Census", "StatField", "census", "empty_report",
           "memory_report", "os_stats", "os_stats_line", "residency", "stats"]


@dataclass(frozen=True)
class Census:
    """Live tiny blocks and slab counts, read from the meta records and front caches."""

    live_blocks: int
    live_bytes: int
    slabs_empty: int  # EMPTY + DECOMMITTED slabs in active superslabs
    slabs_decommitted: int
    active_slabs: int
    empty_slab_bytes: int  # data bytes of EMPTY (still committed) slabs in active superslabs


def census(st: HeapState) -> Census:
    fc = st.fc_by_slab()
    live = live_bytes = n_empty = n_dec = n_act = empty_bytes = 0
    for ss in st.active():
        n_act += ss.h(K.H_ACTIVE_SLABS)
        for s in range(st.nslabs):
            state = ss.slab_state(s)
            if state == K.SLAB_ACTIVE:
                n = ss.meta(s, K.M_USED) - fc.get((ss.idx, s), 0)
                live += n
                live_bytes += n * (ss.meta(s, K.M_STRIDE) - K.BLOCK_HEADER)
            elif state == K.SLAB_EMPTY:
                n_empty += 1
                empty_bytes += ss.slab_data_len(s)
            elif state == K.SLAB_DECOMMITTED:
                n_dec += 1
    return Census(live, live_bytes, n_empty + n_dec, n_dec, n_act, empty_bytes)


Getter = Callable[["HeapState", Census], Any]


@dataclass(frozen=True)
class StatField:
    """One row of :data:`STAT_FIELDS`."""

    key: str
    source: str  # os | kernel | slow | census | heap
    doc: str
    get: Getter


def _slow(name: str, doc: str) -> StatField:
    return StatField(name, "slow", doc, lambda st, c: st.counters[name])


def _kern(name: str, slot: int, doc: str) -> StatField:
    return StatField(name, "kernel", doc, lambda st, c: int(st.kernel.counters[slot]))


def _os(name: str, attr: str, doc: str) -> StatField:
    return StatField(name, "os", doc, lambda st, c: getattr(st.os, attr))


#: Every key of ``Heap.stats()``, in order.
STAT_FIELDS: tuple[StatField, ...] = (
    StatField("kernel", "heap", "hot-path kernel in use (cython | python)", lambda st, c: st.kernel.name),
    StatField("policy", "heap", "release policy and its settings", lambda st, c: st.policy.describe()),
    _kern("ops", K.C_OPS, "operations applied: malloc + free + realloc (hot prewarm included)"),
    _os("mmap_total", "mmap_total", "mmap calls that succeeded (alignment retries included)"),
    _os("munmap_total", "munmap_total", "munmap calls"),
    _os("madvise_calls", "madvise_total", "madvise calls, every advice"),
    StatField("madvise_by_advice", "os", "madvise calls by advice name",
              lambda st, c: dict(st.os.madvise_calls)),
    _os("decommitted_bytes", "decommitted_bytes", "bytes passed to MADV_DONTNEED or MADV_FREE, all time"),
    _os("syscalls", "syscalls", "mmap + munmap + madvise calls, all time"),
    _os("deferred_unmaps", "deferred_unmaps", "unmaps delayed because a user view was alive"),
    _os("align_retries", "align_retries", "mappings remapped at twice the size to align them"),
    _os("alignment_waste_bytes", "alignment_waste", "bytes mapped only to align superslabs (never touched)"),
    StatField("superslabs_active", "heap", "superslabs in use", lambda st, c: st.n_active),
    StatField("superslabs_cached", "heap", "empty superslabs in the LRU cache", lambda st, c: len(st.lru)),
    StatField("superslabs_cached_decommitted", "heap", "cached superslabs whose pages were given back",
              lambda st, c: len(st.lru) - st.lru.warm_count()),
    StatField("superslabs_ever", "heap", "superslabs ever mapped", lambda st, c: st.ever_superslabs),
    StatField("slabs_empty", "census", "EMPTY or DECOMMITTED slabs in active superslabs",
              lambda st, c: c.slabs_empty),
    StatField("slabs_decommitted", "census", "DECOMMITTED slabs in active superslabs",
              lambda st, c: c.slabs_decommitted),
    StatField("live_blocks", "census", "blocks held by the user (tiny + Mid + large)",
              lambda st, c: c.live_blocks + st.mid.live + len(st.large)),
    StatField("live_bytes", "census", "usable bytes of the user's blocks (Mid: class size; large: requested size)",
              lambda st, c: c.live_bytes + st.mid.live_bytes + st.large.live_bytes()),
    StatField("live_large", "heap", "large (direct-mapped) blocks held by the user", lambda st, c: len(st.large)),
    StatField("live_mid", "heap", "Mid-tier blocks held by the user", lambda st, c: st.mid.live),
    StatField("mid_regions", "heap", "Mid regions mapped now", lambda st, c: len(st.mid)),
    StatField("mid_allocs", "heap", "Mid-tier blocks handed out, all time", lambda st, c: st.mid.allocs),
    StatField("mid_frees", "heap", "Mid-tier blocks freed, all time", lambda st, c: st.mid.frees),
    StatField("mid_regions_mapped", "heap", "Mid regions ever mapped", lambda st, c: st.mid.regions_mapped),
    StatField("mid_regions_unmapped", "heap", "Mid regions unmapped (an empty one is kept)",
              lambda st, c: st.mid.regions_unmapped),
    StatField("warm_pool_entries", "heap", "superslab entries over every class's warm pool",
              lambda st, c: st.warm.total()),
    StatField("front_cache_blocks", "kernel", "free blocks parked in the per-class front caches",
              lambda st, c: st.front_cache_blocks()),
    _kern("refills", K.C_REFILLS, "front-cache refills from the current slab"),
    _kern("drains", K.C_DRAINS, "front-cache drains back to the slabs"),
    _kern("slow_refills", K.C_SLOW, "refills that needed the slow path (a new current slab)"),
    StatField("resident_bytes", "model", "heap-own resident bytes now (the exact page model, pages.py)",
              lambda st, c: st.pages.figures()["resident_bytes"]),
    StatField("lazyfree_bytes", "model", "of those, bytes given back with MADV_FREE and not rewritten",
              lambda st, c: st.pages.figures()["lazyfree_bytes"]),
    StatField("resident_peak_bytes", "model", "most heap-own resident bytes at any instant since the last reset",
              lambda st, c: st.pages.figures()["resident_peak_bytes"]),
    StatField("refaults", "model", "pages written again after the heap gave them back (MADV_DONTNEED, or "
              "MADV_FREE then reclaimed): one page fault each, all time (pages.py)",
              lambda st, c: int(st.kernel.counters[K.C_REFAULTS])),
    StatField("refault_bytes", "model", "refaults in bytes (refaults x page size)",
              lambda st, c: int(st.kernel.counters[K.C_REFAULTS]) * K.PAGE_SIZE),
    StatField("rescues", "model", "MADV_FREE'd pages written again before the kernel reclaimed them "
              "(no fault: what MADV_FREE saves over DONTNEED), all time",
              lambda st, c: int(st.kernel.counters[K.C_RESCUES])),
    StatField("rescued_bytes", "model", "rescues in bytes",
              lambda st, c: int(st.kernel.counters[K.C_RESCUES]) * K.PAGE_SIZE),
    _os("mapped_bytes", "mapped_bytes", "bytes currently mapped by the heap (alignment windows included)"),
    _os("mapped_peak_bytes", "mapped_peak", "most bytes ever mapped at once"),
    _slow("ss_acquired", "superslabs made ACTIVE (stage 5: LRU pop or fresh mmap)"),
    _slow("ss_from_lru", "acquisitions served by the LRU cache"),
    _slow("ss_fresh", "acquisitions that mapped a fresh superslab"),
    _slow("ss_cached", "empty superslabs pushed into the LRU cache (warm or decommitted)"),
    _slow("ss_unmapped", "superslabs unmapped (policy unmap or LRU eviction)"),
    _slow("lru_evictions", "LRU evictions (count, bytes or TTL limit)"),
    _slow("lean_decommit", "empty superslabs decommitted by a policy decision"),
    _slow("lean_retire", "LEAN retirements (decisions marked retire)"),
    _slow("cached_decommits", "cached superslabs purged in place by a policy (warm -> cold)"),
    _slow("slab_decommits", "empty slabs decommitted inside live superslabs (slab-granular purge)"),
    _slow("slab_empty_events", "slabs whose used count fell to 0"),
    _slow("ss_empty_events", "superslabs that passed the release guard (every slab empty)"),
    _slow("stage_warm_pool", "refill Stage W: a slab in a superslab of the class's warm pool"),
    _slow("stage_0_5_reuse", "refill Stage 0.5 (superslab_reuse=1): the lowest EMPTY slab of any class"),
    _slow("stage_1_free_slot", "refill Stage 1: the class's free-slot list (an EMPTY slab of the class)"),
    _slow("stage_partial", "refill, simalloc's partial list: a partial slab of the class (between 1 and 2)"),
    _slow("stage_2_unused", "refill Stage 2: an UNUSED slab of an active superslab"),
    _slow("stage_2_empty_other", "refill Stage 2, last resort: an EMPTY slab of another class, reformatted"),
    _slow("stage_3_new_ss", "refill Stage 3: a new superslab (LRU or mmap)"),
    _slow("warm_pool_misses", "refills that found the class's warm pool empty (then prefilled)"),
    _slow("warm_pool_prefilled", "superslabs a warm-pool prefill added besides the one in use"),
    _slow("ss_mmap_calls", "superslab mmap calls (alignment retries included; not Mid or large)"),
    _slow("ss_fallback_mmap", "superslab mmaps redone at twice the size to align them"),
    _slow("ss_advise_calls", "per-acquisition madvise calls made (WILLNEED or POPULATE_WRITE)"),
    _slow("madvise_disabled", "per-acquisition madvise calls not made (advice off, or refused once)"),
    _slow("prefault_pages", "pages written by the TOUCH prefault (ss_prefault=2)"),
    _slow("large_allocs", "large blocks mapped"),
    _slow("large_frees", "large blocks unmapped"),
    _slow("prewarm_blocks", "blocks carved by the hot prewarm"),
    _slow("prewarm_superslabs", "superslabs mapped by the superslab prewarm"),
)

assert len({f.key for f in STAT_FIELDS}) == len(STAT_FIELDS), "duplicate stats key"


def stats(st: HeapState) -> dict[str, Any]:
    """``Heap.stats()``: :data:`STAT_FIELDS` evaluated on ``st``."""
    c = census(st)
    return {f.key: f.get(st, c) for f in STAT_FIELDS}


#: hakmem's ``[SS_OS_STATS]`` fields (hakmem-design.md s6) and Phase 54's two lean counters,
#: with simalloc's definition of each.  hakmem publishes the line, not the code behind it; these
#: are the readings that make its Mixed scorecard line (alloc=9 free=11 madvise=9 mmap_total=9)
#: self-consistent (docs/hakmem-model.md, "hakmem's counters"):
#:
#: * ``free`` > ``alloc`` there, so ``free`` cannot count munmaps of superslabs that ``alloc``
#:   mapped; it counts ``superslab_free`` calls, which an LRU round trip can repeat.
#: * ``madvise`` == ``alloc`` there, so it is the per-acquisition advice, not simalloc's own
#:   MADV_NOHUGEPAGE (which hakmem does not make) nor the test hook MADV_PAGEOUT.
OS_STATS_FIELDS: tuple[tuple[str, str, Callable[[HeapState], int]], ...] = (
    ("alloc", "superslabs acquired from the OS: superslab mmaps that produced a superslab "
     "(Stage 3 misses of the LRU, fresh warm-pool prefills, superslab prewarm)",
     lambda st: st.ever_superslabs),
    ("free", "superslab_free calls: superslabs that passed the release guard (every slab empty) "
     "and went to the LRU cache or were unmapped by the policy; an LRU round trip counts again",
     lambda st: st.counters["ss_empty_events"]),
    ("madvise", "madvise calls hakmem's OS box would make: the per-acquisition advice (WILLNEED or "
     "POPULATE_WRITE) plus policy decommits of superslabs and slabs (FREE or DONTNEED); not "
     "simalloc's own NOHUGEPAGE, the PAGEOUT test hook or a deferred unmap's DONTNEED",
     lambda st: st.counters["ss_advise_calls"] + st.counters["lean_decommit"]
     + st.counters["slab_decommits"]),
    ("madvise_disabled", "per-acquisition madvise calls not made: ss_acquire_advice=off, or the kernel "
     "refused one (then no more are tried)", lambda st: st.counters["madvise_disabled"]),
    ("mmap_total", "superslab mmap calls (alignment retries included); Mid regions and large blocks "
     "are not superslabs", lambda st: st.counters["ss_mmap_calls"]),
    ("fallback_mmap", "superslab mmaps redone at twice the size because the first was not aligned",
     lambda st: st.counters["ss_fallback_mmap"]),
    ("huge_alloc", "large blocks (above the Mid tier, or above the tiny limit without it), each "
     "its own mmap", lambda st: st.counters["large_allocs"]),
    ("lean_decommit", "empty superslabs decommitted by a policy decision (Phase 54)",
     lambda st: st.counters["lean_decommit"]),
    ("lean_retire", "LEAN retirements (decisions marked retire; Phase 54)",
     lambda st: st.counters["lean_retire"]),
)


def os_stats(st: HeapState) -> dict[str, int]:
    """The ``[SS_OS_STATS]`` fields as a dict (:data:`OS_STATS_FIELDS`)."""
    return {name: int(get(st)) for name, _doc, get in OS_STATS_FIELDS}


def os_stats_line(st: HeapState) -> str:
    """hakmem's one-shot ``[SS_OS_STATS]`` line, field for field, plus Phase 54's two lean
    counters (definitions: :data:`OS_STATS_FIELDS`).  simalloc's other OS counters (munmap
    calls, NOHUGEPAGE, bytes decommitted, Mid regions) are in ``stats()``."""
    return "[SS_OS_STATS] " + " ".join(f"{k}={v}" for k, v in os_stats(st).items())


def residency(st: HeapState) -> dict[str, int]:
    """What the kernel says about the heap's own mappings, plus the process's VmRSS/VmHWM.

    ``resident_bytes``: present and exclusively mapped pages (``/proc/self/pagemap``);
    ``lazyfree_bytes``: LazyFree of the VMAs holding our mappings (smaps; VMAs merge);
    ``resident_active_bytes`` / ``resident_cached_bytes``: split by superslab state;
    ``resident_large_bytes`` / ``resident_mid_bytes``: large blocks, Mid regions.
    ``vm_rss_bytes`` / ``vm_hwm_bytes`` are the whole process (the interpreter included)."""
    act: list[tuple[int, int]] = []
    cached: list[tuple[int, int]] = []
    for ss in st.mapped():
        m = ss.mapping
        (cached if ss.state == K.SS_CACHED else act).append((m.addr, m.size))
    large = st.large.spans()
    mid = st.mid.spans()
    r_act, r_cached, r_large, r_mid = (pagemap_resident(x) for x in (act, cached, large, mid))
    out = {
        "mapped_bytes": st.os.mapped_bytes,
        "resident_bytes": r_act + r_cached + r_large + r_mid,
        "resident_active_bytes": r_act,
        "resident_cached_bytes": r_cached,
        "resident_large_bytes": r_large,
        "resident_mid_bytes": r_mid,
        "lazyfree_bytes": lazyfree_bytes(act + cached + large + mid),
    }
    out.update(process_memory())
    return out


def memory_report(st: HeapState) -> dict[str, int]:
    """Split the mapped bytes into parts that add up exactly to ``mapped_bytes``
    (obmalloc's ``narenas * ARENA_SIZE == total``, asserted)."""
    parts = dict.fromkeys((
        "live_blocks", "front_cache_blocks", "free_list_blocks", "uncarved", "empty_slabs",
        "decommitted_slabs", "unused_slabs", "slab_tail_waste", "metadata",
        "cached_superslabs", "alignment_waste", "large_live", "large_overhead",
        "mid_live", "mid_free", "mid_uncarved", "mid_unused_pages", "mid_metadata"), 0)
    fc = st.fc_by_slab()
    for ss in st.mapped():
        parts["alignment_waste"] += ss.mapping.alignment_waste
        if ss.state == K.SS_CACHED:
            parts["cached_superslabs"] += ss.size
            continue
        parts["metadata"] += K.header_bytes(st.lg)
        for s in range(st.nslabs):
            state, dlen = ss.slab_state(s), ss.slab_data_len(s)
            if state == K.SLAB_UNUSED:
                parts["unused_slabs"] += dlen
                continue
            stride, cap = ss.meta(s, K.M_STRIDE), ss.meta(s, K.M_CAPACITY)
            parts["slab_tail_waste"] += dlen - cap * stride
            if state == K.SLAB_DECOMMITTED:
                parts["decommitted_slabs"] += cap * stride
            elif state == K.SLAB_EMPTY:
                parts["empty_slabs"] += cap * stride
            else:
                used, carved = ss.meta(s, K.M_USED), ss.meta(s, K.M_CARVED)
                infc = fc.get((ss.idx, s), 0)
                parts["live_blocks"] += (used - infc) * stride
                parts["front_cache_blocks"] += infc * stride
                parts["free_list_blocks"] += (carved - used) * stride
                parts["uncarved"] += (cap - carved) * stride
    for m, size in st.large.blocks.values():
        parts["large_live"] += size
        parts["large_overhead"] += m.map_size - size
    parts.update(st.mid.parts())
    for r in st.mid.regions.values():
        parts["alignment_waste"] += r.mapping.alignment_waste
    total = sum(parts.values())
    assert total == st.os.mapped_bytes, f"memory report {total} != mapped {st.os.mapped_bytes}"
    parts["mapped_total"] = total
    return parts


def empty_report(st: HeapState) -> dict[str, int]:
    """Why a superslab was (not) released: how many ever emptied, and how much empty memory
    sits in slabs inside live superslabs, where the release guard cannot reach."""
    c = census(st)
    return {
        "superslabs_ever_empty": st.counters["ss_empty_events"],
        "slab_empty_events": st.counters["slab_empty_events"],
        "empty_slabs_in_live_superslabs": c.slabs_empty,
        "empty_slab_bytes_in_live_superslabs": c.empty_slab_bytes,
        "superslabs_active": st.n_active,
        "active_slabs": c.active_slabs,
        "live_blocks": int(st.kernel.counters[K.C_LIVE]) + st.mid.live + len(st.large),
        "front_cache_blocks": st.front_cache_blocks(),
    }
