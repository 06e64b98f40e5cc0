"""``simalloc strace``: trace a command's memory syscalls with python-ptrace.

The tracer starts the command with python-ptrace's ``createChild`` (fork, ``PTRACE_TRACEME``,
exec), follows every child process and thread it makes (``PTRACE_O_TRACEFORK / VFORK /
CLONE / EXEC``), and stops it at each syscall entry and exit.  At each stop it asks the kernel
for the syscall's number, arguments and result with ``PTRACE_GET_SYSCALL_INFO`` (one call; on
kernels before 5.3 it reads the registers instead).  It records every ``mmap``, ``munmap``,
``mremap``, ``madvise`` (with the advice's name), ``brk`` and ``mprotect`` with arguments,
result, the time of the entry stop and the time to the exit stop, and counts every other
syscall by name (the ``strace -c`` view: calls are counted when they return, so
``exit_group`` is not counted, and the command's own ``execve`` is).  A sampler thread reads ``VmRSS`` and ``RssAnon``
from ``/proc/PID/status`` of each traced process every ``interval`` seconds.

Cost: python-ptrace has no seccomp filter, so the child stops at every syscall (about 20-40 us
per syscall here); page faults are not syscalls and cost nothing extra.

Errors: :class:`TraceUnavailable` when python-ptrace is missing (install the ``trace`` extra)
or when the kernel refuses ``ptrace`` -- the message says why (Yama's ``ptrace_scope``, a
container without ``CAP_SYS_PTRACE`` or with a seccomp profile blocking ptrace, or this
process already being traced by strace/gdb) and how to allow it.

python-ptrace is GPL-2.0; it is imported only here, only when a trace is run.
"""

from __future__ import annotations

import csv
import ctypes
import errno
import json
import os
import re
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import AllocatorError

__all__ = ["ADVICE_NAMES", "PTRACE_MISSING", "SyscallTrace", "TraceUnavailable", "format_summary",
           "ptrace_diagnosis", "trace_command", "write_csv", "write_json", "write_png"]

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

_PTRACE_GET_SYSCALL_INFO = 0x420E
_PTRACE_SYSCALL = 24
_INFO_ENTRY, _INFO_EXIT = 1, 2
_O_EXITKILL = 0x100000
_WALL = 0x40000000
_TRACEME_FAILED = 121  # exit status of a forked child whose PTRACE_TRACEME was refused


class TraceUnavailable(AllocatorError):
    """The syscall tracer cannot run here (python-ptrace missing, ptrace not permitted)."""


class _SyscallInfo(ctypes.Structure):
    _fields_ = [("op", ctypes.c_uint8), ("pad", ctypes.c_uint8 * 3), ("arch", ctypes.c_uint32),
                ("ip", ctypes.c_uint64), ("sp", ctypes.c_uint64),
                ("nr", ctypes.c_uint64), ("args", ctypes.c_uint64 * 6), ("ret_data", ctypes.c_uint32),
                ("_pad2", ctypes.c_uint32)]


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


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
    seconds: Counter[str] = field(default_factory=Counter)
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


# ---------------------------------------------------------------------------- permission
def ptrace_diagnosis(err: int | None) -> str:
    """Why ``ptrace`` failed here and how to allow it (one paragraph)."""
    reasons: list[str] = []
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("TracerPid:") and line.split()[1] != "0":
                    reasons.append(f"this process is already being traced (TracerPid "
                                   f"{line.split()[1]}: strace, gdb or a debugger); a process "
                                   f"has only one tracer -- run simalloc strace outside it")
    except OSError:
        pass
    try:
        scope = Path("/proc/sys/kernel/yama/ptrace_scope").read_text().strip()
    except OSError:
        scope = None
    if scope == "3":
        reasons.append("Yama ptrace_scope is 3 (ptrace disabled until reboot); boot with "
                       "kernel.yama.ptrace_scope=1 (sysctl.d) to allow tracing your own children")
    elif scope == "2":
        reasons.append("Yama ptrace_scope is 2 (admin only): run as root / with CAP_SYS_PTRACE, "
                       "or `sudo sysctl kernel.yama.ptrace_scope=1`")
    if not reasons:
        reasons.append("the kernel refused ptrace: in a container, start it with "
                       "`--cap-add=SYS_PTRACE` (and `--security-opt seccomp=unconfined` on "
                       "Docker before 19.03 / kernels before 4.8); under Yama, "
                       "`sudo sysctl kernel.yama.ptrace_scope=1`")
    what = os.strerror(err) if err else "not permitted"
    return f"ptrace is not permitted here ({what}): " + "; ".join(reasons)


