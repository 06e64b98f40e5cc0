"""The ``simalloc`` command line: run, bench, soak, ab, validate, native, options and more.

::

    simalloc run     [--workload mixed --ops N --ws 400 --seed 1] [--set KEY=VALUE,...] [--events F] [--break K]
    simalloc bench   [--runs 3] [--native] [--isolate] [--json]
    simalloc soak    [--duration 10 --epoch 1] [--csv soak.csv] [--json]
    simalloc ab      [--a KEY=VALUE,... | --a-config FILE] [--b ... | --b-config FILE]
                     [--runs 3 --epochs 10] [--json] [--report DIR] [--native] [--isolate]
                     [--gate]
    simalloc validate [--cells LIST] [--ops N|WORKLOAD=N,...] [--duration S] [--runs N]
                     [--isolate] [--json FILE] [--report DIR] [--out FILE] [--resume FILE]
                     [--gate]
    simalloc native  [--ops N --ws 400 --seed 1 --runs 1]
    simalloc options [--set KEY=VALUE,...]

Commands with their own modules (``_PLUGINS``; ``simalloc COMMAND --help``): strace, verify,
replay, record (``simalloc.trace.cli``), lab54, show, sweep, grade (``simalloc.experiments``).

``simalloc ab`` with no arguments is Phase 54's experiment: A = FAST (``HAKMEM_SS_MEM_LEAN=0``)
against B = LEAN (``HAKMEM_SS_MEM_LEAN=1``, decommit FREE) on Mixed WS=400, 3 interleaved runs
per side.  Override keys are option names or environment names (``simalloc options`` lists
them); ``--a``/``--b`` are merged into those defaults.  Every command prints the kernel in use;
``--kernel python|cython|auto`` picks it (option ``kernel``, env ``SIMALLOC_KERNEL``).

Exit codes (``simalloc COMMAND --help`` shows each command's):

== ========================================================================================
0  the command completed; for ``ab``: the experiment completed, whatever the verdict
1  a run failed: the allocator or its release policy raised, an isolated run's process died
   (``ab``, ``run``, ``bench``, ``soak``); no native allocator could be run (``native``)
2  usage or configuration error, before anything runs: a bad argument, an invalid option or
   override (one line naming the variable), an unknown workload, ``--report`` without
   matplotlib (``pip install "simalloc[plot]"``)
3  ``ab --gate``: the verdict is NEUTRAL; ``validate --gate``: the worst LEAN cell's is
4  ``ab --gate``: the verdict is NO-GO; ``validate --gate``: the worst LEAN cell's is
== ========================================================================================

A failed run outranks the verdict: ``ab --gate`` exits 1, not 4, when a run crashed.
``validate`` interrupted (Ctrl-C) exits 130; its finished runs stay in its runs file
(``--resume FILE`` continues).
``HAKMEM_*`` variables that simalloc does not model are named once per command on stderr
(``simalloc: warning: ...``) and ignored.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import warnings
from collections.abc import Sequence
from typing import Any, TextIO

from . import __version__
from .errors import AllocatorError, ConfigError, UnmodelledOptionWarning
from .events import KINDS as EVENT_KINDS
from .kernel import kernel_name

__all__ = ["CYTHON_OPS", "EXIT_FAILED", "EXIT_NEUTRAL", "EXIT_NO_GO", "EXIT_OK", "EXIT_USAGE", "main"]

#: Exit codes (module docstring).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NEUTRAL = 3
EXIT_NO_GO = 4

_EXIT_RUN = """exit status:
  0  the run completed
  1  the run failed (the allocator or its release policy raised, an isolated process died)
  2  usage or configuration error (nothing ran)"""
_EXIT_BENCH = """exit status:
  0  every run completed
  1  a run failed (the allocator or its release policy raised, an isolated process died)
  2  usage or configuration error (nothing ran)"""
_EXIT_SOAK = """exit status:
  0  the soak completed
  1  the soak failed (the allocator or its release policy raised)
  2  usage or configuration error (nothing ran)"""
_EXIT_AB = """exit status:
  0  the experiment completed, whatever the verdict (GO, NEUTRAL or NO-GO)
  1  a run failed (the allocator or its release policy raised, an isolated process died);
     the verdict printed is not a judgment of a completed experiment
  2  usage or configuration error (nothing ran), e.g. --report without matplotlib
  3  with --gate: the verdict is NEUTRAL
  4  with --gate: the verdict is NO-GO
