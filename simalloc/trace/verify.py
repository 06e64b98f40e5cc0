"""``simalloc verify``: the OS layer's counters against the syscalls the kernel really saw.

For each policy a child interpreter runs the workload on a fresh heap under the syscall tracer
(:mod:`.ptracer`), prints its ``heap.stats()`` (to a file) and closes the heap; the child marks
its phases with ``lseek(-1, MARKER + k, 0)`` so the timeline is cut exactly where the stats
were taken (see :mod:`._verify_child`).

**Which syscalls are the heap's.**  The interpreter maps memory too (pymalloc arenas, numpy
buffers, thread stacks), so every call is classified:

* an ``mmap`` is the heap's when a later memory call *of the same thread* (within its next 16)
  is ``madvise(MADV_NOHUGEPAGE)`` inside the new mapping -- the OS layer marks every mapping it
  makes that way, right after mapping it (``OSLayer.reserve``); nothing in CPython, glibc or
  numpy uses NOHUGEPAGE (numpy asks for HUGEPAGE).  The interpreter may map memory of its own
  in between (a new pymalloc arena), so the mark is matched by address, not by adjacency;
* an alignment retry -- ``mmap`` of the superslab size, ``munmap`` of exactly that mapping,
  then a heap ``mmap`` of twice the size whose NOHUGEPAGE window has the first size -- is the
  heap's, all three calls;
* a ``madvise`` is the heap's when its range lies inside a live heap mapping; a ``munmap``
  when it is exactly a live heap mapping (``mm.close()`` unmaps the whole mapping).

Checked, between the marks around the run: ``mmap_total``, ``munmap_total``, every advice of
``madvise_by_advice``, ``decommitted_bytes`` (bytes passed to DONTNEED or FREE),
``mapped_bytes`` (the heap mappings live at the stats mark) and ``syscalls``; plus that no
heap call failed, and that ``close()`` unmapped every live heap mapping.  The verification
needs the NOHUGEPAGE mark, so ``nohugepage`` must stay on.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..policy import BUILTIN_POLICIES
from ._verify_child import MARKER_BASE
from .ptracer import ADVICE_NAMES, SyscallTrace, trace_command

__all__ = ["DEFAULT_PARAMS", "DEFAULT_POLICIES", "VerifyResult", "classify", "format_verify",
           "run_verify", "verify_one"]

#: ``simalloc verify`` with no arguments: these four policies on churn with small bursts.
DEFAULT_POLICIES = ("fast", "lean-free", "lean-dontneed", "slab-purge")
#: Churn sized so LEAN retires superslabs (16 MiB bursts > the 10 MiB budget) and it is quick.
DEFAULT_PARAMS: dict[str, Any] = {"burst_mb": 16, "idle_ratio": 1.0, "rounds": 2}


@dataclass
class VerifyResult:
    """One policy's verification: ``rows`` of ``(counter, heap, kernel, ok)``."""

    label: str
    overrides: dict[str, Any]
    rows: list[tuple[str, Any, Any, bool]] = field(default_factory=list)
    other: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    policy: str = ""
    workload: str = ""
    traced_syscalls: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and all(r[3] for r in self.rows)

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "overrides": self.overrides, "policy": self.policy,
                "workload": self.workload, "ok": self.ok, "error": self.error,
                "rows": [{"counter": c, "heap": h, "kernel": k, "match": ok}
                         for c, h, k, ok in self.rows],
                "not_the_heaps": self.other, "traced_syscalls": self.traced_syscalls,
                "seconds": self.seconds}


#: Memory calls of one thread searched back for the mmap a NOHUGEPAGE mark belongs to: the
#: interpreter may map memory of its own (a pymalloc arena, a ctypes buffer) between the heap's
#: mmap and its mark.
_WINDOW = 16


def _mapping_marked(evs: list[Any], hist: list[int], heap: list[bool], args: Any) -> int:
    """Index of the latest unclaimed ``mmap`` of this thread (in ``hist``) whose mapping holds
    the NOHUGEPAGE range ``args``, or -1."""
    for j in reversed(hist):
        e = evs[j]
        if e[4] == "mmap" and not heap[j]:
            base, length = e[6], e[5][1]
            if base >= 0 and base <= args[0] and args[0] + args[1] <= base + length:
                return j
    return -1