# ---------------------------------------------------------------------------- sampler
class _Sampler(threading.Thread):
    def __init__(self, trace: SyscallTrace, procs: set[int], t0: float, interval: float) -> None:
        super().__init__(daemon=True, name="simalloc-rss-sampler")
        self.trace, self.procs, self.t0, self.interval = trace, procs, t0, interval
        self.stop = threading.Event()

    def sample(self) -> None:
        for pid in list(self.procs):
            try:
                with open(f"/proc/{pid}/status", encoding="ascii") as fh:
                    rss = anon = 0
                    for line in fh:
                        if line.startswith("VmRSS:"):
                            rss = int(line.split()[1]) * 1024
                        elif line.startswith("RssAnon:"):
                            anon = int(line.split()[1]) * 1024
                            break
            except (OSError, ValueError):
                continue
            if rss:
                self.trace.rss.append((time.perf_counter() - self.t0, pid, rss, anon))

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            self.sample()


# ---------------------------------------------------------------------------- the tracer
def _import_ptrace() -> Any:
    try:
        from ptrace.binding import func as pfunc
        from ptrace.debugger.child import createChild
        from ptrace.syscall import SYSCALL_NAMES
    except ImportError as exc:
        raise TraceUnavailable(PTRACE_MISSING) from exc
    return pfunc, createChild, SYSCALL_NAMES