A failed run outranks the verdict: with --gate a crash exits 1, not 4."""

#: Default ``--ops`` when the heaps run the Cython kernel (~30M ops/s: ~0.2 s per run); the
#: pure-Python kernel (~0.4M ops/s) gets the per-command default (200,000 for run and ab).
CYTHON_OPS = 5_000_000


# ---------------------------------------------------------------------------- helpers
def _info(args: argparse.Namespace, line: str) -> None:
    """Human-readable context: stdout normally, stderr when stdout carries JSON."""
    print(line, file=sys.stderr if getattr(args, "json", False) else sys.stdout, flush=True)


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _scalar(text: str) -> Any:
    from .experiments.overrides import parse_scalar  # lazy: the CLI starts without loading the experiments

    return parse_scalar(text)


def _workload_params(args: argparse.Namespace) -> dict[str, Any]:
    from .experiments.overrides import parse_assignments

    raw = parse_assignments(args.param or [], what="--param")
    return {k: _scalar(v) for k, v in raw.items()}


def _check_workload(name: str, ops: int, ws: int | None, seed: int, params: dict[str, Any]) -> str:
    """Fail fast (ConfigError) on an unknown workload or parameter; returns its description."""
    from .workloads import get_workload

    return get_workload(name, ops=ops, ws=ws, seed=seed, **params).describe()


def _base_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``--kernel`` then ``--set`` (later wins)."""
    from .experiments.overrides import merge_overrides, parse_assignments

    out: dict[str, Any] = {}
    if getattr(args, "kernel", None):
        out["kernel"] = args.kernel
    return merge_overrides(out, parse_assignments(getattr(args, "set", None) or [], what="--set"))


def _kernel_line(overrides: dict[str, Any]) -> str:
    return f"kernel: {_kernel_of(overrides)}"


def _kernel_of(overrides: dict[str, Any]) -> str:
    from .experiments.overrides import validate_overrides

    cfg = validate_overrides(overrides)  # raises ConfigError naming the variable
    return kernel_name(cfg.kernel)


def _resolve_ops(args: argparse.Namespace, overrides: dict[str, Any]) -> None:
    """Fill in ``--ops`` when not given: depends on the kernel the heaps will use."""
    if args.ops is None:
        args.ops = CYTHON_OPS if _kernel_of(overrides) == "cython" else args.python_ops


def _dump_json(doc: Any, out: TextIO) -> None:
    json.dump(doc, out, indent=2, allow_nan=False, default=str)
    out.write("\n")


def _finite(text: str) -> float:
    """argparse type: a finite float (``nan``/``inf`` are usage errors, exit 2)."""
    try:
        val = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(val) or val < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return val


def _fail(cmd: str, failed: list[str], total: int, what: str = "run") -> int:
    """Report failed runs on stderr; returns EXIT_FAILED."""
    _log(f"simalloc {cmd}: error: {len(failed)} of {total} {what}(s) failed"
         + ("; the verdict printed is not a judgment of a completed experiment" if cmd == "ab" else ""))
    for line in failed:
        _log(f"  {line}")
    return EXIT_FAILED


def _criteria(args: argparse.Namespace) -> Any:
    from .experiments.verdict import Criteria

    try:
        return Criteria(rss_target_bytes=int(args.rss_target_mb * (1 << 20)),
                        resident_metric=args.resident_metric,
                        throughput_metric=args.throughput_metric,
                        drift_tolerance_pct=args.drift_tolerance, drift_metric=args.drift_metric,
                        cv_metric=args.cv_metric)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


