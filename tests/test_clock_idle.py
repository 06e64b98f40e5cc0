"""The virtual clock and idle time (issue 9 item 3): ``Clock.virtual_ns`` = ops x ``ns_per_op`` +
idle time, ``Heap.idle(seconds)`` and ``OP_IDLE`` rows, and what each release rule does while
the program is idle -- on real heaps (both kernels), with real idle calls.  Nothing sleeps:
idle time is virtual."""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np
import pytest

from simalloc import InvalidSizeError, TraceError
from simalloc import constants as K
from simalloc.presets import (
    GperftoolsScavengePolicy,
    JemallocDecayPolicy,
    MimallocPurgePolicy,
    TcmallocReleasePolicy,
)

C7_SIZE = 2000  # stride 2048: 32 blocks per 64 KiB slab


def new_heap(make_heap: Any, policy: Any, **overrides: Any) -> Any:
    """A heap with a long-lived C0 block (its superslab never empties) and the clock moved
    100 ms on (idle), so a background thread that starts now has a past epoch."""
    heap = make_heap(policy=policy, tiny_prewarm=False, **overrides)
    heap.keeper = heap.malloc(10)
    heap.tick()
    heap.idle(0.1)
    return heap


def empty_c7_slabs(heap: Any, nslabs: int) -> None:
    """Fill ``nslabs`` C7 slabs (pages written) and one more, wait 20 ms (idle), free the full
    ones: ``nslabs`` EMPTY slabs in a live superslab (the last stays current)."""
    ptrs = [heap.malloc(C7_SIZE) for _ in range(32 * nslabs + 1)]
    for p in ptrs:
        ctypes.memset(p, 0x5A, C7_SIZE)
    current = ptrs[-1] >> K.SLAB_LG
    heap.idle(0.02)  # the frees start a new epoch of a decay clock (jemalloc: 5 ms epochs here)
    for p in ptrs:
        if p >> K.SLAB_LG != current:
            heap.free(p)
    heap.trim()  # drain the front caches: the slabs empty now
    assert heap.stats()["slabs_empty"] >= nslabs


def decommits(heap: Any) -> int:
    return int(heap.stats()["slab_decommits"])


def activity(heap: Any) -> None:
    heap.free(heap.malloc(10))


# ====================================================================== the clock
def test_virtual_clock_is_ops_times_ns_per_op_plus_idle(make_heap: Any) -> None:
    heap = make_heap(tiny_prewarm=False, ns_per_op=10.0)
    c0 = heap.clock()
    assert c0.virtual_ns == int(c0.ops * 10.0)
    for _ in range(50):
        activity(heap)
    c1 = heap.clock()
    assert c1.ops == c0.ops + 100 and c1.virtual_ns == c0.virtual_ns + 1000
    heap.idle(2.5)
    c2 = heap.clock()
    assert c2.ops == c1.ops and c2.virtual_ns == c1.virtual_ns + 2_500_000_000
    assert heap.ctx.clock().virtual_ns == c2.virtual_ns  # what policies see
    heap.idle(0)
    assert heap.clock().virtual_ns == c2.virtual_ns


def test_default_ns_per_op_is_hakmems_measured_speed(make_heap: Any) -> None:
    heap = make_heap(tiny_prewarm=False)
    assert heap.config.ns_per_op == pytest.approx(1e9 / 60.19e6, abs=0.05)  # Phase 54 FAST


@pytest.mark.parametrize("bad", [-1, -0.5, float("nan"), float("inf"), "1", None, True])
def test_idle_rejects_bad_durations(make_heap: Any, bad: Any) -> None:
    heap = make_heap(tiny_prewarm=False)
    before = heap.clock().virtual_ns
    with pytest.raises(InvalidSizeError):
        heap.idle(bad)
    assert heap.clock().virtual_ns == before


