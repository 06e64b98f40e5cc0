"""``simalloc validate``: the subcommand's parser and command (wired into :mod:`simalloc.cli`).

::

    simalloc validate [--cells LIST] [--ops N|WORKLOAD=N,...] [--duration S [--epoch S]]
                      [--epochs N] [--runs N] [--seed S] [--param WORKLOAD:KEY=VALUE]
                      [--set KEY=VALUE] [--kernel K] [--isolate] [--json FILE] [--report DIR]
                      [--out FILE] [--resume FILE] [--gate] [criteria options as for ab]

:func:`add_subcommand` adds the parser to ``simalloc``'s subparsers and returns
``{"validate": command}``.  The command line's shared helpers (the finite-number argparse type,
the criteria, ``--kernel``/``--set`` overrides, the failed-run report, JSON output) are passed in
by :mod:`simalloc.cli`, so there is one implementation of each and no import back up.  Usage
errors raise :class:`~simalloc.errors.ConfigError` (the command line exits 2);
``--report`` without matplotlib raises ``ImportError`` before anything runs (exit 2).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigError

__all__ = ["EXIT_INTERRUPTED", "EXIT_TEXT", "add_subcommand", "parse_ops", "parse_params"]

#: Exit code of an interrupted validation (the shell's 128 + SIGINT).
EXIT_INTERRUPTED = 130

EXIT_TEXT = """exit status:
  0    every cell completed, whatever the verdicts (GO, NEUTRAL or NO-GO)
  1    a run failed (the allocator or its release policy raised, an isolated process died);
       the scorecard is printed, the failed runs are named on stderr
  2    usage or configuration error (nothing ran), e.g. --report without matplotlib, an
       unknown cell, a --resume file made with other settings
  3    with --gate: the worst LEAN cell's verdict is NEUTRAL
  4    with --gate: the worst LEAN cell's verdict is NO-GO
  130  interrupted: the finished runs are kept in the runs file (--out); --resume FILE
       continues with the same options
