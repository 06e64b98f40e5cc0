"""MADV_FREE against MADV_DONTNEED on real pages: what the kernel says, before and after reclaim.

Covers: Heap(mem_lean=..., mem_lean_decommit=...), residency() (the kernel's own figures:
``/proc/self/pagemap`` and smaps' LazyFree), force_reclaim(), stats()["madvise_by_advice"].
Scenario: a program allocates 40 MiB of 1000-byte blocks, keeps a few small blocks alive with
known contents, frees the rest and trims.  LEAN keeps 10 MiB of empty superslabs and decommits
the others, with MADV_DONTNEED (the pages leave at once) or MADV_FREE (the pages stay resident,
counted as LazyFree, until the kernel needs memory).  ``force_reclaim()`` plays the memory
pressure (MADV_PAGEOUT): only then does MADV_FREE's saving show.  The live blocks never change.
Then the program writes 40 MiB again: a page given back costs a *refault* (a minor fault and a
zero-filled page; ``resident()["refaults"]``), while a MADV_FREE'd page the kernel did not
reclaim yet is *rescued* (``["rescues"]``): written in place, no fault.
(Without swap, MADV_PAGEOUT leaves FAST's dirty cached pages resident; with swap it would page
them out and this example's FAST lines would differ.)
"""

import simalloc

BLOCK = 1000  # bytes per request -> class C7 (2048-byte stride)
TOTAL_MIB = 40
KEEP = 50  # small live blocks (class C4) whose bytes are checked at the end


def mib(b: int) -> str:
    return f"{b / 2**20:5.1f} MiB"


def scenario(label: str, heap: simalloc.Heap, reclaim: bool = True) -> None:
    keep = [heap.malloc(100) for _ in range(KEEP)]
    for i, p in enumerate(keep):
        heap.view(p)[:100] = bytes([i + 1]) * 100
    ptrs = [heap.malloc(BLOCK) for _ in range((TOTAL_MIB << 20) // 2048)]
    for p in ptrs:
        heap.view(p)[:BLOCK] = b"x" * BLOCK  # write every page: they become resident
    full = heap.residency()
    for p in ptrs:
        heap.free(p)
    heap.trim()
    after = heap.residency()
    if reclaim:
        heap.force_reclaim()
    reclaimed = heap.residency()
    intact = all(bytes(heap.view(p)[:100]) == bytes([i + 1]) * 100 for i, p in enumerate(keep))
    advice = heap.stats()["madvise_by_advice"]
    print(f"{label}")
    print(f"  in use      resident {mib(full['resident_bytes'])}  lazyfree {mib(full['lazyfree_bytes'])}")
    print(f"  after free  resident {mib(after['resident_bytes'])}  lazyfree {mib(after['lazyfree_bytes'])}")
    print(f"  {'reclaimed' if reclaim else 'no reclaim':<11} resident {mib(reclaimed['resident_bytes'])}  "
          f"lazyfree {mib(reclaimed['lazyfree_bytes'])}")
    print(f"  madvise: DONTNEED {advice['DONTNEED']}, FREE {advice['FREE']}, PAGEOUT {advice['PAGEOUT']}; "
          f"live blocks intact: {intact}")
    before = heap.resident()
    again = [heap.malloc(BLOCK) for _ in range(len(ptrs))]
    for p in again:
        heap.view(p)[:BLOCK] = b"y" * BLOCK  # the program writes the same amount again
    after_reuse = heap.resident()
    refaults = after_reuse["refaults"] - before["refaults"]
    rescues = after_reuse["rescues"] - before["rescues"]
    print(f"  written again: {refaults} refaults (zero-filled pages), {rescues} pages rescued "
          f"(MADV_FREE'd, not yet reclaimed: no fault)")
    for p in (*keep, *again):
        heap.free(p)
    heap.check()


def main() -> None:
    print(f"kernel: [~ {simalloc.kernel_name()}]")
    print("resident and lazyfree are the kernel's figures for the heap's own mappings")
    with simalloc.Heap(tiny_prewarm=False) as heap:
        scenario("FAST (keeps every empty superslab committed)", heap)
    for advice, reclaim in (("DONTNEED", True), ("FREE", True), ("FREE", False)):
        with simalloc.Heap(mem_lean=True, mem_lean_decommit=advice, mem_lean_target_mb=10) as heap:
            scenario(f"LEAN + MADV_{advice} (keeps 10 MiB, decommits the rest)"
                     + ("" if reclaim else ", no memory pressure"), heap, reclaim)


if __name__ == "__main__":
    main()