# ---------------------------------------------------------------------------- parser
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="simalloc",
        description="simalloc: hakmem's superslab allocator with real memory; Phase 54 experiments.",
        epilog="exit status: 0 ok, 1 a run failed, 2 usage or configuration error; "
               "ab/validate --gate: 3 NEUTRAL, 4 NO-GO (see simalloc ab --help)")
    p.add_argument("--version", action="version", version=f"simalloc {__version__}")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", required=True)

    kern = argparse.ArgumentParser(add_help=False)
    kern.add_argument("--kernel", choices=("python", "cython", "auto"), default=None,
                      help="hot-path kernel for the heaps (default: SIMALLOC_KERNEL or auto)")

    def workload_args(sp: argparse.ArgumentParser, ops: int) -> None:
        sp.add_argument("--workload", default="mixed",
                        help="mixed, churn, tiny-hot, larson or mstress (default mixed)")
        sp.add_argument("--ops", type=int, default=None,
                        help=f"timed operations (default {ops:,} with the Python kernel, "
                             f"{CYTHON_OPS:,} with Cython)")
        sp.set_defaults(python_ops=ops)
        sp.add_argument("--ws", type=int, default=None,
                        help="working set (default: the workload's own; mixed 400)")
        sp.add_argument("--seed", type=int, default=1, help="seed (default 1)")
        sp.add_argument("--param", action="append", metavar="KEY=VALUE[,...]",
                        help="extra workload parameter(s), e.g. burst_mb=24")

    def set_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--set", action="append", metavar="KEY=VALUE[,...]",
                        help="config override(s): option or env names, e.g. HAKMEM_SS_MEM_LEAN=1")

    raw = argparse.RawDescriptionHelpFormatter
    sp = sub.add_parser("run", parents=[kern], help="one measured run", epilog=_EXIT_RUN,
                        formatter_class=raw)
    workload_args(sp, 200_000)
    set_arg(sp)
    sp.add_argument("--epochs", type=int, default=10, help="timed epochs (default 10)")
    sp.add_argument("--isolate", action="store_true", help="run in a fresh process")
    sp.add_argument("--json", action="store_true", help="print the RunResult as JSON")
    sp.add_argument("--events", metavar="FILE", help="write the decision log (simalloc.events) to FILE, JSON lines")
    sp.add_argument("--break", dest="break_kind", metavar="KIND", choices=EVENT_KINDS, help="stop in pdb at "
                    "the first decision-log record of KIND (pure-Python kernel): " + ", ".join(EVENT_KINDS))

    sp = sub.add_parser("bench", parents=[kern], help="N runs of one config",
                        epilog=_EXIT_BENCH, formatter_class=raw)
    workload_args(sp, 100_000)
    set_arg(sp)
    sp.add_argument("--runs", type=int, default=3, help="runs (default 3)")
    sp.add_argument("--epochs", type=int, default=10, help="timed epochs per run (default 10)")
    sp.add_argument("--seed-stride", type=int, default=0, help="run i uses seed + i*stride (default 0)")
    sp.add_argument("--isolate", action="store_true", help="each run in a fresh process")
    sp.add_argument("--native", action="store_true", help="add native allocator rows (Mixed)")
    sp.add_argument("--json", action="store_true", help="JSON output")

    sp = sub.add_parser("soak", parents=[kern], help="one heap for a duration, per-epoch CSV",
                        epilog=_EXIT_SOAK, formatter_class=raw)
    sp.add_argument("--workload", default="mixed", help="workload (default mixed)")
    sp.add_argument("--ws", type=int, default=None,
                    help="working set (default: the workload's own; mixed 400)")
    sp.add_argument("--seed", type=int, default=1, help="seed of the first pass (default 1)")
    sp.add_argument("--param", action="append", metavar="KEY=VALUE[,...]", help="workload parameter(s)")
    set_arg(sp)
    sp.add_argument("--duration", type=_finite, default=10.0, help="seconds (default 10)")
    sp.add_argument("--epoch", type=_finite, default=1.0, help="epoch seconds (default 1)")
    sp.add_argument("--pass-ops", type=int, default=200_000, help="timed ops per workload pass")
    sp.add_argument("--chunk-ops", type=int, default=2_000, help="ops per piece (epoch granularity)")
    sp.add_argument("--csv", default="soak.csv", help="per-epoch CSV path (default soak.csv; '-' = none)")
    sp.add_argument("--json", action="store_true", help="JSON summary")

    sp = sub.add_parser("ab", parents=[kern], help="A/B with the Phase 54 verdict", epilog=_EXIT_AB,
                        formatter_class=raw)
    workload_args(sp, 200_000)
    sp.add_argument("--trace", metavar="TRACE",
                    help="A/B on a trace (memray, .rep, mtrace, ltrace, .npz): the workload becomes "
                         "its op stream (workload trace; --ops defaults to the whole trace)")
    sp.add_argument("--a", action="append", metavar="KEY=VALUE[,...]",
                    help="side A overrides, merged into HAKMEM_SS_MEM_LEAN=0")
    sp.add_argument("--b", action="append", metavar="KEY=VALUE[,...]",
                    help="side B overrides, merged into HAKMEM_SS_MEM_LEAN=1")
    sp.add_argument("--a-config", metavar="FILE", help="side A overrides from a KEY=VALUE file")
    sp.add_argument("--b-config", metavar="FILE", help="side B overrides from a KEY=VALUE file")
    sp.add_argument("--runs", type=int, default=3, help="runs per side (default 3)")
    sp.add_argument("--epochs", type=int, default=10, help="timed epochs per run (default 10)")
    sp.add_argument("--seed-stride", type=int, default=0, help="run i uses seed + i*stride (default 0)")
    sp.add_argument("--isolate", action="store_true",
                    help="each run in a fresh process (clean process peak RSS; slower)")
    sp.add_argument("--native", action="store_true", help="add native allocator rows (Mixed)")
    sp.add_argument("--json", action="store_true", help="JSON on stdout (verdict, a, b, delta, ...)")
    sp.add_argument("--report", metavar="DIR",
                    help='write DIR/report.md and PNG plots (needs matplotlib: pip install "simalloc[plot]")')
    sp.add_argument("--gate", action="store_true",
                    help="exit 3 on NEUTRAL and 4 on NO-GO (default: 0 for any verdict)")
    g = sp.add_argument_group("criteria")
    g.add_argument("--resident-metric", choices=("peak", "mean", "virtual_mean", "final", "process_peak"),
                   default="peak", help="resident figure judged (default peak)")
    g.add_argument("--throughput-metric", choices=("median", "mean"), default="median")
    g.add_argument("--cv-metric", choices=("runs", "epochs"), default="runs")
    g.add_argument("--rss-target-mb", type=_finite, default=10.0, help="GO target (default 10 MiB)")
    g.add_argument("--drift-tolerance", type=_finite, default=0.0, help="drift %% tolerated (default 0)")
    g.add_argument("--drift-metric", choices=("settled", "first_last"), default="settled",
                   help="drift judged: second half of the epochs (default) or first -> last epoch")

    sp = sub.add_parser("native", help="the Mixed loop in C under glibc / jemalloc / mimalloc / tcmalloc",
                        epilog="exit status: 0 at least one allocator ran, 1 none could be run, 2 usage error",
                        formatter_class=raw)
    sp.add_argument("--ops", type=int, default=2_000_000, help="cycles (default 2,000,000)")
    sp.add_argument("--ws", type=int, default=400)
    sp.add_argument("--seed", type=int, default=1)
    sp.add_argument("--runs", type=int, default=1)
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--trace", action="store_true",
                    help="release behaviour: each allocator traced (python-ptrace) on op-stream "
                         "files, beside the simalloc policy that models it (simalloc.trace.native_trace)")
    sp.add_argument("--stream", action="append", metavar="NAME|FILE",
                    help="with --trace: a workload (default mixed and churn) or a trace file; repeatable")
    sp.add_argument("--allocator", action="append", metavar="NAME",
                    help="with --trace: glibc, jemalloc, mimalloc, tcmalloc (default: all installed)")

    sp = sub.add_parser("options", parents=[kern], help="print every option, value and env name",
                        epilog="exit status: 0 the configuration is valid (a heap can be built with it), "
                               "2 it is not (one line naming the variable)", formatter_class=raw)
    set_arg(sp)
    from .trace.cli import add_subcommands  # strace, verify, replay, record (issue 10)

    _COMMANDS.update(add_subcommands(sub))
    from .experiments.validate_cli import add_subcommand  # simalloc validate (issue 8)

    _COMMANDS.update(add_subcommand(sub, kern, finite=_finite, criteria=_criteria,
                                    base_overrides=_base_overrides, scalar=_scalar, fail=_fail,
                                    dump_json=_dump_json, log=_log))
    for name in _PLUGINS:  # each brings its own parsers: add_subcommands(sub, kern) -> {cmd: func}
        _COMMANDS.update(importlib.import_module(name).add_subcommands(sub, kern))
    return p