A failed run outranks the verdicts: with --gate a crash exits 1, not 4."""

_DESCRIPTION = (
    "Phase 54's full validation (its Next Steps): Mixed WS=400, Mixed WS=4000 and heavy churn x "
    "FAST (HAKMEM_SS_MEM_LEAN=0), LEAN+FREE and LEAN+DONTNEED (HAKMEM_SS_MEM_LEAN=1, "
    "HAKMEM_SS_MEM_LEAN_DECOMMIT=FREE|DONTNEED), each a soak-like measured run. Prints the "
    "scorecard -- exact heap resident peak / mean / final, LazyFree, throughput mean and CV, drift "
    "(first->last and settled), syscalls/op, lean_decommit / lean_retire -- and each LEAN cell's "
    "GO / NEUTRAL / NO-GO against its workload's FAST cell, every criterion with its measured "
    "value, threshold and PASS / FAIL / N/A. Cells: mixed-400/fast ... churn/lean-dontneed. "
    "Every finished run is appended at once to a runs file (--out), so an interrupted validation "
    "keeps what it measured (--resume FILE continues it).")


def parse_ops(texts: list[str] | None) -> dict[str, int]:
    """``--ops N`` (every workload) and ``--ops WORKLOAD=N,...`` -> ops per workload key."""
    from .validate import WORKLOADS

    out: dict[str, int] = {}
    for text in texts or []:
        for item in text.split(","):
            item = item.strip()
            if not item:
                continue
            key, sep, value = item.rpartition("=")
            key = key.strip()
            if sep and key not in WORKLOADS:
                raise ConfigError(f"--ops {item!r}: workloads are {', '.join(WORKLOADS)}")
            try:
                n = int(value.strip().replace("_", ""))
            except ValueError:
                raise ConfigError(f"--ops {item!r}: expected N or WORKLOAD=N") from None
            out.update(dict.fromkeys([key] if sep else list(WORKLOADS), n))
    return out


def parse_params(texts: list[str] | None, scalar: Callable[[str], Any]) -> dict[str, dict[str, Any]]:
    """``--param churn:burst_mb=24`` -> ``{"churn": {"burst_mb": scalar("24")}}``."""
    from .overrides import parse_assignments
    from .validate import WORKLOADS

    out: dict[str, dict[str, Any]] = {}
    for key, value in parse_assignments(texts or [], what="--param").items():
        wkey, sep, name = key.partition(":")
        if not sep or wkey not in WORKLOADS or not name:
            raise ConfigError(f"--param {key}={value}: expected WORKLOAD:KEY=VALUE with WORKLOAD one "
                              f"of {', '.join(WORKLOADS)} (e.g. churn:burst_mb=24)")
        out.setdefault(wkey, {})[name] = scalar(value)
    return out


def add_subcommand(sub: Any, kern: argparse.ArgumentParser, *,
                   finite: Callable[[str], float],
                   criteria: Callable[[argparse.Namespace], Any],
                   base_overrides: Callable[[argparse.Namespace], dict[str, Any]],
                   scalar: Callable[[str], Any],
                   fail: Callable[..., int],
                   dump_json: Callable[[Any, Any], None],
                   log: Callable[[str], None]) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add ``validate`` to ``simalloc``'s subparsers (``kern``: the ``--kernel`` parent parser);
    the keyword arguments are :mod:`simalloc.cli`'s helpers.  Returns ``{"validate": command}``."""
    sp = sub.add_parser("validate", parents=[kern], epilog=EXIT_TEXT, description=_DESCRIPTION,
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        help="Phase 54's full validation: Mixed WS=400 / WS=4000 / churn x FAST / "
                             "LEAN+FREE / LEAN+DONTNEED, scorecard and verdicts")
    sp.add_argument("--cells", action="append", metavar="LIST",
                    help="cells to run, comma-separated: names (churn/lean-free), globs (*/lean-*), "
                         "a workload (mixed-400, mixed-4000, churn) or a policy (fast, lean-free, "
                         "lean-dontneed); a LEAN cell brings its FAST baseline (default: all nine)")
    sp.add_argument("--ops", action="append", metavar="N|WORKLOAD=N[,...]",
                    help="timed ops per run (with --duration: per workload pass), for every workload "
                         "or per workload (default with the Cython kernel: mixed-400 and mixed-4000 "
                         "100,000,000, churn 11,000,000 = 20 bursts; the Python kernel ~70x fewer)")
    sp.add_argument("--duration", type=finite, default=None, metavar="SECONDS",
                    help="run each cell for SECONDS by time, as simalloc soak does (the report "
                         "recommends 1800-3600); default: by operations, a few minutes in all")
    sp.add_argument("--epoch", type=finite, default=None, metavar="SECONDS",
                    help="epoch length with --duration (default min(5, duration/10))")
    sp.add_argument("--epochs", type=int, default=10,
                    help="timed epochs per run by operations (default 10)")
    sp.add_argument("--runs", type=int, default=1,
                    help="runs per cell, interleaved across the policies (default 1)")
    sp.add_argument("--seed", type=int, default=1, help="seed (default 1)")
    sp.add_argument("--param", action="append", metavar="WORKLOAD:KEY=VALUE[,...]",
                    help="workload parameter for one workload, e.g. churn:burst_mb=24")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE[,...]",
                    help="config override(s) for every cell, under the cell's policy "
                         "(e.g. HAKMEM_SS_MEM_LEAN_TARGET_MB=4)")
    sp.add_argument("--isolate", action="store_true",
                    help="each run in a fresh process (a clean process VmHWM; slower)")
    sp.add_argument("--json", metavar="FILE", help="write the whole scorecard as JSON to FILE ('-': stdout)")
    sp.add_argument("--report", metavar="DIR",
                    help='write DIR/report.md and PNG plots (needs matplotlib: pip install "simalloc[plot]")')
    sp.add_argument("--out", metavar="FILE",
                    help="runs file (JSON lines, one per finished run); default next to --json "
                         "(X.runs.jsonl), else DIR/runs.jsonl of --report, else "
                         "validate-<timestamp>/runs.jsonl")
    sp.add_argument("--resume", metavar="FILE",
                    help="continue an interrupted validation: skip the runs FILE holds (made with "
                         "the same options) and append the rest to it")
    sp.add_argument("--gate", action="store_true",
                    help="exit 3 if the worst LEAN cell is NEUTRAL, 4 if NO-GO (default: 0 for any verdict)")
    g = sp.add_argument_group("criteria (phase54-memory-lean-results.md; A = FAST, B = the LEAN cell)")
    g.add_argument("--resident-metric", choices=("peak", "mean", "virtual_mean", "final", "process_peak"),
                   default="peak", help="resident figure judged (default peak)")
    g.add_argument("--throughput-metric", choices=("median", "mean"), default="median")
    g.add_argument("--cv-metric", choices=("runs", "epochs"), default="epochs",
                   help="CV judged: over a run's epochs, as a soak does (default), or over runs")
    g.add_argument("--rss-target-mb", type=finite, default=10.0, help="GO target (default 10 MiB)")
    g.add_argument("--drift-tolerance", type=finite, default=0.0, help="drift %% tolerated (default 0)")
    g.add_argument("--drift-metric", choices=("settled", "first_last"), default="settled",
                   help="drift judged: second half of the epochs (default) or first -> last epoch")

    def command(args: argparse.Namespace) -> int:
        from .ab import require_matplotlib
        from .validate import Interrupted, ValidateSpec, default_out, run_validate, select_cells
        from .validate_report import format_scorecard, write_report
        from .verdict import NEUTRAL, NO_GO

        if args.report:
            require_matplotlib()  # ImportError -> exit 2 before anything runs
        info = sys.stderr if args.json == "-" else sys.stdout

        def say(line: str) -> None:
            print(line, file=info, flush=True)

        cells, added = select_cells(args.cells)
        spec = ValidateSpec(cells=tuple(cells), ops=parse_ops(args.ops), duration=args.duration,
                            epoch=args.epoch, epochs=args.epochs, runs=args.runs, seed=args.seed,
                            overrides=base_overrides(args), params=parse_params(args.param, scalar),
                            isolate=args.isolate, criteria=criteria(args))
        describe = spec.check()  # every cell's config and workload, before anything runs
        out = Path(args.out) if args.out else default_out(args.json, args.report, args.resume)
        n_runs = len(cells) * spec.runs
        say(f"kernel: {spec.kernel()}")
        say(f"validate: {len(cells)} cells x {spec.runs} run(s), "
            + (f"{spec.duration:g} s each (~{n_runs * spec.duration / 60:.1f} min in all)"
               if spec.duration is not None else "by operations")
            + f"; runs file {out}" + (f"; {', '.join(added)} added as baselines" if added else ""))
        for wkey, text in describe.items():
            say(f"  {wkey}: {text}")
        try:
            res = run_validate(spec, out=out, resume=args.resume, log=log, added_baselines=added)
        except Interrupted as exc:
            log(f"simalloc validate: {exc}")
            log(f"  continue with: simalloc validate --resume {exc.out} (and the same options)")
            return EXIT_INTERRUPTED
        if args.report:
            paths = write_report(res, args.report)
            say("report: " + ", ".join(str(p) for p in paths))
        if args.json == "-":
            dump_json(res.as_json(), sys.stdout)
        elif args.json:
            path = Path(args.json)
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("w", encoding="utf-8") as f:
                dump_json(res.as_json(), f)
            say(f"json: {path}")
        say(format_scorecard(res))
        if res.failed_runs:
            return int(fail("validate", res.failed_runs, n_runs))
        if args.gate:
            return {NEUTRAL: 3, NO_GO: 4}.get(res.worst or "", 0)
        return 0

    return {"validate": command}
