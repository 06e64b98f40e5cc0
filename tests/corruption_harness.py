"""Corruption fuzzing: flip allocator bytes in a heap's own mappings between random operations.

Each *case* (one seed) builds a heap, runs random mallocs and frees, and at random moments
overwrites one allocator-owned value in the real memory: a superslab header word, a field of a
slab's meta record, a block's header byte, or a free-list link.  It then keeps operating (and
calls ``check()`` now and then).  What must hold:

* the interpreter never crashes (the cases run in a child process; the parent sees a signal);
* every error raised is a documented ``simalloc.AllocatorError`` (a corruption *detected*).

A case that ends with no error is *undetected* (the corruption was harmless, e.g. a byte of a
free block's unused tail, or it went unnoticed).  :func:`run_cases` runs cases in this process;
:func:`run_in_child` runs a batch in a fresh interpreter and reports a crash with its seed.

Used by ``tests/test_corruption.py`` (a fixed budget) and ``benchmarks/fuzz_corruption.py``
(long runs).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

POLICIES = ({}, {"mem_lean": True, "mem_lean_decommit": "DONTNEED", "mem_lean_target_mb": 0},
            {"mem_lean": True, "mem_lean_decommit": "FREE", "mem_lean_target_mb": 2},
            {"policy": "slab-purge"})
SIZES = (1, 8, 17, 40, 100, 250, 500, 1000, 2000, 3000)


def _corrupt(heap: Any, rng: random.Random) -> str:
    """Overwrite one allocator value inside one of ``heap``'s superslabs; says what."""
    from simalloc import constants as K

    st = heap._st
    sss = [ss for ss in st.mapped() if ss.state == K.SS_ACTIVE]
    if not sss:
        return "none"
    ss = rng.choice(sss)
    w32, w8 = ss.w32, ss.w8
    what = rng.choice(("header", "meta", "block", "link", "meta", "link"))
    val32 = rng.choice((0, 1, 2, 3, 4, 7, 8, 34, 130, 0xFF, 0x7FFFFFFF, 0xFFFFFFFF, ss.size - 4,
                        ss.size - 1, ss.size, rng.getrandbits(32), rng.getrandbits(21)))
    if what == "header":
        w = rng.randrange(8)
        w32[w] = val32 & 0xFFFFFFFF
        return f"header word {w} = {val32:#x}"
    slab = rng.randrange(st.nslabs)
    meta = K.SS_META_OFFSET // 4 + slab * K.SLAB_META_WORDS
    if what == "meta":
        f = rng.randrange(K.SLAB_META_WORDS)
        w32[meta + f] = val32 & 0xFFFFFFFF
        return f"slab {slab} meta field {f} = {val32:#x}"
    carved, stride, data = w32[meta + K.M_CARVED], w32[meta + K.M_STRIDE], w32[meta + K.M_DATA]
    if what == "block" and carved and stride and 0 < carved * stride < K.SLAB_SIZE:
        off = data + rng.randrange(carved) * stride
        if 0 <= off < ss.size:
            w8[off] = rng.getrandbits(8)
            return f"block header at {off:#x}"
    head = w32[meta + K.M_FREELIST]
    if head and head + 8 <= ss.size:
        w32[(head + 4) >> 2] = val32 & 0xFFFFFFFF
        return f"free-list link of block {head:#x} = {val32:#x}"
    w32[meta + K.M_FREELIST] = val32 & 0xFFFFFFFF
    return f"slab {slab} free-list head = {val32:#x}"


def run_case(seed: int, kernel: str, steps: int = 600) -> dict[str, Any]:
    """One case; returns its outcome (``detected`` / ``undetected`` / ``bad``)."""
    import numpy as np

    import simalloc
    from simalloc import AllocatorError, Config, Heap

    rng = random.Random(seed)
    heap = Heap(Config.defaults(kernel=kernel, **POLICIES[seed % len(POLICIES)]))
    live: list[int] = []
    done: list[str] = []
    outcome, err = "undetected", ""
    try:
        corrupt_at = sorted(rng.sample(range(50, steps), k=rng.randint(1, 3)))
        for step in range(steps):
            if corrupt_at and step == corrupt_at[0]:
                corrupt_at.pop(0)
                done.append(_corrupt(heap, rng))
            r = rng.random()
            if r < 0.45 or not live:
                p = heap.malloc(rng.choice(SIZES))
                live.append(p)
                v = heap.view(p)
                v[0] = step & 0xFF
                v.release()
            elif r < 0.9:
                heap.free(live.pop(rng.randrange(len(live))))
            elif r < 0.95:
                heap.check()
            elif r < 0.97:
                ops = np.array([[0, 0, rng.choice(SIZES)], [1, 0, 0]] * 20, dtype=np.int64)
                heap.replay(ops, np.zeros(1, np.uint64))
            else:
                heap.trim()
        heap.check()
    except AllocatorError as exc:
        outcome, err = "detected", f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # an undocumented exception escaped: a defect
        outcome, err = "bad", "".join(traceback.format_exception(exc))[-2000:]
    finally:
        try:
            heap.close()
        except AllocatorError:
            pass
        except Exception as exc:
            outcome, err = "bad", f"close: {type(exc).__name__}: {exc}"
    return {"seed": seed, "kernel": kernel, "outcome": outcome, "error": err[-400:],
            "corruptions": done, "version": simalloc.__version__}


def run_cases(seeds: range | list[int], kernel: str, steps: int = 600) -> list[dict[str, Any]]:
    return [run_case(s, kernel, steps) for s in seeds]


def run_in_child(first: int, count: int, kernel: str, steps: int = 600,
                 timeout: float = 600) -> dict[str, Any]:
    """Run seeds ``first .. first+count-1`` in a fresh interpreter.  A crash (signal) is found
    by bisecting to the seed: ``crash_seed``.  Returns counts and the bad cases."""
    here = str(Path(__file__).parent)
    code = (f"import json, sys; sys.path.insert(0, {here!r}); import corruption_harness as h; "
            f"[print(json.dumps(h.run_case(s, {kernel!r}, {steps})), flush=True) "
            f"for s in range({first}, {first + count})]")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    out: dict[str, Any] = {"cases": len(results), "returncode": proc.returncode, "crash_seed": None,
                           "detected": sum(r["outcome"] == "detected" for r in results),
                           "undetected": sum(r["outcome"] == "undetected" for r in results),
                           "bad": [r for r in results if r["outcome"] == "bad"]}
    if proc.returncode != 0:  # died: the seed after the last one that reported
        out["crash_seed"] = first + len(results)
        out["stderr"] = proc.stderr[-2000:]
    return out
