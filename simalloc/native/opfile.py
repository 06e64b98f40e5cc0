"""The op-stream file both consumers read: the native driver (``driver file PATH``) and
``Heap.replay``.

Format: raw little-endian int64 rows ``(kind, slot, size)`` -- the rows every workload's
``op_stream()`` gives and ``Heap.replay`` takes (kinds ``OP_MALLOC`` 0, ``OP_FREE`` 1,
``OP_REALLOC`` 2, ``OP_IDLE`` 3: ``size`` ns of idle time -- the driver sleeps, the simulator's
virtual clock advances), 24 bytes per op, no header.  The warm-up (untimed) rows come first; how many
there are travels beside the file (:class:`StreamFile`), as the driver's ``TIMED_FROM``.

:func:`build_stream` writes one for a workload (``mixed``, ``churn``, ... : its untimed warm-up
then its timed part, final drain included), :func:`stream_file` for any rows (a trace read with
:func:`simalloc.trace.read_trace`: no warm-up); :func:`read_opfile` reads the rows back, so the
simulator replays the very bytes the driver replayed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..constants import OP_IDLE
from ..errors import ConfigError, TraceError

__all__ = ["ROW_BYTES", "StreamFile", "build_stream", "read_opfile", "stream_file", "write_opfile"]

#: Bytes per row: three little-endian int64.
ROW_BYTES = 24
_DTYPE = np.dtype("<i8")


@dataclass(frozen=True)
class StreamFile:
    """An op-stream file on disk: ``path``; ``warmup_ops`` untimed rows first, then the timed
    rows: ``ops`` operations and ``idle_rows`` idle rows; ``n_slots`` the slots array's length;
    ``name`` and ``describe`` for reports."""

    name: str
    path: Path
    warmup_ops: int
    ops: int
    n_slots: int
    describe: str
    idle_rows: int = 0

    def rows(self) -> np.ndarray:
        """All rows (warm-up first), read back from the file."""
        return read_opfile(self.path)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "warmup_ops": self.warmup_ops,
                "ops": self.ops, "idle_rows": self.idle_rows, "n_slots": self.n_slots,
                "describe": self.describe}


def write_opfile(rows: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write int64 ``(n, 3)`` rows as the raw file (see the module docstring)."""
    arr = np.ascontiguousarray(rows, dtype=_DTYPE)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise TraceError(f"op rows must have shape (n, 3), got {arr.shape}")
    p = Path(path)
    arr.tofile(p)
    return p


def read_opfile(path: str | os.PathLike[str]) -> np.ndarray:
    """The rows of a raw op-stream file as an int64 ``(n, 3)`` array (a copy: the kernel's
    batch loop wants a writable buffer)."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise TraceError(f"{p}: cannot read op stream: {exc}") from exc
    if size % ROW_BYTES:
        raise TraceError(f"{p}: {size} bytes is not a whole number of {ROW_BYTES}-byte rows")
    if size == 0:
        return np.zeros((0, 3), dtype=np.int64)
    return np.fromfile(p, dtype=_DTYPE).astype(np.int64, copy=False).reshape(-1, 3)


def stream_file(name: str, rows: np.ndarray, directory: str | os.PathLike[str], *,
                n_slots: int, warmup_ops: int = 0, describe: str = "") -> StreamFile:
    """Write ``rows`` (warm-up first) as ``directory/NAME.ops`` and describe it."""
    if not 0 <= warmup_ops <= len(rows):
        raise ConfigError(f"warmup_ops={warmup_ops} must be in 0..{len(rows)}")
    path = write_opfile(rows, Path(directory) / f"{Path(name).name}.ops")
    idle = int(np.count_nonzero(rows[int(warmup_ops):, 0] == OP_IDLE)) if len(rows) else 0
    return StreamFile(name, path, int(warmup_ops), len(rows) - int(warmup_ops) - idle, int(n_slots),
                      describe or name, idle)


def build_stream(spec: str, directory: str | os.PathLike[str], *, ops: int, ws: int | None = None,
                 seed: int = 1, params: dict[str, Any] | None = None) -> StreamFile:
    """Write the op-stream file of the workload ``spec`` (``ops``, ``ws``, ``seed``, ``params``
    as ``simalloc run`` takes them) into ``directory``: its untimed warm-up, then its timed
    part.  (A trace file becomes one with ``simalloc.trace.read_trace`` and
    :func:`stream_file`.)"""
    from ..workloads import WORKLOADS, get_workload

    if spec not in WORKLOADS:
        raise ConfigError(f"unknown workload {spec!r}: expected one of {', '.join(WORKLOADS)}")
    w = get_workload(spec, ops=ops, ws=ws, seed=seed, **(params or {}))
    warm = w.warmup_stream()
    timed = w.op_stream()
    rows = np.concatenate([warm, timed]) if len(warm) else timed
    return stream_file(spec, rows, directory, n_slots=int(w.nslots), warmup_ops=len(warm),
                       describe=w.describe())
