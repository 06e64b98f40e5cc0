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

import ctypes
import errno
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from .strace_report import (
    PLOT_MISSING,
    compare_with_strace,
    format_comparison,
    format_summary,
    import_pyplot,
    real_strace,
    write_csv,
    write_json,
    write_png,
)
from .syscalls import ADVICE_NAMES, PTRACE_MISSING, RELEASE, WATCH_ARGS, SyscallTrace, TraceUnavailable

# The record (.syscalls) and the output (.strace_report) live in their own modules; their
# names stay importable from here.
__all__ = ["ADVICE_NAMES", "PLOT_MISSING", "PTRACE_MISSING", "RELEASE", "WATCH_ARGS",
           "SyscallTrace", "TraceUnavailable", "compare_with_strace", "format_comparison",
           "format_summary", "import_pyplot", "ptrace_diagnosis", "real_strace", "trace_command",
           "write_csv", "write_json", "write_png"]

_PTRACE_GET_SYSCALL_INFO = 0x420E
_PTRACE_SYSCALL = 24
_INFO_ENTRY, _INFO_EXIT = 1, 2
_O_EXITKILL = 0x100000
_WALL = 0x40000000
_TRACEME_FAILED = 121  # exit status of a forked child whose PTRACE_TRACEME was refused


class _SyscallInfo(ctypes.Structure):
    _fields_ = [("op", ctypes.c_uint8), ("pad", ctypes.c_uint8 * 3), ("arch", ctypes.c_uint32),
                ("ip", ctypes.c_uint64), ("sp", ctypes.c_uint64),
                ("nr", ctypes.c_uint64), ("args", ctypes.c_uint64 * 6), ("ret_data", ctypes.c_uint32),
                ("_pad2", ctypes.c_uint32)]


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v



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
