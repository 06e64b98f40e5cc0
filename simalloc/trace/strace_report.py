"""``simalloc strace``'s output: the ``strace -c``-style summary, the JSON / CSV timelines,
the resident-over-time PNG with release calls marked, and the comparison with real
``strace -f -C`` on the same command.

Everything here reads a :class:`~.syscalls.SyscallTrace`; nothing imports python-ptrace.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

from .syscalls import ADVICE_NAMES, WATCH_ARGS, SyscallTrace, TraceUnavailable

__all__ = ["PLOT_MISSING", "compare_with_strace", "format_comparison", "format_summary",
           "import_pyplot", "real_strace", "write_csv", "write_json", "write_png"]


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
        addr: Any = a[0]
        length: Any = "" if name == "brk" else a[1]
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