def test_idle_rows_in_a_replayed_stream(make_heap: Any) -> None:
    """An OP_IDLE row advances the clock by its size column (ns), leaves its slot alone and is
    not an operation; a negative one is a TraceError."""
    heap = make_heap(tiny_prewarm=False, ns_per_op=0.0)
    slots = np.zeros(2, dtype=np.uint64)
    rows = np.array([[K.OP_MALLOC, 0, 100], [K.OP_IDLE, 0, 3_000_000_000], [K.OP_FREE, 0, 0],
                     [K.OP_IDLE, 1, 500]], dtype=np.int64)
    ops0 = heap.clock().ops
    assert heap.replay(rows, slots) == 4
    c = heap.clock()
    assert c.ops == ops0 + 2 and c.virtual_ns == 3_000_000_500
    assert not slots.any()
    with pytest.raises(TraceError, match="negative"):
        heap.replay(np.array([[K.OP_IDLE, 0, -5]], dtype=np.int64), slots)
    heap.check()


# ====================================================================== the rules while idle
def test_gperftools_scavenge_never_releases_while_idle(make_heap: Any) -> None:
    pol = GperftoolsScavengePolicy()
    heap = new_heap(make_heap, pol)
    empty_c7_slabs(heap, 6)
    before = decommits(heap)  # the first free crossed the counter: one slab
    assert before == 1
    for _ in range(10):
        heap.idle(60.0)
    assert decommits(heap) == before and heap.stats()["slabs_empty"] - heap.stats()["slabs_decommitted"] == 5
    heap.check()


def test_jemalloc_background_releases_while_idle_activity_mode_does_not(make_heap: Any) -> None:
    results = {}
    for background in (False, True):
        pol = JemallocDecayPolicy(dirty_decay_ms=1000, background=background, jitter=False)
        assert pol.clock_kind == ("background" if background else "activity")
        heap = new_heap(make_heap, pol)
        empty_c7_slabs(heap, 6)
        assert decommits(heap) == 0  # freshly dirty pages have weight 1.0
        ops = heap.clock().ops
        heap.idle(0.5)  # the thread sleeps a whole decay period while <= 1024 pages are dirty
        half = decommits(heap)
        heap.idle(5.0)
        assert heap.clock().ops == ops  # idle: no operation ran
        results[background] = (half, decommits(heap))
        heap.check()
    assert results == {False: (0, 0), True: (0, 6)}


def test_jemalloc_activity_mode_purges_once_operations_resume(make_heap: Any) -> None:
    """The pages an idle activity-driven jemalloc keeps start to be purged by the first tick
    that sees operations (jemalloc #1940's workaround: call into it), and are all gone one
    decay period later (the pages freed after the first epoch are recorded only then)."""
    pol = JemallocDecayPolicy(dirty_decay_ms=1000, jitter=False)
    heap = new_heap(make_heap, pol)
    empty_c7_slabs(heap, 6)
    heap.idle(5.0)
    assert decommits(heap) == 0
    activity(heap)
    heap.tick()
    assert 0 < decommits(heap) < 6
    heap.idle(1.1)
    assert decommits(heap) < 6
    activity(heap)
    heap.tick()
    assert decommits(heap) == 6


def test_mimalloc_purge_releases_only_after_its_delay(make_heap: Any) -> None:
    """purge_delay 10 ms: nothing before it; and mimalloc has no timer thread, so the purge
    waits for the program's next call after the deadline (idle time alone does nothing)."""
    pol = MimallocPurgePolicy(retire_cycles=0)
    heap = new_heap(make_heap, pol)
    empty_c7_slabs(heap, 3)
    heap.idle(0.005)
    activity(heap)
    heap.tick()
    assert decommits(heap) == 0  # 5 ms < 10 ms (+ 1 ms extensions)
    heap.idle(1.0)
    assert decommits(heap) == 0  # the deadline passed while idle: no call, no purge
    activity(heap)
    heap.tick()
    assert decommits(heap) == 3
    heap.check()


def test_tcmalloc_releases_at_its_rate_during_idle(make_heap: Any) -> None:
    pol = TcmallocReleasePolicy(release_rate=96 * 1024)  # 1.5 slabs per second
    heap = new_heap(make_heap, pol)  # the thread started at the first tick
    empty_c7_slabs(heap, 6)
    start = pol._prev
    assert start is not None
    heap.idle((start + 999_000_000 - heap.clock().virtual_ns) / 1e9)
    assert decommits(heap) == 0  # it sleeps 1 s
    heap.idle(0.002)  # wakes at 1 s: 96 KiB wanted, 2 whole slabs, 32 KiB credit
    assert decommits(heap) == 2 and pol.extra_bytes_released == 32 * 1024
    heap.idle(1.0)  # 96 KiB - 32 KiB credit: 1 slab
    assert decommits(heap) == 3 and pol.counts["wakeups"] == 2
    heap.idle(3.0)  # one idle call spanning three wake-ups ticks three times
    assert pol.counts["wakeups"] == 5 and decommits(heap) == 6
    heap.check()


