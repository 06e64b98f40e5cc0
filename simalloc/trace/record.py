"""``simalloc record -- python script.py``: capture with memray, convert, replay, compare.

1. ``python -m memray run --native --force -o CAPTURE.bin script.py ...`` with
   ``PYTHONMALLOC=malloc`` (so each Python object allocation is a ``malloc`` memray sees;
   ``--pymalloc`` keeps pymalloc, and then only its 1 MiB arenas -- as mmap, not replayed --
   and the blocks over 512 bytes appear);
2. the capture is converted to an op stream (:func:`~.readers.read_memray`) and saved (``-o``);
3. the stream is replayed once per policy (:func:`~.replay.replay_stream`);
4. the real process's RSS timeline (memray's memory records, every 10 ms) is shown beside the
   replayed heaps' resident bytes, on a common axis of progress through the run (time for the
   process, operations for the replay: memray records no per-allocation times), as text and,
   with ``--png``, as a plot.

With ``--json`` stdout carries one JSON document and nothing else: the recorded program's own
stdout goes to stderr, as do the progress lines.

Resident figures of the replays are the heap's exact page model (``heap.resident()``); the
kernel's figure (``heap.residency()``) is read once per replay, at the end, as a cross-check
(:func:`~.replay.replay_stream`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .opstream import OpStream
from .readers import MEMRAY_MISSING, memray_snapshots, read_memray
from .replay import format_replay, replay_stream

__all__ = ["memray_command", "plot_replay", "record"]


def memray_command(cmd: list[str], capture: str) -> list[str]:
    """``python script.py ...`` -> ``python -m memray run --native --force -o CAPTURE
    script.py ...`` (also ``python -m mod`` and ``python -c code``)."""
    from ..errors import ConfigError

    exe = os.path.basename(cmd[0])
    if not exe.startswith("python") or len(cmd) < 2:
        raise ConfigError(f"record runs a Python program: simalloc record -- python script.py "
                          f"[ARGS] (got {' '.join(cmd)!r})")
    return [cmd[0], "-m", "memray", "run", "--native", "--force", "-q", "-o", capture, *cmd[1:]]


def _at_fraction(xs: np.ndarray, ys: np.ndarray, f: float) -> float:
    if len(xs) == 0:
        return 0.0
    x = xs[0] + f * (xs[-1] - xs[0])
    i = int(np.searchsorted(xs, x, side="right")) - 1
    return float(ys[max(i, 0)])


def _side_by_side(snaps: list[tuple[float, int, int]], runs: list[tuple[str, dict[str, Any]]],
                  points: int = 11) -> str:
    st = np.array([s[0] for s in snaps]) if snaps else np.zeros(0)
    rss = np.array([s[1] for s in snaps]) if snaps else np.zeros(0)
    heap = np.array([s[2] for s in snaps]) if snaps else np.zeros(0)
    cols = [f"{'progress':>8}", f"{'process RSS':>12}", f"{'memray heap':>12}"]
    cols += [f"{label[:16] + ' res':>20}" for label, _r in runs]
    lines = ["  ".join(cols) + "   (MiB)"]
    tl = [(np.array([p[0] for p in r["timeline"]], dtype=float),
           np.array([p[1] for p in r["timeline"]], dtype=float)) for _l, r in runs]
    for k in range(points):
        f = k / (points - 1)
        row = [f"{100 * f:>7.0f}%", f"{_at_fraction(st, rss, f) / (1 << 20):>12.2f}",
               f"{_at_fraction(st, heap, f) / (1 << 20):>12.2f}"]
        for xs, ys in tl:
            row.append(f"{_at_fraction(xs, ys, f) / (1 << 20):>20.2f}")
        lines.append("  ".join(row))
    return "\n".join(lines)


def plot_replay(stream: OpStream, runs: list[tuple[str, dict[str, Any]]],
                snaps: list[tuple[float, int, int]] | None, path: str | os.PathLike[str]) -> Path:
    """Resident bytes of each replay over the run (and the real process's RSS and memray's
    live heap if ``snaps`` is given), x = fraction of the run."""
    from .ptracer import import_pyplot

    plt = import_pyplot()
    p = Path(path)
    fig, ax = plt.subplots(figsize=(10, 5))
    try:
        n = max(len(stream), 1)
        handles = []
        if snaps:
            t = np.array([s[0] for s in snaps])
            span = (t[-1] - t[0]) or 1.0
            x = (t - t[0]) / span
            ax2 = ax.twinx()  # the process's RSS (interpreter + memray) is far larger
            handles += ax2.step(x, [s[1] / (1 << 20) for s in snaps], where="post", color="black",
                                label=f"real process RSS, right axis (under memray, {span:.2f} s)")
            ax2.set_ylabel("process RSS, MiB")
            handles += ax.step(x, [s[2] / (1 << 20) for s in snaps], where="post", color="grey",
                               linestyle=":", label="memray live heap")
        live = stream.live_payload()
        if len(live):
            step = max(1, len(live) // 2000)
            xs = np.arange(0, len(live), step)
            handles += ax.plot((xs + 1) / n, live[xs] / (1 << 20), color="tab:blue", alpha=0.5,
                               label="live payload (trace)")
        for label, r in runs:
            tl = r.get("timeline") or []
            handles += ax.step([q[0] / n for q in tl], [q[1] / (1 << 20) for q in tl], where="post",
                               label=f"replay {label}: heap resident")
        ax.set_xlabel("fraction of the run (process: time; replay: operations)")
        ax.set_ylabel("heap, MiB")
        ax.set_title(f"{os.path.basename(stream.source)}: {len(stream):,} ops")
        ax.legend(handles=handles, loc="upper left", fontsize="small")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(p, dpi=100)
    finally:
        plt.close(fig)
    return p


def _stderr_fd() -> int:
    """The file descriptor behind ``sys.stderr`` (2 when it has none, e.g. a captured stream)."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return 2


