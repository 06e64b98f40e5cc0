"""Long corruption-fuzzing runs (not a test): many seeds in child processes, both kernels.

    python benchmarks/fuzz_corruption.py --cases 20000 --batch 200

Prints executions, crashes (interpreter deaths: must be 0), undocumented errors (must be 0) and
the share of corruptions detected, per kernel.  See tests/corruption_harness.py for what a case
does."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from corruption_harness import run_in_child  # noqa: E402

import simalloc  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=2000, help="cases per kernel")
    ap.add_argument("--batch", type=int, default=200, help="cases per child process")
    ap.add_argument("--first-seed", type=int, default=10_000)
    ap.add_argument("--steps", type=int, default=600, help="operations per case")
    args = ap.parse_args()
    rc = 0
    for kernel in simalloc.available_kernels():
        t0 = time.time()
        seed, end = args.first_seed, args.first_seed + args.cases
        cases = detected = undetected = 0
        crashes: list[int] = []
        bad: list[dict] = []
        while seed < end:
            out = run_in_child(seed, min(args.batch, end - seed), kernel, args.steps)
            cases += out["cases"]
            detected += out["detected"]
            undetected += out["undetected"]
            bad += out["bad"]
            if out["crash_seed"] is not None:
                crashes.append(out["crash_seed"])
                seed = out["crash_seed"] + 1
            else:
                seed += min(args.batch, end - seed)
        dt = time.time() - t0
        print(f"{kernel:7s} executions {cases:,}  crashes {len(crashes)}  undocumented errors {len(bad)}  "
              f"detected {detected:,} ({100 * detected / max(cases, 1):.1f}%)  "
              f"undetected {undetected:,}  ({dt:.0f} s)")
        for s in crashes[:5]:
            print(f"   crash at seed {s}")
        for b in bad[:5]:
            print(f"   seed {b['seed']}: {b['corruptions']}: {b['error'].strip().splitlines()[-1]}")
        rc |= bool(crashes or bad)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
