"""The trace subcommands of ``simalloc``: strace, verify, replay, record.

::

    simalloc strace  [--json F] [--csv F] [--png F] [--interval S] [--all] -- CMD [ARGS...]
    simalloc verify  [--policy NAME ...] [--workload churn --ops N --ws W --seed S]
                     [--param K=V,...] [--set K=V,...] [--kernel K] [--json]
    simalloc replay  TRACE [--format F] [--policy NAME ...] [--set K=V,...] [--lenient]
                     [--save OUT.npz] [--json] [--png F]
    simalloc record  [-o FILE] [--policy NAME ...] [--png F] [--pymalloc] -- python script.py

:func:`add_subcommands` adds the four parsers to ``simalloc``'s subparsers (each with
``set_defaults(func=...)``) and returns ``{name: func}`` for the command table.

Exit codes: 0 ok; 1 a failure (the traced command failed, a MISMATCH, a replay error);
2 usage or bad input (a malformed trace: the TraceError message on stderr; a missing optional
dependency says which extra to install).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError, TraceError

__all__ = ["add_subcommands"]

Command = Callable[[argparse.Namespace], int]


def _err(cmd: str, msg: str) -> None:
    print(f"simalloc {cmd}: error: {msg}", file=sys.stderr, flush=True)


def _guard(name: str, fn: Command) -> Command:
    """TraceError / ConfigError -> one line on stderr, exit 2; TraceUnavailable -> exit 2."""

    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        from .ptracer import TraceUnavailable

        try:
            return fn(args)
        except (TraceError, ConfigError, TraceUnavailable) as exc:
            _err(name, str(exc))
            return 2

    return run


def _out(args: argparse.Namespace, line: str) -> None:
    print(line, file=sys.stderr if getattr(args, "json", False) else sys.stdout, flush=True)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from ..experiments.overrides import parse_assignments

    out: dict[str, Any] = {}
    if getattr(args, "kernel", None):
        out["kernel"] = args.kernel
    out.update(parse_assignments(getattr(args, "set", None) or [], what="--set"))
    return out


def _policies(args: argparse.Namespace, default: tuple[str, ...]) -> list[tuple[str, dict[str, Any]]]:
    from ..experiments.overrides import merge_overrides
    from ..policy import policy_overrides

    base = _overrides(args)
    names = args.policy or list(default)
    return [(n, merge_overrides(policy_overrides(n), base)) for n in names]


def _scalar(text: str) -> Any:
    from ..experiments.overrides import parse_scalar  # lazy: the CLI starts without loading the experiments

    return parse_scalar(text)


def _command(args: argparse.Namespace) -> list[str]:
    cmd = list(args.command or [])
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise ConfigError("no command given: simalloc " + args.trace_cmd + " [options] -- CMD [ARGS...]")
    return cmd


# ---------------------------------------------------------------------------- strace
def _cmd_strace(args: argparse.Namespace) -> int:
    from .ptracer import format_summary, import_pyplot, trace_command, write_csv, write_json, write_png

    cmd = _command(args)
    if args.png:
        import_pyplot()  # fail before running anything if matplotlib is missing
    if args.interval <= 0:
        raise ConfigError("--interval must be > 0")
    tr = trace_command(cmd, interval=args.interval)
    print(format_summary(tr, all_syscalls=args.all), file=sys.stderr if args.json == "-" else sys.stdout)
    for what, path, writer in (("json", args.json, write_json), ("csv", args.csv, write_csv),
                               ("png", args.png, write_png)):
        if path == "-" and what == "json":
            json.dump(tr.as_dict(), sys.stdout)
            sys.stdout.write("\n")
        elif path:
            p = writer(tr, path)
            print(f"{what}: {p}", file=sys.stderr)
    if tr.exit_code not in (0, None):
        _err("strace", f"the traced command exited with {tr.exit_code}")
        return 1
    if args.compare_strace:
        from .ptracer import compare_with_strace, format_comparison, real_strace

        print("running the same command under strace -f -C ...", file=sys.stderr, flush=True)
        rows = compare_with_strace(tr, real_strace(cmd))
        print(format_comparison(rows), file=sys.stderr if args.json == "-" else sys.stdout)
        if not all(ok for *_x, ok in rows):
            return 1
    return 0


# ---------------------------------------------------------------------------- verify
def _cmd_verify(args: argparse.Namespace) -> int:
    from ..experiments.overrides import parse_assignments
    from .verify import DEFAULT_PARAMS, DEFAULT_POLICIES, format_verify, run_verify

    params: dict[str, Any] = {}
    custom = any(x is not None for x in (args.workload, args.ops, args.ws, args.param))
    workload = args.workload or "churn"
    if not custom:
        params = dict(DEFAULT_PARAMS)
    params.update({k: _scalar(v) for k, v in parse_assignments(args.param or [], what="--param").items()})
    ops = args.ops if args.ops is not None else (1 if workload == "churn" and "rounds" in params
                                                 else 200_000)
    from ..workloads import get_workload

    get_workload(workload, ops=ops, ws=args.ws, seed=args.seed, **params)  # ConfigError early
    pols = _policies(args, DEFAULT_POLICIES)
    results = run_verify(pols, workload=workload, ops=ops, ws=args.ws, seed=args.seed,
                         params=params, epochs=args.epochs,
                         log=lambda s: print(s, file=sys.stderr, flush=True))
    if args.json:
        json.dump({"ok": all(r.ok for r in results), "results": [r.as_dict() for r in results]},
                  sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(format_verify(results))
    return 0 if all(r.ok for r in results) else 1


# ---------------------------------------------------------------------------- replay
def _cmd_replay(args: argparse.Namespace) -> int:
    from .readers import read_trace
    from .replay import format_replay, replay_stream

    if args.png:
        from .ptracer import import_pyplot

        import_pyplot()  # fail before the work if matplotlib is missing
    stream = read_trace(args.trace, args.format, strict=not args.lenient)
    if args.save:
        p = stream.save(args.save)
        _out(args, f"saved: {p} ({len(stream):,} ops, {p.stat().st_size:,} bytes)")
    results: list[tuple[str, dict[str, Any]]] = []
    for label, ov in _policies(args, ("fast",)):
        try:
            results.append((label, replay_stream(stream, ov, samples=args.samples,
                                                 timeline=bool(args.png))))
        except ConfigError:
            raise
        except Exception as exc:  # an allocator error on a validated stream is a failure
            results.append((label, {"error": f"{type(exc).__name__}: {exc}"}))
    if args.json:
        doc = {"trace": {"source": stream.source, "format": stream.fmt, **stream.summary(),
                         "meta": stream.meta},
               "results": {label: {k: v for k, v in r.items() if k != "timeline"}
                           for label, r in results}}
        json.dump(doc, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(format_replay(stream, results))
    if args.png:
        from .record import plot_replay

        ok = [(label, r) for label, r in results if "error" not in r]
        _out(args, f"png: {plot_replay(stream, ok, None, args.png)}")
    return 1 if any("error" in r for _l, r in results) else 0


# ---------------------------------------------------------------------------- record
def _cmd_record(args: argparse.Namespace) -> int:
    from .record import record

    cmd = _command(args)
    return record(cmd, out=args.output, policies=_policies(args, ("fast", "lean-dontneed")),
                  png=args.png, pymalloc=args.pymalloc, samples=args.samples,
                  as_json=args.json, keep_capture=args.keep_capture)


# ---------------------------------------------------------------------------- parsers
def add_subcommands(sub: Any) -> dict[str, Command]:
    """Add ``strace``, ``verify``, ``replay`` and ``record`` to ``simalloc``'s subparsers;
    returns ``{name: function}`` (each parser also has ``set_defaults(func=...)``)."""
    table: dict[str, Command] = {}

    def reg(name: str, sp: argparse.ArgumentParser, fn: Command) -> None:
        g = _guard(name, fn)
        sp.set_defaults(func=g, trace_cmd=name)
        table[name] = g

    def policy_arg(sp: argparse.ArgumentParser, default: str) -> None:
        sp.add_argument("--policy", action="append", metavar="NAME",
                        help="release policy, repeatable: fast, lean (=lean-free), lean-free, "
                             "lean-dontneed, slab-purge, auto, a preset (glibc-trim, "
                             f"jemalloc-decay, ...) or module:Class (default {default})")
        sp.add_argument("--set", action="append", metavar="KEY=VALUE[,...]",
                        help="config override(s) on top of the policy, e.g. HAKMEM_SS_MEM_LEAN_TARGET_MB=4")
        sp.add_argument("--kernel", choices=("python", "cython", "auto"), default=None,
                        help="hot-path kernel (default: SIMALLOC_KERNEL or auto)")

    sp = sub.add_parser("strace", help="trace a command's memory syscalls (python-ptrace)",
                        description="Run CMD under a python-ptrace tracer (children and threads "
                                    "followed): mmap, munmap, mremap, madvise by advice, brk, "
                                    "mprotect with arguments, result and time, plus VmRSS / "
                                    "RssAnon samples.  Needs the trace extra.")
    sp.add_argument("--json", metavar="FILE", help="full timeline as JSON ('-' = stdout)")
    sp.add_argument("--csv", metavar="FILE", help="full timeline as CSV")
    sp.add_argument("--png", metavar="FILE", help="resident-over-time plot, release calls marked "
                                                  "(needs matplotlib: the plot extra)")
    sp.add_argument("--interval", type=float, default=0.01, help="RSS sampling period, s (0.01)")
    sp.add_argument("--all", action="store_true", help="list every syscall, not only memory ones")
    sp.add_argument("--compare-strace", action="store_true",
                    help="then run the command under real `strace -f -C` and compare the counts per "
                         "syscall and madvise advice (exit 1 if they differ)")
    sp.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    reg("strace", sp, _cmd_strace)

    sp = sub.add_parser("verify", help="check the OS-layer counters against traced syscalls",
                        description="Run a workload in a traced child under each policy and "
                                    "compare heap.stats()'s OS counters with the syscalls the "
                                    "kernel saw.  Default: churn (16 MiB bursts, 2 rounds) under "
                                    "fast, lean-free, lean-dontneed and slab-purge.")
    policy_arg(sp, "the four above")
    sp.add_argument("--workload", default=None, help="mixed, churn, tiny-hot, larson, mstress")
    sp.add_argument("--ops", type=int, default=None, help="timed operations")
    sp.add_argument("--ws", type=int, default=None, help="working set")
    sp.add_argument("--seed", type=int, default=1)
    sp.add_argument("--param", action="append", metavar="KEY=VALUE[,...]", help="workload parameter(s)")
    sp.add_argument("--epochs", type=int, default=4, help="pieces of the timed part (4)")
    sp.add_argument("--json", action="store_true", help="JSON on stdout")
    reg("verify", sp, _cmd_verify)

    sp = sub.add_parser("replay", help="replay a real allocation trace (memray, .rep, mtrace, ltrace, .npz)",
                        description="Read TRACE, validate it completely, then replay it through "
                                    "Heap.replay once per --policy: mdriver's figures (ops, util "
                                    "= peak live payload / peak heap resident, throughput) plus "
                                    "resident bytes, syscalls/op and page faults/op.")
    sp.add_argument("trace", help="trace file")
    sp.add_argument("--format", choices=("rep", "mtrace", "ltrace", "memray", "npz"), default=None,
                    help="input format (default: from the name or content)")
    policy_arg(sp, "fast")
    sp.add_argument("--lenient", action="store_true",
                    help="repair instead of failing: drop frees of unknown addresses, free a "
                         "live block whose address is handed out again (lossy tracers)")
    sp.add_argument("--save", metavar="OUT.npz", help="also write the converted op stream")
    sp.add_argument("--samples", type=int, default=64, help="resident samples per replay (64; from the "
                                                                  "heap's page model)")
    sp.add_argument("--png", metavar="FILE", help="heap resident over the replay (plot extra)")
    sp.add_argument("--json", action="store_true", help="JSON on stdout")
    reg("replay", sp, _cmd_replay)

    sp = sub.add_parser("record", help="capture a Python program with memray and replay it",
                        description="Run the command under `memray run --native` (with "
                                    "PYTHONMALLOC=malloc unless --pymalloc, so every object "
                                    "allocation is a malloc), convert the capture to an op "
                                    "stream, replay it per --policy, and show the real process's "
                                    "RSS timeline beside the replayed heap's resident memory.  "
                                    "Needs the trace extra.")
    sp.add_argument("-o", "--output", default="simalloc-record.npz",
                    help="op-stream file to write (default simalloc-record.npz)")
    policy_arg(sp, "fast and lean-dontneed")
    sp.add_argument("--png", metavar="FILE", help="RSS of the real process vs resident of the replays")
    sp.add_argument("--pymalloc", action="store_true",
                    help="keep pymalloc (then only its arenas and big blocks are seen)")
    sp.add_argument("--keep-capture", action="store_true", help="keep memray's .bin beside -o")
    sp.add_argument("--samples", type=int, default=64, help="resident samples per replay (64; from the "
                                                                  "heap's page model)")
    sp.add_argument("--json", action="store_true", help="JSON on stdout")
    sp.add_argument("command", nargs=argparse.REMAINDER, help="-- python script.py [ARGS...]")
    reg("record", sp, _cmd_record)
    return table
