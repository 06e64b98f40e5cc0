"""``simalloc native --trace``: how real allocators give memory back, beside their simalloc models.

For each op stream (``mixed`` and ``churn`` by default, any workload name, or a trace file)
one file is written (:mod:`.opfile`), and both consumers read that file:

* **the real allocators** -- the native driver (:mod:`simalloc.native`, ``driver file PATH
  WARMUP``) under glibc, jemalloc,
  mimalloc and tcmalloc (``LD_PRELOAD``; missing libraries are skipped with a note):

  - throughput from untraced runs (median of ``runs``; only the op loops are timed);
  - one run under the python-ptrace tracer (:func:`.ptracer.trace_command`):
    the release calls of the timed part -- ``munmap``, ``madvise`` by advice (DONTNEED, FREE,
    REMOVE), ``brk`` shrinks, ``mremap`` shrinks -- and the bytes they gave back, cut exactly
    at the driver's ``lseek(-1, 0x5A11D000 + k)`` marks; every memory syscall in that window;
  - resident memory of the driver process itself (a C program, no interpreter), as the driver
    reads it from ``/proc/self/status`` in the traced run: peak = ``VmHWM`` over the whole
    run, final = ``VmRSS`` right after the last op, base = ``VmRSS`` before the first op (the
    C library, the allocator's code and its first arena: not the stream's);

* **the simalloc policy that models each one** (:data:`MODELS`; ``presets``) -- the same rows
  through ``Heap.replay`` on a fresh heap: warm-up, then the timed part in one batch call;
  throughput of that call; peak = ``heap.resident()["resident_peak_bytes"]`` (the heap's own
  pages, exact, whole run), final = its ``resident_bytes``; release calls from ``heap.stats()``
  deltas over the timed part (``munmap_total``, ``madvise_by_advice``); bytes released =
  ``decommitted_bytes`` (DONTNEED + FREE) plus unmapped superslabs and Mid regions at their
  size (direct-mapped large blocks are not counted: no stream here has any).

Idle phases (the ``idle`` stream: :mod:`simalloc.workloads.idle`; ``OP_IDLE`` rows): the driver
sleeps through each gap, so the real allocators' background threads act (jemalloc's only with
``MALLOC_CONF=background_thread:true`` in the environment, which is passed through; tcmalloc's
background release); the models' virtual clock jumps over it and background presets tick at
their wake-ups.  The ``idle`` stream has :data:`IDLE_STREAM_PARAMS` (5 rounds, each a burst then
a 2 s gap: 10 s of real sleep per driver run) whatever ``--ops`` says.

Read the two side by side with care: the native peak is a whole process (base included), the
model's is the heap's own pages; the models' clocks are virtual (ops x ``ns_per_op`` + idle
time), the driver's real, so time-driven rules (jemalloc's decay, mimalloc's purge delay) see
the same idle gaps but not the same busy time.  Debian's ``libtcmalloc_minimal.so.4`` is gperftools'
tcmalloc, so its first model is ``gperftools-scavenge``; ``tcmalloc-release`` models Google's
newer tcmalloc and is listed second.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..native import (
    ALLOCATOR_LIBS,
    NativeUnavailable,
    compile_driver,
    file_args,
    find_allocators,
    parse_line,
    run_file,
)
from ..native.opfile import StreamFile, build_stream, stream_file

__all__ = ["DEFAULT_STREAMS", "IDLE_STREAM_PARAMS", "MARK_BASE", "MODELS", "SideRow", "format_side_by_side",
           "main_trace", "make_stream", "model_row", "native_row", "side_by_side"]

#: ``lseek`` offset base of the driver's phase marks (driver.c, file mode).
MARK_BASE = 0x5A11D000
#: Streams run when none is named.
DEFAULT_STREAMS = ("mixed", "churn")
#: Parameters of the ``idle`` stream (it sleeps for real in the driver: keep it short).
IDLE_STREAM_PARAMS: dict[str, Any] = {"rounds": 5, "idle_s": 2.0}
#: Allocator -> the simalloc presets that model its release rule (first = closest).
MODELS: dict[str, tuple[str, ...]] = {
    "glibc": ("glibc-trim",),
    "jemalloc": ("jemalloc-decay",),
    "mimalloc": ("mimalloc-purge",),
    "tcmalloc": ("gperftools-scavenge", "tcmalloc-release"),
}
#: Debian packages of the preloaded allocators (for the "not installed" note).
PACKAGES = {"jemalloc": "libjemalloc2", "mimalloc": "libmimalloc2.0",
            "tcmalloc": "libtcmalloc-minimal4"}
#: Release kinds always shown (others appear when some row has them).
SHOWN = ("munmap", "madvise:DONTNEED", "madvise:FREE", "brk-shrink")
_MEMORY_CALLS = ("mmap", "munmap", "mremap", "madvise", "brk", "mprotect")


@dataclass
class SideRow:
    """One line of the table: a real allocator (``kind="native"``) or a model of one
    (``kind="model"``, ``models`` = the allocator) on one stream."""

    stream: str
    label: str
    kind: str
    models: str = ""
    ops: int = 0
    ops_per_s: float = 0.0
    peak_resident_bytes: int = 0
    final_resident_bytes: int = 0
    base_resident_bytes: int | None = None
    release_calls: dict[str, int] = field(default_factory=dict)
    release_bytes: int = 0
    memory_syscalls: int = 0
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def per_op(self, kind: str) -> float:
        return self.release_calls.get(kind, 0) / self.ops if self.ops else 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["release_calls_per_op"] = {k: self.per_op(k) for k in self.release_calls}
        d["memory_syscalls_per_op"] = self.memory_syscalls / self.ops if self.ops else 0.0
        return d


# ---------------------------------------------------------------------------- native
def _window(tr: Any) -> tuple[float, float]:
    """Times of the driver's marks 1 (timed part starts) and 2 (it ends)."""
    marks = {v: t for t, _tid, v in tr.markers}
    if 1 not in marks or 2 not in marks:
        raise NativeUnavailable(f"the traced driver left no phase marks (saw {sorted(marks)})")
    return marks[1], marks[2]


