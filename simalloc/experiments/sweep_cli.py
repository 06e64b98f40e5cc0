"""``simalloc sweep``: the command line of :mod:`.sweep` (a plugin of :mod:`simalloc.cli`).

::

    simalloc sweep [--policy fast,lean,jemalloc-decay,...] [--workload mixed,churn,prog.npz]
                   [--seed 1,2,3] [--ws 400,4000] [--grid KEY=V1,V2,...]... [--set KEY=VALUE,...]
                   [--param KEY=VALUE] [--ops N] [--epochs 5] [--out DIR] [--workers N]
                   [--scheduler ADDRESS|local] [--resident peak|mean|virtual_mean|final]
                   [--no-reference]

Example (LEAN's budget and advice, and jemalloc's decay time, on Mixed and churn)::

    simalloc sweep --policy lean,jemalloc-decay --workload mixed,churn --seed 1,2 \\
        --grid mem_lean_target_mb=0,10,40 --grid mem_lean_decommit=FREE,DONTNEED \\
        --grid dirty_decay_ms=0,1000,10000 --out sweep-lean

Outputs in ``--out``: ``points.csv`` (a row per point as it finishes), ``points.parquet`` (at the
end and on Ctrl-C; needs the ``sweep`` extra), ``pareto.png`` (needs matplotlib); the Pareto
table on stdout, progress on stderr.

``--resident`` picks the resident figure of the table and plot (the header names it): ``peak``,
``mean`` (over operations: idle gaps weigh nothing), ``virtual_mean`` (over the heap's virtual
time: idle gaps weigh their length) or ``final``.  Default: ``virtual_mean`` when a workload of
the sweep has idle phases (the ``idle`` workload, a trace with idle time), else ``peak``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    from .sweep import PointsFile, SweepSpec

__all__ = ["EPILOG", "SWEEP_HINT", "add_subcommands", "cmd_sweep"]

#: Default ``--ops`` per point, by kernel.
_OPS = {"python": 100_000, "cython": 2_000_000}
SWEEP_HINT = 'simalloc sweep: --scheduler needs dask.distributed: pip install "simalloc[sweep]"'
EPILOG = """exit status:
  0    every point ran (this time or in an earlier run of the same sweep)
  1    some point failed: its row in points.csv carries the error (the allocator or its
       policy raised, or the point's process died); rerunning the sweep retries it
  2    usage or configuration error, nothing ran: a bad grid key or value (named), an unknown
       policy or workload, --scheduler without dask (pip install "simalloc[sweep]")
  130  interrupted (Ctrl-C): finished points stay in points.csv (points.parquet is written);
       rerun the same command to resume"""


# the sweep's modules are imported when the command runs: ``simalloc --help`` loads no experiment
def _list(texts: list[str] | None, default: tuple[Any, ...]) -> tuple[str, ...]:
    if not texts:
        return tuple(default)
    return tuple(v.strip() for t in texts for v in t.split(",") if v.strip())


def _ints(what: str, texts: list[str] | None, default: tuple[Any, ...]) -> tuple[Any, ...]:
    out: list[Any] = []
    for v in _list(texts, default):
        if v is None or str(v).lower() == "none":
            out.append(None)
            continue
        try:
            out.append(int(v))
        except ValueError:
            raise ConfigError(f"{what} {v!r}: expected an integer") from None
    return tuple(out)


def _grid(texts: list[str] | None) -> tuple[tuple[str, tuple[str, ...]], ...]:
    axes: list[tuple[str, tuple[str, ...]]] = []
    for text in texts or []:
        key, sep, vals = text.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--grid {text!r}: expected KEY=V1,V2,... (e.g. mem_lean_target_mb=0,10,40)")
        if key in (k for k, _ in axes):
            raise ConfigError(f"--grid {key}: given twice")
        axes.append((key, tuple(v.strip() for v in vals.split(","))))
    return tuple(axes)


def add_subcommands(sub: Any, kern: argparse.ArgumentParser) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Register ``simalloc sweep``."""
    sp = sub.add_parser("sweep", parents=[kern], help="a grid of policies, knobs, workloads and seeds",
                        description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sp.add_argument("--policy", action="append", metavar="NAME[,...]",
                    help="fast, lean, lean-dontneed, slab-purge, a preset (jemalloc-decay, ...) or "
                         "module:Class (default fast,lean)")
    sp.add_argument("--workload", action="append", metavar="NAME|FILE.npz[,...]",
                    help="mixed, churn, tiny-hot, larson, mstress or an op-stream .npz (default mixed)")
    sp.add_argument("--seed", action="append", metavar="N[,...]", help="seeds (default 1)")
    sp.add_argument("--ws", action="append", metavar="N[,...]", help="working sets (default: the workload's)")
    sp.add_argument("--grid", action="append", metavar="KEY=V1,V2,...",
                    help="one axis: an option (or env name), a policy knob, POLICY.KNOB, param.NAME, "
                         "or policy/workload/seed/ws; repeat for more axes")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE[,...]", help="fixed config override(s)")
    sp.add_argument("--param", action="append", metavar="KEY=VALUE[,...]", help="fixed workload parameter(s)")
    sp.add_argument("--ops", type=int, default=None,
                    help=f"timed ops per point (default {_OPS['python']:,} with the Python kernel, "
                         f"{_OPS['cython']:,} with Cython)")
    sp.add_argument("--epochs", type=int, default=5, help="timed epochs per point (default 5)")
    sp.add_argument("--out", default="sweep-out", help="output directory (default sweep-out)")
    sp.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="points run at once (default: the number of cores)")
    sp.add_argument("--scheduler", metavar="ADDRESS|local",
                    help='run on Dask distributed: a scheduler address, or "local" for a LocalCluster '
                         '(needs pip install "simalloc[sweep]")')
    sp.add_argument("--resident", choices=("peak", "mean", "virtual_mean", "final"), default=None,
                    help="resident figure of the Pareto plot and table: mean is over operations "
                         "(idle gaps weigh nothing), virtual_mean over virtual time (idle gaps weigh "
                         "their length); default virtual_mean if a workload has idle phases, else peak")
    sp.add_argument("--no-reference", action="store_true",
                    help="do not add the FAST reference point per workload, ws and seed")
    return {"sweep": cmd_sweep}


def _spec(args: argparse.Namespace) -> SweepSpec:
    from ..kernel import kernel_name
    from .overrides import parse_assignments, parse_scalar, validate_overrides
    from .sweep import SweepSpec

    overrides: dict[str, Any] = parse_assignments(args.set or [], what="--set")
    if args.kernel:
        overrides = {"kernel": args.kernel, **overrides}
    kern = kernel_name(validate_overrides(overrides).kernel)
    ops = args.ops if args.ops is not None else _OPS.get(kern, _OPS["python"])
    if ops < 1 or args.epochs < 1 or args.workers < 1:
        raise ConfigError("--ops, --epochs and --workers must be >= 1")
    params = {k: parse_scalar(v) for k, v in parse_assignments(args.param or [], what="--param").items()}
    return SweepSpec(policies=_list(args.policy, ("fast", "lean")), workloads=_list(args.workload, ("mixed",)),
                     seeds=_ints("--seed", args.seed, (1,)), ws=_ints("--ws", args.ws, (None,)),
                     grid=_grid(args.grid), overrides={k: str(v) for k, v in overrides.items()},
                     params=params, ops=ops, epochs=args.epochs, reference=not args.no_reference)


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _finish(pf: PointsFile, out: Path, resident: str) -> None:
    """points.parquet, pareto.png and the Pareto table, from every row so far."""
    from .sweep_plot import configurations, format_pareto, pareto_flags, write_pareto_png, write_parquet

    rows = pf.latest()
    try:
        _log(f"parquet: {write_parquet(pf.path, out / 'points.parquet')}")
    except ImportError as exc:
        _log(f"simalloc sweep: points.parquet not written ({exc.name} missing): pip install \"simalloc[sweep]\"")
    configs = pareto_flags(configurations(rows, resident))
    if configs:
        try:
            _log(f"plot: {write_pareto_png(configs, out / 'pareto.png', resident)}")
        except ImportError:
            _log('simalloc sweep: pareto.png not written (matplotlib missing): pip install "simalloc[plot]"')
    print(format_pareto(configs, resident), flush=True)


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run the sweep (exit codes: :data:`EPILOG`)."""
    from .sweep import PointsFile, expand, idle_workloads
    from .sweep_run import Runner, run_sweep

    spec = _spec(args)
    if args.scheduler:
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise ConfigError('--scheduler needs dask.distributed: pip install "simalloc[sweep]"') from None
    points = expand(spec)  # ConfigError (exit 2) before anything runs
    resident = args.resident
    if resident is None:
        idle = idle_workloads(points)
        resident = "virtual_mean" if idle else "peak"
        if idle:
            _log(f"simalloc sweep: {', '.join(idle)} has idle phases: resident = virtual_mean "
                 f"(mean over virtual time; --resident to choose)")
    out = Path(args.out)
    grid_keys = [k for k, _ in spec.grid if k not in ("policy", "workload", "seed", "ws")]
    runner = Runner(args.workers, args.scheduler)
    pf: PointsFile | None = None
    interrupted = False
    try:
        pf, _n, _failed = run_sweep(points, out, grid_keys, runner, _log)
    except KeyboardInterrupt:
        interrupted = True
        _log("simalloc sweep: interrupted; finished points are kept in points.csv (rerun to resume)")
    if pf is None:  # interrupted before the results file was back: reopen it to finish
        pf = PointsFile(out / "points.csv", [])
        pf.close()
    _finish(pf, out, resident)
    if interrupted:
        return 130
    wanted = {p.key for p in points}
    failed = [r for r in pf.latest() if r["key"] in wanted and r.get("error")]
    if failed:
        _log(f"simalloc sweep: error: {len(failed)} of {len(points)} point(s) failed (their rows carry the error)")
        for r in failed[:10]:
            _log(f"  {r['policy']} {r['workload']} seed={r['seed']} {r['config']}: {r['error']}")
        return 1
    return 0
