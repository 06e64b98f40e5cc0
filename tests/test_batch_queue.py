"""A batch (``Heap.replay``) takes the same decisions as per-call operations.

In a batch the kernel queues slab-partial events (and slab-empty events of a superslab still in
use, while the policy's ``on_slab_empty`` is the base no-op) instead of calling the slow path,
and the signal deferral keeps its recorders installed between holds (oslayer/signals.py).  Both
are speed-ups only: the decision log (every field but wall seconds), the counters and the
resident figures must equal those of the same stream run one call at a time, on both kernels;
the queue is delivered before any other callback, when full, and when the batch stops on an
exception; and the signal handlers are back in place after every batch.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import numpy as np
import pytest

from simalloc import Config, Heap
from simalloc.constants import C_BATCH, C_QUEUED, EVQ_CAP, OP_FREE, OP_MALLOC
from simalloc.errors import TraceError
from simalloc.policy import FastPolicy, PolicyContext, Release, SuperslabEvent
from simalloc.workloads import get_workload

_SAME = ("ops", "virtual_ns", "kind", "ss", "slab", "cls", "stage", "advice", "bytes", "why")
#: counters that depend on wall time or on how often Python was entered, not on decisions
_WALL = {"resident_ns_area", "resident_last_ns", "resident_since_ns", "resident_since_seconds",
         "resident_mean_seconds_bytes"}


def _stream(burst_mb: int = 3, rounds: int = 2, free_order: str = "fifo") -> tuple[np.ndarray, np.ndarray, int]:
    w = get_workload("churn", ops=0, seed=3, burst_mb=burst_mb, idle_ratio=1.0, rounds=rounds,
                     free_order=free_order)
    return w.warmup_stream(), w.op_stream(), w.nslots


def _heap(kernel: str, policy: str, **opts: Any) -> Heap:
    return Heap(Config.defaults(kernel=kernel, policy=policy, **opts), events=True)


def _per_call(heap: Heap, rows: np.ndarray, slots: np.ndarray) -> None:
    """The rows one heap call at a time (the replay's first-byte store included)."""
    for kind, slot, size in rows.tolist():
        if kind == OP_MALLOC:
            p = heap.malloc(size)
            v = heap.view(p)
            v[0] = size & 0xFF
            v.release()
            slots[slot] = p
        else:
            assert kind == OP_FREE
            heap.free(int(slots[slot]))
            slots[slot] = 0


def _figures(heap: Heap) -> tuple[list[tuple[Any, ...]], dict[str, Any]]:
    ev = [tuple(e[k] for k in _SAME) for e in heap.events()]
    st = {k: v for k, v in {**heap.stats(), **heap.resident()}.items() if k not in _WALL}
    return ev, st


@pytest.mark.parametrize("policy", ["fast", "lean", "obmalloc", "slab-purge", "glibc-trim"])
def test_a_batch_decides_exactly_as_per_call_operations(kernel: str, policy: str) -> None:
    warm, rows, nslots = _stream()
    figures = []
    for batch in (True, False):
        with _heap(kernel, policy) as heap:
            slots = np.zeros(nslots, dtype=np.uint64)
            heap.replay(warm, slots)
            if batch:
                assert heap.replay(rows, slots) == len(rows)
            else:
                _per_call(heap, rows, slots)
            heap.check()
            figures.append(_figures(heap))
            kern = heap.kernel
            assert kern.counters[C_QUEUED] == 0 and kern.counters[C_BATCH] == 0
    (ev_b, st_b), (ev_c, st_c) = figures
    kinds = {e[2] for e in ev_b}
    assert {"slab_empty", "superslab_empty", "refill"} <= kinds
    assert ev_b == ev_c  # every record, in order, with its operation count and reason
    assert st_b == st_c


class _FlushSpy:
    """Records the queue's length at each ``flush_queue`` of ``heap``'s slow path."""

    def __init__(self, heap: Heap) -> None:
        self.heap = heap
        self.sizes: list[int] = []
        self.real = heap._slow.flush_queue
        heap._slow.flush_queue = self  # type: ignore[method-assign]

    def __call__(self) -> None:
        self.sizes.append(int(self.heap.kernel.counters[C_QUEUED]))
        self.real()


def test_a_full_queue_is_delivered_at_once(kernel: str) -> None:
    """No tick inside the release phase: more than EVQ_CAP events queue between two callbacks."""
    warm, rows, nslots = _stream(burst_mb=12, rounds=1, free_order="random")  # across superslabs
    figures = []
    for batch in (True, False):
        with _heap(kernel, "fast", tick_interval_ops=0) as heap:
            slots = np.zeros(nslots, dtype=np.uint64)
            heap.replay(warm, slots)
            if batch:
                spy = _FlushSpy(heap)
                heap.replay(rows, slots)
                assert EVQ_CAP in spy.sizes, "the queue never filled: make the stream larger"
            else:
                _per_call(heap, rows, slots)
            heap.check()
            figures.append(_figures(heap))
    assert figures[0] == figures[1]


def test_an_exception_mid_batch_still_delivers_the_queue(kernel: str) -> None:
    warm, rows, nslots = _stream()
    bad = np.concatenate([rows[: len(rows) * 3 // 4], [[OP_FREE, nslots - 1, 0]]]).astype(np.int64)
    with _heap(kernel, "fast") as heap:
        slots = np.zeros(nslots, dtype=np.uint64)
        heap.replay(warm, slots)
        slots[nslots - 1] = 0
        with pytest.raises(TraceError, match="free of empty slot") as exc:
            heap.replay(bad, slots)
        assert exc.value.ops_applied == len(bad) - 1  # type: ignore[attr-defined]
        assert heap.kernel.counters[C_QUEUED] == 0
        heap.check()  # EMPTY / partial lists agree with every slab record
        st = heap.stats()
        assert st["slab_empty_events"] == sum(e["kind"] == "slab_empty" for e in heap.events()) > 0


class _Kill(Exception):
    pass


class _SignalOnEmpty(FastPolicy):
    """Sends SIGUSR1 to the process at the first empty superslab (inside a batch's callback)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0

    def on_superslab_empty(self, ctx: PolicyContext, ev: SuperslabEvent) -> Release:
        if not self.sent:
            self.sent = 1
            os.kill(os.getpid(), signal.SIGUSR1)
        return super().on_superslab_empty(ctx, ev)


def test_a_signal_in_a_batch_reaches_its_handler_at_an_operation_boundary(kernel: str) -> None:
    warm, rows, nslots = _stream()
    ran: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        ran.append(signum)
        raise _Kill()

    old = signal.signal(signal.SIGUSR1, handler)
    try:
        pol = _SignalOnEmpty()
        with Heap(Config.defaults(kernel=kernel), policy=pol) as heap:
            slots = np.zeros(nslots, dtype=np.uint64)
            heap.replay(warm, slots)
            with pytest.raises(_Kill) as exc:
                heap.replay(rows, slots)
            done = exc.value.ops_applied  # type: ignore[attr-defined]
            assert pol.sent == 1 and ran == [signal.SIGUSR1]
            assert 0 < done < len(rows)
            assert signal.getsignal(signal.SIGUSR1) is handler  # put back before it ran
            heap.check()
            assert heap.replay(rows[done:], slots) == len(rows) - done  # the rest runs on
            heap.check()
        assert signal.getsignal(signal.SIGUSR1) is handler
    finally:
        signal.signal(signal.SIGUSR1, old)


def test_handlers_are_back_after_every_batch(kernel: str) -> None:
    warm, rows, nslots = _stream()
    seen: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        seen.append(signum)

    old = signal.signal(signal.SIGUSR2, handler)
    try:
        sigint = signal.getsignal(signal.SIGINT)
        with _heap(kernel, "fast") as heap:
            slots = np.zeros(nslots, dtype=np.uint64)
            heap.replay(warm, slots)
            heap.replay(rows, slots)  # thousands of holds inside
            assert signal.getsignal(signal.SIGUSR2) is handler
            assert signal.getsignal(signal.SIGINT) is sigint
            assert heap.stats()["slow_refills"] > 10
        os.kill(os.getpid(), signal.SIGUSR2)
        assert seen == [signal.SIGUSR2]
    finally:
        signal.signal(signal.SIGUSR2, old)