#: Command modules outside this file (one concept each), in ``simalloc --help`` order.
_PLUGINS: tuple[str, ...] = (
    "simalloc.experiments.lab54_cli",
    "simalloc.experiments.show_cli",
    "simalloc.experiments.sweep_cli",
    "simalloc.experiments.grade_cli",
)


# ---------------------------------------------------------------------------- commands
def _cmd_options(args: argparse.Namespace) -> int:
    from .experiments.overrides import validate_overrides
    from .policy import make_policy

    cfg = validate_overrides(_base_overrides(args))
    kern = kernel_name(cfg.kernel)
    make_policy(cfg)  # the checks Heap() adds to the Config's: the policy loads and constructs
    print(f"kernel: {kern}")
    print(cfg.dump())
    return EXIT_OK


def _run_spec(args: argparse.Namespace, overrides: dict[str, Any]) -> Any:
    from .experiments.metrics import RunSpec

    _resolve_ops(args, overrides)
    params = _workload_params(args)
    describe = _check_workload(args.workload, args.ops, args.ws, args.seed, params)
    try:
        spec = RunSpec(workload=args.workload, ops=args.ops, ws=args.ws, seed=args.seed,
                       params=params, overrides=overrides, epochs=args.epochs,
                       events_path=getattr(args, "events", "") or "", break_kind=getattr(args, "break_kind", "") or "")
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    return spec, describe


