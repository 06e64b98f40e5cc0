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
* ``ws`` and ``seed`` do nothing (the stream is what it is).

Slots: the stream's own (``nslots = n_slots``).  Final drain: every slot still live after the
timed part (a program seldom frees everything before it exits, and a cut stream leaves blocks
live), in slot order, so a finished run leaves no block behind like every workload.  Trace
times are not used.

Stresses: whatever the program does -- the allocation-size mix, lifetimes and phases of real
code, which synthetic streams approximate.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

import numpy as np

from ..constants import OP_FREE
from ..errors import TraceError
from .base import Workload, _split, drain_rows
from .opstream import load_npz

__all__ = ["TraceWorkload", "live_after"]


def live_after(ops: np.ndarray, n_slots: int) -> np.ndarray:
    """Occupancy (bool per slot) after the rows ``ops``: a slot is live when its last op is
    not a free."""
    last = np.full(max(n_slots, 1), -1, dtype=np.int64)
    if len(ops):
        np.maximum.at(last, ops[:, 1], np.arange(len(ops), dtype=np.int64))
    live = np.zeros(len(last), dtype=bool)
    seen = last >= 0
    live[seen] = ops[last[seen], 0] != OP_FREE
    return live


class TraceWorkload(Workload):
    """A recorded op stream (see the module docstring)."""

    name = "trace"
    STRESSES = "a real program's allocation stream, from an op-stream .npz"
    DEFAULT_WS = 1
    DEFAULTS = MappingProxyType({"path": None, "warmup_ops": 0})

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
        warm = int(self.params["warmup_ops"])
        if not 0 <= warm <= len(stream):
            raise ValueError(f"warmup_ops={warm} must be in 0..{len(stream)} (the stream's ops)")
        self._warm = stream.ops[:warm]
        self._timed = stream.ops[warm:warm + self.ops]
        self._drain = drain_rows(live_after(stream.ops[:warm + len(self._timed)], stream.n_slots))
        self.nslots = max(int(stream.n_slots), 1)
        self.ops = self.params["ops"] = len(self._timed)
        self.params["trace_ops"] = len(stream)
        self.params["format"] = stream.fmt

    def _sizes(self) -> tuple[int, int]:
        return len(self._timed), len(self._drain)

    def _warmup_rows(self) -> Iterator[np.ndarray]:
        yield from _split(self._warm)

    def _generate(self) -> Iterator[tuple[np.ndarray, bool]]:
        for rows in _split(self._timed):
            yield rows, False
        for rows in _split(self._drain):
            yield rows, True
