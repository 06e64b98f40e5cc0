"""Exceptions leave the heap consistent (issue 11): a batch stops at an operation boundary and
says how far it got, and the slots always tell the truth about which blocks are live.

* Injection: each slow-path callback the kernel calls (``HeapSlowPath.refill_slow``,
  ``slab_empty``, ``slab_partial``, ``free_slow``, ``malloc_large``, ``write_byte_slow``,
  ``tick``, ``op_boundary``) raises on its Nth call -- before doing anything (what a
  KeyboardInterrupt at its first bytecode does), or after doing its work (what a policy or OS
  error at its end does) -- and so does each hook of a release policy.  Per trial: the
  exception carries ``ops_applied``; the slots equal a replay of exactly that many rows; every
  occupied slot's block is live, no other block is (``live_blocks``), ``check()`` passes, and
  the rest of the stream then runs to the end.  Per-call ``malloc``/``free`` loops the same,
  with the in-flight operation either done or not.
* SIGINT trials: a SIGALRM handler raising KeyboardInterrupt fires at a random moment of
  ``Heap.replay``, ``run_mixed`` and a per-call loop; the same checks after each.

Both kernels.  ``TRIALS`` (module globals) are sized for the suite; ``SIMALLOC_INTERRUPT_TRIALS``
scales them for long runs.
"""

from __future__ import annotations

import os
import random
import signal
import time

import numpy as np
import pytest

from simalloc import Config, DelayedSlabPurgePolicy, Heap, Release, TraceError
from simalloc.constants import OP_FREE, OP_MALLOC, OP_REALLOC
from simalloc.workloads.mixed import run_mixed

SCALE = float(os.environ.get("SIMALLOC_INTERRUPT_TRIALS", "1"))
WS = 600
SIZES = (24, 24, 100, 300, 1000, 2000, 2000, 5000, 20000)
CONFIGS = {
    "fc8-lean": {"front_cache_cap": 8, "front_drain_batch": 4, "front_refill_batch": 4, "mem_lean": True,
                 "mem_lean_decommit": "DONTNEED", "mem_lean_target_mb": 0, "tick_interval_ops": 50,
                 "tiny_prewarm": False},
    "fc0-purge": {"front_cache_cap": 0, "policy": "slab-purge", "tick_interval_ops": 50, "tiny_prewarm": False},
}
CALLBACKS = ("refill_slow", "slab_empty", "slab_partial", "free_slow", "malloc_large", "write_byte_slow",
             "tick", "op_boundary", "flush_queue")  # (in a batch the last delivers queued slab events)
#: callbacks whose work can be followed by an exception (a policy or OS error at their end)
AFTER = ("refill_slow", "slab_empty", "free_slow", "write_byte_slow", "tick", "op_boundary", "flush_queue")
NTH = (1, 2, 3, 5, 8, 13, 21, 40, 80)


class Injected(Exception):
    """The exception the tests inject."""


def _stream(n: int = 4000, seed: int = 5) -> np.ndarray:
    """Rows over ``WS`` slots whose occupancy swings between ~90% and ~5% (slabs and
    superslabs empty and refill), with a few large blocks."""
    rng = random.Random(seed)
    free, full = list(range(WS)), []
    rows = []
    target = 0.9
    for i in range(n):
        if i % 500 == 0:
            target = 0.9 if target < 0.5 else 0.05
        grow = len(full) < target * WS or not full
        src, dst = (free, full) if grow else (full, free)
        j = rng.randrange(len(src))
        src[j], src[-1] = src[-1], src[j]
        s = src.pop()
        dst.append(s)
        rows.append((OP_MALLOC, s, rng.choice(SIZES)) if grow else (OP_FREE, s, 0))
    return np.array(rows, dtype=np.int64)


STREAM = _stream()


def _occupancy(ops: np.ndarray, n: int) -> np.ndarray:
    occ = np.zeros(WS, bool)
    for kind, s, _ in ops[:n]:
        if kind != OP_REALLOC:  # (a realloc to a size > 0 keeps its slot occupied)
            occ[s] = kind == OP_MALLOC
    return occ


def _heap(kernel: str, name: str, policy=None) -> Heap:
    return Heap(Config.defaults(kernel=kernel, **CONFIGS[name]), policy=policy)


def _truthful(heap: Heap, slots: np.ndarray, extra: int = 0) -> None:
    """``check()`` passes, every occupied slot's block is live, no other block is (``extra``:
    blocks allowed beyond the slots, e.g. one lost by an interrupted per-call malloc)."""
    heap.check()
    live = [int(p) for p in slots if p]
    for p in live:
        heap.usable_size(p)  # raises if the block is not live
    assert 0 <= heap.stats()["live_blocks"] - len(live) <= extra, \
        f"{heap.stats()['live_blocks']} live blocks, {len(live)} in slots"


