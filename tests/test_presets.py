"""The release-rule presets (simalloc/presets.py): each real allocator's rule, on its own
arithmetic and on a heap (both kernels, through ``make_heap``), plus the reasons (``why``)
attached to the built-in policies' decisions.

Time is driven by a fake clock (the presets' ``time_source`` hook), operations and
``heap.tick()``; nothing sleeps."""

from __future__ import annotations

import ctypes
import dataclasses
from typing import Any

import pytest

from simalloc import Config, ConfigError, DelayedSlabPurgePolicy, FastPolicy, LeanPolicy, Release
from simalloc import constants as K
from simalloc.policy import PRESETS, Clock, make_policy
from simalloc.presets import (
    BG_MIN_INTERVAL_NS,
    H_STEPS,
    SMOOTHSTEP_BFP,
    SMOOTHSTEP_NSTEPS,
    Decay,
    GlibcTrimPolicy,
    GperftoolsScavengePolicy,
    JemallocDecayPolicy,
    MimallocPurgePolicy,
    ObmallocPolicy,
    PresetPolicy,
    TcmallocReleasePolicy,
    smootherstep,
)

MS = 1_000_000
SEC = 1_000_000_000
PAGES_PER_SLAB = K.SLAB_SIZE // K.PAGE_SIZE  # every slab but slab 0 (header)
C7_SIZE = 2000  # stride 2048: 32 blocks per slab
NAMES = ("jemalloc-decay", "mimalloc-purge", "tcmalloc-release", "gperftools-scavenge", "glibc-trim",
         "obmalloc")


class FakeTime:
    """The presets' fake-time hook: ``time_source=clock``; set ``clock.ns``."""

    def __init__(self) -> None:
        self.ns = 0

    def __call__(self) -> int:
        return self.ns

    def ms(self, ms: float) -> None:
        self.ns = int(ms * MS)


# ====================================================================== heap helpers
def new_heap(make_heap: Any, policy: PresetPolicy, **overrides: Any) -> tuple[Any, int]:
    """A heap without hot prewarm and a long-lived C0 block in slab 0 (its superslab never
    empties unless the test frees it)."""
    heap = make_heap(policy=policy, tiny_prewarm=False, **overrides)
    return heap, heap.malloc(10)


def c7_slabs(heap: Any, nslabs: int) -> list[list[int]]:
    """Fill ``nslabs`` C7 slabs plus one more (which stays the class's current slab); returns
    the blocks of the full, non-current slabs, one list per slab, lowest address first.  The
    other blocks are left in ``heap.rest`` (free them to let the superslab empty)."""
    ptrs = [heap.malloc(C7_SIZE) for _ in range(32 * nslabs + 1)]
    for p in ptrs:
        ctypes.memset(p, 0x5A, C7_SIZE)  # make the pages resident
    groups: dict[int, list[int]] = {}
    for p in ptrs:
        groups.setdefault(p >> K.SLAB_LG, []).append(p)
    current = ptrs[-1] >> K.SLAB_LG
    full = [groups[k] for k in sorted(groups) if k != current and len(groups[k]) == 32][:nslabs]
    assert len(full) == nslabs, [len(g) for g in groups.values()]
    taken = {p for g in full for p in g}
    heap.rest = [p for p in ptrs if p not in taken]
    return full


def free_slabs(heap: Any, slabs: list[list[int]]) -> None:
    """Free whole slabs; ``trim`` drains the front caches so each slab empties now."""
    for group in slabs:
        for p in group:
            heap.free(p)
    heap.trim()


def activity(heap: Any) -> None:
    """One operation pair on slab 0 (C0): the program is not idle, no slab empties."""
    heap.free(heap.malloc(10))


def stat(heap: Any, key: str) -> int:
    return int(heap.stats()[key])


def committed_empty(heap: Any) -> int:
    """EMPTY slabs of live superslabs still committed (``slabs_empty`` counts decommitted too)."""
    st = heap.stats()
    return int(st["slabs_empty"] - st["slabs_decommitted"])


class Recorder:
    """Wraps a policy's ``on_superslab_empty`` to keep every Release it returns."""

    def __init__(self, policy: Any) -> None:
        self.decisions: list[Release] = []
        inner = policy.on_superslab_empty

        def hook(ctx: Any, ev: Any) -> Release:
            d = inner(ctx, ev)
            self.decisions.append(d)
            return d

        policy.on_superslab_empty = hook


