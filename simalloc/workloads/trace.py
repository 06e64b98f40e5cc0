"""Trace: a recorded program's own allocation stream, replayed from an op-stream file.

The workload wraps an op-stream ``.npz`` (:mod:`.opstream`; written by
``simalloc replay TRACE --save OUT.npz``, ``simalloc record`` or ``OpStream.save``), so
``simalloc run / bench / soak / ab`` measure policies on a real program instead of a synthetic
stream: ``get_workload("trace", ops=N, path="prog.npz")``.  ``simalloc ab --trace TRACE``
converts any format the trace readers know (memray, ``.rep``, mtrace, ltrace) and uses it.

Parameters:

* ``path`` (required): the ``.npz`` file; validated completely when the workload is built
  (:func:`~.opstream.load_npz`: a bad file is a ``ConfigError`` naming the file and the op);
* ``warmup_ops`` (0): the first rows of the stream run untimed, as the warm-up;
* ``ops``: at most this many of the following rows are the timed part (the whole rest of the
  stream when ``ops`` is at least that long; ``params["ops"]`` is then the number taken);
* ``use_times`` (None: on when the stream has times): the trace's times drive the heap's
  clock, as in ``simalloc replay`` -- :meth:`~.opstream.OpStream.with_idle` inserts ``OP_IDLE``
  rows where the trace's time runs ahead of the virtual clock (ops x ``ns_per_op``), so a
  program's quiet spells are idle time (background policies tick during them, the resident
  mean over virtual time weighs them).  ``False`` replays the operations alone; ``True`` on a
  stream without times is a ``ConfigError``;
* ``ns_per_op`` (None: the option's value, environment included, as ``Heap()`` reads it): the
  virtual ns per operation the idle rows are computed at (give the heap's own if a run
  overrides it);
* ``ws`` and ``seed`` do nothing (the stream is what it is).

``warmup_ops`` and ``ops`` count operations, never idle rows: an idle row goes with the
operation it precedes (the gap before the first timed op is timed).  ``main_ops`` /
``total_ops`` count rows, idle rows included (as the ``idle`` workload's do); ``params``
gains ``idle_rows`` and ``idle_ns`` (of the timed part).

Slots: the stream's own (``nslots = n_slots``).  Final drain: every slot still live after the
timed part (a program seldom frees everything before it exits, and a cut stream leaves blocks
live), in slot order, so a finished run leaves no block behind like every workload.

Stresses: whatever the program does -- the allocation-size mix, lifetimes and phases of real
code, which synthetic streams approximate.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

import numpy as np

from ..constants import OP_FREE, OP_IDLE
from ..errors import TraceError
from .base import Workload, _split, drain_rows
from .opstream import load_npz

__all__ = ["TraceWorkload", "live_after"]


def live_after(ops: np.ndarray, n_slots: int) -> np.ndarray:
    """Occupancy (bool per slot) after the rows ``ops``: a slot is live when its last op is
    not a free (idle rows name no slot)."""
    last = np.full(max(n_slots, 1), -1, dtype=np.int64)
    if len(ops):
        rows = np.flatnonzero(ops[:, 0] != OP_IDLE)
        np.maximum.at(last, ops[rows, 1], rows.astype(np.int64))
    live = np.zeros(len(last), dtype=bool)
    seen = last >= 0
    live[seen] = ops[last[seen], 0] != OP_FREE
    return live


class TraceWorkload(Workload):
    """A recorded op stream (see the module docstring)."""

    name = "trace"
    STRESSES = "a real program's allocation stream, from an op-stream .npz"
    DEFAULT_WS = 1
    DEFAULTS = MappingProxyType({"path": None, "warmup_ops": 0, "use_times": None, "ns_per_op": None})

    def __init__(self, *, ops: int, ws: int | None = None, seed: int = 1, **params: Any) -> None:
        super().__init__(ops=ops, ws=ws, seed=seed, **params)
        path = self.params["path"]
        if not path:
            raise ValueError("needs path=FILE.npz (an op stream: simalloc replay TRACE --save "
                             "FILE.npz converts a memray / .rep / mtrace / ltrace trace)")
        try:
            stream = load_npz(str(path))
        except TraceError as exc:
            hint = ("" if str(path).endswith(".npz") else
                    " (the trace workload reads op-stream .npz files: convert with simalloc "
                    "replay TRACE --save FILE.npz, or use simalloc ab --trace TRACE)")
            raise ValueError(f"{exc}{hint}") from exc
        n_ops = int(np.count_nonzero(stream.ops[:, 0] != OP_IDLE)) if len(stream) else 0
        warm = int(self.params["warmup_ops"])
        if not 0 <= warm <= n_ops:
            raise ValueError(f"warmup_ops={warm} must be in 0..{n_ops} (the stream's ops)")
        if self.params["ns_per_op"] is not None:
            self._ns_per_op()  # checked even when unused
        if self._use_times(stream.times is not None):
            stream = stream.with_idle(self._ns_per_op())
        rows = stream.ops
        # row index of every operation (idle rows excluded), plus the end: cut points
        at = np.append(np.flatnonzero(rows[:, 0] != OP_IDLE), len(rows)) if len(rows) else np.zeros(1, np.int64)
        start = int(at[warm]) if warm < n_ops else len(rows)
        taken = min(self.ops, n_ops - warm)
        stop = int(at[warm + taken]) if warm + taken < n_ops else len(rows)
        self._warm = rows[:start]
        self._timed = rows[start:stop]
        self._drain = drain_rows(live_after(rows[:stop], stream.n_slots))
        self.nslots = max(int(stream.n_slots), 1)
        self.ops = self.params["ops"] = taken
        idle = self._timed[:, 0] == OP_IDLE
        self.params["idle_rows"] = int(np.count_nonzero(idle))
        self.params["idle_ns"] = int(self._timed[idle, 2].sum()) if len(self._timed) else 0
        self.params["trace_ops"] = n_ops
        self.params["format"] = stream.fmt

    def _use_times(self, has_times: bool) -> bool:
        """The ``use_times`` parameter resolved (module docstring)."""
        v = self.params["use_times"]
        if v is None or v == "auto":
            use = has_times
        elif isinstance(v, (bool, int)) and int(v) in (0, 1):
            use = bool(v)
        else:
            raise ValueError(f"use_times={v!r}: expected true, false or auto")
        if use and not has_times:
            raise ValueError("use_times=true but the stream has no times")
        self.params["use_times"] = use
        return use

    def _ns_per_op(self) -> float:
        v = self.params["ns_per_op"]
        if v is None:
            from ..options import Config

            v = Config.from_env().ns_per_op
        try:
            ns = float(v)
        except (TypeError, ValueError):
            ns = -1.0
        if not ns >= 0:
            raise ValueError(f"ns_per_op={v!r} must be a number >= 0")
        self.params["ns_per_op"] = ns
        return ns

    def _sizes(self) -> tuple[int, int]:
        return len(self._timed), len(self._drain)

    def _warmup_rows(self) -> Iterator[np.ndarray]:
        yield from _split(self._warm)

    def _generate(self) -> Iterator[tuple[np.ndarray, bool]]:
        for rows in _split(self._timed):
            yield rows, False
        for rows in _split(self._drain):
            yield rows, True
