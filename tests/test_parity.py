"""Parity: the Cython kernel and its pure-Python twin make identical decisions.

The same random operation streams go to a heap on each kernel, step by step.  Every allocation
must land on the same superslab index, slab and offset (addresses differ only by where the
kernel placed the mappings), errors must match, and stats and residency must agree.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import simalloc
from simalloc.workloads.mixed import run_mixed

pytestmark = pytest.mark.skipif("cython" not in simalloc.available_kernels(),
                                reason="the Cython kernel is not built")

CONFIGS = {
    "fast": {},
    "lean-dontneed": {"mem_lean": True, "mem_lean_decommit": "DONTNEED", "mem_lean_target_mb": 0},
    "lean-free-1mib": {"mem_lean": True, "mem_lean_decommit": "FREE", "mem_lean_target_mb": 2,
                       "ss_lg": 20},
    "slab-purge": {"policy": "slab-purge", "front_cache_cap": 2, "front_drain_batch": 1,
                   "front_refill_batch": 1},
}

_SKIP_KEYS = {"kernel"}


def _pair(**overrides):
    return [simalloc.Heap(simalloc.Config.defaults(kernel=k, **overrides)) for k in ("python", "cython")]


def _where(heap: simalloc.Heap, addr: int) -> tuple[int, int]:
    """(superslab index, offset) of a tiny block, or (-1, 0) for a large one."""
    idx = heap.kernel.lookup(addr)
    if idx < 0:
        return (-1, 0)
    return idx, addr - int(heap.kernel.ss_base[idx])


def _stats(heap: simalloc.Heap) -> dict:
    """Stats with the kernel's address placement factored out: where mmap happens to put a
    mapping decides whether aligning it needs a second, 2x mapping (``align_retries``)."""
    st = {k: v for k, v in heap.stats().items() if k not in _SKIP_KEYS}
    retries, waste = st.pop("align_retries"), st.pop("alignment_waste_bytes")
    st["mmap_total"] -= retries
    st["munmap_total"] -= retries
    st["syscalls"] -= 2 * retries
    st["mapped_bytes"] -= waste
    st.pop("mapped_peak_bytes")
    st["ss_mmap_calls"] -= st.pop("ss_fallback_mmap")  # the superslab share of align_retries
    return st


ops_strategy = st.lists(
    st.tuples(st.sampled_from(["malloc", "malloc", "free", "realloc", "trim", "double"]),
              st.integers(0, 10_000), st.integers(0, 2100)),
    min_size=1, max_size=120)


@pytest.mark.parametrize("name", sorted(CONFIGS))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prog=ops_strategy)
def test_same_decisions_step_by_step(name, prog):
    heaps = _pair(front_cache_cap=CONFIGS[name].get("front_cache_cap", 4),
                  front_drain_batch=CONFIGS[name].get("front_drain_batch", 2),
                  front_refill_batch=CONFIGS[name].get("front_refill_batch", 2),
                  **{k: v for k, v in CONFIGS[name].items() if not k.startswith("front")})
    live: list[list[int]] = [[], []]
    try:
        for op, pick, size in prog:
            results = []
            for h, lv in zip(heaps, live, strict=True):
                try:
                    if op == "malloc":
                        p = h.malloc(size)
                        h.view(p)[:1] = b"x"
                        lv.append(p)
                        results.append(("ok", _where(h, p)))
                    elif op == "free" and lv:
                        p = lv.pop(pick % len(lv))
                        h.free(p)
                        results.append(("ok", _where(h, p) if h.kernel.lookup(p) >= 0 else None))
                    elif op == "realloc" and lv:
                        i = pick % len(lv)
                        lv[i] = h.realloc(lv[i], size) or h.malloc(1)
                        results.append(("ok", _where(h, lv[i])))
                    elif op == "double" and lv:
                        p = lv.pop(pick % len(lv))
                        h.free(p)
                        h.free(p)  # must raise on both kernels
                        results.append(("no error",))
                    elif op == "trim":
                        h.trim()
                        results.append(("ok",))
                    else:
                        results.append(("skip",))
                except simalloc.AllocatorError as exc:
                    results.append(("err", type(exc).__name__))
            assert results[0] == results[1], f"{op}: python {results[0]} != cython {results[1]}"
            assert _stats(heaps[0]) == _stats(heaps[1])
        for h in heaps:
            h.check()
        r0, r1 = (h.residency() for h in heaps)
        assert r0["mapped_bytes"] - heaps[0].os.alignment_waste == r1["mapped_bytes"] - heaps[1].os.alignment_waste
        assert r0["resident_bytes"] == r1["resident_bytes"]
    finally:
        for h in heaps:
            h.close()


@pytest.mark.parametrize("ws", [400, 4000])
def test_mixed_stream_identical(ws):
    """The batch Mixed loop (``run_mixed``: generator chunks through each kernel's ``apply``)
    ends in the same state, slot by slot."""
    heaps = _pair()
    try:
        slots = [np.zeros(ws, np.uint64) for _ in heaps]
        finals = []
        for h, sl in zip(heaps, slots, strict=True):
            run_mixed(h, 3_000, ws, 1 + 0xDEADBEEF, sl)
            finals.append(run_mixed(h, 30_000, ws, 1, sl))
        assert finals[0] == finals[1]
        where = [[_where(h, int(p)) if p else None for p in sl] for h, sl in zip(heaps, slots, strict=True)]
        assert where[0] == where[1]
        assert _stats(heaps[0]) == _stats(heaps[1])
        for h, sl in zip(heaps, slots, strict=True):
            h.drain_slots(sl)
            h.check()
        assert _stats(heaps[0]) == _stats(heaps[1])
    finally:
        for h in heaps:
            h.close()


def test_replay_identical():
    """``Heap.replay`` of one operation array gives the same decisions on both kernels."""
    rng = np.random.default_rng(7)
    n, nslots = 20_000, 300
    ops = np.zeros((n, 3), np.int64)
    occupied = np.zeros(nslots, bool)
    for i in range(n):
        s = int(rng.integers(nslots))
        if occupied[s]:
            ops[i] = (simalloc.constants.OP_FREE, s, 0)
        else:
            ops[i] = (simalloc.constants.OP_MALLOC, s, int(rng.integers(0, 3000)))
        occupied[s] = not occupied[s]
    heaps = _pair(mem_lean=True, mem_lean_decommit="DONTNEED", mem_lean_target_mb=0)
    try:
        slots = [np.zeros(nslots, np.uint64) for _ in heaps]
        for h, sl in zip(heaps, slots, strict=True):
            h.replay(ops, sl)
            h.check()
        where = [[_where(h, int(p)) if p else None for p in sl] for h, sl in zip(heaps, slots, strict=True)]
        assert where[0] == where[1]
        assert _stats(heaps[0]) == _stats(heaps[1])
    finally:
        for h in heaps:
            h.close()


@pytest.mark.parametrize("overrides", [{}, {"secure": True}, {"front_cache_cap": 0},
                                       {"front_cache_cap": 4, "front_drain_batch": 2, "policy": "slab-purge"}])
def test_replay_with_reallocs_identical(overrides):
    """Realloc rows in ``Heap.replay`` (tiny -> tiny in the kernel's batch loop, the rest in the
    slow path; a same-class realloc keeps its block): the same decisions and bytes on both."""
    c = simalloc.constants
    rng = np.random.default_rng(11)
    n, nslots = 12_000, 300
    ops = np.zeros((n, 3), np.int64)
    occupied = np.zeros(nslots, bool)
    for i in range(n):
        s = int(rng.integers(nslots))
        size = int(rng.choice([rng.integers(1, 2100), rng.integers(2100, 40_000)], p=[0.9, 0.1]))
        if occupied[s]:
            ops[i] = (c.OP_REALLOC, s, size) if rng.random() < 0.4 else (c.OP_FREE, s, 0)
        else:
            ops[i] = (c.OP_MALLOC, s, size)
        occupied[s] = ops[i, 0] != c.OP_FREE
    heaps = _pair(**overrides)
    try:
        slots = [np.zeros(nslots, np.uint64) for _ in heaps]
        for h, sl in zip(heaps, slots, strict=True):
            assert h.replay(ops, sl) == n
            h.check()
        where = [[_where(h, int(p)) if p else None for p in sl] for h, sl in zip(heaps, slots, strict=True)]
        assert where[0] == where[1]
        assert _stats(heaps[0]) == _stats(heaps[1])
        first = [[bytes(h.view(int(p))[:1]) if p else b"" for p in sl] for h, sl in zip(heaps, slots, strict=True)]
        assert first[0] == first[1]  # each block's first byte: its malloc's size & 0xFF, moved along
    finally:
        for h in heaps:
            h.close()


def test_one_source_two_builds():
    """The compiled kernel is built from the Python kernel's source (same docstrings, same
    public names) and says which build it is."""
    from simalloc import _kernel, _kernel_py

    assert (_kernel.KERNEL_NAME, _kernel_py.KERNEL_NAME) == ("cython", "python")
    public = sorted(n for n in dir(_kernel_py.Kernel) if not n.startswith("_"))
    for name in public:
        assert getattr(_kernel.Kernel, name).__doc__ == getattr(_kernel_py.Kernel, name).__doc__, (
            f"Kernel.{name}: the compiled kernel is stale; rebuild (python setup.py build_ext)")
    assert _kernel.Kernel.__doc__ == _kernel_py.Kernel.__doc__


def test_empty_batches():
    heaps = _pair()
    try:
        for h in heaps:
            sl = np.zeros(0, np.uint64)
            h.replay(np.zeros((0, 3), np.int64), sl)
            assert h.drain_slots(sl) == 0
            assert run_mixed(h, 0, 1, 5, np.zeros(1, np.uint64)) == 5
    finally:
        for h in heaps:
            h.close()


def test_bind_unbind_identical():
    heaps = _pair(tiny_prewarm=False)
    try:
        for h in heaps:
            k = h.kernel
            k.bind(3, 0, 5)
            assert (k.cur_ss[3], k.cur_slab[3]) == (0, 5)
            k.unbind(3)
            assert (k.cur_ss[3], k.cur_slab[3]) == (-1, -1)
    finally:
        for h in heaps:
            h.close()


@pytest.mark.parametrize(("ws", "seed"), [(400, 1), (7, 0xDEADBEEF), (4000, 12345), (1, 3)])
def test_mixed_generators_identical(ws, seed):
    """The compiled Mixed generator, its plain-Python build and the reference ``mixed_ops``
    give the same rows, chunk boundaries included."""
    from simalloc.workloads import _mixedgen, _mixedgen_py
    from simalloc.workloads.mixed import mixed_ops

    assert _mixedgen.COMPILED and not _mixedgen_py.COMPILED
    n = 5_000
    ref = np.array(list(mixed_ops(n, ws, seed, prefault=0, drain=False)), np.int64)
    for gen_cls in (_mixedgen.MixedGen, _mixedgen_py.MixedGen):
        gen = gen_cls(ws, seed)
        rows = np.zeros((n, 3), np.int64)
        done = 0
        for step in (1, 999, 0, 3000, n):
            step = min(step, n - done)
            chunk = np.full((step + 2, 3), -7, np.int64)
            assert gen.fill(chunk, step) == step
            assert (chunk[step:] == -7).all()  # rows beyond n untouched
            rows[done:done + step] = chunk[:step]
            done += step
        assert np.array_equal(rows, ref)
        skip = gen_cls(ws, seed)
        skip.advance(n)
        assert skip.state == gen.state and np.array_equal(skip.occ, gen.occ)


# ---------------------------------------------------------------------- corruption parity
_META = {"freelist": 0, "used": 1, "carved": 2, "capacity": 3, "class": 4, "state": 5, "stride": 6, "data": 7}
CORRUPTIONS = [
    *(("meta", f, v) for f, vs in {"class": (34, 130, 9), "stride": (0, 3, 256), "data": (0xFFFFF0, 0),
                                    "capacity": (0, 100_000), "carved": (0, 0xFFFFFFFF), "used": (0, 0xFFFFFFFF),
                                    "state": (0, 2, 77), "freelist": (1, 0x1FFFFE, 0xFFFFFFFF)}.items()
      for v in vs),
    *(("header", w, v) for w, v in ((0, 0), (4, 0), (4, 999), (5, 0), (5, 0xFFFFFFFF))),
    *(("link", t, 0) for t in ("end", "other_slab", "live_block", "zero", "self", "next_slab_free")),
]


def _corrupt_and_run(heap: simalloc.Heap, how: str, what, value: int) -> str:
    """Corrupt one allocator value of C4's current slab (or a link of its free list), then run
    a fixed program; returns what happened, addresses normalised (they differ by kernel)."""
    import random
    import re

    from simalloc import constants as K

    rng = random.Random(11)
    live = [heap.malloc(100) for _ in range(900)]
    for p in live[-40::3]:
        heap.free(p)
    live = [p for p in live if p not in live[-40::3]]
    k = heap.kernel
    idx, slab = int(k.cur_ss[k.lut[100]]), int(k.cur_slab[k.lut[100]])
    ss = heap._st.superslab(idx)
    head = ss.meta(slab, K.M_FREELIST)
    if how == "meta":
        ss.set_meta(slab, _META[what], value)
    elif how == "header":
        ss.w32[what] = value
    else:
        same = [p - ss.base - 1 for p in live if (p - ss.base - 1) >> K.SLAB_LG == slab]
        other = [p - ss.base - 1 for p in live if k.lookup(p) == idx and (p - ss.base - 1) >> K.SLAB_LG != slab]
        target = {"end": ss.size - 2, "other_slab": other[0], "live_block": same[0], "zero": 0, "self": head,
                  "next_slab_free": slab * K.SLAB_SIZE + K.SLAB_SIZE + 8}[what]
        ss.w32[(head + K.NEXT_LINK_OFFSET) >> 2] = target
    step = -1
    try:
        for step in range(600):
            if step < 25 or rng.random() < 0.55 or not live:  # mallocs first: the free list is popped
                live.append(heap.malloc(rng.choice((100, 100, 24, 2000))))
            else:
                heap.free(live.pop(rng.randrange(len(live))))
            if step % 50 == 49:
                heap.check()
        heap.check()
        out = "no error"
    except simalloc.AllocatorError as exc:
        out = f"step {step}: {type(exc).__name__}: {exc}"
    return re.sub(r"0x[0-9a-f]{9,}", "ADDR", out)


@pytest.mark.parametrize(("how", "what", "value"), CORRUPTIONS, ids=lambda v: str(v))
def test_same_corruption_same_outcome(how, what, value):
    """Both kernels detect the same corruption at the same operation, with the same error (no
    crash, nothing undocumented)."""
    outs = []
    for h in _pair(front_cache_cap=4, front_drain_batch=2, front_refill_batch=2, tiny_prewarm=False):
        try:
            outs.append(_corrupt_and_run(h, how, what, value))
        finally:
            try:
                h.close()
            except simalloc.AllocatorError:
                pass
    assert outs[0] == outs[1], f"python: {outs[0]}\ncython: {outs[1]}"
    if how == "link" or (how, what) in (("meta", "class"), ("meta", "stride"), ("meta", "data")):
        assert "HeapCorruptionError" in outs[0], outs[0]
