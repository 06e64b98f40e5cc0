"""Model-based test: random malloc/free/realloc/calloc programs against a plain dict.

A Hypothesis ``RuleBasedStateMachine`` drives a heap and a model ``{ptr: bytes}``.  Every new
block gets a distinct pattern written through ``heap.view``; after every step every live block's
bytes are read back straight from memory (ctypes), live blocks must not overlap, and
``heap.check()`` walks all invariants.  Rules include ``trim()`` (front caches drained, so slabs
and superslabs empty and meet the policy) and a reclaim hook that MADV_PAGEOUTs every mapping,
so pages a policy freed lazily (MADV_FREE) really go back to the kernel: live data must survive.

Configs use tiny front caches and budgets so slabs and superslabs empty often; each runs on every
available kernel.
"""

from __future__ import annotations

import ctypes

import pytest
from heaputil import reclaim_all
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from simalloc import DelayedSlabPurgePolicy
from simalloc import constants as K

SMALL = {"front_cache_cap": 4, "front_drain_batch": 2, "front_refill_batch": 4}
CONFIGS = {
    "fast": dict(SMALL, ss_max_cached=1),  # LRU of one: evictions unmap
    "lean-free": dict(SMALL, mem_lean=True, mem_lean_decommit="FREE", mem_lean_target_mb=0),
    "lean-dontneed-1mib": dict(SMALL, mem_lean=True, mem_lean_decommit="DONTNEED",
                               mem_lean_target_mb=2, ss_lg=20),
    # slab-granular MADV_FREE inside live superslabs (a fresh policy object per heap)
    "slab-purge-free": dict(SMALL, tiny_prewarm=False,
                            policy=lambda: DelayedSlabPurgePolicy(0, "FREE")),
}

# both sides of every class boundary, so each class and each step between classes is drawn
BOUNDS = sorted({0, 1} | {s + d for s in K.CLASS_STRIDES for d in (-2, -1, 0)})
SIZES = st.one_of(
    st.sampled_from(BOUNDS),
    st.integers(0, 2047),
    st.integers(0, 2047),
    st.integers(2048, 20000),  # occasional large blocks (own mapping)
)
BASE = bytes((i * 7 + 3) % 256 for i in range(256)) * 100  # 25600 bytes


def _pattern(counter: int, size: int) -> bytes:
    """The bytes of the ``counter``-th block: a counter stamp then a shifted ramp."""
    stamp = counter.to_bytes(4, "little")
    start = (counter * 37) % 256
    body = BASE[start:start + size]
    return (stamp + body[4:])[:size] if size >= 4 else body[:size]