def test_idle_rows_drive_a_background_policy_like_heap_idle(make_heap: Any) -> None:
    """The same idle span through ``Heap.idle`` and through OP_IDLE rows gives the same release."""
    out = []
    for via_rows in (False, True):
        pol = TcmallocReleasePolicy(release_rate=64 * 1024)
        heap = new_heap(make_heap, pol)
        empty_c7_slabs(heap, 4)
        if via_rows:
            rows = np.array([[K.OP_IDLE, 0, 1_000_000_000]] * 3, dtype=np.int64)
            heap.replay(rows, np.zeros(1, dtype=np.uint64))
        else:
            for _ in range(3):
                heap.idle(1.0)
        out.append((decommits(heap), pol.counts.get("wakeups", 0)))
    assert out[0] == out[1] and out[0][0] >= 2


# ====================================================================== idle phases in workloads
def test_idle_workload_has_idle_gaps_and_drives_the_clock(make_heap: Any) -> None:
    from simalloc.workloads import WORKLOADS, get_workload

    assert "idle" in WORKLOADS
    w = get_workload("idle", ops=0, rounds=3, burst_mb=1.0, idle_s=2.5, seed=2)
    rows = w.op_stream()
    idle = rows[rows[:, 0] == K.OP_IDLE]
    assert len(idle) == 3 and (idle[:, 2] == 2_500_000_000).all() and w.idle_seconds() == 7.5
    assert len(rows) == w.total_ops
    heights = w.round_blocks()
    assert len(set(heights)) == 3 and max(heights) <= w.burst_blocks  # rounds differ in height
    heap = make_heap(tiny_prewarm=False, ns_per_op=0.0)
    slots = w.new_slots()
    w.warmup(heap, slots)
    for _ in w.run_chunks(heap, slots, 4):
        pass
    assert not slots.any() and heap.clock().virtual_ns == 7_500_000_000
    heap.check()


def test_idle_workload_separates_background_from_free_driven_rules(make_heap: Any) -> None:
    """In the idle gaps a background release (tcmalloc at 4 MiB/s) gives back the EMPTY slabs
    the bursts left; gperftools' free-paced scavenger gives back only what frees paced."""
    from simalloc.workloads import get_workload

    w = get_workload("idle", ops=0, rounds=2, burst_mb=2.0, idle_s=2.0, seed=1)
    out = {}
    for pol in (TcmallocReleasePolicy(release_rate=4 << 20), GperftoolsScavengePolicy()):
        heap = make_heap(policy=pol, tiny_prewarm=False)
        slots = w.new_slots()
        w.warmup(heap, slots)
        rows = w.op_stream()
        cut = int(np.flatnonzero(rows[:, 0] == K.OP_IDLE)[0])
        heap.replay(rows[:cut], slots)  # the first burst, up to its idle gap
        before = decommits(heap)
        heap.replay(rows[cut:cut + 1], slots)  # the gap
        out[pol.name] = (before, decommits(heap))
        heap.replay(rows[cut + 1:], slots)
        heap.check()
    assert out["tcmalloc-release"][1] > out["tcmalloc-release"][0]
    assert out["gperftools-scavenge"][1] == out["gperftools-scavenge"][0]


def test_simalloc_run_takes_the_idle_workload(capsys: Any) -> None:
    from simalloc.cli import main

    code = main(["run", "--workload", "idle", "--ops", "30000", "--param", "burst_mb=1",
                 "--set", "policy=tcmalloc-release", "--kernel", "python"])
    assert code == 0
    assert "idle [" in capsys.readouterr().out


