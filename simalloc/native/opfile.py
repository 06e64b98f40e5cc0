"""The op-stream file both consumers read: the native driver (``driver file PATH``) and
``Heap.replay``.

Format: raw little-endian int64 rows ``(kind, slot, size)`` -- the rows every workload's
``op_stream()`` gives and ``Heap.replay`` takes (kinds ``OP_MALLOC`` 0, ``OP_FREE`` 1,
``OP_REALLOC`` 2), 24 bytes per op, no header.  The warm-up (untimed) rows come first; how many
there are travels beside the file (:class:`StreamFile`), as the driver's ``TIMED_FROM``.

:func:`build_stream` writes one for a workload (``mixed``, ``churn``, ... : its untimed warm-up
then its timed part, final drain included) or for a trace file any
:func:`simalloc.trace.read_trace` format reads (no warm-up); :func:`read_opfile` reads the rows
back (a read-only memory map), so the simulator replays the very bytes the driver replayed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, TraceError

__all__ = ["ROW_BYTES", "StreamFile", "build_stream", "read_opfile", "write_opfile"]

#: Bytes per row: three little-endian int64.
ROW_BYTES = 24
_DTYPE = np.dtype("<i8")


@dataclass(frozen=True)
class StreamFile:
    """An op-stream file on disk: ``path``; ``warmup_ops`` untimed rows first, then ``ops``
    timed rows; ``n_slots`` the slots array's length; ``name`` and ``describe`` for reports."""

    name: str
    path: Path
    warmup_ops: int
    ops: int
    n_slots: int
    describe: str

    def rows(self) -> np.ndarray:
        """All rows (warm-up first), read back from the file."""
        return read_opfile(self.path)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "warmup_ops": self.warmup_ops,
                "ops": self.ops, "n_slots": self.n_slots, "describe": self.describe}


def write_opfile(rows: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write int64 ``(n, 3)`` rows as the raw file (see the module docstring)."""
    arr = np.ascontiguousarray(rows, dtype=_DTYPE)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise TraceError(f"op rows must have shape (n, 3), got {arr.shape}")
    p = Path(path)
    arr.tofile(p)
    return p


def read_opfile(path: str | os.PathLike[str]) -> np.ndarray:
    """The rows of a raw op-stream file as a read-only int64 ``(n, 3)`` array."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise TraceError(f"{p}: cannot read op stream: {exc}") from exc
    if size % ROW_BYTES:
        raise TraceError(f"{p}: {size} bytes is not a whole number of {ROW_BYTES}-byte rows")
    if size == 0:
        return np.zeros((0, 3), dtype=np.int64)
    return np.memmap(p, dtype=_DTYPE, mode="r").reshape(-1, 3)


def build_stream(spec: str, directory: str | os.PathLike[str], *, ops: int, ws: int | None = None,
                 seed: int = 1, params: dict[str, Any] | None = None) -> StreamFile:
    """Write the op-stream file for ``spec`` into ``directory``: a workload name (``ops``,
    ``ws``, ``seed``, ``params`` as ``simalloc run`` takes them) or the path of a trace file
    (memray, ``.rep``, mtrace, ltrace, ``.npz``; validated; the other arguments unused)."""
    from ..workloads import WORKLOADS, get_workload

    d = Path(directory)
    if spec in WORKLOADS:
        w = get_workload(spec, ops=ops, ws=ws, seed=seed, **(params or {}))
        warm = w.warmup_stream()
        timed = w.op_stream()
        path = write_opfile(np.concatenate([warm, timed]) if len(warm) else timed,
                            d / f"{spec}.ops")
        return StreamFile(spec, path, len(warm), len(timed), int(w.nslots), w.describe())
    if not os.path.isfile(spec):
        raise ConfigError(f"stream {spec!r}: neither a workload ({', '.join(WORKLOADS)}) nor "
                          f"a trace file")
    from ..trace.readers import read_trace

    stream = read_trace(spec)
    s = stream.summary()
    path = write_opfile(stream.ops, d / (Path(spec).name + ".ops"))
    return StreamFile(Path(spec).name, path, 0, len(stream), int(stream.n_slots),
                      f"{stream.fmt} trace {spec}: {s['mallocs']:,} mallocs, {s['frees']:,} "
                      f"frees, {s['reallocs']:,} reallocs, peak live payload "
                      f"{s['peak_live_payload']:,} B")