def _cmd_run(args: argparse.Namespace) -> int:
    from .experiments.metrics import run_once
    from .experiments.overrides import format_overrides

    overrides = _base_overrides(args)
    if args.break_kind and (args.isolate or overrides.setdefault("kernel", "python") != "python"):
        raise ConfigError("--break runs pdb in this process on the pure-Python kernel: drop --isolate / --kernel")
    _info(args, _kernel_line(overrides))
    spec, describe = _run_spec(args, overrides)
    _info(args, f"workload: {describe}")
    _info(args, f"config: {format_overrides(overrides)}")
    r = run_once(spec, isolate=args.isolate)
    if args.json:
        from .experiments.ab import DESCRIPTIONS

        _dump_json({**r.as_dict(), "descriptions": dict(DESCRIPTIONS)}, sys.stdout)
        return _fail("run", [r.error], 1) if r.error else EXIT_OK
    if r.error:
        print(f"ERROR: {r.error}")
    print(f"policy: {r.policy}")
    print(f"throughput: {r.ops_per_s:,.0f} ops/s ({r.ops:,} ops in {r.seconds:.3f} s, "
          f"{len(r.epoch_ops)} epochs, epoch CV {r.epoch_cv_pct:.2f}%; warm-up {r.warmup_ops:,} ops untimed)")
    print(r.stats_line)
    print(f"residency: heap resident peak {r.peak_resident_bytes >> 10} KiB, mean "
          f"{r.mean_resident_bytes / 1024:,.0f} KiB, final {r.final_resident_bytes >> 10} KiB "
          f"(drift first->last {r.drift_pct:+.2f}%, settled {r.drift_settled_pct:+.2f}%); "
          f"lazyfree {(r.epoch_lazyfree_bytes or [0])[-1] >> 10} KiB; "
          f"whole process incl. the Python interpreter: VmRSS {r.process_rss_bytes >> 10} KiB, "
          f"VmHWM {r.process_peak_rss_bytes >> 10} KiB")
    print(f"syscalls: {r.syscalls} in the timed part ({r.syscalls_per_op:.3g}/op)")
    print(f"refaults: {r.refaults} pages written again after a release ({r.refaults_per_op:.3g}/op, "
          f"{r.refault_bytes_per_op:.3g} bytes/op); rescues (MADV_FREE, no fault): {r.rescues}")
    print(f"lean: {r.explain_lean}")
    return _fail("run", [r.error], 1) if r.error else EXIT_OK