def record(cmd: list[str], *, out: str, policies: list[tuple[str, dict[str, Any]]],
           png: str | None = None, pymalloc: bool = False, samples: int = 64,
           as_json: bool = False, keep_capture: bool = False) -> int:
    """Capture ``cmd`` (``python script.py ...``), convert, replay, print; returns the exit
    code (0 ok, 1 the program or the capture failed)."""
    from .ptracer import TraceUnavailable, import_pyplot

    try:
        import memray  # noqa: F401
    except ImportError as exc:
        raise TraceUnavailable(MEMRAY_MISSING) from exc
    if png:
        import_pyplot()
    info = sys.stderr if as_json else sys.stdout
    out_p = Path(out)
    if keep_capture:
        capture = str(out_p.with_suffix(".bin"))
        tmpdir = None
    else:
        tmpdir = tempfile.TemporaryDirectory(prefix="simalloc-record-")
        capture = os.path.join(tmpdir.name, "capture.bin")
    try:
        argv = memray_command(cmd, capture)
        env = dict(os.environ)
        if not pymalloc:
            env["PYTHONMALLOC"] = "malloc"
        print(f"record: {' '.join(argv)}" + ("" if pymalloc else "  (PYTHONMALLOC=malloc)"),
              file=sys.stderr, flush=True)
        # --json: stdout carries the JSON document only, so the program's own output goes to stderr
        proc = subprocess.run(argv, env=env, stdout=_stderr_fd() if as_json else None)
        if not os.path.exists(capture):
            print(f"simalloc record: error: memray wrote no capture (exit {proc.returncode})",
                  file=sys.stderr)
            return 1
        # memray misses an allocation now and then (one made inside its own hooks shows up
        # as a free of an address already freed): repair, and say so in the notes
        stream = read_memray(capture, strict=False)
        stream.source = str(out_p)
        stream.save(out_p)
        snaps = memray_snapshots(capture)
        print(f"record: {stream.meta.get('records', 0):,} memray records -> {len(stream):,} ops "
              f"in {out_p} ({out_p.stat().st_size:,} bytes)"
              + (f"; capture kept: {capture}" if keep_capture else ""), file=info, flush=True)
        runs = [(label, replay_stream(stream, ov, samples=samples, timeline=True))
                for label, ov in policies]
        if as_json:
            doc = {"trace": {"source": str(out_p), "capture": capture if keep_capture else None,
                             **stream.summary(), "meta": stream.meta},
                   "process": {"exit_code": proc.returncode,
                               "rss": [{"t": t, "rss": r, "heap": h} for t, r, h in snaps]},
                   "results": {label: r for label, r in runs}}
            json.dump(doc, sys.stdout, indent=2, default=str)
            sys.stdout.write("\n")
        else:
            print(format_replay(stream, runs))
            if snaps:
                rss = [s[1] for s in snaps]
                print(f"real process under memray (memory records, {len(snaps)} samples over "
                      f"{snaps[-1][0]:.2f} s): RSS peak {max(rss) / (1 << 20):.2f} MiB, last "
                      f"{rss[-1] / (1 << 20):.2f} MiB; memray live heap peak "
                      f"{max(s[2] for s in snaps) / (1 << 20):.2f} MiB")
            print(_side_by_side(snaps, runs))
        if png:
            p = plot_replay(stream, runs, snaps, png)
            print(f"png: {p}", file=info)
        if proc.returncode != 0:
            print(f"simalloc record: the program exited with {proc.returncode}", file=sys.stderr)
            return 1
        return 0
    finally:
        if tmpdir is not None:
            tmpdir.cleanup()