def classify(tr: SyscallTrace, pid: int | None = None) -> dict[str, Any]:
    """Split the traced memory calls of ``pid`` (default: the root process) into the heap's
    and the rest, per phase (marks 0-1: ``run``; 1-2: ``close``).  Returns counts per phase."""
    pid = tr.root_pid if pid is None else pid
    marks = {v: t for t, _tid, v in tr.markers}
    if not {0, 1, 2} <= set(marks):
        raise RuntimeError(f"the child did not reach its phase marks (saw {sorted(marks)}); "
                           f"exit code {tr.exit_code}")
    evs = [e for e in tr.events if e[2] == pid]
    heap = [False] * len(evs)
    live: dict[int, int] = {}  # base -> length of live heap mappings
    last: dict[int, list[int]] = defaultdict(list)  # tid -> indices of its recent memory calls
    live_at: dict[int, int] = {}

    def inside(a: int, n: int) -> bool:
        return any(b <= a and a + n <= b + ln for b, ln in live.items())

    mark_iter = [(marks[1], 1), (marks[2], 2)]
    mi = 0
    for i, (t, _dt, _pid, tid, name, args, res) in enumerate(evs):
        while mi < len(mark_iter) and t > mark_iter[mi][0]:
            live_at[mark_iter[mi][1]] = sum(live.values())
            mi += 1
        hist = last[tid]
        if name == "madvise":
            adv = ADVICE_NAMES.get(args[2], str(args[2]))
            j = _mapping_marked(evs, hist, heap, args) if adv == "NOHUGEPAGE" else -1
            if j >= 0:
                base, length = evs[j][6], evs[j][5][1]
                heap[j] = heap[i] = True
                live[base] = length
                # alignment retry: mmap(S) -> munmap(same) -> the mmap(S + align), window S
                k = hist.index(j)
                for u in reversed(hist[:k]):
                    if evs[u][4] != "munmap" or heap[u]:
                        continue
                    m1 = next((m for m in reversed(hist[:hist.index(u)]) if evs[m][4] == "mmap"
                               and evs[m][6] == evs[u][5][0] and not heap[m]), None)
                    if (m1 is not None and evs[u][5][1] == evs[m1][5][1] == args[1]
                            and length > args[1]):
                        heap[m1] = heap[u] = True
                    break
            elif inside(args[0], args[1]):
                heap[i] = True
        elif name == "munmap":
            if live.get(args[0]) == args[1] and res == 0:
                heap[i] = True
                del live[args[0]]
        hist.append(i)
        if len(hist) > _WINDOW:
            del hist[0]
    while mi < len(mark_iter):
        live_at[mark_iter[mi][1]] = sum(live.values())
        mi += 1

    def phase(t: float) -> str:
        if t < marks[0]:
            return "before"
        if t < marks[1]:
            return "run"
        if t < marks[2]:
            return "close"
        return "after"

    out: dict[str, Any] = {p: {"mmap": 0, "munmap": 0, "madvise": defaultdict(int),
                               "decommitted_bytes": 0, "errors": 0, "other": defaultdict(int)}
                           for p in ("before", "run", "close", "after")}
    for i, (t, _dt, _pid, _tid, name, args, res) in enumerate(evs):
        ph = out[phase(t)]
        if not heap[i]:
            ph["other"][name] += 1
            continue
        if -4096 < res < 0:
            ph["errors"] += 1
            continue
        if name == "madvise":
            adv = ADVICE_NAMES.get(args[2], str(args[2]))
            ph["madvise"][adv] += 1
            if adv in ("DONTNEED", "FREE"):
                ph["decommitted_bytes"] += args[1]
        elif name in ("mmap", "munmap"):
            ph[name] += 1
    out["mapped_at_stats"] = live_at.get(1, 0)
    out["mapped_after_close"] = live_at.get(2, 0)
    out["live_after_close"] = len(live)
    return out


def _rows(stats: Mapping[str, Any], c: Mapping[str, Any]) -> list[tuple[str, Any, Any, bool]]:
    run, close = c["run"], c["close"]
    rows: list[tuple[str, Any, Any, bool]] = []

    def add(name: str, heap_v: Any, kern_v: Any) -> None:
        rows.append((name, heap_v, kern_v, heap_v == kern_v))

    add("mmap_total", int(stats["mmap_total"]), run["mmap"])
    add("munmap_total", int(stats["munmap_total"]), run["munmap"])
    advices = sorted(set(stats["madvise_by_advice"]) | set(run["madvise"]))
    for adv in advices:
        add(f"madvise {adv}", int(stats["madvise_by_advice"].get(adv, 0)), run["madvise"].get(adv, 0))
    add("decommitted_bytes", int(stats["decommitted_bytes"]), run["decommitted_bytes"])
    add("mapped_bytes", int(stats["mapped_bytes"]), c["mapped_at_stats"])
    kern_total = run["mmap"] + run["munmap"] + sum(run["madvise"].values())
    add("syscalls", int(stats["syscalls"]), kern_total)
    add("failed heap calls", 0, run["errors"] + close["errors"])
    add("close(): live mappings unmapped", c["mapped_at_stats"] and "all" or "none",
        "all" if c["live_after_close"] == 0 else f"{c['live_after_close']} left")
    return rows


