"""Replay a real program's allocations through three release policies.

Covers: simalloc.trace.read_trace (memray, CS:APP .rep, glibc mtrace, ltrace, .npz), the op
stream (rows ``kind, slot, size``), Heap.replay, drain_slots, resident() (the exact peak from
the page model), stats().
Scenario: ``tests/data/textwork.npz`` is a memray capture of a small real Python program
(``tests/data/trace_prog.py``: word counting over generated text), converted to an op stream.
The same rows go through FAST, LEAN with MADV_DONTNEED and a model of glibc's trim rule, each
on a fresh heap; mdriver's utilisation (peak live payload / peak resident) says how tightly
each policy packs the program's bytes, and the syscall counts say what that cost.
The program's small blocks fit in one superslab that never empties while it runs (its mmap /
munmap are its large blocks), so the policies differ only once its leftovers are freed and the
superslab meets the release policy: "drained" is the resident after that.
"""

from pathlib import Path

import simalloc
import simalloc.trace

TRACE = Path(__file__).resolve().parents[1] / "tests" / "data" / "textwork.npz"
POLICIES = {
    "fast": {"policy": "fast"},
    "lean-dontneed": {"mem_lean": True, "mem_lean_decommit": "DONTNEED", "mem_lean_target_mb": 0},
    "glibc-trim": {"policy": "glibc-trim"},
}


def main() -> None:
    print(f"kernel: [~ {simalloc.kernel_name()}]")
    stream = simalloc.trace.read_trace(TRACE)
    s = stream.summary()
    print(f"{TRACE.name}: {s['ops']} ops ({s['mallocs']} malloc, {s['frees']} free, "
          f"{s['reallocs']} realloc), {s['n_slots']} slots")
    print(f"peak live payload {s['peak_live_payload']} bytes at op {s['peak_live_at_op']}, "
          f"largest request {s['max_size']} bytes")
    print(f"first rows (kind 0=malloc 1=free 2=realloc, slot, size): {stream.ops[:3].tolist()}")
    print()
    print(f"{'policy':<14} {'peak resident':>14} {'util':>6} {'at the end':>11} {'drained':>9} "
          f"{'mmap':>5} {'munmap':>7} {'madvise':>8}")
    for name, overrides in POLICIES.items():
        with simalloc.Heap(tiny_prewarm=False, **overrides) as heap:
            heap.reset_resident_stats()
            slots = stream.new_slots()
            applied = heap.replay(stream.ops, slots)  # the whole trace in the kernel's batch loop
            res = heap.resident()
            util = s["peak_live_payload"] / res["resident_peak_bytes"]
            left = heap.drain_slots(slots)  # free what the program never freed
            heap.trim()  # and flush the front caches: the emptied superslabs meet the policy
            heap.check()
            st = heap.stats()
            print(f"{name:<14} {res['resident_peak_bytes'] / 1024:10.0f} KiB {util:6.2f} "
                  f"{res['resident_bytes'] / 1024:7.0f} KiB {heap.resident()['resident_bytes'] / 1024:5.0f} KiB "
                  f"{st['mmap_total']:5d} {st['munmap_total']:7d} {st['madvise_calls']:8d}")
            assert applied == len(stream)
    print(f"\nblocks the program left live (freed by drain_slots): {left}")


if __name__ == "__main__":
    main()
