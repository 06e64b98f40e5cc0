"""Tests of simalloc.workloads: xorshift32, stream determinism and semantics, the chunked
runner on real heaps (pure-Python kernel), Mixed's generator and ``run_mixed`` against the
reference stream and its replay."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import simalloc
from simalloc import Config, ConfigError, HeapClosedError, TraceError
from simalloc.constants import OP_FREE, OP_IDLE, OP_MALLOC
from simalloc.workloads import (
    WORKLOADS,
    ChurnWorkload,
    LarsonWorkload,
    MixedWorkload,
    MstressWorkload,
    Workload,
    XorshiftStream,
    get_workload,
    mixed_ops,
    run_mixed,
    xorshift32,
    xorshift32_array,
)
from simalloc.workloads.base import toggle_kinds

# Small, fast parameters per workload (the defaults are sized for ~200k ops).
SMALL: dict[str, dict[str, Any]] = {
    "mixed": {"ops": 3000, "ws": 64},
    "churn": {"ops": 3000, "ws": 32, "burst_mb": 0.5, "idle_ratio": 2.0},
    "tiny-hot": {"ops": 2000},
    "larson": {"ops": 3000, "ws": 200},
    "mstress": {"ops": 3000, "ws": 300, "large_fraction": 0.05},
    "idle": {"ops": 3000, "ws": 32, "burst_mb": 0.25, "idle_s": 0.5},
}


#: The seeded, synthetic workloads (``trace`` replays a file: tests/test_trace_workload.py).
SYNTHETIC = [n for n in WORKLOADS if n != "trace"]


def small(name: str, seed: int = 1, **extra: Any) -> Workload:
    return get_workload(name, seed=seed, **{**SMALL[name], **extra})


def python_heap(**overrides: Any) -> simalloc.Heap:
    return simalloc.Heap(Config.defaults(kernel="python", **overrides))


def check_stream(w: Workload, rows: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
    """Replay ``rows`` on an occupancy table: no free of an empty slot, no malloc into a full
    one, kinds known.  Returns the final occupancy."""
    occ = np.zeros(w.nslots, dtype=bool) if start is None else start.copy()
    for kind, slot, size in rows.tolist():
        assert 0 <= slot < w.nslots
        if kind == OP_IDLE:  # idle time (ns), no block
            assert size >= 0
            continue
        if kind == OP_MALLOC:
            assert not occ[slot], f"malloc into occupied slot {slot}"
            occ[slot] = True
        else:
            assert kind == OP_FREE and occ[slot], f"free of empty slot {slot}"
            occ[slot] = False
    return occ


# ---------------------------------------------------------------------------- xorshift32
@pytest.mark.parametrize(("state", "out"), [
    (1, 270369), (270369, 67634689), (67634689, 2647435461), (0xDEADBEEF, 1199382711),
    (0xDEADBEEF + 1, 1191363433), (0xFFFFFFFF, 253983), (123456789, 2714967881),
])
def test_xorshift32_vectors(state: int, out: int) -> None:
    assert xorshift32(state) == out


def test_xorshift32_tenth_output_and_zero_fixed_point() -> None:
    s = 1
    for _ in range(10):
        s = xorshift32(s)
    assert s == 2916098932
    assert xorshift32(0) == 0


@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 1000, 70_001])
@pytest.mark.parametrize("state", [1, 0xDEADBEEF + 1, 0xFFFFFFFF])
def test_xorshift32_array_matches_scalar(state: int, n: int) -> None:
    got, final = xorshift32_array(state, n)
    ref = []
    s = state
    for _ in range(n):
        s = xorshift32(s)
        ref.append(s)
    assert got.dtype == np.uint32 and got.tolist() == ref and final == s


def test_xorshift_stream_is_deterministic() -> None:
    a, b = XorshiftStream(7), XorshiftStream(7)
    assert a.next(10).tolist() + a.next(5).tolist() == b.next(15).tolist()
    assert XorshiftStream(0).next(3).any()  # seed 0 is fine (mixed with a constant)
    assert XorshiftStream(7, salt=1).next(4).tolist() != XorshiftStream(7).next(4).tolist()


def test_toggle_kinds() -> None:
    occ = np.array([True, False, False])
    kinds = toggle_kinds(np.array([0, 1, 0, 1, 1, 2]), occ)
    assert kinds.tolist() == [OP_FREE, OP_MALLOC, OP_MALLOC, OP_FREE, OP_MALLOC, OP_MALLOC]
    assert occ.tolist() == [True, True, True]


# ---------------------------------------------------------------------------- registry
def test_registry_names() -> None:
    assert set(WORKLOADS) == {"mixed", "churn", "tiny-hot", "larson", "mstress", "idle", "trace"}
    for name, cls in WORKLOADS.items():
        assert cls.name == name and cls.__doc__ and cls.STRESSES
        assert issubclass(cls, Workload)


def test_get_workload_errors() -> None:
    with pytest.raises(ConfigError, match="unknown workload"):
        get_workload("nope", ops=10)
    with pytest.raises(ConfigError, match="unknown parameter"):
        get_workload("mixed", ops=10, bogus=1)
    with pytest.raises(ConfigError, match="ws"):
        get_workload("larson", ops=10, ws=0)
    with pytest.raises(ConfigError, match="seed"):
        get_workload("mixed", ops=10, seed=0)


@pytest.mark.parametrize("name", SYNTHETIC)
def test_describe_and_params(name: str) -> None:
    w = small(name)
    line = w.describe()
    assert "\n" not in line and line.startswith(name) and "seed=1" in line
    assert w.params["ops"] == SMALL[name]["ops"] and w.params["seed"] == 1
    assert w.nslots > 0 and w.total_ops == w.main_ops + w.drain_ops


# ---------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("name", SYNTHETIC)
def test_same_seed_same_stream(name: str) -> None:
    w = small(name, seed=5)
    a, b = w.op_stream(), small(name, seed=5).op_stream()
    assert a.dtype == np.int64 and a.shape == (w.total_ops, 3)
    assert np.array_equal(a, b)
    assert np.array_equal(small(name, seed=5).warmup_stream(), small(name, seed=5).warmup_stream())


@pytest.mark.parametrize("name", [n for n in SYNTHETIC if n != "tiny-hot"])
def test_different_seed_different_stream(name: str) -> None:
    a, b = small(name, seed=1).op_stream(), small(name, seed=2).op_stream()
    assert a.shape != b.shape or not np.array_equal(a, b)


@pytest.mark.parametrize("name", SYNTHETIC)
def test_stream_is_consistent_and_drains(name: str) -> None:
    w = small(name)
    warm = w.warmup_stream()
    start = check_stream(w, warm)
    rows = w.op_stream()
    assert len(rows) == w.total_ops
    assert np.array_equal(w.op_stream(max_ops=17), rows[:17])
    final = check_stream(w, rows, start)
    assert not final.any(), "the final drain must leave every slot empty"
    sizes = rows[rows[:, 0] == OP_MALLOC, 2]
    assert sizes.min() >= 0 and sizes.max() <= 2047
    assert (rows[rows[:, 0] == OP_FREE, 2] == 0).all()
    assert (rows[len(rows) - w.drain_ops:, 0] == OP_FREE).all()


# ---------------------------------------------------------------------------- mixed
def test_mixed_first_ops_match_bench_random_mixed() -> None:
    rows = get_workload("mixed", ops=3, ws=400, seed=1, prefault=0).op_stream()
    # r1 = 270369: slot 270369 % 400 = 369, size 16 + (270369 & 0x3FF) = 49
    assert rows[0].tolist() == [OP_MALLOC, 369, 49]
    r2 = 67634689
    assert rows[1].tolist() == [OP_MALLOC, r2 % 400, 16 + (r2 & 0x3FF)]


@pytest.mark.parametrize(("cycles", "ws", "seed"), [(2000, 400, 1), (5000, 64, 1234567),
                                                    (300, 4000, 42), (0, 10, 3)])
def test_mixed_stream_matches_reference(cycles: int, ws: int, seed: int) -> None:
    w = MixedWorkload(ops=cycles, ws=ws, seed=seed)
    ref = np.array(list(mixed_ops(cycles, ws, seed)), dtype=np.int64).reshape(-1, 3)
    rows = w.op_stream()
    assert np.array_equal(rows, ref)
    assert w.total_ops == len(ref) and w.main_ops == cycles
    assert w.prefault == cycles // 10
    mallocs = rows[rows[:, 0] == OP_MALLOC, 2]
    assert ((mallocs >= 16) & (mallocs <= 1039)).all()


def test_mixed_prefault_is_not_drained() -> None:
    w = get_workload("mixed", ops=4000, ws=100, seed=9)
    warm = w.warmup_stream()
    assert len(warm) == 400 and check_stream(w, warm).any()
    # with the prefault the timed stream starts warm: it frees a slot it never malloc'd
    rows = w.op_stream()
    first: dict[int, int] = {}
    for kind, slot, _ in rows.tolist():
        first.setdefault(slot, kind)
    assert OP_FREE in first.values()


def test_mixed_kernel_loop_equals_replay() -> None:
    """warmup + run_chunks (``run_mixed``) and warmup + replay(op_stream) end in the same state."""
    w = get_workload("mixed", ops=6000, ws=400, seed=1)
    results = []
    for mode in ("chunks", "replay"):
        with python_heap() as heap:
            slots = w.new_slots()
            assert w.warmup(heap, slots) == 600
            if mode == "chunks":
                ns = list(w.run_chunks(heap, slots, 7))
                assert len(ns) == 7 and sum(ns) == w.total_ops
                assert ns[-1] >= w.drain_ops
            else:
                heap.replay(w.op_stream(), slots)
            heap.check()
            st = heap.stats()
            assert st["live_blocks"] == 0 and not slots.any()
            results.append(st)
    a, b = results
    for key in ("ops", "ss_acquired", "ss_fresh", "refills", "drains", "slow_refills",
                "stage_1_free_slot", "stage_partial", "stage_2_unused", "slab_empty_events",
                "mmap_total", "superslabs_active", "slabs_empty"):
        assert a[key] == b[key], key


@pytest.mark.parametrize(("ws", "seed", "n"), [(400, 1, 3000), (5, 0xFFFFFFFF, 500), (1, 9, 40)])
def test_mixed_python_generator_matches_reference(ws: int, seed: int, n: int) -> None:
    """The plain-Python build of the Mixed generator (what a compiler-less install runs) gives
    the reference rows, and ``advance`` moves exactly like ``fill``."""
    from simalloc.workloads._mixedgen_py import MixedGen as PyMixedGen

    gen = PyMixedGen(ws, seed)
    rows = np.zeros((n, 3), np.int64)
    assert gen.fill(rows, n) == n
    ref = np.array(list(mixed_ops(n, ws, seed, prefault=0, drain=False)), np.int64)
    assert np.array_equal(rows, ref)
    skip = PyMixedGen(ws, seed)
    skip.advance(n)
    assert skip.state == gen.state and skip.occ.tolist() == gen.occ.tolist()
    with pytest.raises(ValueError):
        gen.fill(rows, n + 1)
    with pytest.raises(ValueError):
        PyMixedGen(0, 1)


def test_run_mixed_chains_and_matches_the_reference() -> None:
    """``run_mixed`` from empty slots applies exactly ``mixed_ops`` (same decisions as replaying
    it), returns the xorshift state, reads the occupancy from the slots (calls chain), and
    writes ``size & 0xFF`` as each new block's first byte."""
    cycles, ws = 4000, 64
    results = []
    for mode in ("run_mixed", "replay"):
        with python_heap() as heap:
            slots = np.zeros(ws, np.uint64)
            if mode == "run_mixed":
                state = run_mixed(heap, cycles // 2, ws, 5, slots)
                state = run_mixed(heap, cycles - cycles // 2, ws, state, slots)
                s = 5
                for _ in range(cycles):
                    s = xorshift32(s)
                assert state == s
            else:
                rows = np.array(list(mixed_ops(cycles, ws, 5, prefault=0, drain=False)), np.int64)
                heap.replay(rows, slots)
            live = {int(i): heap.view(int(p))[0] for i, p in enumerate(slots) if p}
            st = heap.stats()
            results.append((live, {k: st[k] for k in ("ops", "refills", "drains", "live_blocks")}))
            heap.drain_slots(slots)
            heap.check()
    assert results[0] == results[1]


def test_run_mixed_rejects_bad_arguments() -> None:
    with python_heap() as heap:
        with pytest.raises(TraceError, match="ws"):
            run_mixed(heap, 10, 0, 1, np.zeros(4, np.uint64))
        with pytest.raises(TraceError, match="ws"):
            run_mixed(heap, 10, 5, 1, np.zeros(4, np.uint64))
        with pytest.raises(TraceError, match="slots"):
            run_mixed(heap, 10, 4, 1, np.zeros(4, np.int64))
        assert run_mixed(heap, 0, 4, 7, np.zeros(4, np.uint64)) == 7
    with pytest.raises(HeapClosedError):
        run_mixed(heap, 10, 4, 1, np.zeros(4, np.uint64))


def test_mixed_ws_4000_named_case() -> None:
    w = get_workload("mixed", ops=1000, ws=4000)
    assert isinstance(w, MixedWorkload) and w.nslots == 4000 and w.params["ws"] == 4000


# ---------------------------------------------------------------------------- runner
@pytest.mark.parametrize("name", SYNTHETIC)
def test_runs_end_to_end_on_a_heap(name: str) -> None:
    w = small(name)
    with python_heap() as heap:
        slots = w.new_slots()
        warm = w.warmup(heap, slots)
        assert warm == len(w.warmup_stream())
        ns = list(w.run_chunks(heap, slots, 5))
        assert len(ns) == 5 and sum(ns) == w.total_ops
        assert min(ns) > 0
        heap.check()
        assert heap.stats()["live_blocks"] == 0
        assert not slots.any()


@pytest.mark.parametrize("name", ["churn", "mstress", "tiny-hot"])
def test_run_chunks_equals_replaying_the_stream(name: str) -> None:
    w = small(name)
    results = []
    for mode in ("chunks", "replay"):
        with python_heap() as heap:
            slots = w.new_slots()
            heap.replay(w.warmup_stream(), slots)
            if mode == "chunks":
                for _ in w.run_chunks(heap, slots, 3):
                    pass
            else:
                heap.replay(w.op_stream(), slots)
            st = heap.stats()
            results.append({k: st[k] for k in ("ops", "ss_acquired", "refills", "drains",
                                                "slab_empty_events", "ss_empty_events")})
    assert results[0] == results[1]


@pytest.mark.parametrize("n_chunks", [1, 2, 13, 5000])
def test_run_chunks_count_and_last_chunk_drain(n_chunks: int) -> None:
    w = small("larson", ops=600, ws=50)
    with python_heap() as heap:
        slots = w.new_slots()
        w.warmup(heap, slots)
        ns = list(w.run_chunks(heap, slots, n_chunks))
    assert len(ns) == n_chunks and sum(ns) == w.total_ops
    main = w.main_ops
    assert ns[-1] == main - main * (n_chunks - 1) // n_chunks + w.drain_ops


def test_run_chunks_rejects_bad_arguments() -> None:
    w = small("tiny-hot")
    with python_heap() as heap:
        with pytest.raises(ValueError):
            next(iter(w.run_chunks(heap, w.new_slots(), 0)))
        with pytest.raises(TypeError):
            next(iter(w.run_chunks(heap, np.zeros(w.nslots, dtype=np.int64), 1)))
        with pytest.raises(ValueError):
            next(iter(w.run_chunks(heap, np.zeros(1, dtype=np.uint64), 1)))


# ---------------------------------------------------------------------------- shapes
def test_tiny_hot_shape() -> None:
    w = get_workload("tiny-hot", ops=1000)
    rows = w.op_stream()
    assert w.total_ops == len(rows) == 1000 and w.params["cycles"] == 5
    assert rows[:100, 0].tolist() == [OP_MALLOC] * 100 and (rows[:100, 2] == 64).all()
    assert rows[100:200, 1].tolist() == list(range(99, -1, -1))


def test_larson_shape() -> None:
    w = LarsonWorkload(ops=5100, ws=100, min_size=8, max_size=1000)
    assert w.rounds == 25 and w.total_ops == 25 * 100 * 2 + 100 == len(w.op_stream())
    warm = w.warmup_stream()
    assert len(warm) == 100 and (warm[:, 0] == OP_MALLOC).all()
    rows = w.op_stream()
    sizes = rows[rows[:, 0] == OP_MALLOC, 2]
    assert sizes.min() >= 8 and sizes.max() <= 1000


def test_mstress_survivors() -> None:
    w = MstressWorkload(ops=4000, ws=200, keep=0.2, lifetime=3, seed=4)
    assert w.phases == 10 and w.nslots == 600 and w.total_ops == 4000
    occ = np.zeros(w.nslots, dtype=bool)
    rows = w.op_stream()
    live_max = 0
    for kind, slot, _ in rows[: len(rows) - w.drain_ops].tolist():
        occ[slot] = kind == OP_MALLOC
        live_max = max(live_max, int(occ.sum()))
    assert 0 < w.drain_ops < 200  # survivors of the last phases remain until the drain
    assert live_max > 200  # a phase's blocks plus earlier survivors


def test_churn_shape_and_rounds() -> None:
    w = ChurnWorkload(ops=10_000, ws=50, burst_mb=1.0, burst_min=1000, burst_max=1000,
                      idle_ratio=1.0)
    assert w.burst_blocks == (1 << 20) // 1000 and w.nslots == 50 + w.burst_blocks
    per_round = 4 * w.burst_blocks
    assert w.rounds == max(1, round(10_000 / per_round))
    assert w.main_ops == w.rounds * per_round
    rows = w.op_stream()
    burst = rows[:w.burst_blocks]
    assert (burst[:, 0] == OP_MALLOC).all() and (burst[:, 1] >= 50).all()
    assert (rows[w.burst_blocks:2 * w.burst_blocks, 1] == burst[:, 1]).all()  # FIFO
    lifo = get_workload("churn", ops=1, ws=50, burst_mb=0.1, free_order="lifo").op_stream()
    nb = (lifo[:, 1] >= 50).sum() // 2
    assert lifo[nb:2 * nb, 1].tolist() == lifo[:nb, 1].tolist()[::-1]
    with pytest.raises(ConfigError):
        get_workload("churn", ops=1, free_order="sideways")


def test_churn_lean_cuts_mean_resident() -> None:
    """A scaled-down churn: LEAN (DONTNEED, 2 MiB budget) keeps far less resident than FAST."""
    w = get_workload("churn", ops=1, ws=64, burst_mb=12.0, burst_min=1100, idle_ratio=2.0,
                     rounds=1)
    means = {}
    for lean in (False, True):
        with python_heap(mem_lean=lean, mem_lean_decommit="DONTNEED", mem_lean_target_mb=2) as heap:
            slots = w.new_slots()
            w.warmup(heap, slots)
            samples = []
            for _ in w.run_chunks(heap, slots, 20):
                samples.append(heap.residency()["resident_bytes"])
            means[lean] = float(np.mean(samples))
            heap.check()
            if lean:
                assert heap.stats()["lean_retire"] > 0
    assert means[True] < 0.5 * means[False], means


@pytest.mark.parametrize("name", ["mixed", "churn"])
def test_cheap_counts_equal_the_generic_count(name: str) -> None:
    w = small(name, seed=3)
    assert (w.main_ops, w.drain_ops) == Workload._sizes(w)