def _inject(heap: Heap, name: str, nth: int, after: bool) -> list[int]:
    slow = heap._slow
    real = getattr(slow, name)
    calls = [0]

    def wrapper(*args):  # type: ignore[no-untyped-def]
        calls[0] += 1
        if calls[0] == nth and not after:
            raise Injected(f"{name} #{nth}")
        out = real(*args)
        if calls[0] == nth:
            raise Injected(f"{name} #{nth} (after)")
        return out

    setattr(slow, name, wrapper)
    return calls


def _finish(heap: Heap, ops: np.ndarray, slots: np.ndarray, done: int) -> None:
    """The rest of the stream runs on the same heap and slots; then drain and check."""
    assert (slots != 0).tolist() == _occupancy(ops, done).tolist(), "slots differ from the rows applied"
    heap.replay(ops[done:], slots)
    assert (slots != 0).tolist() == _occupancy(ops, len(ops)).tolist()
    heap.drain_slots(slots)
    _truthful(heap, slots)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_injected_callback_exceptions_stop_a_batch_at_a_row_boundary(kernel, name):
    fired = 0
    for cb in CALLBACKS:
        for after in (False, True) if cb in AFTER else (False,):
            for nth in NTH[:max(2, int(len(NTH) * min(SCALE, 1)))]:
                heap = _heap(kernel, name)
                slots = np.zeros(WS, np.uint64)
                calls = _inject(heap, cb, nth, after)
                try:
                    done = heap.replay(STREAM, slots)
                    assert done == len(STREAM) and calls[0] < nth
                    heap.close()
                    break  # fewer calls than nth: larger nth will not fire either
                except Injected as exc:
                    done = exc.ops_applied  # type: ignore[attr-defined]
                fired += 1
                delattr(heap._slow, cb)
                _truthful(heap, slots)
                _finish(heap, STREAM, slots, done)
                heap.close()
    print(f"{kernel} {name}: {fired} injected exceptions")
    assert fired >= 40


class _RaisingPurge(DelayedSlabPurgePolicy):
    """slab-purge whose hook ``hook`` raises on its ``nth`` call, before or after its work."""

    def __init__(self, hook: str, nth: int, after: bool) -> None:
        super().__init__(delay_ops=0)
        self.hook, self.nth, self.after, self.calls = hook, nth, after, 0

    def _hit(self, hook: str, after: bool) -> None:
        if hook == self.hook:
            self.calls += not after
            if self.calls == self.nth and after == self.after:
                raise Injected(f"policy {hook} #{self.nth}")

    def on_slab_empty(self, ctx, ev):  # type: ignore[no-untyped-def]
        self._hit("on_slab_empty", False)
        super().on_slab_empty(ctx, ev)
        self._hit("on_slab_empty", True)

    def on_superslab_empty(self, ctx, ev):  # type: ignore[no-untyped-def]
        self._hit("on_superslab_empty", False)
        out = super().on_superslab_empty(ctx, ev) if self.nth % 2 else Release.unmap()
        self._hit("on_superslab_empty", True)
        return out

    def tick(self, ctx):  # type: ignore[no-untyped-def]
        self._hit("tick", False)
        super().tick(ctx)
        self._hit("tick", True)


def test_injected_policy_exceptions_leave_the_heap_consistent(kernel):
    fired = 0
    for hook in ("on_slab_empty", "on_superslab_empty", "tick"):
        for after in (False, True):
            for nth in NTH:
                pol = _RaisingPurge(hook, nth, after)
                heap = Heap(Config.defaults(kernel=kernel, front_cache_cap=8, front_drain_batch=4,
                                            tick_interval_ops=50, tiny_prewarm=False), policy=pol)
                slots = np.zeros(WS, np.uint64)
                try:
                    heap.replay(STREAM, slots)
                    heap.close()
                    break
                except Injected as exc:
                    done = exc.ops_applied  # type: ignore[attr-defined]
                fired += 1
                pol.hook = ""
                _truthful(heap, slots)
                _finish(heap, STREAM, slots, done)
                heap.close()
    print(f"{kernel}: {fired} injected policy exceptions")
    assert fired >= 20


