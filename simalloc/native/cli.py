"""``simalloc native`` (without ``--trace``): the Mixed loop in C under each installed
allocator, a table or JSON (``--trace``, the release behaviour, is :mod:`simalloc.trace.native_trace`).

Exit codes: 0 at least one allocator ran; 1 none could be run.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from . import ALLOCATOR_LIBS, NativeUnavailable, find_allocators, run_native

__all__ = ["main_native"]


def _info(args: argparse.Namespace, line: str) -> None:
    """Context lines: stdout normally, stderr when stdout carries JSON."""
    print(line, file=sys.stderr if args.json else sys.stdout, flush=True)


def main_native(args: argparse.Namespace) -> int:
    """Run ``args.ops`` Mixed cycles (``ws``, ``seed``, ``runs``) under every allocator found."""
    try:
        found = find_allocators()
    except NativeUnavailable as exc:
        print(f"simalloc: native benchmark unavailable: {exc}", file=sys.stderr)
        return 1
    _info(args, "allocators:")
    for name in ALLOCATOR_LIBS:
        where = found[name] if name in found else "not installed"
        _info(args, f"  {name:<10} {where or 'the C library (no preload)'}")
    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    for name in found:
        print(f"[native] {name}: {args.ops:,} cycles ws={args.ws} seed={args.seed} x{args.runs} ...",
              file=sys.stderr, flush=True)
        try:
            rows.extend(run_native(name, args.ops, args.ws, args.seed, runs=args.runs))
        except NativeUnavailable as exc:
            failed.append(f"{name}: {exc}")
    if args.json:
        json.dump({"rows": rows, "unavailable": failed}, sys.stdout, indent=2, allow_nan=False,
                  default=str)
        sys.stdout.write("\n")
    else:
        print(f"Mixed loop in C: cycles={args.ops:,} ws={args.ws} seed={args.seed}")
        for r in rows:
            print(f"  {r['allocator']:<10} {r['ops_per_s']:>14,.0f} ops/s  {r['seconds']:.3f} s  "
                  f"max RSS {r['max_rss_bytes'] >> 10} KiB")
        for f in failed:
            print(f"  unavailable: {f}")
    if not rows:
        print("simalloc: no native allocator could be run" + (f" ({'; '.join(failed)})" if failed else ""),
              file=sys.stderr)
        return 1
    return 0