def trace_command(argv: list[str], *, interval: float = 0.01, env: dict[str, str] | None = None,
                  marker_base: int | None = None) -> SyscallTrace:
    """Run ``argv`` under the tracer until every traced process has exited; return what was
    seen.  ``marker_base``: ``lseek(-1, marker_base + k, 0)`` calls are recorded as markers
    ``k`` (0 <= k < 1000)."""
    if not argv:
        raise ValueError("no command to trace")
    pfunc, create_child, syscall_names = _import_ptrace()
    # The hot loop (two stops per syscall) calls ptrace(2) directly: python-ptrace's wrapper
    # costs a few microseconds per call and raises on ESRCH, which a task killed between two
    # stops (exit_group from a sibling thread) legitimately gives.
    info = _SyscallInfo()
    info_addr, info_size = ctypes.addressof(info), ctypes.sizeof(info)
    libc = ctypes.CDLL(None, use_errno=True)
    raw = libc.ptrace
    raw.argtypes = (ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p)
    raw.restype = ctypes.c_long

    def ptrace_syscall(tid: int, sig: int) -> None:
        if raw(_PTRACE_SYSCALL, tid, None, sig or None) == -1:
            e = ctypes.get_errno()
            if e != errno.ESRCH:
                raise OSError(e, f"ptrace(PTRACE_SYSCALL, {tid}): {os.strerror(e)}")

    def get_info(tid: int) -> bool:
        if raw(_PTRACE_GET_SYSCALL_INFO, tid, info_size, info_addr) == -1:
            e = ctypes.get_errno()
            if e == errno.ESRCH:
                return False
            raise OSError(e, f"ptrace(PTRACE_GET_SYSCALL_INFO, {tid}): {os.strerror(e)}")
        return True
    names: dict[int, str] = dict(syscall_names)
    watch = {nr: nm for nr, nm in names.items() if nm in WATCH_ARGS}
    nargs = {nr: len(WATCH_ARGS[nm]) for nr, nm in watch.items()}
    lseek_nr = next((nr for nr, nm in names.items() if nm == "lseek"), -1)
    trace = SyscallTrace(list(argv))
    parent = os.getpid()
    try:
        pid = create_child(list(argv), False, env)
    except Exception as exc:  # ChildError pickled from the child: TRACEME or exec failed
        if os.getpid() != parent:
            # python-ptrace raises a failed PTRACE_TRACEME in the forked child itself: leave
            # at once (no atexit, no buffered output twice); the parent diagnoses it.
            os._exit(_TRACEME_FAILED)
        msg = str(exc)
        if "error #1:" in msg or "Operation not permitted" in msg:
            raise TraceUnavailable(ptrace_diagnosis(errno.EPERM)) from exc
        raise TraceUnavailable(f"cannot run {argv[0]!r}: {msg}") from exc
    trace.root_pid = pid
    trace.pids.append(pid)
    trace.counts["execve"] += 1  # the command's own exec, done before the first stop
    t0 = time.perf_counter()
    _wpid, status = os.waitpid(pid, _WALL)  # the SIGTRAP of its exec
    if not os.WIFSTOPPED(status):  # it never reached its exec under the tracer
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == _TRACEME_FAILED:
            raise TraceUnavailable(ptrace_diagnosis(errno.EPERM))
        raise TraceUnavailable(f"{argv[0]!r} ended before its first traced stop "
                               f"(wait status {status:#x})")
    opts = (pfunc.PTRACE_O_TRACESYSGOOD | pfunc.PTRACE_O_TRACEFORK | pfunc.PTRACE_O_TRACEVFORK
            | pfunc.PTRACE_O_TRACECLONE | pfunc.PTRACE_O_TRACEEXEC)
    try:
        pfunc.ptrace_setoptions(pid, opts | _O_EXITKILL)  # the child dies if we do
    except Exception:
        pfunc.ptrace_setoptions(pid, opts)
    try:
        use_info = get_info(pid)
    except OSError:  # kernels before 5.3 (EIO): registers and a per-task entry/exit toggle
        use_info = False
        trace.method = "PTRACE_GETREGS"
    procs: set[int] = {pid}  # thread-group leaders (their RSS is sampled)
    tasks: set[int] = {pid}  # every traced task
    tgid: dict[int, int] = {pid: pid}
    start_pending: set[int] = set()  # announced tasks whose initial SIGSTOP is still to come
    in_call: dict[int, tuple[int, tuple[int, ...], float]] = {}  # tid -> (nr, args, t)
    counts, errors, seconds, events = trace.counts, trace.errors, trace.seconds, trace.events
    markers = trace.markers
    sampler = _Sampler(trace, procs, t0, interval)
    sampler.sample()
    sampler.start()
    sysgood = signal.SIGTRAP | 0x80
    perf = time.perf_counter
    waitpid = os.waitpid
    fork_events = (pfunc.PTRACE_EVENT_FORK, pfunc.PTRACE_EVENT_VFORK, pfunc.PTRACE_EVENT_CLONE)

    def finish(tid: int, nr: int, args: tuple[int, ...], te: float, now: float, res: int) -> None:
        name = names.get(nr) or f"syscall_{nr}"
        counts[name] += 1
        if -4096 < res < 0:
            errors[name] += 1
        seconds[name] += now - te
        if nr in watch:
            events.append((te - t0, now - te, tgid.get(tid, tid), tid, name, args[:nargs[nr]], res))
        elif nr == lseek_nr and marker_base is not None and args[0] & 0xFFFFFFFF == 0xFFFFFFFF \
                and 0 <= args[1] - marker_base < 1000:
            markers.append((te - t0, tid, args[1] - marker_base))

    def add_task(new: int) -> None:
        tasks.add(new)
        leader = _tgid_of(new)
        tgid[new] = leader
        if leader == new:
            procs.add(new)
            trace.pids.append(new)

    try:
        ptrace_syscall(pid, 0)
        while tasks:
            try:
                tid, status = waitpid(-1, _WALL)
            except ChildProcessError:
                break
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                tasks.discard(tid)
                procs.discard(tid)
                in_call.pop(tid, None)
                if tid == pid:
                    trace.exit_code = os.waitstatus_to_exitcode(status)
                continue
            if not os.WIFSTOPPED(status):
                continue
            sig = os.WSTOPSIG(status)
            if sig == sysgood:
                now = perf()
                if use_info:
                    if not get_info(tid):  # the task is gone
                        continue
                    if info.op == _INFO_ENTRY:
                        nr = info.nr
                        a = info.args
                        in_call[tid] = (nr, (a[0], a[1], a[2], a[3], a[4], a[5]), now)
                    elif info.op == _INFO_EXIT:
                        ent = in_call.pop(tid, None)
                        if ent is not None:
                            finish(tid, ent[0], ent[1], ent[2], now, _signed(info.nr))
                else:
                    r = pfunc.ptrace_getregs(tid)
                    ent = in_call.pop(tid, None)
                    if ent is None:
                        in_call[tid] = (r.orig_rax, (r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9), now)
                    else:
                        finish(tid, ent[0], ent[1], ent[2], now, _signed(r.rax))
                ptrace_syscall(tid, 0)
                continue
            if tid not in tasks:  # a new task stopped before its parent's event arrived
                add_task(tid)
                ptrace_syscall(tid, 0 if sig == signal.SIGSTOP else sig)
                continue
            event = status >> 16
            if sig == signal.SIGTRAP and event:
                if event in fork_events:
                    new = pfunc.ptrace_geteventmsg(tid)
                    if new not in tasks:
                        add_task(new)
                        start_pending.add(new)
                elif event == pfunc.PTRACE_EVENT_EXEC:
                    pass  # execve's exit stop follows and counts it
                ptrace_syscall(tid, 0)
                continue
            if sig == signal.SIGSTOP and tid in start_pending:
                start_pending.discard(tid)
                ptrace_syscall(tid, 0)
                continue
            ptrace_syscall(tid, sig)  # a real signal: deliver it
    except KeyboardInterrupt:
        for t in list(tasks):
            try:
                os.kill(t, signal.SIGKILL)
            except OSError:
                pass
        raise
    except Exception as exc:
        err = getattr(exc, "errno", None)
        if err in (errno.EPERM, errno.EACCES):
            raise TraceUnavailable(ptrace_diagnosis(err)) from exc
        raise
    finally:
        sampler.stop.set()
        sampler.join(timeout=1.0)
        trace.wall_seconds = perf() - t0
    return trace


