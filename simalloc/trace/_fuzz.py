"""Fuzz the trace readers outside the test suite (the suite runs a few hundred Hypothesis
examples per reader; this runs as many as you like, with Hypothesis or atheris).

    python -m simalloc.trace._fuzz hypothesis --examples 20000
    python -m simalloc.trace._fuzz atheris -runs=200000      # pip install atheris (libFuzzer flags)

A run is a *crash* when a reader raises anything but ``TraceError``, when a ``TraceError``
does not start ``FILE: line N:`` / ``record N:`` / ``op N:``, or when an accepted stream fails
``validate_ops``.  Both modes print how many inputs ran and how many crashed.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections import Counter
from typing import Any

from ..errors import TraceError
from .opstream import load_npz, validate_ops
from .readers import read_ltrace, read_mtrace, read_rep

READERS: dict[str, Any] = {"rep": read_rep, "mtrace": read_mtrace, "ltrace": read_ltrace,
                           "npz": load_npz}
_LOC = re.compile(r"^.+?: (line|record|op) \d+: ")


class Stats:
    def __init__(self) -> None:
        self.ran: Counter[str] = Counter()
        self.accepted: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.crashes: list[tuple[str, bytes, str]] = []


def check_one(stats: Stats, fmt: str, data: bytes, path: str) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
    stats.ran[fmt] += 1
    try:
        s = READERS[fmt](path)
        validate_ops(s.ops, s.n_slots, path)
        stats.accepted[fmt] += 1
    except TraceError as exc:
        msg = str(exc)
        if not msg.startswith(f"{path}: ") or (fmt != "npz" and not _LOC.match(msg)):
            stats.crashes.append((fmt, data, f"TraceError without a location: {msg}"))
        else:
            stats.rejected[fmt] += 1
    except Exception as exc:  # the bug a fuzzer looks for
        stats.crashes.append((fmt, data, f"{type(exc).__name__}: {exc}"))


def report(stats: Stats) -> int:
    total = sum(stats.ran.values())
    print(f"inputs run: {total:,}; crashes: {len(stats.crashes)}")
    for fmt in READERS:
        if stats.ran[fmt]:
            print(f"  {fmt:<7} {stats.ran[fmt]:>9,} run  {stats.accepted[fmt]:>8,} accepted  "
                  f"{stats.rejected[fmt]:>8,} rejected with TraceError + location")
    for fmt, data, why in stats.crashes[:5]:
        print(f"  CRASH {fmt}: {why}\n    input: {data[:200]!r}")
    return 1 if stats.crashes else 0


def run_hypothesis(examples: int) -> int:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    stats = Stats()
    d = tempfile.mkdtemp(prefix="simalloc-fuzz-")
    tokens = {
        "rep": ["a", "r", "f", "x", "0", "1", "2", "3", "-1", "7", "100", "99999999999999", "\n",
                " ", "2040", "0x10", "4 4 4 1\n", "10\n2\n3\n1\n"],
        "mtrace": ["= Start", "= End", "+", "-", "<", ">", "!", "0x10", "0x20", "0x30", "(nil)",
                   "0x8", "-0x8", "@ ./t:[0x1]", "@ [0x2]", "\n", " ", "zz", "0xffffffffffffffffff"],
        "ltrace": ["malloc(", "free(", "realloc(", "calloc(", ")", " = ", "0x10", "0x20", "0", "16",
                   "-3", ", ", "<void>", " <unfinished ...>", "<... malloc resumed> ",
                   "[pid 3] ", "\n", "12:00:01.5 ", "+++ exited +++", "posix_memalign("],
    }
    cfg = settings(max_examples=examples, deadline=None, database=None,
                   suppress_health_check=list(HealthCheck))
    def make(fmt: str, toks: list[str]) -> Any:
        path = os.path.join(d, f"f.{fmt}")
        joiner = "" if fmt == "ltrace" else " "

        @cfg
        @given(st.one_of(st.lists(st.sampled_from(toks), max_size=60).map(joiner.join),
                         st.text(max_size=300)))
        def fuzz(text: str) -> None:
            check_one(stats, fmt, text.encode("utf-8", "surrogatepass"), path)

        return fuzz

    for fmt, toks in tokens.items():
        make(fmt, toks)()
    path = os.path.join(d, "f.npz")

    @cfg
    @given(st.binary(max_size=400))
    def fuzz_npz(data: bytes) -> None:
        check_one(stats, "npz", b"PK\x03\x04" + data, path)

    fuzz_npz()
    return report(stats)


def run_atheris(argv: list[str]) -> int:
    import atheris

    stats = Stats()
    d = tempfile.mkdtemp(prefix="simalloc-atheris-")
    fmts = list(READERS)
    paths = {f: os.path.join(d, f"f.{f}") for f in fmts}

    runs = next((int(a.split("=", 1)[1]) for a in argv if a.startswith("-runs=")), 0)
    seen = [0]

    def one(data: bytes) -> None:
        seen[0] += 1
        if data:
            fmt = fmts[data[0] % len(fmts)]
            check_one(stats, fmt, data[1:], paths[fmt])
            if stats.crashes:
                report(stats)
                raise RuntimeError(stats.crashes[-1][2])
        if seen[0] == runs or seen[0] % 100_000 == 0:  # libFuzzer exits without atexit hooks
            report(stats)
            sys.stdout.flush()

    for fn in (read_rep, read_mtrace, read_ltrace, load_npz, validate_ops):
        atheris.instrument_func(fn)  # coverage feedback from the readers themselves
    from . import opstream

    atheris.instrument_func(opstream.events_to_stream)
    atheris.Setup([sys.argv[0], *argv], one)
    atheris.Fuzz()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("hypothesis", "atheris"):
        print(__doc__)
        return 2
    if argv[0] == "hypothesis":
        n = int(argv[argv.index("--examples") + 1]) if "--examples" in argv else 2000
        return run_hypothesis(n)
    return run_atheris(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
