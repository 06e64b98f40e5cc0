"""``simalloc lab54``: the policy lab's answer to Phase 54 (see :mod:`.lab54`).

::

    simalloc lab54 [--workload mixed-400|mixed-4000|churn|idle ...] [--candidate NAME ...]
                   [--runs 3] [--ops 2000000] [--epochs 10] [--seed 1] [--kernel K]
                   [--csv lab54.csv | --csv -] [--json] [--bound-only]

Rows are appended to the CSV as each candidate is judged, so an interrupted lab keeps what it
measured.  Exit codes: 0 done; 2 usage error; 130 interrupted (the CSV keeps the finished rows).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

__all__ = ["add_subcommands"]

_EPILOG = ("exit status: 0 done, 2 usage error, 130 interrupted (rows already judged stay in the CSV)\n"
           "The answer for the README: simalloc lab54 --workload mixed-400 --workload mixed-4000 "
           "--workload churn --workload idle")


def _cmd(args: argparse.Namespace) -> int:
    from .lab54 import CANDIDATES, WORKLOADS, CsvSink, format_lab, run_lab

    workloads = args.workload or ["mixed-400", "mixed-4000", "churn", "idle"]
    for w in workloads:
        if w not in WORKLOADS:
            print(f"simalloc lab54: error: unknown workload {w!r}: expected one of {', '.join(WORKLOADS)}",
                  file=sys.stderr)
            return 2
    for c in args.candidate or []:
        if c not in CANDIDATES:
            print(f"simalloc lab54: error: unknown candidate {c!r}: expected one of {', '.join(CANDIDATES)}",
                  file=sys.stderr)
            return 2

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    sink: Callable[[Any], None] | None = None
    if args.csv != "-":
        sink = CsvSink(args.csv)
        log(f"[lab54] rows -> {args.csv}")
    try:
        cands = [] if args.bound_only else args.candidate
        bounds, fast, rows = run_lab(workloads, cands, runs=args.runs, ops=args.ops, epochs=args.epochs,
                               seed=args.seed, kernel=args.kernel, on_row=sink, log=log)
    except KeyboardInterrupt:
        log("simalloc lab54: interrupted; finished rows are in the CSV")
        return 130
    if args.json:
        print(json.dumps({"bounds": {k: asdict(v) for k, v in bounds.items()}, "fast": fast,
                          "rows": [r.as_dict() for r in rows]}, indent=1))
    else:
        print(format_lab(bounds, fast, rows))
    return 0


def add_subcommands(sub: Any, kern: argparse.ArgumentParser) -> dict[str, Callable[[argparse.Namespace], int]]:
    sp = sub.add_parser("lab54", parents=[kern], help="Phase 54 answered: live-data bound and every "
                        "release rule judged against FAST", epilog=_EPILOG,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    sp.add_argument("--workload", action="append", metavar="NAME",
                    help="mixed-400, mixed-4000, churn, idle (repeatable; default all four)")
    sp.add_argument("--candidate", action="append", metavar="NAME",
                    help="a candidate of simalloc.experiments.lab54.CANDIDATES (repeatable; default all)")
    sp.add_argument("--runs", type=int, default=3, help="runs per side (default 3)")
    sp.add_argument("--ops", type=int, default=2_000_000, help="timed operations per run (default 2,000,000)")
    sp.add_argument("--epochs", type=int, default=10, help="timed epochs per run (default 10)")
    sp.add_argument("--seed", type=int, default=1, help="seed (default 1)")
    sp.add_argument("--csv", default="lab54.csv", help="rows appended as judged (default lab54.csv; '-' none)")
    sp.add_argument("--json", action="store_true", help="JSON on stdout")
    sp.add_argument("--bound-only", action="store_true",
                    help="only the live-data bounds and FAST's figures (no candidates)")
    return {"lab54": _cmd}