def native_row(allocator: str, sf: StreamFile, runs: int = 1, *,
               interval: float = 0.01) -> SideRow:
    """The real ``allocator`` on ``sf``: throughput from ``runs`` untraced runs, release calls,
    bytes and resident memory from one traced run (see the module docstring)."""
    from .ptracer import trace_command

    row = SideRow(sf.name, allocator, "native", ops=sf.ops)
    plain = run_file(allocator, sf.path, sf.warmup_ops, runs=max(1, runs))
    row.ops_per_s = statistics.median(r["ops_per_s"] for r in plain)
    lib = plain[0]["library"]
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    if lib:
        env["LD_PRELOAD"] = lib
    with tempfile.TemporaryDirectory(prefix="simalloc-native-") as d:
        out = Path(d) / "line.txt"
        tr = trace_command([str(compile_driver()), *file_args(sf.path, sf.warmup_ops, out)],
                           interval=interval, env=env, marker_base=MARK_BASE)
        if tr.exit_code != 0 or not out.is_file():
            raise NativeUnavailable(f"{allocator}: the traced driver exited with {tr.exit_code}")
        line = parse_line(out.read_text())
    t1, t2 = _window(tr)
    calls: dict[str, int] = {}
    released = 0
    for t, kind, nbytes in tr.release_events():
        if t1 < t < t2:
            calls[kind] = calls.get(kind, 0) + 1
            released += nbytes
    row.release_calls = calls
    row.release_bytes = released
    row.memory_syscalls = sum(1 for ev in tr.events if t1 < ev[0] < t2 and ev[4] in _MEMORY_CALLS)
    row.peak_resident_bytes = int(line["max_rss_kb"]) * 1024
    row.final_resident_bytes = int(line["rss_kb"]) * 1024
    row.base_resident_bytes = int(line["base_rss_kb"]) * 1024
    rs = tr.rss_summary()
    row.extra = {"library": lib, "untraced_runs": plain, "traced_line": line,
                 "traced_seconds": tr.wall_seconds, "traced_syscalls": sum(tr.counts.values()),
                 "peak_rss_anon_sampled": rs["peak_rss_anon"],
                 "untraced_peak_resident_bytes": int(plain[0]["max_rss_kb"]) * 1024}
    return row


