"""``simalloc grade``: score a release policy on a fixed suite against FAST (see :mod:`.grade`).

::

    simalloc grade POLICY [--json] [--case LABEL ...] [--trace FILE] [--kernel K]
    simalloc grade --exercise N POLICY [--json]

POLICY is a built-in name (``fast``, ``lean``, ``lean-free``, ``lean-dontneed``,
``slab-purge``), a preset (``jemalloc-decay``, ``glibc-trim``, ...), a file ``path.py`` or
``path.py:Class`` (the file's only ReleasePolicy subclass if no class is named), or
``module:Class``.  The suite ignores ``HAKMEM_*`` / ``SIMALLOC_*`` options (every heap starts
from ``Config.defaults()``) except the kernel (``--kernel``, else ``SIMALLOC_KERNEL``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["EXIT_FAILED", "EXIT_MISSED", "EXIT_OK", "EXIT_USAGE", "add_subcommands"]

#: Exit codes of ``simalloc grade``.
EXIT_OK = 0  # graded, every workload correct (--exercise: PASS)
EXIT_FAILED = 1  # a run raised, a live byte changed, or check() failed (score 0 / not correct)
EXIT_USAGE = 2  # bad POLICY, unknown exercise or case, trace file missing: nothing ran
EXIT_MISSED = 3  # --exercise: the policy ran correctly but missed a target (FAIL)

_EPILOG = """exit status:
  0  graded, every workload correct (--exercise: PASS)
  1  a run failed: the policy raised, a live block's bytes changed, or check() failed
  2  usage error: POLICY names nothing, unknown --exercise / --case, trace missing (nothing ran)
  3  --exercise: correct, but a target was missed (FAIL)

The suite, the score's formula and the exercises: docs/exercises.md."""


def _cmd(args: argparse.Namespace) -> int:
    from .grade import CASES, check_exercise, format_exercise, format_grade, grade, resolve_policy

    kernel = args.kernel or os.environ.get("SIMALLOC_KERNEL", "auto")
    trace = Path(args.trace) if args.trace else None
    pol = resolve_policy(args.policy)  # ConfigError -> exit 2 (cli.main)
    if args.exercise is not None:
        res = check_exercise(args.exercise, pol, kernel=kernel, trace=trace)
        if args.json:
            print(json.dumps(res, indent=1, default=str))
        else:
            print(format_exercise(res))
        if not res["correct"]:
            return EXIT_FAILED
        return EXIT_OK if res["passed"] else EXIT_MISSED
    unknown = [c for c in args.case or [] if c not in CASES]
    if unknown:
        print(f"simalloc grade: error: unknown case {unknown[0]!r}: expected one of {', '.join(CASES)}",
              file=sys.stderr)
        return EXIT_USAGE
    cases = tuple(CASES[c] for c in args.case) if args.case else tuple(CASES.values())

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    result = grade(pol, kernel=kernel, trace=trace, cases=cases, progress=log)
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    else:
        print(format_grade(result))
    return EXIT_OK if result["correct"] else EXIT_FAILED


def add_subcommands(sub: Any, kern: argparse.ArgumentParser) -> dict[str, Callable[[argparse.Namespace], int]]:
    sp = sub.add_parser("grade", parents=[kern], help="score a release policy against FAST on a "
                        "fixed suite (malloclab-style); --exercise N checks an exercise",
                        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sp.add_argument("policy", metavar="POLICY",
                    help="fast, lean, lean-free, lean-dontneed, slab-purge, a preset, path.py[:Class] "
                         "or module:Class")
    sp.add_argument("--exercise", type=int, metavar="N", help="check exercise N (docs/exercises.md)")
    sp.add_argument("--case", action="append", metavar="LABEL",
                    help="grade only this case (repeatable): mixed-400, churn, mstress, idle, trace")
    sp.add_argument("--trace", metavar="FILE", help="the trace case's file (default tests/data/textwork.npz)")
    sp.add_argument("--json", action="store_true", help="JSON on stdout")
    return {"grade": _cmd}