def _tgid_of(tid: int) -> int:
    try:
        with open(f"/proc/{tid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Tgid:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return tid


# ---------------------------------------------------------------------------- output
def _fmt_bytes(b: int) -> str:
    return f"{b:,} B ({b / (1 << 20):,.2f} MiB)"


def format_summary(tr: SyscallTrace, all_syscalls: bool = False) -> str:
    """``strace -c``-style table of the memory syscalls (every syscall with ``all_syscalls``),
    then madvise by advice, bytes, and resident memory."""
    shown = [n for n in tr.counts if all_syscalls or n in WATCH_ARGS]
    total_s = sum(tr.seconds[n] for n in shown) or 1e-12
    rows = sorted(shown, key=lambda n: (-tr.seconds[n], n))
    out = [f"command: {' '.join(tr.argv)}  (exit {tr.exit_code}; {tr.wall_seconds:.3f} s traced; "
           f"{len(tr.pids)} process(es); {tr.method})",
           "% time     seconds  usecs/call     calls    errors syscall",
           "------ ----------- ----------- --------- --------- ----------------"]
    for n in rows:
        c = tr.counts[n]
        out.append(f"{100 * tr.seconds[n] / total_s:6.2f} {tr.seconds[n]:11.6f} "
                   f"{1e6 * tr.seconds[n] / c if c else 0:11.0f} {c:9d} "
                   f"{tr.errors[n] or '':>9} {n}")
    out.append("------ ----------- ----------- --------- --------- ----------------")
    out.append(f"100.00 {sum(tr.seconds[n] for n in shown):11.6f} {'':11} "
               f"{sum(tr.counts[n] for n in shown):9d} {sum(tr.errors[n] for n in shown) or '':>9} "
               f"total" + ("" if all_syscalls else
                           f"   (all syscalls: {sum(tr.counts.values()):,})"))
    adv = tr.advice_counts()
    if adv:
        out.append("madvise by advice:")
        for name, d in sorted(adv.items(), key=lambda kv: -kv[1]["calls"]):
            out.append(f"  {name:<16} {d['calls']:>9,} calls {d['errors'] or '':>6}"
                       f"{' errors' if d['errors'] else '':7}  {_fmt_bytes(d['bytes'])}")
    b = tr.byte_totals()
    out.append(f"bytes: mapped {_fmt_bytes(b['mapped'])}; unmapped {_fmt_bytes(b['unmapped'])}; "
               f"brk +{b['brk_grown']:,} / -{b['brk_shrunk']:,} B; mremap +{b['mremap_grown']:,} / "
               f"-{b['mremap_shrunk']:,} B; mprotect {b['mprotected']:,} B")
    rs = tr.rss_summary()
    out.append(f"resident (pid {tr.root_pid}, {rs['samples']} samples): VmRSS peak "
               f"{rs['peak_vm_rss'] >> 10:,} KiB, last {rs['final_vm_rss'] >> 10:,} KiB; RssAnon "
               f"peak {rs['peak_rss_anon'] >> 10:,} KiB, last {rs['final_rss_anon'] >> 10:,} KiB")
    return "\n".join(out)


def write_json(tr: SyscallTrace, path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    with open(p, "w", encoding="utf-8") as fh:
        json.dump(tr.as_dict(), fh)
        fh.write("\n")
    return p


def write_csv(tr: SyscallTrace, path: str | os.PathLike[str]) -> Path:
    """One row per watched syscall (``kind=syscall``) and per RSS sample (``kind=rss``), in time
    order: ``t, kind, pid, tid, syscall, addr, length, advice, arg2, arg3, arg4, arg5, result,
    dt, vm_rss, rss_anon``."""
    p = Path(path)
    rows: list[tuple[Any, ...]] = []
    for t, dt, pid, tid, name, args, res in tr.events:
        a = list(args) + [""] * (6 - len(args))
        advice = ADVICE_NAMES.get(args[2], str(args[2])) if name == "madvise" else ""
        if name == "brk":
            addr, length = a[0], ""
        else:
            addr, length = a[0], a[1]
        rest = a[2:] if name != "madvise" else ["", "", "", ""]
        rows.append((t, "syscall", pid, tid, name, addr, length, advice, *rest[:4], res, dt, "", ""))
    for t, pid, v, an in tr.rss:
        rows.append((t, "rss", pid, "", "", "", "", "", "", "", "", "", "", "", v, an))
    rows.sort(key=lambda r: r[0])
    with open(p, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["t", "kind", "pid", "tid", "syscall", "addr", "length", "advice", "arg2",
                    "arg3", "arg4", "arg5", "result", "dt", "vm_rss", "rss_anon"])
        for r in rows:
            w.writerow([f"{r[0]:.6f}", *r[1:13], f"{r[13]:.6f}" if r[13] != "" else "", *r[14:]])
    return p


PLOT_MISSING = ("matplotlib is not installed: install the plot extra "
                "(pip install 'simalloc[plot]', or pip install matplotlib)")


def import_pyplot() -> Any:
    """matplotlib.pyplot with the Agg backend, or TraceUnavailable naming the extra."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise TraceUnavailable(PLOT_MISSING) from exc
    return plt


_RELEASE_STYLE = {"munmap": ("tab:red", "v"), "madvise:DONTNEED": ("tab:orange", "v"),
                  "madvise:FREE": ("tab:green", "v"), "madvise:REMOVE": ("tab:purple", "v"),
                  "brk-shrink": ("tab:brown", "v"), "mremap-shrink": ("tab:pink", "v")}


def write_png(tr: SyscallTrace, path: str | os.PathLike[str], title: str | None = None) -> Path:
    """Resident memory over time (VmRSS and RssAnon of every traced process) with every call
    that gave memory back marked below the curves, one colour per kind."""
    plt = import_pyplot()
    p = Path(path)
    fig, ax = plt.subplots(figsize=(10, 5))
    try:
        by_pid: dict[int, list[tuple[float, int, int]]] = {}
        for t, pid, v, a in tr.rss:
            by_pid.setdefault(pid, []).append((t, v, a))
        for pid, rows in by_pid.items():
            ts = [r[0] for r in rows]
            ax.step(ts, [r[1] / (1 << 20) for r in rows], where="post", label=f"VmRSS pid {pid}")
            ax.step(ts, [r[2] / (1 << 20) for r in rows], where="post", linestyle="--",
                    label=f"RssAnon pid {pid}")
        rel = tr.release_events()
        kinds = sorted({k for _t, k, _b in rel})
        ymax = max([r[2] for r in tr.rss] or [1 << 20]) / (1 << 20)
        for i, k in enumerate(kinds):
            ts = [t for t, kk, _b in rel if kk == k]
            colour, marker = _RELEASE_STYLE.get(k, ("black", "v"))
            n_bytes = sum(b for _t, kk, b in rel if kk == k)
            ax.plot(ts, [-(0.03 + 0.03 * i) * ymax] * len(ts), linestyle="none", marker=marker,
                    markersize=4, color=colour,
                    label=f"{k}: {len(ts):,} calls, {n_bytes / (1 << 20):,.1f} MiB")
        ax.set_xlabel("seconds since start (traced)")
        ax.set_ylabel("MiB")
        ax.set_title(title or f"simalloc strace: {' '.join(tr.argv)[:80]}")
        ax.legend(loc="upper left", fontsize="small")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(p, dpi=100)
    finally:
        plt.close(fig)
    return p


# ---------------------------------------------------------------------------- real strace
_STRACE_ROW = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(?P<calls>\d+)\s+(?P<errors>\d+)?\s*(?P<name>\w+)\s*$")
_STRACE_MADV = re.compile(r"^\d+\s+madvise\([^,]*,\s*[^,]*,\s*(?P<adv>MADV_\w+|0x[0-9a-fA-F]+|\d+)")


def real_strace(argv: list[str], env: dict[str, str] | None = None,
                strace: str | None = None) -> dict[str, Any]:
    """Run ``strace -f -C`` on ``argv`` (one run: every call logged plus the ``-c`` summary)
    and return ``{"counts", "errors", "madvise_by_advice", "exit_code"}``."""
    import shutil
    import subprocess
    import tempfile

    exe = strace or shutil.which("strace")
    if not exe:
        raise TraceUnavailable("strace is not installed (apt-get install strace)")
    with tempfile.TemporaryDirectory(prefix="simalloc-strace-") as d:
        out = os.path.join(d, "strace.txt")
        proc = subprocess.run([exe, "-f", "-C", "-qq", "-o", out, *argv], env=env)
        counts: Counter[str] = Counter()
        errors: Counter[str] = Counter()
        advice: Counter[str] = Counter()
        with open(out, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                m = _STRACE_MADV.match(line)
                if m:
                    a = m.group("adv")
                    advice[a[5:] if a.startswith("MADV_") else ADVICE_NAMES.get(int(a, 0), str(int(a, 0)))] += 1
                    continue
                r = _STRACE_ROW.match(line)
                if r and r.group("name") != "total":
                    counts[r.group("name")] = int(r.group("calls"))
                    errors[r.group("name")] = int(r.group("errors") or 0)
    return {"counts": dict(counts), "errors": dict(errors), "madvise_by_advice": dict(advice),
            "exit_code": proc.returncode}


def compare_with_strace(tr: SyscallTrace, ref: dict[str, Any]) -> list[tuple[str, int, int, bool]]:
    """``(what, simalloc strace, strace, equal)`` for every memory syscall and madvise advice."""
    rows: list[tuple[str, int, int, bool]] = []
    for name in WATCH_ARGS:
        a, b = tr.counts.get(name, 0), ref["counts"].get(name, 0)
        rows.append((name, a, b, a == b))
        a, b = tr.errors.get(name, 0), ref["errors"].get(name, 0)
        if a or b:
            rows.append((f"{name} errors", a, b, a == b))
    mine = {k: v["calls"] for k, v in tr.advice_counts().items()}
    for adv in sorted(set(mine) | set(ref["madvise_by_advice"])):
        a, b = mine.get(adv, 0), ref["madvise_by_advice"].get(adv, 0)
        rows.append((f"madvise {adv}", a, b, a == b))
    a, b = sum(tr.counts.values()), sum(ref["counts"].values())
    rows.append(("all syscalls (information)", a, b, True))
    return rows


def format_comparison(rows: list[tuple[str, int, int, bool]]) -> str:
    out = [f"{'syscall':<28} {'simalloc strace':>15} {'strace -c -f':>13}  result"]
    for what, a, b, ok in rows:
        out.append(f"{what:<28} {a:>15,} {b:>13,}  {'same' if ok else 'DIFFERENT'}"
                   if "information" not in what else f"{what:<28} {a:>15,} {b:>13,}")
    return "\n".join(out)