def _per_call(heap: Heap, ops: np.ndarray, slots: np.ndarray, start: int = 0) -> int:
    """Apply rows one call at a time from ``start``; returns the rows done.  On an exception
    the in-flight row is reconciled (done or not: the heap says which) and it propagates with
    ``rows_done``."""
    i = start
    try:
        for i in range(start, len(ops)):
            kind, s, size = (int(x) for x in ops[i])
            if kind == OP_MALLOC:
                slots[s] = heap.malloc(size)
            else:
                heap.free(int(slots[s]))
                slots[s] = 0
        return len(ops)
    except BaseException as exc:
        kind, s = int(ops[i][0]), int(ops[i][1])
        if kind == OP_FREE and slots[s]:
            try:
                heap.usable_size(int(slots[s]))
            except Exception:  # the free took effect
                slots[s] = 0
        exc.rows_done = i + (kind == OP_FREE and not slots[s])  # type: ignore[attr-defined]
        raise


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_injected_exceptions_in_per_call_loops(kernel, name):
    fired = 0
    for cb in CALLBACKS[:-1]:
        for after in (False, True) if cb in AFTER else (False,):
            for nth in (1, 3, 8, 21):
                heap = _heap(kernel, name)
                slots = np.zeros(WS, np.uint64)
                _inject(heap, cb, nth, after)
                try:
                    _per_call(heap, STREAM, slots)
                    heap.close()
                    break
                except Injected as exc:
                    done = exc.rows_done  # type: ignore[attr-defined]
                fired += 1
                delattr(heap._slow, cb)
                _truthful(heap, slots)  # no block lost: a per-call op is done or not
                assert (slots != 0).tolist() == _occupancy(STREAM, done).tolist()
                _per_call(heap, STREAM, slots, done)
                heap.drain_slots(slots)
                _truthful(heap, slots)
                heap.close()
    print(f"{kernel} {name}: {fired} injected per-call exceptions")
    assert fired >= 20


def _realloc_stream(n: int = 3000, seed: int = 11) -> np.ndarray:
    """``_stream`` with realloc rows in between (a quarter of the rows): tiny -> tiny (the
    kernel's batch loop), tiny <-> Mid/large and large -> large (the slow path)."""
    rng = random.Random(seed)
    base = _stream(n, seed)
    occ = np.zeros(WS, bool)
    rows = []
    for kind, s, size in base.tolist():
        occ[s] = kind == OP_MALLOC
        rows.append((kind, s, size))
        if rng.random() < 0.35 and occ.any():
            rows.append((OP_REALLOC, int(rng.choice(np.flatnonzero(occ))), rng.choice(SIZES)))
    return np.array(rows, dtype=np.int64)


REALLOC_STREAM = _realloc_stream()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_injected_exceptions_during_realloc_rows_lose_no_block(kernel, name):
    """A realloc row moves a block (a malloc, a copy, a free): whichever callback raises, the
    row is done or not done -- the slot holds the one live block, the other is not leaked."""
    stream = REALLOC_STREAM
    fired = 0
    for cb in CALLBACKS:
        for after in (False, True) if cb in AFTER else (False,):
            for nth in NTH[::2]:  # (every other nth: the row-boundary test above takes them all)
                heap = _heap(kernel, name)
                slots = np.zeros(WS, np.uint64)
                calls = _inject(heap, cb, nth, after)
                try:
                    assert heap.replay(stream, slots) == len(stream) and calls[0] < nth
                    heap.close()
                    break
                except Injected as exc:
                    done = exc.ops_applied  # type: ignore[attr-defined]
                fired += 1
                delattr(heap._slow, cb)
                _truthful(heap, slots)  # extra=0: the block a half-done realloc took is not lost
                _finish(heap, stream, slots, done)
                heap.close()
    print(f"{kernel} {name}: {fired} injected exceptions in a stream with reallocs")
    assert fired >= 40


def test_realloc_rows_run_in_the_batch_loop_and_keep_the_bytes(kernel):
    """tiny -> tiny reallocs in ``replay`` (the kernel's loop) move the first min(usable,
    size) bytes, count two ops, and leave the same heap state as ``Heap.realloc`` calls."""
    sizes = [(10, 200), (200, 10), (100, 100), (1000, 30), (30, 2000), (2000, 5000), (5000, 40)]
    a = Heap(Config.defaults(kernel=kernel, tiny_prewarm=False))
    b = Heap(Config.defaults(kernel=kernel, tiny_prewarm=False))
    slots = np.zeros(len(sizes), np.uint64)
    for i, (s0, s1) in enumerate(sizes):
        a.replay([[OP_MALLOC, i, s0]], slots)
        v = a.view(int(slots[i]))
        v[:s0] = bytes((i * 7 + k) & 0xFF for k in range(s0))
        v.release()
        p = b.malloc(s0)
        v = b.view(p)
        v[:s0] = bytes((i * 7 + k) & 0xFF for k in range(s0))
        v.release()
        ops0 = a.stats()["ops"]
        a.replay([[OP_REALLOC, i, s1]], slots)
        q = b.realloc(p, s1)
        moved = a.kernel.lut[s0] != a.kernel.lut[s1] if max(s0, s1) <= a.kernel.tiny_max else True
        assert a.stats()["ops"] - ops0 == (2 if moved else 0) or max(s0, s1) > a.kernel.tiny_max
        assert bytes(a.view(int(slots[i]))[:min(s0, s1)]) == bytes(b.view(q)[:min(s0, s1)])
        assert bytes(a.view(int(slots[i]))[:min(s0, s1)]) == bytes((i * 7 + k) & 0xFF for k in range(min(s0, s1)))
    assert a.stats()["live_blocks"] == b.stats()["live_blocks"] == len(sizes)
    a.check()
    a.drain_slots(slots)
    assert a.stats()["live_blocks"] == 0
    a.check()
    a.close()
    b.close()