# ====================================================================== trace times
def test_trace_times_become_idle_rows_that_keep_the_clock_with_the_trace() -> None:
    from simalloc.workloads.opstream import OpStream, validate_ops

    rng = np.random.default_rng(5)
    n = 4000
    kinds = np.tile([K.OP_MALLOC, K.OP_FREE], n // 2)
    ops = np.stack([kinds, np.repeat(np.arange(n // 2), 2), np.where(kinds == 0, 64, 0)], axis=1)
    times = np.cumsum(rng.exponential(2e-5, n))  # 20 us between ops on average
    times[n // 2:] += 3.0  # a 3 s quiet spell
    ns, gap = 16.6, 1_000_000
    w = OpStream(ops.astype(np.int64), n // 2, times).with_idle(ns, gap)
    assert w.meta["idle_rows"] == int(np.count_nonzero(w.ops[:, 0] == K.OP_IDLE)) > 0
    validate_ops(w.ops, w.n_slots)
    is_idle = w.ops[:, 0] == K.OP_IDLE
    virtual = np.cumsum(np.where(is_idle, w.ops[:, 2], 0)) + np.cumsum(~is_idle) * ns
    trace = (w.times - w.times[0]) * 1e9
    lag = trace[~is_idle] - (virtual[~is_idle] - ns)  # trace time minus the op's virtual start
    assert lag.max() < gap and lag.min() > -gap - ns
    assert w.summary()["idle_ns"] == pytest.approx(trace[-1], abs=gap)
    assert w.summary()["peak_live_payload"] == 64 and w.with_idle(ns) is w  # idempotent


def test_replay_uses_the_trace_times(tmp_path: Any) -> None:
    from simalloc.trace.readers import read_trace
    from simalloc.trace.replay import replay_stream
    from simalloc.workloads.opstream import load_npz

    stream = read_trace("tests/data/wordfreq.ltrace")
    assert stream.times is not None
    dur = float(stream.times[-1] - stream.times[0])
    r = replay_stream(stream, {"kernel": "python"}, samples=4)
    assert r["idle_rows"] > 0 and r["ops"] == len(stream)
    assert r["virtual_s"] == pytest.approx(dur, abs=0.002)
    off = replay_stream(stream, {"kernel": "python"}, samples=4, use_times=False)
    assert off["idle_rows"] == 0 and off["virtual_s"] < 0.001
    saved = stream.with_idle(16.6).save(tmp_path / "t.npz")  # the time column and idle rows keep
    back = load_npz(saved)
    assert back.times is not None and np.array_equal(back.ops, stream.with_idle(16.6).ops)


def test_malformed_idle_rows_are_trace_errors() -> None:
    from simalloc.workloads.opstream import validate_ops

    with pytest.raises(TraceError, match="record 2: negative idle time"):
        validate_ops(np.array([[0, 0, 8], [K.OP_IDLE, 0, -1]], dtype=np.int64), 1)
    with pytest.raises(TraceError, match="record 3: free of empty slot 0"):  # numbered with idle rows
        validate_ops(np.array([[K.OP_IDLE, 0, 5], [0, 1, 8], [1, 0, 0]], dtype=np.int64), 2)
    with pytest.raises(TraceError, match="unknown op kind 4"):
        validate_ops(np.array([[4, 0, 0]], dtype=np.int64), 1)


def test_native_driver_sleeps_through_idle_rows(tmp_path: Any) -> None:
    import time

    from simalloc.native import NativeUnavailable, run_file
    from simalloc.native.opfile import stream_file

    rows = np.array([[0, 0, 100], [K.OP_IDLE, 0, 150_000_000], [1, 0, 0], [0, 1, 50],
                     [K.OP_IDLE, 7, 100_000_000], [1, 1, 0]], dtype=np.int64)
    sf = stream_file("idle-test", rows, tmp_path, n_slots=2, warmup_ops=1)
    assert (sf.ops, sf.idle_rows) == (3, 2)
    t0 = time.monotonic()
    try:
        (line,) = run_file("glibc", sf.path, sf.warmup_ops)
    except NativeUnavailable as exc:
        pytest.skip(str(exc))
    assert time.monotonic() - t0 >= 0.25
    assert line["ops"] == 3 and line["idle_rows"] == 2 and line["idle_s"] >= 0.25
    assert line["seconds"] < 0.2  # the sleep is not timed
