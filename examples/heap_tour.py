"""A first tour of the heap: where blocks land, and what the heap says about itself.

Covers: Heap, malloc / free / usable_size / view, stats(), memory_report(), resident(),
residency(), check().
Scenario: a few requests of different sizes show the size classes (a request of n bytes needs
n + 1: one header byte), the slab each class carves its blocks from, the front cache that hands a
freed block straight back, and a request too big for any class taking its own mapping.  Then
the heap accounts for every byte it mapped, and its page model agrees with the kernel.

Addresses are shown as offsets inside their 2 MiB superslab (superslabs are 2 MiB-aligned, so
the offset does not depend on where the kernel put the mapping): ``offset >> 16`` is the slab.
"""

import simalloc

SIZES = (1, 7, 8, 100, 127, 128, 1000, 2047, 5000)


def where(heap: simalloc.Heap, p: int) -> str:
    off = p & (heap.ss_bytes - 1)
    return f"superslab offset {off:#09x} = slab {off >> 16:2d}, block at +{off & 0xFFFF:#07x}"


def main() -> None:
    print(f"kernel: [~ {simalloc.kernel_name()}]")
    with simalloc.Heap(tiny_prewarm=False) as heap:  # no prewarm: every block is carved here
        print(f"superslab {heap.ss_bytes >> 20} MiB = {heap.nslabs} slabs of 64 KiB")
        print("\n1. size classes: the usable size is the class's stride minus its header byte")
        ptrs = {}
        for n in SIZES:
            p = heap.malloc(n)
            ptrs[n] = p
            usable = heap.usable_size(p)
            place = "its own mapping (large)" if n > heap.tiny_max else where(heap, p)
            print(f"  malloc({n:4d}) -> usable {usable:4d}: {place}")

        print("\n2. carving: the next blocks of one class come from the same slab, a stride apart")
        a, b, c = (heap.malloc(100) for _ in range(3))
        print(f"  three more malloc(100): {where(heap, a)}")
        print(f"  distances: {abs(b - a)} and {abs(c - b)} bytes (class C4, stride 128)")

        print("\n3. the front cache: a freed block is handed straight back (LIFO)")
        heap.free(b)
        again = heap.malloc(100)
        print(f"  free(b); malloc(100) == b: {again == b}")

        print("\n4. the bytes are real memory")
        heap.view(again)[:5] = b"hello"
        print(f"  view(b)[:5] = {bytes(heap.view(again)[:5])!r}")

        st = heap.stats()
        print("\n5. stats(): what the heap holds")
        for key in ("live_blocks", "live_bytes", "superslabs_active", "front_cache_blocks",
                    "refills", "live_large", "mmap_total", "madvise_calls"):
            print(f"  {key:<20} {st[key]}")

        print("\n6. memory_report(): every mapped byte, accounted for")
        report = heap.memory_report()
        for key, value in report.items():
            if value:
                print(f"  {key:<20} {value:9d}")
        parts = sum(v for k, v in report.items() if k != "mapped_total")
        print(f"  the parts add up to mapped_total: {parts == report['mapped_total']}")

        print("\n7. resident pages: the heap's page model against the kernel's pagemap")
        model = heap.resident()["resident_bytes"]
        kernel = heap.residency()["resident_bytes"]
        print(f"  model {model // 4096} pages, kernel {kernel // 4096} pages, equal: {model == kernel}")
        print(f"  process VmRSS (with the Python interpreter): [~ "
              f"{heap.residency()['vm_rss_bytes'] / 2**20:.1f} MiB]")

        for p in (a, again, c, *ptrs.values()):
            heap.free(p)
        heap.check()  # walks every invariant; raises HeapCorruptionError if one fails
        print(f"\nafter freeing everything: live_blocks={heap.stats()['live_blocks']}, check() passed")


if __name__ == "__main__":
    main()