# ---------------------------------------------------------------------------- models
def model_row(preset: str, allocator: str, sf: StreamFile, rows: np.ndarray) -> SideRow:
    """``preset`` (a simalloc policy name) on the same rows through ``Heap.replay``."""
    from ..constants import MID_REGION_SIZE
    from ..heap import Heap

    row = SideRow(sf.name, preset, "model", models=allocator, ops=sf.ops)
    heap = Heap(policy=preset)
    try:
        slots = np.zeros(max(sf.n_slots, 1), dtype=np.uint64)
        heap.replay(rows[:sf.warmup_ops], slots)
        st0 = heap.stats()
        timed = np.ascontiguousarray(rows[sf.warmup_ops:])
        t0 = time.perf_counter()
        heap.replay(timed, slots)
        dt = time.perf_counter() - t0
        st = heap.stats()
        res = heap.resident()
        ss_size = 1 << int(heap.config.ss_lg)
        row.extra = {"policy": st["policy"], "kernel": st["kernel"], "seconds": dt,
                     "virtual_s": (heap.clock().virtual_ns or 0) / 1e9}
    finally:
        heap.close()
    row.ops_per_s = sf.ops / dt if dt > 0 else 0.0
    row.peak_resident_bytes = int(res["resident_peak_bytes"])
    row.final_resident_bytes = int(res["resident_bytes"])
    calls = {"munmap": int(st["munmap_total"]) - int(st0["munmap_total"])}
    for adv in ("DONTNEED", "FREE"):
        calls[f"madvise:{adv}"] = (int(st["madvise_by_advice"].get(adv, 0))
                                   - int(st0["madvise_by_advice"].get(adv, 0)))
    row.release_calls = {k: v for k, v in calls.items() if v}
    row.release_bytes = (int(st["decommitted_bytes"]) - int(st0["decommitted_bytes"])
                         + (int(st["ss_unmapped"]) - int(st0["ss_unmapped"])) * ss_size
                         + (int(st["mid_regions_unmapped"]) - int(st0["mid_regions_unmapped"]))
                         * MID_REGION_SIZE)
    row.memory_syscalls = int(st["syscalls"]) - int(st0["syscalls"])
    return row


# ---------------------------------------------------------------------------- driver
def make_stream(spec: str, directory: str | os.PathLike[str], *, ops: int, ws: int | None = None,
                seed: int = 1) -> StreamFile:
    """The op-stream file of ``spec``: a workload name (:func:`~simalloc.native.opfile.build_stream`)
    or a trace file in any format :func:`.readers.read_trace` reads (validated; no warm-up)."""
    from ..workloads import WORKLOADS
    from .readers import read_trace

    if spec in WORKLOADS:
        params = IDLE_STREAM_PARAMS if spec == "idle" else None
        return build_stream(spec, directory, ops=ops, ws=ws, seed=seed, params=params)
    if not os.path.isfile(spec):
        raise ConfigError(f"stream {spec!r}: neither a workload ({', '.join(WORKLOADS)}) nor "
                          f"a trace file")
    stream = read_trace(spec)
    s = stream.summary()
    return stream_file(Path(spec).name, stream.ops, directory, n_slots=stream.n_slots,
                       describe=f"{stream.fmt} trace {spec}: {s['mallocs']:,} mallocs, "
                                f"{s['frees']:,} frees, {s['reallocs']:,} reallocs, peak live "
                                f"payload {s['peak_live_payload']:,} B")


def side_by_side(streams: list[StreamFile], allocators: list[str] | None = None, *,
                 runs: int = 1, models: bool = True,
                 log: Callable[[str], None] = lambda s: None) -> tuple[list[SideRow], list[str]]:
    """Every installed allocator (or those named) on every stream, each followed by its
    models.  Returns ``(rows, notes)``; a missing library or a failed run is a note (failed
    runs also give a row with ``error``)."""
    found = find_allocators()
    names = list(allocators or ALLOCATOR_LIBS)
    notes: list[str] = []
    for n in names:
        if n not in ALLOCATOR_LIBS:
            raise ConfigError(f"unknown allocator {n!r}: expected one of {', '.join(ALLOCATOR_LIBS)}")
        if n not in found:
            notes.append(f"{n}: not installed (looked for {', '.join(ALLOCATOR_LIBS[n])}; "
                         f"Debian: apt-get install {PACKAGES.get(n, '?')}) -- skipped")
    todo = [n for n in names if n in found]
    out: list[SideRow] = []
    for sf in streams:
        rows = sf.rows()
        for name in todo:
            log(f"[native --trace] {sf.name}: {name} ({sf.ops:,} timed ops) ...")
            try:
                out.append(native_row(name, sf, runs))
            except NativeUnavailable as exc:
                notes.append(f"{sf.name} / {name}: {exc}")
                out.append(SideRow(sf.name, name, "native", ops=sf.ops, error=str(exc)))
            for preset in MODELS.get(name, ()) if models else ():
                log(f"[native --trace] {sf.name}: model {preset} ...")
                try:
                    out.append(model_row(preset, name, sf, rows))
                except ConfigError:
                    raise
                except Exception as exc:  # a model that fails is a result, not a crash
                    msg = f"{type(exc).__name__}: {exc}"
                    notes.append(f"{sf.name} / {preset}: {msg}")
                    out.append(SideRow(sf.name, preset, "model", models=name, ops=sf.ops, error=msg))
    return out, notes


