"""Running a sweep's points: each in a fresh interpreter, locally or on Dask, rows as they finish.

::

    run_sweep(points)                               OUT/points.csv
      |  skip the keys already done (resume)             ^ a row per finished point, flushed
      v                                                  |
    Runner.rows(todo) --- local: N threads ----+--> run_point(point) --> python -c child_main
                      \\-- dask: client.submit -+        (stdin: the Point as JSON; stdout: its
                                                          RunResult as JSON, after a tag)

:func:`run_point` is the unit of work everywhere: it starts a fresh ``python`` on
:func:`child_main`, which builds the point's heap (the policy instance with its knobs, the
config overrides) and runs it with :func:`~.metrics.run_once`; a child that dies is a failed
point carrying its exit status and the end of its stderr.  Locally ``workers`` threads each
drive one child at a time; a Ctrl-C kills exactly the children this sweep started
(:class:`Runner` keeps them).  On Dask (``scheduler``: an address, or ``"local"`` for a
``distributed.LocalCluster`` with in-process thread workers) each task runs :func:`run_point`
on a worker, so a remote worker needs simalloc installed and any trace file at the same path;
a Ctrl-C cancels the tasks, and a point already running finishes in its own process (its row
is not recorded).
"""

from __future__ import annotations

import importlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .metrics import RunSpec, run_once
from .sweep import Point, PointsFile, build_overrides, make_row, row_columns, utc_now

__all__ = ["Runner", "child_main", "run_point", "run_sweep"]

_RESULT_TAG = "SIMALLOC-SWEEP-RESULT "