def _cmd_bench(args: argparse.Namespace) -> int:
    from .experiments.bench import collect_native, format_bench, run_bench

    overrides = _base_overrides(args)
    _info(args, _kernel_line(overrides))
    spec, describe = _run_spec(args, overrides)
    _info(args, f"workload: {describe}")
    res = run_bench(spec, runs=args.runs, isolate=args.isolate, seed_stride=args.seed_stride, log=_log)
    if args.native:
        if args.workload == "mixed":
            res.native, res.native_note = collect_native(args.ops, args.ws or 400, args.seed, runs=args.runs,
                                                         log=_log)
        else:
            res.native_note = "native rows exist only for the mixed workload"
    if args.json:
        doc = res.as_json()
        doc["kernel"] = res.table.get("kernel")
        _dump_json(doc, sys.stdout)
    else:
        print(format_bench(res))
        print(f"lean: {res.table.get('explain_lean')}")
    return _fail("bench", res.failed_runs, len(res.runs)) if res.failed_runs else EXIT_OK


def _cmd_soak(args: argparse.Namespace) -> int:
    from .experiments.soak import SoakSpec, format_soak, run_soak, write_csv

    overrides = _base_overrides(args)
    _info(args, _kernel_line(overrides))
    params = _workload_params(args)
    describe = _check_workload(args.workload, args.pass_ops, args.ws, args.seed, params)
    try:
        spec = SoakSpec(workload=args.workload, ws=args.ws, seed=args.seed, params=params,
                        overrides=overrides, duration=args.duration, epoch=args.epoch,
                        pass_ops=args.pass_ops, chunk_ops=args.chunk_ops)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    _info(args, f"soak: {describe}; {args.duration:g} s in {args.epoch:g} s epochs")
    res = run_soak(spec)
    if args.csv and args.csv != "-":
        path = write_csv(res, args.csv)
        _info(args, f"csv: {path}")
    if args.json:
        _dump_json(res.as_json(), sys.stdout)
    else:
        print(format_soak(res))
        print(f"lean: {res.explain_lean}")
    return _fail("soak", [res.error], 1, "soak") if res.error else EXIT_OK


def _side_overrides(args: argparse.Namespace, side: str, default: dict[str, str],
                    base: dict[str, Any]) -> dict[str, Any]:
    from .experiments.overrides import (
        merge_overrides,
        parse_assignments,
        read_config_file,
        validate_overrides,
    )

    out = merge_overrides(base, default)
    cfg_file = getattr(args, f"{side}_config")
    if cfg_file:
        out = merge_overrides(out, read_config_file(cfg_file))
    out = merge_overrides(out, parse_assignments(getattr(args, side) or [], what=f"--{side}"))
    try:
        validate_overrides(out)
    except ConfigError as exc:
        raise ConfigError(f"--{side}: {exc}") from exc
    return out


