"""Speed of the trace path: memray capture conversion (records/s) and replay (ops/s).

    python benchmarks/trace_speed.py [--records-scale 4] [--repeat 3]

1. Captures a Python program doing real work (JSON, sorting, regex, containers; run with
   PYTHONMALLOC=malloc so each object allocation is a malloc) with ``memray run``, then times
   the conversion to an op stream in its three parts: ``memray.FileReader(path)`` (memray's
   own pass over the file), iterating ``get_allocation_records()`` into numpy, and simalloc's
   vectorised events -> ops conversion.
2. Replays the converted stream through ``Heap.replay`` with the Cython kernel (best of
   ``--repeat``), the whole stream and the stream without its realloc rows (a tiny -> tiny
   realloc runs in the kernel's batch loop; one involving a Mid or large block leaves it for
   the heap's Python slow path), plus the textwork trace under tests/data and a Mixed stream
   for reference.

Not a test: prints figures.  Needs memray for step 1 (skipped without it).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import simalloc  # noqa: E402
from simalloc.constants import OP_REALLOC  # noqa: E402
from simalloc.trace import OpStream, read_trace  # noqa: E402

PROGRAM = """
import json, re, sys
from collections import Counter
scale = int(sys.argv[1])
W = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
for rnd in range(scale):
    lines = [f"{i:06d} " + " ".join(W[(i * 7 + k) % len(W)] for k in range(1 + i % 9))
             for i in range(20000)]
    c = Counter(" ".join(lines).split())
    doc = json.loads(json.dumps({"c": c, "lines": lines[:5000]}))
    pat = re.compile(r"^(\\d+) (\\w+)")
    firsts = sorted(m.group(2) for m in map(pat.match, lines) if m)
    grow = []
    for i in range(2000):
        grow.append(list(range(i % 300)))
        if i % 3 == 0:
            grow.pop(0)
    del grow, lines, doc, firsts
"""


def best(fn, repeat: int) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def conversion(scale: int, repeat: int) -> OpStream | None:
    try:
        import memray
    except ImportError:
        print("memray not installed: conversion benchmark skipped (pip install memray)")
        return None
    from simalloc.trace.readers import memray_records, records_to_stream

    d = tempfile.mkdtemp(prefix="simalloc-bench-")
    prog, cap = os.path.join(d, "prog.py"), os.path.join(d, "cap.bin")
    Path(prog).write_text(PROGRAM)
    env = dict(os.environ, PYTHONMALLOC="malloc")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "memray", "run", "-f", "-q", "-o", cap, prog, str(scale)],
                   check=True, env=env)
    print(f"capture: memray run of a {scale}-round text-processing program: "
          f"{time.perf_counter() - t0:.2f} s, {os.path.getsize(cap):,} B")
    t_open = best(lambda: memray.FileReader(cap), repeat)
    recs = memray_records(cap)
    n = len(recs)
    t_read = best(lambda: memray_records(cap), repeat)  # includes FileReader(path)
    # memray now and then misses an allocation (a free of an address already freed shows it):
    # repaired, as ``simalloc record`` does
    t_conv = best(lambda: records_to_stream(recs, cap, strict=False), repeat)
    stream = records_to_stream(recs, cap, strict=False)
    print(f"records: {n:,} -> {len(stream):,} ops ({stream.summary()['reallocs']:,} reallocs; "
          f"repaired {stream.meta.get('repaired')})")
    print(f"  memray.FileReader(path) (memray's own pass)      {t_open:7.3f} s  {n / t_open / 1e6:6.2f} M records/s")
    print(f"  FileReader + get_allocation_records() -> numpy    {t_read:7.3f} s  {n / t_read / 1e6:6.2f} M records/s")
    print(f"  simalloc events -> ops conversion (vectorised)    {t_conv:7.3f} s  {n / t_conv / 1e6:6.2f} M records/s")
    total = t_read + t_conv
    print(f"  whole conversion (read_memray)                    {total:7.3f} s  {n / total / 1e6:6.2f} M records/s")
    return stream


def replay(stream: OpStream, label: str, repeat: int) -> None:
    kernel = "cython" if "cython" in simalloc.available_kernels() else "python"

    def run(ops: np.ndarray) -> float:
        with simalloc.Heap(simalloc.Config.defaults(kernel=kernel, policy="fast")) as heap:
            slots = stream.new_slots()
            t0 = time.perf_counter()
            heap.replay(ops, slots)
            return time.perf_counter() - t0

    ops = np.ascontiguousarray(stream.ops)
    no_re = np.ascontiguousarray(ops[ops[:, 0] != OP_REALLOC])
    t_all = min(run(ops) for _ in range(repeat))
    t_nore = min(run(no_re) for _ in range(repeat))
    n_re = len(ops) - len(no_re)
    print(f"replay [{kernel}] {label}: {len(ops):,} ops in {t_all:.3f} s = {len(ops) / t_all / 1e6:.2f} M ops/s; "
          f"without its {n_re:,} reallocs {len(no_re) / t_nore / 1e6:.2f} M ops/s "
          f"(reallocs ~{max(t_all - t_nore, 0) / max(n_re, 1) * 1e6:.1f} us each)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records-scale", type=int, default=1, help="rounds of the captured program (1: ~2M records)")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    print(f"simalloc {simalloc.__version__}, kernels {simalloc.available_kernels()}, "
          f"{os.cpu_count()} CPUs")
    stream = conversion(a.records_scale, a.repeat)
    if stream is not None:
        replay(stream, "memray capture above", a.repeat)
    replay(read_trace(ROOT / "tests" / "data" / "textwork.npz"), "tests/data/textwork.npz", a.repeat)
    from simalloc.workloads import get_workload

    w = get_workload("mixed", ops=2_000_000, ws=400, seed=1)
    mixed = OpStream(np.concatenate([w.warmup_stream(), w.op_stream()]), w.nslots)
    replay(mixed, "Mixed WS=400 as an op stream (no reallocs)", a.repeat)


if __name__ == "__main__":
    main()
