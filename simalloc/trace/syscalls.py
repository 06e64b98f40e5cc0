"""The record of a traced run: what ``simalloc strace`` saw, and the tables it is read with.

:class:`SyscallTrace` holds every watched memory syscall (arguments, result, time), every
syscall's count, the resident-memory samples and the phase markers, and derives from them the
figures the reports print (madvise by advice, bytes mapped / released, release events, peak and
final resident).  :data:`WATCH_ARGS` names the arguments of the recorded calls,
:data:`ADVICE_NAMES` the madvise advices, :data:`RELEASE` the calls that give memory back.

Made by the tracer (:mod:`.ptracer`), read by the reports (:mod:`.strace_report`) and by
``simalloc verify`` / ``simalloc native --trace``.  Imports no python-ptrace.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from ..errors import AllocatorError

__all__ = ["ADVICE_NAMES", "PTRACE_MISSING", "RELEASE", "WATCH_ARGS", "SyscallTrace",
           "TraceUnavailable"]

PTRACE_MISSING = ("python-ptrace is not installed: install the trace extra "
                  "(pip install 'simalloc[trace]', or pip install python-ptrace; GPL-2.0)")

#: madvise advice values (include/uapi/asm-generic/mman-common.h) -> names.
ADVICE_NAMES: dict[int, str] = {
    0: "NORMAL", 1: "RANDOM", 2: "SEQUENTIAL", 3: "WILLNEED", 4: "DONTNEED", 8: "FREE",
    9: "REMOVE", 10: "DONTFORK", 11: "DOFORK", 12: "MERGEABLE", 13: "UNMERGEABLE",
    14: "HUGEPAGE", 15: "NOHUGEPAGE", 16: "DONTDUMP", 17: "DODUMP", 18: "WIPEONFORK",
    19: "KEEPONFORK", 20: "COLD", 21: "PAGEOUT", 22: "POPULATE_READ", 23: "POPULATE_WRITE",
    24: "DONTNEED_LOCKED", 25: "COLLAPSE", 100: "HWPOISON", 101: "SOFT_OFFLINE",
    102: "GUARD_INSTALL", 103: "GUARD_REMOVE",
}
#: Syscalls recorded with their arguments, and the argument names of each.
WATCH_ARGS: dict[str, tuple[str, ...]] = {
    "mmap": ("addr", "length", "prot", "flags", "fd", "offset"),
    "munmap": ("addr", "length"),
    "mremap": ("old_addr", "old_size", "new_size", "flags", "new_addr"),
    "madvise": ("addr", "length", "advice"),
    "brk": ("addr",),
    "mprotect": ("addr", "length", "prot"),
    "execve": ("filename", "argv", "envp"),  # recorded so brk is followed across an exec
}
#: Calls that give memory back (marked on the PNG).
RELEASE = ("munmap", "madvise:DONTNEED", "madvise:FREE", "madvise:REMOVE", "brk-shrink",
           "mremap-shrink")


class TraceUnavailable(AllocatorError):
    """The syscall tracer cannot run here (python-ptrace missing, ptrace not permitted)."""



@dataclass
class SyscallTrace:
    """What :func:`trace_command` saw.

    ``events``: one tuple per watched syscall ``(t, dt, pid, tid, name, args, result)`` with ``t``
    seconds since the start (entry stop), ``dt`` seconds to the exit stop, ``args`` a tuple of
    ints (see :data:`WATCH_ARGS`) and ``result`` the signed return value (``-errno`` on
    error); ``counts`` / ``errors`` / ``seconds``: every syscall by name; ``rss``: samples
    ``(t, pid, vm_rss_bytes, rss_anon_bytes)``; ``markers``: ``(t, pid, value)`` of
    ``lseek(-1, value, 0)`` calls, which programs under test use to mark phases."""

    argv: list[str]
    events: list[tuple[float, float, int, int, str, tuple[int, ...], int]] = field(
        default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    rss: list[tuple[float, int, int, int]] = field(default_factory=list)
    markers: list[tuple[float, int, int]] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    root_pid: int = 0
    exit_code: int | None = None
    wall_seconds: float = 0.0
    method: str = "PTRACE_GET_SYSCALL_INFO"

    # ------------------------------------------------------------------ derived figures
    def advice_counts(self) -> dict[str, dict[str, int]]:
        """madvise calls by advice name: ``{name: {calls, errors, bytes}}`` (bytes of calls
        that succeeded)."""
        out: dict[str, dict[str, int]] = {}
        for _t, _dt, _pid, _tid, name, args, res in self.events:
            if name != "madvise":
                continue
            adv = ADVICE_NAMES.get(args[2], str(args[2]))
            d = out.setdefault(adv, {"calls": 0, "errors": 0, "bytes": 0})
            d["calls"] += 1
            if res < 0:
                d["errors"] += 1
            else:
                d["bytes"] += args[1]
        return out

    def byte_totals(self) -> dict[str, int]:
        """Bytes mapped (mmap), unmapped (munmap), remapped (mremap growth / shrink), brk
        growth / shrink, mprotect'ed -- successful calls only."""
        out = Counter({"mapped": 0, "unmapped": 0, "mremap_grown": 0, "mremap_shrunk": 0,
                       "brk_grown": 0, "brk_shrunk": 0, "mprotected": 0})
        brk: dict[int, int] = {}
        for _t, _dt, pid, _tid, name, args, res in self.events:
            if name == "execve":
                brk.pop(pid, None)
                continue
            if res < 0 and name != "brk":
                continue
            if name == "mmap":
                out["mapped"] += args[1]
            elif name == "munmap":
                out["unmapped"] += args[1]
            elif name == "mremap":
                d = args[2] - args[1]
                out["mremap_grown" if d > 0 else "mremap_shrunk"] += abs(d)
            elif name == "mprotect":
                out["mprotected"] += args[1]
            elif name == "brk":
                prev = brk.get(pid)
                if prev is not None and res != prev:
                    out["brk_grown" if res > prev else "brk_shrunk"] += abs(res - prev)
                brk[pid] = res
        return dict(out)

    def release_events(self) -> list[tuple[float, str, int]]:
        """``(t, kind, bytes)`` of every call that gave memory back (see :data:`RELEASE`)."""
        out: list[tuple[float, str, int]] = []
        brk: dict[int, int] = {}
        for t, _dt, pid, _tid, name, args, res in self.events:
            if name == "execve":
                brk.pop(pid, None)
                continue
            if name == "brk":
                prev = brk.get(pid)
                if prev is not None and res < prev:
                    out.append((t, "brk-shrink", prev - res))
                brk[pid] = res
                continue
            if res < 0:
                continue
            if name == "munmap":
                out.append((t, "munmap", args[1]))
            elif name == "madvise":
                adv = ADVICE_NAMES.get(args[2], str(args[2]))
                if f"madvise:{adv}" in RELEASE:
                    out.append((t, f"madvise:{adv}", args[1]))
            elif name == "mremap" and args[2] < args[1]:
                out.append((t, "mremap-shrink", args[1] - args[2]))
        return out

    def rss_summary(self) -> dict[str, int]:
        """Peak and last VmRSS / RssAnon of the root process (bytes)."""
        mine = [r for r in self.rss if r[1] == self.root_pid] or self.rss
        if not mine:
            return {"peak_vm_rss": 0, "final_vm_rss": 0, "peak_rss_anon": 0, "final_rss_anon": 0,
                    "samples": 0}
        return {"peak_vm_rss": max(r[2] for r in mine), "final_vm_rss": mine[-1][2],
                "peak_rss_anon": max(r[3] for r in mine), "final_rss_anon": mine[-1][3],
                "samples": len(mine)}

    def as_dict(self, events: bool = True) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "command": self.argv, "exit_code": self.exit_code, "wall_seconds": self.wall_seconds,
            "method": self.method, "pids": self.pids, "root_pid": self.root_pid,
            "counts": dict(self.counts), "errors": dict(self.errors),
            "syscall_seconds": dict(self.seconds),
            "madvise_by_advice": self.advice_counts(), "bytes": self.byte_totals(),
            "rss_summary": self.rss_summary(),
        }
        if events:
            doc["events"] = [
                {"t": t, "dt": dt, "pid": pid, "tid": tid, "syscall": name,
                 "args": dict(zip(WATCH_ARGS[name], args, strict=False)),
                 **({"advice": ADVICE_NAMES.get(args[2], str(args[2]))} if name == "madvise" else {}),
                 "result": res}
                for t, dt, pid, tid, name, args, res in self.events]
            doc["rss"] = [{"t": t, "pid": pid, "vm_rss": v, "rss_anon": a}
                          for t, pid, v, a in self.rss]
            doc["markers"] = [{"t": t, "pid": pid, "value": v} for t, pid, v in self.markers]
        return doc

