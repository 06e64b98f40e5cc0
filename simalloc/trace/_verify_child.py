"""The traced child of ``simalloc verify`` (``python -m simalloc.trace._verify_child``).

It imports everything first, then marks the phases with ``lseek(-1, MARKER + k, 0)`` (a call
that fails with EBADF and that nothing else makes, so the tracer can cut the timeline exactly):

* mark 0, build the heap, run the workload (warm-up and timed part, as ``simalloc run``), take
  ``heap.stats()``; mark 1; ``heap.close()``; mark 2;
* then write ``{"stats": ..., "workload": ...}`` as JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

MARKER_BASE = 0x5A11A0C0


def mark(k: int) -> None:
    try:
        os.lseek(-1, MARKER_BASE + k, 0)
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="simalloc.trace._verify_child")
    ap.add_argument("--out", required=True)
    ap.add_argument("--workload", default="churn")
    ap.add_argument("--ops", type=int, default=1)
    ap.add_argument("--ws", type=int, default=None)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--params", default="{}", help="workload parameters (JSON)")
    ap.add_argument("--overrides", default="{}", help="config overrides (JSON)")
    ap.add_argument("--epochs", type=int, default=4)
    a = ap.parse_args(argv)

    import simalloc
    from simalloc.workloads import get_workload

    w = get_workload(a.workload, ops=a.ops, ws=a.ws, seed=a.seed, **json.loads(a.params))
    overrides = json.loads(a.overrides)
    _ = w.total_ops  # counting pass before the marks
    mark(0)
    heap = simalloc.Heap(**overrides)
    slots = w.new_slots()
    w.warmup(heap, slots)
    for _n in w.run_chunks(heap, slots, a.epochs):
        pass
    stats = heap.stats()
    mark(1)
    heap.close()
    mark(2)
    with open(a.out, "w", encoding="utf-8") as fh:
        json.dump({"stats": stats, "workload": w.describe()}, fh, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