def _kib(b: int | None) -> str:
    return "-" if b is None else f"{b / 1024:,.0f}"


def _rate(x: float) -> str:
    return "0" if x == 0 else f"{x:.2e}"


def _bytes(b: int) -> str:
    if b >= 1 << 20:
        return f"{b / (1 << 20):,.1f} MiB"
    return f"{b / 1024:,.0f} KiB" if b else "0"


def format_side_by_side(streams: list[StreamFile], rows: list[SideRow], notes: list[str]) -> str:
    """The table: per stream, each allocator then its models (see the module docstring)."""
    kinds = list(SHOWN) + sorted({k for r in rows for k in r.release_calls} - set(SHOWN))
    heads = [k.replace("madvise:", "") for k in kinds]
    out: list[str] = []
    for sf in streams:
        out.append(f"stream {sf.name}: {sf.describe}")
        idle = f" and {sf.idle_rows:,} idle rows" if sf.idle_rows else ""
        out.append(f"  {sf.ops:,} timed ops{idle} after {sf.warmup_ops:,} warm-up ops, {sf.n_slots:,} "
                   f"slots; one file, {sf.path.name}, read by the driver and by Heap.replay")
        out.append(f"  {'':<24} {'':>6} {'ops/s':>12} {'peak KiB':>9} {'final KiB':>9} "
                   f"{'base KiB':>8}  " + " ".join(f"{h + '/op':>12}" for h in heads)
                   + f" {'released':>10} {'memsys/op':>10}")
        for r in rows:
            if r.stream != sf.name:
                continue
            name = r.label if r.kind == "native" else f"  ~ {r.label}"
            if r.error:
                out.append(f"  {name:<24} {r.kind:>6}  ERROR {r.error}")
                continue
            out.append(f"  {name:<24} {r.kind:>6} {r.ops_per_s:>12,.0f} "
                       f"{_kib(r.peak_resident_bytes):>9} {_kib(r.final_resident_bytes):>9} "
                       f"{_kib(r.base_resident_bytes):>8}  "
                       + " ".join(f"{_rate(r.per_op(k)):>12}" for k in kinds)
                       + f" {_bytes(r.release_bytes):>10} "
                       f"{_rate(r.memory_syscalls / r.ops if r.ops else 0.0):>10}")
        out.append("")
    out.append("native: ops/s untraced (median); resident of the driver process (VmHWM over the "
               "run, VmRSS after the last op, VmRSS before the first op = base); release calls "
               "and bytes traced over the timed part.")
    out.append("model (~): the same rows through Heap.replay under the simalloc preset; "
               "resident = the heap's own pages (exact peak, final); calls from heap.stats() "
               "over the timed part; memsys = every memory syscall (model: mmap+munmap+madvise).")
    out.extend(f"note: {n}" for n in notes)
    return "\n".join(out)


def main_trace(args: argparse.Namespace) -> int:
    """``simalloc native --trace`` (``args``: ``stream, allocator, ops, ws, seed, runs, json,
    no_models``).  Exit 0 if some allocator ran, 1 if none, 2 on a usage error or when the
    tracer cannot run here."""
    from .syscalls import PTRACE_MISSING, TraceUnavailable

    def err(msg: str) -> None:
        print(f"simalloc native: error: {msg}", file=sys.stderr, flush=True)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if importlib.util.find_spec("ptrace") is None:
        err(PTRACE_MISSING)
        return 2
    if args.runs < 1 or args.ops < 1:
        raise ConfigError("--runs and --ops must be >= 1")
    try:
        compile_driver()
    except NativeUnavailable as exc:
        err(str(exc))
        return 1
    with tempfile.TemporaryDirectory(prefix="simalloc-streams-") as d:
        streams = [make_stream(s, d, ops=args.ops,
                               ws=args.ws if s == "mixed" else None, seed=args.seed)
                   for s in (args.stream or DEFAULT_STREAMS)]
        try:
            rows, notes = side_by_side(streams, args.allocator, runs=args.runs,
                                       models=not getattr(args, "no_models", False), log=log)
        except TraceUnavailable as exc:
            err(str(exc))
            return 2
        if args.json:
            json.dump({"streams": [s.as_dict() for s in streams],
                       "rows": [r.as_dict() for r in rows], "notes": notes},
                      sys.stdout, indent=2, default=str)
            sys.stdout.write("\n")
        else:
            print(format_side_by_side(streams, rows, notes))
    ok = any(r.kind == "native" and not r.error for r in rows)
    if not ok:
        err("no native allocator could be run")
    return 0 if ok else 1
