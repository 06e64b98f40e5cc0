"""The threading contract: a heap serves one call at a time.  A second call (another thread,
a signal handler) raises ConcurrentUseError before changing anything; close() arriving that
way is deferred until the running call returns.  Runs on both kernels."""

from __future__ import annotations

import gc
import signal
import threading

import numpy as np
import pytest

from simalloc import ConcurrentUseError, Config, Heap, HeapClosedError
from simalloc.oslayer import OSLayer
from simalloc.workloads import MixedWorkload


def _stream(n: int = 400_000, ws: int = 400) -> np.ndarray:
    return MixedWorkload(ops=n, ws=ws, seed=7, prefault=0).op_stream()


def test_second_thread_is_refused_while_a_batch_runs(kernel):
    ops = _stream()
    heap = Heap(Config.defaults(kernel=kernel, tick_interval_ops=1024))
    mine = {heap.malloc(100): b"A" * 16}
    heap.view(next(iter(mine)))[:16] = b"A" * 16
    refused = accepted = 0
    stop = threading.Event()

    def other() -> None:
        nonlocal refused, accepted
        while not stop.is_set():
            try:
                p = heap.malloc(64)
            except ConcurrentUseError:
                refused += 1
                stop.wait(0.001)  # (a spinning thread would take the GIL from the batch)
                continue
            accepted += 1
            while True:  # the batch may have started in between: its free is refused too
                try:
                    heap.free(p)
                    break
                except ConcurrentUseError:
                    refused += 1
                    stop.wait(0.001)

    t = threading.Thread(target=other)
    t.start()
    try:
        for _ in range(3):
            slots = np.zeros(400, np.uint64)
            try:
                heap.replay(ops, slots)
            except ConcurrentUseError:
                refused += 1
    finally:
        stop.set()
        t.join()
    heap.check()
    for p, data in mine.items():
        assert bytes(heap.view(p)[:16]) == data
    assert refused + accepted > 0
    heap.close()


def test_close_from_a_signal_handler_during_a_batch_is_deferred(kernel):
    ops = _stream(2_000_000 if kernel == "cython" else 300_000)  # (the Python kernel: ~1 s)
    heap = Heap(Config.defaults(kernel=kernel, tick_interval_ops=256))
    fired = []

    def handler(signum, frame):  # type: ignore[no-untyped-def]
        heap.close()  # re-enters the heap while replay() is inside it
        fired.append(heap.closed)

    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)
        slots = np.zeros(400, np.uint64)
        heap.replay(ops, slots)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    if fired:  # the handler ran inside the batch: close was deferred, then done on the way out
        assert fired[0] is False
    assert heap.closed or not fired
    heap.close()
    with pytest.raises(HeapClosedError):
        heap.malloc(1)


def test_close_from_another_thread_during_a_batch_is_deferred(kernel):
    ops = _stream(2_000_000 if kernel == "cython" else 300_000)  # (the Python kernel: ~1 s)
    heap = Heap(Config.defaults(kernel=kernel))
    started = threading.Event()
    result: list[bool] = []

    def closer() -> None:
        started.wait()
        heap.close()
        result.append(heap.closed)

    t = threading.Thread(target=closer)
    t.start()
    slots = np.zeros(400, np.uint64)
    started.set()
    heap.replay(ops, slots)
    t.join()
    assert heap.closed  # closed by the other thread, or on replay's way out


def test_dropped_heap_unmaps_without_the_garbage_collector(kernel):
    gc.disable()
    try:
        for _ in range(20):
            os = OSLayer()
            heap = Heap(Config.defaults(kernel=kernel), os=os)
            heap.malloc(100)
            assert os.mapped_bytes > 0
            del heap
            assert os.mapped_bytes == 0 and os.munmap_total == os.mmap_total
    finally:
        gc.enable()
