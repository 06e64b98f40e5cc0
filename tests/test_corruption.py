"""The corruption fuzzer in the suite (a fixed budget): allocator bytes flipped between random
operations must never crash the interpreter, and every error must be a documented simalloc
error.  Long runs: ``python benchmarks/fuzz_corruption.py --cases 20000``.  Every case runs in a
child process, so a crash fails the test instead of killing the test run."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from corruption_harness import ROOT, run_in_child

CASES = 120


def test_corruption_never_crashes_and_raises_only_documented_errors(kernel):
    out = run_in_child(1000, CASES, kernel)
    assert out["crash_seed"] is None, f"interpreter died at seed {out['crash_seed']}: {out.get('stderr')}"
    assert out["cases"] == CASES
    bad = out["bad"]
    assert not bad, (f"{len(bad)} undocumented errors, first: seed {bad[0]['seed']} "
                     f"{bad[0]['corruptions']}\n{bad[0]['error']}")
    assert out["detected"] > CASES // 3  # most corruptions are caught


def _in_child(kernel: str, body: str) -> str:
    code = "\n".join([
        "import simalloc",
        "from simalloc import constants as K",
        f"heap = simalloc.Heap(simalloc.Config.defaults(kernel={kernel!r}, front_cache_cap=0))",
        "try:",
        textwrap.indent(textwrap.dedent(body).strip("\n"), "    "),
        "    print('NO ERROR')",
        "except simalloc.AllocatorError as exc:",
        "    print('RAISED', type(exc).__name__, exc)",
    ])
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert proc.returncode == 0, f"the interpreter died (rc {proc.returncode}): {proc.stderr[-800:]}"
    return proc.stdout


@pytest.mark.parametrize(("field", "value"), [("M_CLASS", 34), ("M_CLASS", 130), ("M_STRIDE", 0),
                                              ("M_STRIDE", 3), ("M_DATA", 0xFFFFF0)])
def test_crash_reproducers_raise_heap_corruption(kernel, field, value):
    """issue 11's reproducers: a slab's meta field overwritten, then free() / malloc()."""
    out = _in_child(kernel, f"""
        p = heap.malloc(20)  # C2: tag 0xA2, which class 34 (0x22) and 130 (0x82) also produce
        q = heap.malloc(20)
        idx = heap.kernel.lookup(p)
        ss = heap._st.superslab(idx)
        slab = ((p - ss.base) - 1) >> K.SLAB_LG
        ss.set_meta(slab, K.{field}, {value})
        heap.free(p)
        heap.free(q)
        for _ in range(3000):
            heap.malloc(20)
        """)
    assert out.startswith("RAISED HeapCorruptionError"), out


@pytest.mark.parametrize("link", ["end", "other_slab", "live_block"])
def test_bad_free_list_links_are_refused(kernel, link):
    """A free-list link past the mapping's end, into another slab, or at a live block must be
    refused before the kernel uses it (issue 11).  The blocks freed are the newest, in the
    class's current slab, so the next mallocs pop that slab's free list."""
    out = _in_child(kernel, f"""
        ptrs = [heap.malloc(100) for _ in range(3000)]
        idx = heap.kernel.lookup(ptrs[-1])
        ss = heap._st.superslab(idx)
        slab = ((ptrs[-1] - ss.base) - 1) >> K.SLAB_LG
        assert heap.kernel.cur_slab[heap.kernel.lut[100]] == slab
        for p in ptrs[-5:]:
            heap.free(p)
        head = ss.meta(slab, K.M_FREELIST)
        other = [p for p in ptrs if ((p - ss.base - 1) >> K.SLAB_LG) != slab and heap.kernel.lookup(p) == idx]
        target = {{"end": ss.size - 2, "other_slab": other[0] - ss.base - 1,
                   "live_block": ptrs[-10] - ss.base - 1}}[{link!r}]
        ss.w32[(head + 4) >> 2] = target
        for _ in range(10):
            heap.malloc(100)
        """)
    assert out.startswith("RAISED HeapCorruptionError"), out