# ====================================================================== a context without a heap
class FakeCtx:
    """A PolicyContext stand-in for rule arithmetic: EMPTY slabs, cached superslabs and the
    proposed cached-superslab methods (``cached_superslabs``, ``decommit_cached``); both
    decommits take ``why=`` as the real context does and keep it (``reasons``)."""

    def __init__(self, cached_api: bool = False) -> None:
        self.config = Config.defaults()
        self.ops = 0
        self.seconds = 0.0
        self.empty: list[tuple[int, int]] = []
        self.cached: dict[int, bool] = {}  # idx -> decommitted
        self.decommits: list[tuple[int, int, str]] = []
        self.cached_decommits: list[tuple[int, str]] = []
        self.reasons: list[str] = []  # the why= of every decommit, in order
        if cached_api:
            self.cached_superslabs = lambda: [(i, 0.0, d) for i, d in self.cached.items()]
            self.decommit_cached = self._decommit_cached

    def clock(self) -> Clock:
        return Clock(self.ops, self.seconds)

    def superslab_bytes(self) -> int:
        return 1 << 21

    def cached_count(self) -> int:
        return len(self.cached)

    def empty_slabs(self) -> list[tuple[int, int]]:
        return list(self.empty)

    def decommit_slab(self, ss: int, slab: int, advice: str = "DONTNEED", why: str = "") -> bool:
        if (ss, slab) not in self.empty:
            return False
        self.empty.remove((ss, slab))
        self.decommits.append((ss, slab, advice))
        self.reasons.append(why)
        return True

    def _decommit_cached(self, idx: int, advice: str = "DONTNEED", why: str = "") -> bool:
        if self.cached.get(idx, True):
            return False
        self.cached[idx] = True
        self.cached_decommits.append((idx, advice))
        self.reasons.append(why)
        return True


def slab_event(ctx: FakeCtx, ss: int, slab: int, cls: int = 7) -> Any:
    from simalloc import SlabEvent

    ctx.empty.append((ss, slab))
    return SlabEvent(ss, slab, cls, ctx.ops, ctx.seconds)


# ====================================================================== registration, docs
@pytest.mark.parametrize("name", NAMES)
def test_presets_are_registered_and_documented(name: str) -> None:
    cls = PRESETS[name]
    pol = make_policy(Config(policy=name))  # Config() is not validated: make_policy alone
    assert type(pol) is cls and pol.name == name
    doc = cls.__doc__ or ""
    assert "Rule" in doc and "Clock:" in doc and "Defaults" in doc and "Source:" in doc
    assert cls.source and cls.source.split(":")[0] in doc  # the repository it models
    assert pol.describe().startswith(f"{name}(")


def test_preset_defaults_are_the_sources() -> None:
    je = JemallocDecayPolicy()
    assert (je.dirty_decay_ms, je.muzzy_decay_ms, je.background) == (10_000, 0, False)
    mi = MimallocPurgePolicy()
    assert (mi.purge_delay, mi.purge_extend_delay, mi.version, mi.arena_purge_mult, mi.retire_cycles,
            mi.advice) == (10, 1, 2, 10, 16, "DONTNEED")
    assert TcmallocReleasePolicy().release_rate == 0  # tcmalloc's default background_release_rate
    assert GperftoolsScavengePolicy().release_rate == 1.0
    gl = GlibcTrimPolicy()
    assert (gl.trim_threshold, gl.top_pad) == (128 * 1024, 128 * 1024)
    assert ObmallocPolicy.refill_order == "most-full" and not ObmallocPolicy().allow_prewarm()
    assert "dirty_decay_ms=10000" in je.describe()


def test_preset_by_name_on_a_heap(kernel: str) -> None:
    """A heap whose config names a preset builds it (make_policy's registry)."""
    from simalloc import Heap

    cfg = dataclasses.replace(Config.defaults(kernel=kernel, tiny_prewarm=False), policy="obmalloc")
    with Heap(cfg) as heap:
        assert isinstance(heap.policy, ObmallocPolicy)
        heap.free(heap.malloc(100))