def _cmd_ab(args: argparse.Namespace) -> int:
    from .experiments.ab import (
        DEFAULT_A,
        DEFAULT_B,
        AbSpec,
        format_table,
        require_matplotlib,
        run_ab,
        write_report,
    )
    from .experiments.bench import collect_native
    from .experiments.overrides import format_overrides
    from .experiments.verdict import NEUTRAL, NO_GO

    if args.report:
        require_matplotlib()  # ImportError -> exit 2 before anything runs
    base: dict[str, Any] = {"kernel": args.kernel} if args.kernel else {}
    a = _side_overrides(args, "a", DEFAULT_A, base)
    b = _side_overrides(args, "b", DEFAULT_B, base)
    criteria = _criteria(args)
    trace_params: dict[str, Any] = {}
    if args.trace:
        from .trace.replay import trace_workload_params

        trace_params, n_trace = trace_workload_params(args.trace)
        args.workload, args.ops = "trace", n_trace if args.ops is None else args.ops
    _resolve_ops(args, b)
    params = {**_workload_params(args), **trace_params}
    describe = _check_workload(args.workload, args.ops, args.ws, args.seed, params)
    if args.runs < 1 or args.epochs < 1 or args.ops < 1:
        raise ConfigError("--runs, --epochs and --ops must be >= 1")
    spec = AbSpec(workload=args.workload, ops=args.ops, ws=args.ws, seed=args.seed, params=params,
                  a=a, b=b, runs=args.runs, epochs=args.epochs, isolate=args.isolate,
                  seed_stride=args.seed_stride, criteria=criteria)
    _info(args, _kernel_line(b))
    _info(args, f"ab: {describe}")
    _info(args, f"  A: {format_overrides(a)}")
    _info(args, f"  B: {format_overrides(b)}")
    _info(args, f"  {args.runs} runs per side interleaved A B A B, {args.ops:,} ops in "
                f"{args.epochs} epochs each"
                + (", isolated processes" if args.isolate else ""))
    res = run_ab(spec, log=_log)
    if args.native:
        if args.workload == "mixed":
            res.native, res.native_note = collect_native(args.ops, args.ws or 400, args.seed,
                                                         runs=args.runs, log=_log)
        else:
            res.native_note = "native rows exist only for the mixed workload"
    if args.report:
        paths = write_report(res, args.report)
        _info(args, "report: " + ", ".join(str(p) for p in paths))
    if args.json:
        _dump_json(res.as_json(), sys.stdout)
    else:
        print(format_table(res))
    _info(args, f"lean (B): {res.b.get('explain_lean')}")
    if res.failed_runs:
        return _fail("ab", res.failed_runs, 2 * args.runs)
    if args.gate:
        return {NEUTRAL: EXIT_NEUTRAL, NO_GO: EXIT_NO_GO}.get(res.verdict.label, EXIT_OK)
    return EXIT_OK


def _cmd_native(args: argparse.Namespace) -> int:
    if args.trace:
        from .trace.native_trace import main_trace

        return main_trace(args)
    if args.stream or args.allocator:
        raise ConfigError("--stream and --allocator need --trace")
    from .native.cli import main_native

    return main_native(args)


_COMMANDS = {"run": _cmd_run, "bench": _cmd_bench, "soak": _cmd_soak, "ab": _cmd_ab,
             "native": _cmd_native, "options": _cmd_options}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``simalloc`` / ``python -m simalloc``; returns the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help / --version (0) or a usage error (2)
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    shown: set[str] = set()

    def show(message: Warning | str, category: type[Warning], *rest: Any, **kw: Any) -> None:
        if issubclass(category, UnmodelledOptionWarning):  # one line, once per command
            if str(message) not in shown:
                shown.add(str(message))
                print(f"simalloc: warning: {message}", file=sys.stderr, flush=True)
        else:
            default_show(message, category, *rest, **kw)

    with warnings.catch_warnings():
        default_show = warnings.showwarning
        warnings.simplefilter("always", UnmodelledOptionWarning)
        warnings.showwarning = show
        try:
            return _COMMANDS[args.cmd](args)
        except ConfigError as exc:
            print(f"simalloc {args.cmd}: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except ImportError as exc:
            if exc.name != "matplotlib":
                raise
            print(exc, file=sys.stderr)
            return EXIT_USAGE
        except AllocatorError as exc:  # the allocator failed outside a measured run
            print(f"simalloc {args.cmd}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
            return EXIT_FAILED
        except KeyboardInterrupt:
            print("simalloc: interrupted", file=sys.stderr)
            return 130
