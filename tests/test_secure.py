"""The hardened mode (``secure``, ``SIMALLOC_SECURE=1``; mimalloc's secure mode, jemalloc's junk
fill): free-list links encoded with a per-heap key, freed blocks filled with a pattern checked
when they are handed out again.  Both kernels; the resident-page model is unchanged by it."""

from __future__ import annotations

import numpy as np
import pytest

from simalloc import Config, Heap, HeapCorruptionError
from simalloc import constants as K
from simalloc.workloads.mixed import run_mixed


def test_option_and_environment(clean_env):
    clean_env.setenv("SIMALLOC_SECURE", "1")
    assert Config.from_env().secure is True
    clean_env.setenv("SIMALLOC_SECURE", "0")
    assert Config.from_env().secure is False
    assert Config.defaults().secure is False


def _mixed(kernel: str, secure: bool, **kw: object) -> tuple[dict, dict]:
    heap = Heap(Config.defaults(kernel=kernel, secure=secure, **kw))
    slots = np.zeros(400, np.uint64)
    run_mixed(heap, 3_000 if kernel == "python" else 30_000, 400, 1 + 0xDEADBEEF, slots)
    run_mixed(heap, 20_000 if kernel == "python" else 200_000, 400, 1, slots)
    heap.check()  # decodes the links
    heap.drain_slots(slots)
    heap.trim()
    heap.check()
    stats = {k: v for k, v in heap.stats().items() if k not in ("align_retries", "alignment_waste_bytes",
                                                                "mapped_peak_bytes", "mmap_total", "munmap_total",
                                                                "syscalls", "mapped_bytes", "ss_mmap_calls",
                                                                "ss_fallback_mmap")}
    res = heap.resident()
    heap.close()
    keys = ("resident_bytes", "lazyfree_bytes", "resident_peak_bytes", "resident_mean_ops_bytes")
    return stats, {k: res[k] for k in keys}


@pytest.mark.parametrize("overrides", [{}, {"front_cache_cap": 0}, {"policy": "slab-purge"},
                                       {"mem_lean": True, "mem_lean_decommit": "DONTNEED", "mem_lean_target_mb": 0}],
                         ids=["fast", "fc0", "slab-purge", "lean-dontneed"])
def test_secure_mode_changes_no_decision_and_no_resident_page(kernel, overrides):
    """Same stream, secure on and off: the same decisions (stats) and the same resident pages,
    peak included (the junk fill writes only pages already written)."""
    assert _mixed(kernel, True, **overrides) == _mixed(kernel, False, **overrides)


def _stale_view_write(kernel: str, secure: bool, user_off: int, value: bytes, front_cache_cap: int = 64) -> str:
    """Free a block, write ``value`` at ``user_off`` of it through a view taken while it was
    live (a use after free), then allocate until it comes back."""
    heap = Heap(Config.defaults(kernel=kernel, secure=secure, front_cache_cap=front_cache_cap,
                                front_drain_batch=min(32, front_cache_cap) or 32, tiny_prewarm=False))
    try:
        ptrs = [heap.malloc(100) for _ in range(20)]
        victim = ptrs[10]
        v = heap.view(victim)
        for p in ptrs[:12]:
            heap.free(p)
        v[user_off:user_off + len(value)] = value
        v.release()
        for _ in range(40):
            heap.malloc(100)
        heap.check()
        return "no error"
    except HeapCorruptionError as exc:
        return f"HeapCorruptionError: {exc}"
    finally:
        heap.close()


def test_write_after_free_is_caught_by_the_junk_check(kernel):
    out = _stale_view_write(kernel, True, 40, b"\x01")
    assert out.startswith("HeapCorruptionError") and "junk fill" in out, out
    assert _stale_view_write(kernel, False, 40, b"\x01") == "no error"  # the plain mode cannot see it


def test_a_plausible_link_written_after_free_is_caught_by_the_encoding(kernel):
    """A stray write of a *valid* free-block offset over a free-list link: the plain mode takes
    it (a real free block of the slab; only the counts show, later, that blocks went missing);
    the secure mode decodes it to garbage and refuses the link itself at the next pop."""
    heap = Heap(Config.defaults(kernel=kernel, front_cache_cap=0, tiny_prewarm=False))
    ptrs = [heap.malloc(100) for _ in range(20)]
    base = int(heap.kernel.ss_base[heap.kernel.lookup(ptrs[0])])
    heap.close()
    plausible = (ptrs[3] - base - K.BLOCK_HEADER).to_bytes(4, "little")  # the same offset in a new heap
    link_at = K.NEXT_LINK_OFFSET - K.BLOCK_HEADER  # user offset of the link word
    out = _stale_view_write(kernel, True, link_at, plausible, front_cache_cap=0)
    assert out.startswith("HeapCorruptionError") and "free list of superslab" in out, out
    assert "free list of superslab" not in _stale_view_write(kernel, False, link_at, plausible, front_cache_cap=0)


def test_links_are_encoded_in_memory(kernel):
    heap = Heap(Config.defaults(kernel=kernel, secure=True, front_cache_cap=0, tiny_prewarm=False))
    ptrs = [heap.malloc(100) for _ in range(8)]
    for p in ptrs[:4]:
        heap.free(p)
    k = heap.kernel
    idx = k.lookup(ptrs[0])
    ss = heap._st.superslab(idx)
    slab = (ptrs[0] - ss.base - 1) >> K.SLAB_LG
    head = ss.meta(slab, K.M_FREELIST)
    raw = ss.w32[(head + K.NEXT_LINK_OFFSET) >> 2]
    nxt = raw ^ k.link_key ^ ((head << K.SECURE_LINK_SHIFT) & k.link_mix)
    assert nxt == ptrs[2] - ss.base - 1 and raw != nxt
    assert bytes(ss.w8[head + 8:head + 128]) == bytes([K.FREE_JUNK]) * 120
    heap.check()
    heap.close()
