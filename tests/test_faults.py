"""Fault injection: a failing mmap or madvise raises the documented error, the heap stays
consistent (``check()``), and no live byte changes.  Runs on both kernels."""

from __future__ import annotations

import errno
from collections.abc import Iterator

import pytest

from simalloc import Config, Heap, OSLayerError, Release, ReleasePolicy
from simalloc.oslayer import FaultInjectingOSLayer

BLOCK = 1000  # C7 (stride 2048): ~1000 blocks per 2 MiB superslab


@pytest.fixture
def fheap(kernel: str) -> Iterator[tuple[Heap, FaultInjectingOSLayer]]:
    made: list[Heap] = []

    def build(policy: ReleasePolicy | None = None, **overrides: object) -> tuple[Heap, FaultInjectingOSLayer]:
        os = FaultInjectingOSLayer()
        heap = Heap(Config.defaults(kernel=kernel, **overrides), policy=policy, os=os)
        made.append(heap)
        return heap, os

    yield build  # type: ignore[misc]
    for h in made:
        h.close()


def _fill(heap: Heap, n: int, seed: int = 0) -> dict[int, bytes]:
    blocks = {}
    for i in range(n):
        p = heap.malloc(BLOCK)
        data = bytes([(seed + i * 7 + j) % 251 + 1 for j in range(16)])
        heap.view(p)[:16] = data
        blocks[p] = data
    return blocks


def _intact(heap: Heap, blocks: dict[int, bytes]) -> None:
    for p, data in blocks.items():
        v = heap.view(p)
        assert bytes(v[:16]) == data, f"live block {p:#x} changed"
        v.release()


def _by_superslab(heap: Heap, blocks: dict[int, bytes]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for p in blocks:
        out.setdefault(heap.kernel.lookup(p), []).append(p)
    return out


def test_mmap_enomem_on_new_superslab(fheap):
    heap, os = fheap()
    blocks = _fill(heap, 200)
    os.arm(fail_mmap_at=1)
    with pytest.raises(OSLayerError, match="ENOMEM|Cannot allocate"):
        for _ in range(5000):  # more than one superslab holds
            p = heap.malloc(BLOCK)
            blocks[p] = b"\0" * 16
            heap.view(p)[:16] = blocks[p]
    assert os.injected == 1
    heap.check()
    _intact(heap, blocks)
    before = heap.stats()["mapped_bytes"]
    blocks.update(_fill(heap, 100, seed=3))  # disarmed: the heap grows again
    assert heap.stats()["mapped_bytes"] > before
    heap.check()
    _intact(heap, blocks)


@pytest.mark.parametrize("code", [errno.EINVAL, errno.EAGAIN])
def test_nohugepage_failure_leaks_no_mapping(fheap, code):
    heap, os = fheap()
    blocks = _fill(heap, 50)
    mapped, mmaps, munmaps = os.mapped_bytes, os.mmap_total, os.munmap_total
    os.arm(fail_madvise_at=1, advice="NOHUGEPAGE", errno_=code)
    with pytest.raises(OSLayerError, match="NOHUGEPAGE"):
        for _ in range(5000):
            blocks[heap.malloc(BLOCK)] = b""
    # the mapping made for the new superslab was given back at once
    assert os.mapped_bytes == mapped == heap.stats()["mapped_bytes"]
    assert os.mmap_total - os.munmap_total == mmaps - munmaps
    heap.check()
    _intact(heap, {p: d for p, d in blocks.items() if d})


@pytest.mark.parametrize("code", [errno.EINVAL, errno.EAGAIN])
def test_lean_decommit_failure_keeps_superslab_warm(fheap, code):
    heap, os = fheap(mem_lean=True, mem_lean_decommit="DONTNEED", mem_lean_target_mb=0)
    blocks = _fill(heap, 2500)
    groups = _by_superslab(heap, blocks)
    assert len(groups) >= 2
    victim = max(groups)
    for p in groups[victim]:
        heap.free(p)
        del blocks[p]
    os.arm(fail_madvise_at=1, advice="DONTNEED", errno_=code)
    with pytest.raises(OSLayerError, match="DONTNEED"):
        heap.trim()  # the front cache empties, the superslab meets the policy
    s = heap.stats()
    assert s["lean_decommit"] == 0 and s["superslabs_cached"] == 1
    assert s["superslabs_cached_decommitted"] == 0  # kept warm: the pages were not given back
    heap.check()
    _intact(heap, blocks)
    blocks.update(_fill(heap, 1000, seed=5))  # reuses the cached superslab
    heap.check()
    _intact(heap, blocks)


def test_slab_purge_failure_leaves_slab_listed(fheap):
    heap, os = fheap(policy="slab-purge")
    blocks = _fill(heap, 300)
    victims = sorted(blocks)[:64]  # whole slabs' worth at the low end
    os.arm(fail_madvise_at=1, advice="DONTNEED")
    raised = False
    for p in victims:
        del blocks[p]
        try:
            heap.free(p)
        except OSLayerError:
            raised = True
            break
    if not raised:
        with pytest.raises(OSLayerError):
            heap.trim()
    heap.check()
    _intact(heap, blocks)
    os.disarm()
    heap.trim()
    heap.check()
    _intact(heap, blocks)


class _Raising(ReleasePolicy):
    name = "raising"

    def on_superslab_empty(self, ctx, ev):  # type: ignore[no-untyped-def]
        raise RuntimeError("policy bug")


def test_raising_policy_leaves_heap_consistent(fheap):
    heap, _os = fheap(policy=_Raising())
    blocks = _fill(heap, 2500)
    groups = _by_superslab(heap, blocks)
    for p in groups[max(groups)]:
        heap.free(p)
        del blocks[p]
    with pytest.raises(RuntimeError, match="policy bug"):
        heap.trim()
    assert heap.stats()["superslabs_cached"] == 1  # the failed decision fell back to keep
    heap.check()
    _intact(heap, blocks)


def test_policy_returning_garbage_is_a_type_error(fheap):
    class Bad(ReleasePolicy):
        def on_superslab_empty(self, ctx, ev):  # type: ignore[no-untyped-def]
            return "unmap"

    heap, _os = fheap(policy=Bad())
    blocks = _fill(heap, 2500)
    groups = _by_superslab(heap, blocks)
    for p in groups[max(groups)]:
        heap.free(p)
        del blocks[p]
    with pytest.raises(TypeError, match="must return a Release"):
        heap.trim()
    heap.check()
    _intact(heap, blocks)
    assert Release.keep().action == "keep"


def test_os_argument_is_checked(kernel):
    with pytest.raises(TypeError, match="OSLayer"):
        Heap(Config.defaults(kernel=kernel), os=object())  # type: ignore[arg-type]