class HeapModel(RuleBasedStateMachine):
    """The model: live blocks and their contents.  Subclassed per (kernel, config)."""

    factory = None  # set by the builder: () -> Heap

    def __init__(self) -> None:
        super().__init__()
        self.heap = type(self).factory()
        self.model: dict[int, bytes] = {}  # insertion-ordered: index rules stay deterministic
        self.usable: dict[int, int] = {}  # usable size seen when the block was handed out
        self.counter = 0

    def teardown(self) -> None:
        self.heap.close()

    # ------------------------------------------------------------ helpers
    def _stamp(self, ptr: int, size: int) -> None:
        self.counter += 1
        data = _pattern(self.counter, size)
        v = self.heap.view(ptr)
        usable = len(v)
        assert usable >= size
        v[:size] = data
        v.release()
        self.model[ptr] = data
        self.usable[ptr] = usable

    def _pick(self, i: int) -> int:
        keys = list(self.model)
        return keys[i % len(keys)]

    def _new(self, ptr: int, size: int) -> None:
        assert ptr and ptr not in self.model, "malloc returned a live block"
        self._stamp(ptr, size)  # (checks len(view) == usable_size >= size)

    # ------------------------------------------------------------ rules
    @rule(size=SIZES)
    def malloc(self, size: int) -> None:
        self._new(self.heap.malloc(size), size)

    @rule(size=st.sampled_from([1, 30, 200, 1000, 2000]),
          count=st.one_of(st.integers(8, 64), st.sampled_from([400, 1200])))
    def malloc_many(self, size: int, count: int) -> None:
        for _ in range(count):
            self._new(self.heap.malloc(size), size)

    @rule(size=st.sampled_from([100, 1000, 2000]), count=st.sampled_from([500, 1200, 2100]),
          keep_every=st.sampled_from([0, 97, 500]))
    def burst(self, size: int, count: int, keep_every: int) -> None:
        """Allocate several superslabs' worth, then free all but a few stragglers: superslabs
        empty (LEAN retires, LRU evicts, FREE'd superslabs are reused) around the live set.
        Blocks freed at once are only dirtied (memset); the stragglers join the model."""
        ptrs = [self.heap.malloc(size) for _ in range(count)]
        assert len(set(ptrs)) == count and not set(ptrs) & set(self.model)
        for i, ptr in enumerate(ptrs):
            if keep_every and i % keep_every == 0:
                self._new(ptr, size)
            else:
                ctypes.memset(ptr, 0xCC, size)
        for i, ptr in enumerate(ptrs):
            if not keep_every or i % keep_every:
                self.heap.free(ptr)
        self.heap.trim()

    @rule(cls=st.integers(0, K.NUM_CLASSES - 1), drain=st.booleans())
    def free_class(self, cls: int, drain: bool) -> None:
        """Free every live block of one class: its slabs empty while other classes keep the
        superslab alive (slab-granular events)."""
        usable = K.CLASS_STRIDES[cls] - K.BLOCK_HEADER
        for ptr in [p for p in self.model if self.usable[p] == usable]:
            del self.model[ptr]
            self.heap.free(ptr)
        if drain:
            self.heap.trim()

    @rule(n=st.integers(0, 40), size=st.integers(0, 300))
    def calloc(self, n: int, size: int) -> None:
        ptr = self.heap.calloc(n, size)
        assert ptr not in self.model
        assert ctypes.string_at(ptr, n * size) == bytes(n * size)
        self._stamp(ptr, n * size)

    @precondition(lambda self: self.model)
    @rule(i=st.integers(0, 1 << 16))
    def free(self, i: int) -> None:
        ptr = self._pick(i)
        del self.model[ptr]
        self.heap.free(ptr)

    @precondition(lambda self: self.model)
    @rule(i=st.integers(0, 1 << 16), frac=st.sampled_from([2, 3]))
    def free_many(self, i: int, frac: int) -> None:
        keys = list(self.model)
        for ptr in keys[i % frac::frac]:
            del self.model[ptr]
            self.heap.free(ptr)

    @precondition(lambda self: self.model)
    @rule(i=st.integers(0, 1 << 16), size=SIZES)
    def realloc(self, i: int, size: int) -> None:
        ptr = self._pick(i)
        old = self.model.pop(ptr)
        new = self.heap.realloc(ptr, size)
        if size == 0:
            assert new == 0
            return
        assert new and new not in self.model
        keep = min(len(old), size)
        assert ctypes.string_at(new, keep) == old[:keep], "realloc lost bytes"
        self._new(new, size)

    @rule(size=SIZES)
    def realloc_null(self, size: int) -> None:
        self._new(self.heap.realloc(0, size), size)

    @precondition(lambda self: self.model)
    @rule(i=st.integers(0, 1 << 16))
    def realloc_zero(self, i: int) -> None:
        ptr = self._pick(i)
        del self.model[ptr]
        assert self.heap.realloc(ptr, 0) == 0

    @rule()
    def trim(self) -> None:
        self.heap.trim()

    @rule()
    def free_all(self) -> None:
        for ptr in list(self.model):
            del self.model[ptr]
            self.heap.free(ptr)
        self.heap.trim()
        st_ = self.heap.stats()
        assert st_["live_blocks"] == 0 and st_["superslabs_active"] <= 1

    @rule()
    def reclaim(self) -> None:
        """The kernel takes every lazily freed page back now (MADV_PAGEOUT on every mapping);
        dirty live pages stay."""
        reclaim_all(self.heap)

    # ------------------------------------------------------------ invariants
    @invariant()
    def live_bytes_intact(self) -> None:
        for ptr, data in self.model.items():
            assert ctypes.string_at(ptr, len(data)) == data, f"block {ptr:#x} changed"

    @invariant()
    def no_overlap(self) -> None:
        spans = []
        for ptr in self.model:
            usable = self.usable[ptr]
            hdr = K.BLOCK_HEADER if usable <= K.TINY_MAX_SIZE else K.LARGE_HEADER
            spans.append((ptr - hdr, ptr + usable))
        spans.sort()
        for (_a0, a1), (b0, _b1) in zip(spans, spans[1:], strict=False):
            assert a1 <= b0, "live blocks overlap"

    @invariant()
    def heap_agrees_blocks_are_live(self) -> None:
        keys = list(self.model)
        for ptr in keys[:: max(1, len(keys) // 16)]:  # a spread sample: usable_size validates
            assert self.heap.usable_size(ptr) == self.usable[ptr]

    @invariant()
    def heap_consistent(self) -> None:
        self.heap.check()
        st_ = self.heap.stats()
        assert st_["live_blocks"] == len(self.model)
        rep = self.heap.memory_report()
        assert rep["mapped_total"] == st_["mapped_bytes"]


def _run(make_heap, name: str, examples: int) -> None:
    overrides = dict(CONFIGS[name])
    policy = overrides.pop("policy", None)

    def factory():
        return make_heap(policy=None if policy is None else policy(), **overrides)

    machine = type(f"HeapModel_{name}", (HeapModel,), {"factory": staticmethod(factory)})
    run_state_machine_as_test(machine, settings=settings(
        max_examples=examples, stateful_step_count=40, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]))


@pytest.mark.parametrize("name", ["fast", "lean-free", "lean-dontneed-1mib"])
def test_model(make_heap, name):
    _run(make_heap, name, 30)


def test_model_slab_purge(make_heap):
    _run(make_heap, "slab-purge-free", 15)