def test_heap_policy_string_names_a_preset(make_heap: Any) -> None:
    heap = make_heap(policy="jemalloc-decay", tiny_prewarm=False)
    assert isinstance(heap.policy, JemallocDecayPolicy)


def test_unknown_policy_name_lists_the_presets() -> None:
    with pytest.raises(ConfigError, match="jemalloc-decay.*obmalloc.*module:Class"):
        make_policy(Config(policy="nonesuch"))


def test_clock_prefers_time_source_then_virtual_ns() -> None:
    ctx = FakeCtx()
    ctx.seconds = 2.5
    pol = MimallocPurgePolicy()
    assert pol.now_ns(ctx) == int(2.5 * SEC)

    @dataclasses.dataclass(frozen=True)
    class VClock:
        ops: int
        seconds: float
        virtual_ns: int

    ctx.clock = lambda: VClock(0, 2.5, 777)  # type: ignore[method-assign]
    assert pol.now_ns(ctx) == 777
    t = FakeTime()
    t.ns = 42
    assert MimallocPurgePolicy(time_source=t).now_ns(ctx) == 42


# ====================================================================== jemalloc-decay
def test_smootherstep_table_is_jemallocs() -> None:
    """smoothstep.h, generated with ``smoothstep.sh smoother 200 24``."""
    assert len(H_STEPS) == SMOOTHSTEP_NSTEPS == 200 and SMOOTHSTEP_BFP == 24
    assert H_STEPS[:3] == (0x14, 0xA5, 0x229)
    assert H_STEPS[99] == 0x800000 and H_STEPS[149] == 0xE58000 and H_STEPS[199] == 1 << 24
    for i in range(200):
        assert abs(H_STEPS[i] - smootherstep((i + 1) / 200) * (1 << 24)) < 1
    assert list(H_STEPS) == sorted(H_STEPS)


