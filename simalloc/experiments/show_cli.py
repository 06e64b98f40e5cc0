"""``simalloc show``: run a workload on one heap and print its occupancy map at the end.

::

    simalloc show [--workload mixed --ops N --ws W --seed S --param K=V,...] [--set KEY=VALUE,...]
                  [--png FILE] [--timeline FILE --every N] [--color auto|always|never]

The workload runs as in ``simalloc run`` (warm-up, then the timed part with its final drain;
:mod:`simalloc.workloads`), in this process, on a heap built from the environment plus
``--set`` (e.g. ``--set policy=slab-purge`` or ``HAKMEM_SS_MEM_LEAN=1``).  The map printed is
:func:`simalloc.occupancy.render_map` of the heap after the run: what the release policy left
mapped, one character per slab.  ``--png`` writes the same map as an image; ``--timeline``
takes a map every ``--every`` operations (default: 100 maps over the run) and stacks them into
one image.  Both need matplotlib (``pip install "simalloc[plot]"``); without it the command
exits 2 before running anything.

This module is a command plugin of :mod:`simalloc.cli` (``_PLUGINS``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = ["EXIT_SHOW", "add_subcommands", "cmd_show"]

#: ``--ops`` default (both kernels: a map is for looking at, not for timing).
DEFAULT_OPS = 200_000

EXIT_SHOW = """exit status:
  0  the run completed and the map was printed (and the images written)
  1  the run failed: the allocator or its release policy raised
  2  usage or configuration error, nothing ran: a bad argument or override, an unknown
     workload, --every without --timeline, --png/--timeline without matplotlib"""


def add_subcommands(sub: Any, kern: argparse.ArgumentParser) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add ``show`` to the ``simalloc`` subparsers; returns ``{"show": cmd_show}``."""
    sp = sub.add_parser("show", parents=[kern], help="run a workload and print the occupancy map",
                        description="Run a workload on one heap (warm-up, timed part, final drain) and "
                                    "print the map of what the release policy left mapped, one "
                                    "character per slab.", epilog=EXIT_SHOW,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    sp.add_argument("--workload", default="mixed",
                    help="mixed, churn, tiny-hot, larson or mstress (default mixed)")
    sp.add_argument("--ops", type=int, default=DEFAULT_OPS, help=f"timed operations (default {DEFAULT_OPS:,})")
    sp.add_argument("--ws", type=int, default=None, help="working set (default: the workload's own)")
    sp.add_argument("--seed", type=int, default=1, help="seed (default 1)")
    sp.add_argument("--param", action="append", metavar="KEY=VALUE[,...]",
                    help="extra workload parameter(s), e.g. burst_mb=24")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE[,...]",
                    help="config override(s): option or env names, e.g. policy=slab-purge")
    sp.add_argument("--png", metavar="FILE", help="also write the final map as a PNG (needs matplotlib)")
    sp.add_argument("--timeline", metavar="FILE",
                    help="write a map every --every ops stacked into one PNG (needs matplotlib)")
    sp.add_argument("--every", type=int, default=None, metavar="N",
                    help="with --timeline: ops between maps (default: timed ops / 100)")
    sp.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                    help="ANSI colours in the map (default auto: when stdout is a terminal)")
    return {"show": cmd_show}


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from .overrides import merge_overrides, parse_assignments

    base: dict[str, Any] = {"kernel": args.kernel} if getattr(args, "kernel", None) else {}
    return merge_overrides(base, parse_assignments(args.set or [], what="--set"))


def _params(args: argparse.Namespace) -> dict[str, Any]:
    from .overrides import parse_assignments, parse_scalar

    return {k: parse_scalar(v) for k, v in parse_assignments(args.param or [], what="--param").items()}


def cmd_show(args: argparse.Namespace) -> int:
    """``simalloc show`` (module docstring); returns the exit code."""
    from ..heap import Heap
    from ..occupancy import Timeline, plot_map, render_map
    from ..workloads import get_workload
    from .ab import require_matplotlib

    if args.ops < 0:
        raise ConfigError(f"--ops {args.ops}: must be >= 0")
    if args.every is not None and (args.timeline is None or args.every < 1):
        raise ConfigError("--every N needs --timeline FILE and N >= 1")
    if args.png or args.timeline:
        require_matplotlib()  # ImportError(name="matplotlib"): the CLI prints the hint, exits 2
    w = get_workload(args.workload, ops=args.ops, ws=args.ws, seed=args.seed, **_params(args))
    try:
        heap = Heap(**_overrides(args))
    except ConfigError:
        raise  # exit 2: nothing ran
    except Exception as exc:  # e.g. a policy that raises while the heap prewarms
        print(f"simalloc show: error: heap construction failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"kernel: {heap.kernel_name}  policy: {heap.policy.describe()}")
        print(f"workload: {w.describe()}")
        try:
            slots = np.zeros(w.nslots, dtype=np.uint64)
            w.warmup(heap, slots)
            total = w.total_ops
            every = args.every if args.every is not None else max(1, total // 100)
            timeline = Timeline(heap, every) if args.timeline else None
            if timeline is not None:
                timeline.snap()
            for _n in w.run_chunks(heap, slots, max(1, -(-total // every))):
                if timeline is not None:
                    timeline.snap()
            occ = heap.occupancy()
        except Exception as exc:  # the allocator or its policy raised: the run failed
            print(f"simalloc show: error: the run failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
        print(render_map(occ, color=color))
        if args.png:
            print(f"map: {plot_map(occ, args.png)}")
        if timeline is not None:
            print(f"timeline: {timeline.plot(args.timeline)} ({len(timeline.frames)} maps, every {every:,} ops)")
    finally:
        heap.close()
    return 0