# ---------------------------------------------------------------------- SIGINT trials
def _interrupted(fn, delay: float) -> bool:  # type: ignore[no-untyped-def]
    """Run ``fn`` with a SIGALRM handler raising KeyboardInterrupt after ``delay`` s; True if
    the interrupt landed inside ``fn``."""
    def handler(signum, frame):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, delay)
        try:
            fn()
        except KeyboardInterrupt:
            return True
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        return False
    finally:
        signal.signal(signal.SIGALRM, old)


SIGINT_TRIALS = max(4, int(12 * SCALE))
LONG = _stream(40_000, seed=9)


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("how", ["replay", "run_mixed", "per_call"])
def test_sigint_trials_leave_the_heap_consistent(kernel, name, how):
    rng = random.Random(sum(map(ord, kernel + name + how)))
    ops = LONG if kernel == "cython" else LONG[:4000]
    if how == "replay":
        ops = np.concatenate([ops, _drain_rows(ops)])
    hits = 0
    t_full = None
    for _ in range(SIGINT_TRIALS):
        heap = _heap(kernel, name)
        slots = np.zeros(WS, np.uint64)
        out: dict = {}

        def fn(heap: Heap = heap, slots: np.ndarray = slots, out: dict = out) -> None:
            try:
                if how == "replay":
                    out["done"] = heap.replay(ops, slots)
                elif how == "run_mixed":
                    run_mixed(heap, 100_000 if kernel == "cython" else 10_000, WS, 7, slots)
                else:
                    out["done"] = _per_call(heap, ops, slots)
            except KeyboardInterrupt as interrupt:
                out["exc"] = interrupt
                raise

        if t_full is None:  # calibrate: the interrupt lands anywhere in the call
            t0 = time.perf_counter()
            fn()
            t_full = time.perf_counter() - t0
            heap.drain_slots(slots)
            heap.close()
            continue
        try:
            hits += _interrupted(fn, rng.uniform(0.00005, t_full))
        except KeyboardInterrupt:  # landed in the test's own bookkeeping: still check the heap
            hits += 1
        extra = 1 if how == "per_call" else 0  # a malloc whose result the interrupt lost
        _truthful(heap, slots, extra)
        landed = out.get("exc")
        if how == "replay" and landed is not None:
            assert (slots != 0).tolist() == _occupancy(ops, landed.ops_applied).tolist()
        heap.replay([[OP_MALLOC, s, 50] for s in range(WS) if not slots[s]][:5] or np.zeros((0, 3), int),
                    slots)  # still usable
        heap.drain_slots(slots)
        _truthful(heap, slots, extra)
        heap.close()
    print(f"{kernel} {name} {how}: {hits}/{SIGINT_TRIALS - 1} interrupted")
    assert hits >= (SIGINT_TRIALS - 1) // 4  # most land inside the call (the rest: after it returned)


def _drain_rows(ops: np.ndarray) -> np.ndarray:
    occ = _occupancy(ops, len(ops))
    return np.array([[OP_FREE, s, 0] for s in range(WS) if occ[s]], dtype=np.int64).reshape(-1, 3)


def test_replay_refuses_ops_of_the_wrong_dtype(kernel):
    heap = Heap(Config.defaults(kernel=kernel))
    slots = np.zeros(4, np.uint64)
    for bad in (np.zeros((2, 3)), np.array([[0, 0, 1.5]]), np.array([[0, 0, 10]], dtype=object),
                np.array([[0, 0, 10]], dtype=bool), np.zeros((1, 3), np.uint64) + 2**63, np.zeros((2, 2), int)):
        with pytest.raises(TraceError):
            heap.replay(bad, slots)
    assert heap.replay([[OP_MALLOC, 0, 10], [OP_FREE, 0, 0]], slots) == 2
    heap.check()
    heap.close()


@pytest.mark.parametrize("cycles", [-1, 2**62 + 1, 2**64, 1.5, "10", None])
def test_run_mixed_cycles_are_bounded(kernel, cycles):
    heap = Heap(Config.defaults(kernel=kernel))
    with pytest.raises(ValueError):  # TraceError is a ValueError
        run_mixed(heap, cycles, 4, 1, np.zeros(4, np.uint64))
    assert run_mixed(heap, 0, 4, 1, np.zeros(4, np.uint64)) == 1
    heap.close()
