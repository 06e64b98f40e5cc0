"""Write a release policy in a few lines and watch it act on real memory.

Covers: ReleasePolicy, Release, Heap(policy=...), stats(), residency(), memory_report().
Scenario: a program allocates 40 MiB of small blocks, frees them all, and trims its caches.
Three policies decide what happens to the emptied superslabs: FAST keeps them resident in the
LRU cache, LEAN (10 MiB budget, MADV_DONTNEED) decommits what exceeds the budget, and a
hand-written "keep one" policy (CPython obmalloc's rule, bpo-37257) unmaps all but one.
The kernel's own page accounting (``/proc/self/pagemap``) shows the effect.
"""

import simalloc

RANDOM_SEED = 42  # (this scenario is deterministic; kept for the examples' common shape)
BLOCK = 1000  # bytes per request -> class C7 (2048-byte stride)
TOTAL_MIB = 40


class KeepOne(simalloc.ReleasePolicy):
    """Keep at most one empty superslab (warm); unmap the rest at once."""

    name = "keep-one"

    def on_superslab_empty(self, ctx, ev):
        return simalloc.Release.keep() if ctx.cached_count() == 0 else simalloc.Release.unmap()


def scenario(label: str, heap: simalloc.Heap) -> None:
    n = (TOTAL_MIB << 20) // 2048
    ptrs = [heap.malloc(BLOCK) for _ in range(n)]
    for i, p in enumerate(ptrs):
        heap.view(p)[0] = i & 0xFF  # touch each block: its pages become resident
    peak = heap.residency()["resident_bytes"]
    for p in ptrs:
        heap.free(p)
    heap.trim()
    heap.check()
    after = heap.residency()["resident_bytes"]
    st = heap.stats()
    print(f"{label:<9} resident peak {peak / 2**20:6.1f} MiB -> after free {after / 2**20:6.1f} MiB "
          f"(cached={st['superslabs_cached']}, unmapped={st['ss_unmapped']}, "
          f"lean_retire={st['lean_retire']}, madvise={st['madvise_calls']})")
    report = heap.memory_report()
    assert report["mapped_total"] == heap.residency()["mapped_bytes"]


def main() -> None:
    print(f"kernel: [~ {simalloc.kernel_name()}]")
    cfg = simalloc.Config.defaults()
    with simalloc.Heap(cfg) as heap:
        scenario("FAST", heap)
    with simalloc.Heap(cfg, mem_lean=True, mem_lean_decommit="DONTNEED") as heap:
        scenario("LEAN", heap)
    with simalloc.Heap(cfg, policy=KeepOne()) as heap:
        scenario("keep-one", heap)


if __name__ == "__main__":
    main()
