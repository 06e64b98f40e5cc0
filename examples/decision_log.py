"""The decision log: every slow-path event and policy decision, with its reason in words.

Covers: Heap(events=True), heap.events() (a list of dicts) and heap.events(as_array=True) (a
numpy structured array), the record fields (ops, virtual_ns, kind, ss, slab, cls, stage,
advice, bytes, why), and how the log's counts equal stats()' counters.
Scenario: under LEAN (10 MiB budget, MADV_DONTNEED) a program allocates 16 MiB of 1000-byte
blocks, frees them in allocation order and trims; then it allocates 6 MiB again.  The log says
which superslabs LEAN kept warm, which it decommitted and why -- the first to empty are
decommitted because the superslabs still full count against the budget -- and which come back
from the LRU cache for the second allocation.

To stop in pdb at a decision instead (pure-Python kernel):
``Heap(kernel="python", mem_lean=True, events=simalloc.events.BreakOn("decommit_superslab"))``
or ``simalloc run ... --break decommit_superslab``.
"""

import collections

import simalloc

BLOCK = 1000  # class C7: 2048-byte stride, 32 blocks per 64 KiB slab
BURST_MIB = 16


def main() -> None:
    print(f"kernel: [~ {simalloc.kernel_name()}]")
    with simalloc.Heap(simalloc.Config.defaults(), events=True, tiny_prewarm=False, mem_lean=True,
                       mem_lean_decommit="DONTNEED", mem_lean_target_mb=10) as heap:
        ptrs = [heap.malloc(BLOCK) for _ in range((BURST_MIB << 20) // 2048)]
        for p in ptrs:
            heap.free(p)
        heap.trim()
        burst = heap.events()
        again = [heap.malloc(BLOCK) for _ in range((6 << 20) // 2048)]
        log = heap.events()
        st = heap.stats()

        print(f"\n1. {len(burst)} records for the burst; how many of each kind:")
        counts = collections.Counter(r["kind"] for r in burst)
        for kind, n in sorted(counts.items()):
            print(f"  {kind:<20} {n}")

        print("\n2. the first records: a fresh superslab, then each slab bound to class C7")
        for r in burst[:5]:
            print(f"  op {r['ops']:6d} {r['kind']:<13} ss={r['ss']:2d} slab={r['slab']:2d} "
                  f"stage={r['stage'] or '-':<2} {r['why']}")

        print("\n3. every superslab decision, with the policy's reason")
        for r in burst:
            if r["kind"] in ("keep", "decommit_superslab", "unmap"):
                print(f"  op {r['ops']:6d} ss {r['ss']:2d} {r['kind']:<18} {r['advice'] or '':<8} "
                      f"{r['why']}")

        print("\n4. the second allocation takes superslabs back from the LRU cache")
        for r in log[len(burst):]:
            if r["kind"] in ("acquire_lru", "acquire_mmap"):
                print(f"  op {r['ops']:6d} {r['kind']:<12} ss {r['ss']:2d}: {r['why']}")

        print("\n5. the log agrees with stats()")
        every = collections.Counter(r["kind"] for r in log)
        pairs = [("slab_empty", "slab_empty_events"), ("superslab_empty", "ss_empty_events"),
                 ("acquire_mmap", "ss_fresh"), ("acquire_lru", "ss_from_lru"),
                 ("decommit_superslab", "lean_decommit"), ("refill", "slow_refills")]
        for kind, counter in pairs:
            print(f"  {kind:<20} {every[kind]:4d}   stats()[{counter!r}] = {st[counter]}")

        arr = heap.events(as_array=True)
        given_back = int(arr["bytes"][arr["kind"] == "decommit_superslab"].sum())
        print(f"\n6. as a numpy array ({len(arr)} rows): {given_back / 2**20:.1f} MiB decommitted, "
              f"virtual_ns of the last record {int(arr['virtual_ns'][-1])} (ops x ns_per_op: "
              f"deterministic; its wall seconds are not: [~ {float(arr['seconds'][-1]):.3f} s])")
        for p in again:
            heap.free(p)
        heap.check()


if __name__ == "__main__":
    main()