def verify_one(label: str, overrides: Mapping[str, Any], *, workload: str = "churn", ops: int = 1,
               ws: int | None = None, seed: int = 1, params: Mapping[str, Any] | None = None,
               epochs: int = 4, python: str | None = None) -> VerifyResult:
    """Run one policy's child under the tracer and compare (see the module docstring)."""
    ov = dict(overrides)
    res = VerifyResult(label, ov)
    for k in ("nohugepage", "SIMALLOC_NOHUGEPAGE"):
        if str(ov.get(k, "1")).strip().lower() in ("0", "false", "no", "off"):
            raise ConfigError("verify tells the heap's mappings apart by their MADV_NOHUGEPAGE "
                              "mark: nohugepage must stay on")
    fd, out = tempfile.mkstemp(prefix="simalloc-verify-", suffix=".json")
    os.close(fd)
    argv = [python or sys.executable, "-m", "simalloc.trace._verify_child", "--out", out,
            "--workload", workload, "--ops", str(ops), "--seed", str(seed),
            "--params", json.dumps(dict(params or {})), "--overrides", json.dumps(ov),
            "--epochs", str(epochs)]
    if ws is not None:
        argv += ["--ws", str(ws)]
    env = dict(os.environ)
    env.pop("SIMALLOC_NOHUGEPAGE", None)
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = here + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        tr = trace_command(argv, env=env, marker_base=MARKER_BASE, interval=1.0)
        res.traced_syscalls = sum(tr.counts.values())
        res.seconds = tr.wall_seconds
        try:
            with open(out, encoding="utf-8") as fh:
                doc = json.load(fh)
        except (OSError, ValueError):
            res.error = f"the child wrote no stats (exit code {tr.exit_code})"
            return res
        stats = doc["stats"]
        res.policy = str(stats.get("policy", ""))
        res.workload = str(doc.get("workload", ""))
        c = classify(tr)
        res.rows = _rows(stats, c)
        other: dict[str, int] = defaultdict(int)
        for ph in ("run", "close"):
            for k, v in c[ph]["other"].items():
                other[k] += v
        res.other = dict(other)
    except RuntimeError as exc:
        res.error = str(exc)
    finally:
        try:
            os.unlink(out)
        except OSError:
            pass
    return res


def run_verify(policies: list[tuple[str, dict[str, Any]]] | None = None, *,
               log: Callable[[str], None] | None = None, **kw: Any) -> list[VerifyResult]:
    """:func:`verify_one` for each ``(label, overrides)``; default: :data:`DEFAULT_POLICIES`
    on churn with :data:`DEFAULT_PARAMS`."""
    if policies is None:
        policies = [(p, dict(BUILTIN_POLICIES[p])) for p in DEFAULT_POLICIES]
        kw.setdefault("params", dict(DEFAULT_PARAMS))
    out = []
    for label, ov in policies:
        if log:
            log(f"[verify] {label}: tracing a child running {kw.get('workload', 'churn')} ...")
        out.append(verify_one(label, ov, **kw))
    return out


def format_verify(results: list[VerifyResult]) -> str:
    lines: list[str] = []
    for r in results:
        head = f"== {r.label}: {r.policy or '?'}"
        lines.append(head + (f"  ({r.traced_syscalls:,} syscalls traced in {r.seconds:.2f} s)"
                             if r.traced_syscalls else ""))
        if r.error:
            lines.append(f"   ERROR: {r.error}")
            continue
        lines.append(f"   {'counter':<34} {'heap.stats()':>16} {'kernel saw':>16}  result")
        for name, h, k, ok in r.rows:
            lines.append(f"   {name:<34} {h!s:>16} {k!s:>16}  {'MATCH' if ok else 'MISMATCH'}")
        if r.other:
            lines.append("   not the heap's (interpreter, numpy): "
                         + ", ".join(f"{k} {v}" for k, v in sorted(r.other.items())))
    n_ok = sum(r.ok for r in results)
    lines.append(f"verify: {n_ok}/{len(results)} policies MATCH on every counter"
                 + ("" if n_ok == len(results) else " -- MISMATCH"))
    return "\n".join(lines)