def child_main() -> int:
    """A point's process: a :class:`Point` as JSON on stdin; its RunResult as JSON on stdout
    (one line after a tag).  Exit 0 even when the run failed (the error is in the result)."""
    point = Point.from_dict(json.loads(sys.stdin.read()))
    try:
        spec = RunSpec(workload=point.workload_name(), ops=point.ops, ws=point.ws, seed=point.seed,
                       params=dict(point.params), overrides=build_overrides(point), epochs=point.epochs)
        doc = run_once(spec).as_dict()
    except Exception as exc:  # a ConfigError here means the parent's validation missed it
        doc = {"error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write("\n" + _RESULT_TAG + json.dumps(doc, default=str) + "\n")
    sys.stdout.flush()
    return 0


_CHILD_CODE = "import sys; from simalloc.experiments.sweep_run import child_main; sys.exit(child_main())"


class _Children:
    """The point processes this sweep started (so an interrupt can end exactly those)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: set[subprocess.Popen[str]] = set()
        self.stopped = False

    def add(self, p: subprocess.Popen[str]) -> None:
        with self._lock:
            if self.stopped:
                p.kill()
            self._procs.add(p)

    def discard(self, p: subprocess.Popen[str]) -> None:
        with self._lock:
            self._procs.discard(p)

    def kill_all(self) -> None:
        with self._lock:
            self.stopped = True
            for p in self._procs:
                if p.poll() is None:
                    p.kill()


def run_point(point_doc: Mapping[str, Any], children: _Children | None = None) -> dict[str, Any]:
    """Run one point (``Point.as_dict()``) in a fresh interpreter; returns its row.  Also the
    task a Dask worker runs."""
    point = Point.from_dict(point_doc)
    started, t0 = utc_now(), time.monotonic()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([p for p in sys.path if p] + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.Popen([sys.executable, "-c", _CHILD_CODE], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    if children is not None:
        children.add(proc)
    try:
        out, err = proc.communicate(json.dumps(point.as_dict(), default=str))
    finally:
        if children is not None:
            children.discard(proc)
    wall = time.monotonic() - t0
    for line in reversed(out.splitlines()):
        if line.startswith(_RESULT_TAG):
            doc = json.loads(line[len(_RESULT_TAG):])
            return make_row(point, doc, doc.get("error"), started, wall)
    tail = " | ".join(err.strip().splitlines()[-3:])
    why = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit status {proc.returncode}"
    return make_row(point, None, f"process died ({why}): {tail}", started, wall)


# ---------------------------------------------------------------------------- runners
class Runner:
    """Runs points and yields their rows as they finish: local threads (each driving one
    point process at a time), or a Dask cluster (``scheduler``: an address or ``"local"`` for
    a ``distributed.LocalCluster`` with in-process (thread) workers, each task still starting
    its own point process)."""

    def __init__(self, workers: int, scheduler: str | None = None) -> None:
        self.workers = max(1, workers)
        self.scheduler = scheduler
        self.children = _Children()
        self._cleanup: list[Callable[[], None]] = []
        self.where = (f"{self.workers} local worker(s)" if not scheduler else
                      f"dask LocalCluster (in-process, {self.workers} thread(s))" if scheduler == "local" else
                      f"dask scheduler {scheduler}")

    def rows(self, points: Sequence[Point]) -> Iterator[dict[str, Any]]:
        try:
            if self.scheduler:
                yield from self._dask(points)
            else:
                yield from self._local(points)
        finally:
            self.close()

    def close(self) -> None:
        self.children.kill_all()
        while self._cleanup:
            fn = self._cleanup.pop()
            try:
                fn()
            except Exception as exc:  # closing a cluster after an interrupt: say so, go on
                print(f"simalloc sweep: warning: closing the cluster: {exc}", file=sys.stderr)

    def _local(self, points: Sequence[Point]) -> Iterator[dict[str, Any]]:
        todo: queue.Queue[Point] = queue.Queue()
        for p in points:
            todo.put(p)
        done: queue.Queue[dict[str, Any]] = queue.Queue()

        def work() -> None:
            while not self.children.stopped:
                try:
                    p = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    done.put(run_point(p.as_dict(), self.children))
                except Exception as exc:  # e.g. the interpreter could not be started
                    done.put(make_row(p, None, f"{type(exc).__name__}: {exc}", utc_now(), 0.0))

        for _ in range(min(self.workers, len(points))):
            threading.Thread(target=work, daemon=True, name="sweep-worker").start()
        for _ in range(len(points)):
            while True:
                try:
                    yield done.get(timeout=0.2)
                    break
                except queue.Empty:
                    continue

    def _dask(self, points: Sequence[Point]) -> Iterator[dict[str, Any]]:
        distributed: Any = importlib.import_module("distributed")  # the caller checked it is installed

        if self.scheduler == "local":
            cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=self.workers, processes=False,
                                               dashboard_address=None)
            self._cleanup.append(lambda: cluster.close())
            client = distributed.Client(cluster)
        else:
            try:
                client = distributed.Client(self.scheduler, timeout=30)
            except (OSError, TimeoutError, ValueError) as exc:
                raise ConfigError(f"--scheduler {self.scheduler}: cannot connect ({exc})") from exc
        self._cleanup.append(client.close)
        futures = [client.submit(run_point, p.as_dict(), key=f"sweep-{p.key}", pure=False) for p in points]
        self._cleanup.append(lambda: client.cancel(futures))
        for fut in distributed.as_completed(futures):
            try:
                yield fut.result()
            except Exception as exc:  # the task itself failed on the worker (not the point's run)
                i = futures.index(fut)
                yield make_row(points[i], None, f"dask task failed: {type(exc).__name__}: {exc}", utc_now(), 0.0)


# ---------------------------------------------------------------------------- the sweep
def _eta(done: int, total: int, t0: float) -> str:
    if not done:
        return "?"
    left = (time.monotonic() - t0) / done * (total - done)
    return time.strftime("%H:%M:%S", time.gmtime(left))


def run_sweep(points: Sequence[Point], out_dir: str | Path, grid_keys: Sequence[str], runner: Runner,
              log: Callable[[str], None]) -> tuple[PointsFile, int, int]:
    """Run the points not yet in ``OUT/points.csv``, appending a row each as they finish.
    Returns (the points file, points run now, failures among them).  KeyboardInterrupt
    propagates after the runner is stopped (every row already written stays)."""
    pf = PointsFile(Path(out_dir) / "points.csv", row_columns(grid_keys))
    done = pf.done_keys()
    todo = [p for p in points if p.key not in done]
    skipped = len(points) - len(todo)
    log(f"sweep: {len(points)} points ({skipped} already in {pf.path}, {len(todo)} to run) "
        f"on {runner.where}")
    failed = n = 0
    t0 = time.monotonic()
    try:
        for row in runner.rows(todo):
            pf.append(row)
            n += 1
            failed += bool(row["error"])
            what = (f"ERROR {row['error']}" if row["error"] else
                    f"{float(row['ops_per_s']):,.0f} ops/s, peak {int(row['peak_resident_bytes']) >> 10} KiB")
            log(f"[{skipped + n}/{len(points)}] {row['policy']} {row['workload']} seed={row['seed']} "
                f"{row['config']}: {what}  (ETA {_eta(n, len(todo), t0)})")
    finally:
        pf.close()
    return pf, n, failed