def test_decay_backlog_arithmetic() -> None:
    d = Decay(200, 0, jitter=False)  # 200 epochs of 1 ms
    assert d.interval_ns == MS
    assert not d.maybe_advance_epoch(MS // 2, 100)  # deadline not reached
    assert d.maybe_advance_epoch(MS, 100)  # one epoch: 100 new pages, weight 1.0
    assert d.backlog[-1] == 100 and d.npages_limit == 100 and d.nunpurged == 100
    for k in range(1, 200):
        assert d.maybe_advance_epoch((1 + k) * MS, 100)  # nothing new dirtied
        assert d.backlog[199 - k] == 100 and d.backlog[-1] == 0
        assert d.npages_limit == (100 * H_STEPS[199 - k]) >> 24  # h((200-k)/200) of them may stay
    assert d.maybe_advance_epoch(201 * MS, 100)
    assert d.npages_limit == 0  # a full period later: all purgeable
    # several epochs at once shift the backlog by that many slots
    d = Decay(200, 0, jitter=False)
    d.maybe_advance_epoch(MS, 40)
    d.maybe_advance_epoch(6 * MS, 70)  # 5 epochs later, 30 more pages
    assert d.backlog[-1] == 30 and d.backlog[-6] == 40
    assert d.npages_limit == (40 * H_STEPS[194] + 30 * H_STEPS[199]) >> 24
    d.maybe_advance_epoch(500 * MS, 70)  # more than 200 epochs: the backlog is cleared
    assert sum(d.backlog) == 0
    # the deadline is jittered within one interval
    d = Decay(10_000, 0, jitter=True, seed=3)
    assert d.interval_ns == 50 * MS and 50 * MS <= d.deadline_ns < 100 * MS


def test_decay_sleep_of_the_background_thread() -> None:
    d = Decay(1000, 0, jitter=False)
    assert d.ns_until_purge(0) is None  # nothing dirty: sleep until woken
    d.maybe_advance_epoch(5 * MS, 100)
    assert d.ns_until_purge(100) == d.interval_ns * 200  # <= 1024 pages: a full period
    d.maybe_advance_epoch(10 * MS, 5000)
    t = d.ns_until_purge(5000)
    assert t is not None and 2 * d.interval_ns <= t <= 200 * d.interval_ns
    assert BG_MIN_INTERVAL_NS == 100 * MS


def test_jemalloc_purges_oldest_first_to_the_limit_fake_ctx() -> None:
    """Oldest-dirtied first, down to the limit, superslabs too (with the proposed
    cached-superslab context methods)."""
    t = FakeTime()
    ctx = FakeCtx(cached_api=True)
    pol = JemallocDecayPolicy(dirty_decay_ms=200, jitter=False, time_source=t)
    pol.tick(ctx)  # epoch 0
    from simalloc import SuperslabEvent

    ctx.cached[5] = False  # superslab 5 empties first: the oldest dirty pages
    d = pol.on_superslab_empty(ctx, SuperslabEvent(5, 0, 0.0))
    assert d.action == "keep" and "decay backlog" in d.why
    for slab in (1, 2, 3):
        pol.on_slab_empty(ctx, slab_event(ctx, 0, slab))
    ss_pages = (1 << 21) // K.PAGE_SIZE
    t.ms(1)
    ctx.ops += 1
    pol.tick(ctx)  # records everything in one epoch: limit = all
    assert pol.dirty.npages() == ss_pages + 3 * PAGES_PER_SLAB and not ctx.decommits
    t.ms(101)  # 100 epochs later: h(0.5) = half may stay
    ctx.ops += 1
    pol.tick(ctx)
    assert ctx.cached_decommits == [(5, "DONTNEED")]  # the oldest went first
    assert ctx.decommits == []  # the slabs (newer) fit under the limit now
    assert pol.dirty.npages() <= pol.dirty.decay.npages_limit


def test_jemalloc_decay_zero_purges_at_once_and_minus_one_never(make_heap: Any) -> None:
    heap, keeper = new_heap(make_heap, JemallocDecayPolicy(dirty_decay_ms=0))
    free_slabs(heap, c7_slabs(heap, 3))
    assert stat(heap, "slab_decommits") == 3 and committed_empty(heap) == 0
    free_slabs(heap, [[keeper, *heap.rest]])
    assert stat(heap, "ss_empty_events") == 1 and stat(heap, "lean_decommit") == 1  # the superslab too
    t = FakeTime()
    heap, keeper = new_heap(make_heap, JemallocDecayPolicy(dirty_decay_ms=-1, time_source=t))
    free_slabs(heap, c7_slabs(heap, 3))
    for ms in range(0, 5000, 500):
        t.ms(ms)
        activity(heap)
        heap.tick()
    assert stat(heap, "slab_decommits") == 0 and committed_empty(heap) == 3


def test_jemalloc_keeps_the_smootherstep_fraction_on_a_heap(make_heap: Any) -> None:
    """At each epoch, the dirty pages left are the smootherstep fraction of those dirtied in
    one epoch, h((200-k)/200), down to whole slabs (oldest-emptied purged first)."""
    t = FakeTime()
    pol = JemallocDecayPolicy(dirty_decay_ms=200, jitter=False, time_source=t)  # 1 ms epochs
    heap, _keeper = new_heap(make_heap, pol)
    heap.tick()  # epoch 0 at t = 0
    nslabs = 8
    slabs = c7_slabs(heap, nslabs)
    t.ms(0.5)
    free_slabs(heap, slabs)
    dirty = nslabs * PAGES_PER_SLAB
    assert pol.dirty.npages() == dirty and committed_empty(heap) == nslabs
    emptied = list(pol.dirty.pages)  # in the order the slabs emptied
    resident0 = heap.residency()["resident_bytes"]
    t.ms(1)
    activity(heap)
    heap.tick()  # the epoch that records them: weight 1.0, nothing purged
    assert stat(heap, "slab_decommits") == 0
    order = []
    for k in range(1, 201):
        t.ms(1 + k)
        activity(heap)
        heap.tick()
        limit = (dirty * H_STEPS[199 - k]) >> 24 if k < 200 else 0
        assert pol.dirty.decay.npages_limit == limit
        left = committed_empty(heap)
        assert left == min(nslabs, limit // PAGES_PER_SLAB), (k, left, limit)
        assert stat(heap, "slab_decommits") == nslabs - left
        kept = emptied[nslabs - left:]  # the oldest-emptied went first
        assert list(pol.dirty.pages) == kept and set(kept) <= set(heap.ctx.empty_slabs())
        order.append(left)
    assert order[-1] == 0 and order == sorted(order, reverse=True)
    assert heap.residency()["resident_bytes"] <= resident0 - nslabs * K.SLAB_SIZE
    heap.check()


def test_jemalloc_background_releases_while_idle_activity_mode_does_not(make_heap: Any) -> None:
    results = {}
    for background in (False, True):
        t = FakeTime()
        pol = JemallocDecayPolicy(dirty_decay_ms=1000, background=background, jitter=False, time_source=t)
        heap, _keeper = new_heap(make_heap, pol)
        heap.tick()
        t.ms(100)
        slabs = c7_slabs(heap, 6)
        t.ms(120)
        free_slabs(heap, slabs)
        assert stat(heap, "slab_decommits") == 0  # freshly dirty pages stay (weight 1.0)
        ops = heap.clock().ops
        for ms in range(200, 3200, 100):  # idle: time passes, no operations
            t.ms(ms)
            heap.tick()
        assert heap.clock().ops == ops
        results[background] = stat(heap, "slab_decommits")
        if background:
            assert pol.counts["bg_wakeups"] >= 2
    assert results == {False: 0, True: 6}


def test_jemalloc_muzzy_stage_uses_madv_free(make_heap: Any) -> None:
    t = FakeTime()
    pol = JemallocDecayPolicy(dirty_decay_ms=0, muzzy_decay_ms=1000, time_source=t)
    heap, _keeper = new_heap(make_heap, pol)
    free_slabs(heap, c7_slabs(heap, 2))
    assert stat(heap, "slab_decommits") == 2
    assert heap.stats()["madvise_by_advice"].get("FREE", 0) >= 2
    assert pol.muzzy.npages() == 2 * PAGES_PER_SLAB  # muzzy, decaying towards MADV_DONTNEED


# ====================================================================== mimalloc-purge
def test_mimalloc_releases_only_after_the_delay(make_heap: Any) -> None:
    t = FakeTime()
    pol = MimallocPurgePolicy(retire_cycles=0, time_source=t)  # purge_delay 10 ms
    heap, _keeper = new_heap(make_heap, pol)
    slabs = c7_slabs(heap, 3)
    free_slabs(heap, slabs)  # t = 0: deadline 10 ms (+1 ms per later free of the segment)
    deadline = pol._seg_expire[0]
    assert 10 * MS <= deadline <= 12 * MS
    for ms in (1, 5, deadline / MS - 0.5):
        t.ms(ms)
        activity(heap)
        heap.tick()
        assert stat(heap, "slab_decommits") == 0, ms
    t.ns = deadline + MS
    heap.tick()  # idle: mimalloc has no timer thread
    assert stat(heap, "slab_decommits") == 0
    activity(heap)
    heap.tick()
    assert stat(heap, "slab_decommits") == 3 and stat(heap, "slabs_decommitted") == 3
    heap.check()


@pytest.mark.parametrize("version", [2, 3])
def test_mimalloc_later_free_extends_v2_deadline_not_v3(make_heap: Any, version: int) -> None:
    t = FakeTime()
    pol = MimallocPurgePolicy(version=version, arena_purge_mult=1, retire_cycles=0, time_source=t)
    heap, _keeper = new_heap(make_heap, pol)
    first, second = c7_slabs(heap, 2)
    free_slabs(heap, [first])  # t = 0: deadline 10 ms
    t.ms(5)
    free_slabs(heap, [second])  # v2: deadline + 1 ms = 11 ms; v3: stays 10 ms
    t.ms(10.5)
    activity(heap)
    heap.tick()
    expected = {2: 0, 3: 2}[version]
    assert stat(heap, "slab_decommits") == expected
    t.ms(11.5)
    activity(heap)
    heap.tick()
    assert stat(heap, "slab_decommits") == 2


def test_mimalloc_v2_free_long_after_the_deadline_purges_the_segment() -> None:
    t = FakeTime()
    ctx = FakeCtx()
    pol = MimallocPurgePolicy(retire_cycles=0, time_source=t)
    pol.on_slab_empty(ctx, slab_event(ctx, 0, 1))
    assert pol._seg_expire[0] == 10 * MS
    t.ms(10.5)  # passed, within the extend delay: reset to now + 1 ms, no purge
    pol.on_slab_empty(ctx, slab_event(ctx, 0, 2))
    assert pol._seg_expire[0] == int(11.5 * MS) and not ctx.decommits
    t.ms(20)  # long passed: the next free purges the whole segment at once
    pol.on_slab_empty(ctx, slab_event(ctx, 0, 3))
    assert sorted(s for _ss, s, _a in ctx.decommits) == [1, 2, 3]


def test_mimalloc_retires_the_only_empty_slab_of_its_class(make_heap: Any) -> None:
    t = FakeTime()
    pol = MimallocPurgePolicy(purge_delay=0, retire_cycles=16, time_source=t)
    heap, _keeper = new_heap(make_heap, pol)
    (only,) = c7_slabs(heap, 1)
    free_slabs(heap, [only])
    assert stat(heap, "slab_decommits") == 0 and "retired for 16" in pol.last_reason
    assert list(pol._retired.values()) == [15]  # trim's tick (after the flush) was cycle 1
    for _ in range(14):
        activity(heap)
        heap.tick()
    assert stat(heap, "slab_decommits") == 0 and list(pol._retired.values()) == [1]
    heap.tick()  # idle ticks are not allocation cycles
    assert stat(heap, "slab_decommits") == 0
    activity(heap)
    heap.tick()
    assert stat(heap, "slab_decommits") == 1 and not pol._retired


def test_mimalloc_collect_purges_everything_now(make_heap: Any) -> None:
    pol = MimallocPurgePolicy(purge_delay=1000, time_source=FakeTime())
    heap, _keeper = new_heap(make_heap, pol)
    free_slabs(heap, c7_slabs(heap, 4))
    assert stat(heap, "slab_decommits") == 0
    assert pol.collect(heap.ctx) == 4
    assert stat(heap, "slab_decommits") == 4 and committed_empty(heap) == 0
    heap.check()


# ====================================================================== tcmalloc-release
def test_tcmalloc_releases_at_its_rate_even_while_idle(make_heap: Any) -> None:
    t = FakeTime()
    pol = TcmallocReleasePolicy(release_rate=96 * 1024, time_source=t)  # 1.5 slabs per second
    heap, _keeper = new_heap(make_heap, pol)
    heap.tick()  # the background thread starts at t = 0
    free_slabs(heap, c7_slabs(heap, 6))
    ops = heap.clock().ops
    t.ms(999)
    heap.tick()
    assert stat(heap, "slab_decommits") == 0  # it sleeps 1 s
    t.ms(1000)
    heap.tick()  # wants 96 KiB: releases 2 whole slabs, 32 KiB ahead
    assert stat(heap, "slab_decommits") == 2 and pol.extra_bytes_released == 32 * 1024
    t.ms(2000)
    heap.tick()  # wants 96 KiB - 32 KiB credit: 1 slab
    assert stat(heap, "slab_decommits") == 3 and pol.extra_bytes_released == 0
    assert heap.clock().ops == ops  # all of it while idle
    for s in range(3, 10):
        t.ms(1000 * s)
        heap.tick()
    assert stat(heap, "slab_decommits") == 6


def test_tcmalloc_default_rate_releases_nothing(make_heap: Any) -> None:
    t = FakeTime()
    heap, _keeper = new_heap(make_heap, TcmallocReleasePolicy(time_source=t))
    heap.tick()
    free_slabs(heap, c7_slabs(heap, 2))
    for s in range(1, 5):
        t.ms(1000 * s)
        heap.tick()
    assert stat(heap, "slab_decommits") == 0


# ====================================================================== gperftools-scavenge
def test_gperftools_free_paced_release_never_while_idle(make_heap: Any) -> None:
    pol = GperftoolsScavengePolicy()  # rate 1.0: one page released per 1000 freed
    heap, _keeper = new_heap(make_heap, pol)
    free_slabs(heap, c7_slabs(heap, 6))
    # the first free crosses the (zero) counter: one slab (8 pages of 8 KiB) released, then the
    # counter waits for 8000 more pages of frees
    assert stat(heap, "slab_decommits") == 1
    assert pol.scavenge_counter == 8000 - 5 * 8
    for _ in range(50):  # idle: ticks, no frees
        heap.tick()
    assert stat(heap, "slab_decommits") == 1
    fast = GperftoolsScavengePolicy(release_rate=1000)  # one page per page freed
    heap, _keeper = new_heap(make_heap, fast)
    free_slabs(heap, c7_slabs(heap, 6))
    assert stat(heap, "slab_decommits") == 3  # every other slab-empty event crosses zero
    off = GperftoolsScavengePolicy(release_rate=0)
    heap, _keeper = new_heap(make_heap, off)
    free_slabs(heap, c7_slabs(heap, 6))
    assert stat(heap, "slab_decommits") == 0


def test_gperftools_round_robin_over_the_class_lists() -> None:
    ctx = FakeCtx()
    pol = GperftoolsScavengePolicy(release_rate=1000)
    pol.on_slab_empty(ctx, slab_event(ctx, 0, 1, cls=3))
    pol.on_slab_empty(ctx, slab_event(ctx, 0, 2, cls=5))  # counter 0: no release
    pol.on_slab_empty(ctx, slab_event(ctx, 0, 3, cls=5))  # crosses: the next list after C3's
    assert [s for _ss, s, _a in ctx.decommits] == [1, 2]


# ====================================================================== glibc-trim
def test_glibc_trims_above_the_threshold_and_on_trim(make_heap: Any) -> None:
    pol = GlibcTrimPolicy()  # threshold 128 KiB, top_pad 128 KiB
    heap, keeper = new_heap(make_heap, pol)
    slabs = c7_slabs(heap, 6)
    free_slabs(heap, slabs[:1])
    assert stat(heap, "slab_decommits") == 0 and "no trim" in pol.last_reason  # 64 KiB < 128 KiB
    free_slabs(heap, slabs[1:2])
    assert stat(heap, "slab_decommits") == 0  # 128 KiB reached, but it is all top_pad
    free_slabs(heap, slabs[2:])
    assert stat(heap, "slab_decommits") == 4 and committed_empty(heap) == 2  # top_pad stays
    before = heap.residency()["resident_bytes"]
    assert pol.trim(heap.ctx) == 2 * K.SLAB_SIZE  # malloc_trim(0): everything reachable
    assert stat(heap, "slab_decommits") == 6 and committed_empty(heap) == 0
    assert heap.residency()["resident_bytes"] <= before - 2 * K.SLAB_SIZE
    rec = Recorder(pol)
    free_slabs(heap, [[keeper, *heap.rest]])
    assert rec.decisions[-1].action == "decommit" and "trimmed" in rec.decisions[-1].why
    heap.check()


def test_glibc_high_threshold_keeps_everything(make_heap: Any) -> None:
    heap, _keeper = new_heap(make_heap, GlibcTrimPolicy(trim_threshold=1 << 20))
    free_slabs(heap, c7_slabs(heap, 6))
    assert stat(heap, "slab_decommits") == 0


# ====================================================================== obmalloc
def test_obmalloc_unmaps_an_empty_superslab_unless_it_is_the_last(make_heap: Any) -> None:
    pol = ObmallocPolicy()
    rec = Recorder(pol)
    heap = make_heap(policy=pol, tiny_prewarm=False)
    ptrs = [heap.malloc(C7_SIZE) for _ in range(32 * 31 * 2)]  # two superslabs
    assert stat(heap, "superslabs_active") >= 2
    for p in ptrs:
        heap.free(p)
    heap.trim()
    st = heap.stats()
    assert st["superslabs_active"] == 0 and st["superslabs_cached"] == 1  # the last one is kept
    assert st["ss_unmapped"] == st["ss_empty_events"] - 1
    assert [d.action for d in rec.decisions] == ["keep"] + ["unmap"] * (len(rec.decisions) - 1)
    assert "bpo-37257" in rec.decisions[0].why
    # the kept one serves the next allocation; emptied again, it is again the last: kept
    p = heap.malloc(C7_SIZE)
    heap.free(p)
    heap.trim()
    assert heap.stats()["superslabs_cached"] == 1 and rec.decisions[-1].action == "keep"
    heap.check()


# ====================================================================== reasons (why)
def test_release_why_keeps_constructors_and_equality() -> None:
    assert Release("decommit", "FREE", True) == Release.decommit("FREE", True)
    assert Release.keep(why="x") == Release.keep() and Release.keep(why="x").why == "x"
    assert Release.unmap(True, why="gone").retire and Release.unmap(True, why="gone").why == "gone"
    assert Release.decommit("FREE", retire=True, why="over budget").advice == "FREE"
    with pytest.raises(dataclasses.FrozenInstanceError):
        Release.keep().why = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        Release("keep", why=3)  # type: ignore[arg-type]


def test_builtin_policies_give_reasons(make_heap: Any) -> None:
    ctx = FakeCtx()
    from simalloc import SuperslabEvent

    ev = SuperslabEvent(0, 0, 0.0)
    assert "FAST" in FastPolicy().on_superslab_empty(ctx, ev).why  # type: ignore[arg-type]
    ctx.committed_superslab_bytes = lambda: 10 << 20  # type: ignore[attr-defined]
    lean = LeanPolicy("DONTNEED", target_mb=10)
    d = lean.on_superslab_empty(ctx, ev)  # type: ignore[arg-type]
    assert d.action == "decommit" and d.why.startswith("over budget by 2 MiB")
    ctx.committed_superslab_bytes = lambda: 4 << 20  # type: ignore[attr-defined]
    assert lean.on_superslab_empty(ctx, ev).why.startswith("within budget")  # type: ignore[arg-type]
    assert "OFF" in LeanPolicy("OFF").on_superslab_empty(ctx, ev).why  # type: ignore[arg-type]
    assert "unmap" in LeanPolicy("FREE", 1, "unmap").on_superslab_empty(ctx, ev).why  # type: ignore[arg-type]
    # slab decisions: the reason goes to ctx.decommit_slab(why=...) and stays on the policy
    pol = DelayedSlabPurgePolicy(delay_ops=0)
    heap, _keeper = new_heap(make_heap, pol)
    free_slabs(heap, c7_slabs(heap, 1))
    assert "decommit at once" in pol.last_reason and stat(heap, "slab_decommits") == 1


def test_presets_pass_their_reasons_to_the_context() -> None:
    """Every decommit a preset makes carries its reason as ``why=`` (the decision log's), the
    same text as ``last_reason`` at that moment: slabs (mimalloc's segment purge, gperftools'
    scavenge) and cached superslabs (jemalloc's decay)."""
    t = FakeTime()
    ctx = FakeCtx()
    pol = MimallocPurgePolicy(retire_cycles=0, time_source=t)
    pol.on_slab_empty(ctx, slab_event(ctx, 0, 1))
    t.ms(30)  # long past the deadline: the next free purges the segment
    pol.on_slab_empty(ctx, slab_event(ctx, 0, 2))
    assert len(ctx.reasons) == len(ctx.decommits) == 2
    assert [r.split(":")[0] for r in ctx.reasons] == ["slab 0.1", "slab 0.2"]
    assert all("deadline long passed" in r for r in ctx.reasons) and ctx.reasons[-1] == pol.last_reason

    ctx = FakeCtx()
    gp = GperftoolsScavengePolicy(release_rate=1000)
    for slab in (1, 2, 3):
        gp.on_slab_empty(ctx, slab_event(ctx, 0, slab, cls=3))
    assert ctx.decommits and len(ctx.reasons) == len(ctx.decommits)
    assert all(r.startswith("slab 0.") and "scavenge" in r for r in ctx.reasons)

    t = FakeTime()
    ctx = FakeCtx(cached_api=True)
    je = JemallocDecayPolicy(dirty_decay_ms=200, jitter=False, time_source=t)
    je.tick(ctx)
    from simalloc import SuperslabEvent

    ctx.cached[5] = False
    je.on_superslab_empty(ctx, SuperslabEvent(5, 0, 0.0))
    t.ms(1)
    ctx.ops += 1
    je.tick(ctx)
    t.ms(300)  # past the whole decay period: everything purged
    ctx.ops += 1
    je.tick(ctx)
    assert ctx.cached_decommits == [(5, "DONTNEED")] and len(ctx.reasons) == 1
    assert "dirty pages > limit" in ctx.reasons[0] and je.last_reason.endswith(ctx.reasons[0])
