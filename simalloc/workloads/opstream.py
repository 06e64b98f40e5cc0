"""The op stream as a file: :class:`OpStream` (int64 rows ``kind, slot, size`` with the kinds
of :mod:`simalloc.constants`, ``OP_MALLOC`` 0, ``OP_FREE`` 1, ``OP_REALLOC`` 2, and ``OP_IDLE`` 3:
idle time, its size column in ns, its slot ignored), its compact
``.npz`` form and its validation -- the rows every workload gives (:mod:`.base`) and
``Heap.replay`` takes, kept with what a recorded trace adds (times, source, counts).

The trace readers (:mod:`simalloc.trace`) produce OpStreams; the ``trace`` workload
(:mod:`.trace`) replays one from its file, so ``simalloc run / bench / soak / ab`` take it like
any workload.

File format (``OpStream.save`` / :func:`load_npz`): a numpy ``.npz`` (compressed) with
``kind`` (uint8), ``slot`` (uint32, or uint64 beyond 2**32 slots), ``size`` (uint32 or uint64),
optionally ``time`` (float64 seconds since the trace began), ``n_slots`` and ``meta`` (a JSON
string: source, format, counts).  About 3-6 bytes per operation after compression.
:func:`load_npz` validates everything (:func:`validate_ops`) and raises
:class:`~simalloc.errors.TraceError` naming the file and the op.

Trace times drive the heap's clock through :meth:`OpStream.with_idle`: where the trace's time
runs ahead of the heap's virtual clock (ops x ``ns_per_op``), ``OP_IDLE`` rows make up the
difference, so a program's quiet spells become idle time in the heap (background policies tick
during them).  With ``C_i = max(0, max_{j<=i} (t_j - j x ns_per_op))`` -- the idle time that
keeps virtual time at or past trace time up to op ``i`` -- an idle row goes before op ``i``
whenever ``C`` crosses a multiple of ``min_gap_ns`` (default 1 ms): the heap's clock never lags
the trace by ``min_gap_ns`` or more, and a trace gets at most one idle row per ``min_gap_ns``
of its duration.  Vectorised (a cumulative maximum), no Python loop per op.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..constants import MAX_REQUEST, OP_FREE, OP_IDLE, OP_MALLOC, OP_REALLOC
from ..errors import TraceError

__all__ = ["OP_NAMES", "OpStream", "load_npz", "validate_ops"]

OP_NAMES = {OP_MALLOC: "malloc", OP_FREE: "free", OP_REALLOC: "realloc", OP_IDLE: "idle"}


@dataclass
class OpStream:
    """A replayable operation stream (see the module docstring).

    ``ops``: int64 ``(n, 3)`` rows ``(kind, slot, size)``; ``n_slots``: length of the slots
    array :meth:`new_slots` gives; ``times``: float64 seconds per op (None if the trace has no
    times); ``source``: the file it came from; ``fmt``: its format; ``meta``: counts
    (``events``, ``skipped``, ``repaired``, ...)."""

    ops: np.ndarray
    n_slots: int
    times: np.ndarray | None = None
    source: str = ""
    fmt: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.ops.shape[0])

    def new_slots(self) -> np.ndarray:
        """A fresh, empty slots array for ``Heap.replay``."""
        return np.zeros(max(self.n_slots, 1), dtype=np.uint64)

    # ------------------------------------------------------------------ figures
    def payload_deltas(self) -> np.ndarray:
        """Change of live payload bytes at each op (int64): ``+size`` for a malloc, minus the
        freed block's size for a free, ``new - old`` for a realloc, 0 for an idle row."""
        ops = self.ops
        n = len(ops)
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        kind, slot, size = ops[:, 0], ops[:, 1], ops[:, 2]
        idle = kind == OP_IDLE
        if idle.any():  # idle rows name no block: give them a slot of their own
            slot = np.where(idle, max(self.n_slots, int(slot.max()) + 1), slot)
            size = np.where(idle, 0, size)
        # The size a slot held before op i is the size set by the previous op on that slot.
        order = _slot_order(slot)
        prev = np.full(n, -1, dtype=np.int64)
        same = slot[order][1:] == slot[order][:-1]
        prev[order[1:][same]] = order[:-1][same]
        prev_size = np.where(prev >= 0, size[np.maximum(prev, 0)], 0)
        return np.where(kind == OP_MALLOC, size,
                        np.where(kind == OP_FREE, -prev_size,
                                 np.where(kind == OP_IDLE, 0, size - prev_size)))

    def live_payload(self) -> np.ndarray:
        """Live payload bytes after each op (int64, cumulative)."""
        return np.cumsum(self.payload_deltas())

    def summary(self) -> dict[str, Any]:
        """Counts and figures computed from the stream alone (no heap); computed once (the
        stream is not meant to be edited in place)."""
        key = (id(self.ops), len(self.ops), self.n_slots)
        cached = self.__dict__.get("_summary")
        if cached is not None and cached[0] == key:
            return dict(cached[1])
        out = self._summary()
        self.__dict__["_summary"] = (key, out)
        return dict(out)

    def _summary(self) -> dict[str, Any]:
        ops = self.ops
        kind = ops[:, 0] if len(ops) else np.zeros(0, dtype=np.int64)
        idle = kind == OP_IDLE
        live = self.live_payload()
        peak_at = int(np.argmax(live)) if len(live) else -1
        return {
            "ops": len(self),
            "mallocs": int(np.count_nonzero(kind == OP_MALLOC)),
            "frees": int(np.count_nonzero(kind == OP_FREE)),
            "reallocs": int(np.count_nonzero(kind == OP_REALLOC)),
            "idle_rows": int(np.count_nonzero(idle)),
            "idle_ns": int(ops[idle, 2].sum()) if len(ops) else 0,
            "n_slots": self.n_slots,
            "peak_live_payload": int(live[peak_at]) if len(live) else 0,
            "peak_live_at_op": peak_at,
            "final_live_payload": int(live[-1]) if len(live) else 0,
            "max_size": int(ops[~idle, 2].max()) if (~idle).any() else 0,
            "duration_s": (float(self.times[-1] - self.times[0])
                           if self.times is not None and len(self.times) else None),
        }

    def with_idle(self, ns_per_op: float, min_gap_ns: int = 1_000_000) -> OpStream:
        """This stream with ``OP_IDLE`` rows where the trace's times run ahead of the heap's
        virtual clock at ``ns_per_op`` (module docstring).  Returns ``self`` when the stream
        has no times or already has idle rows; the inserted rows carry the time of the op
        they precede; ``meta`` gains ``idle_rows`` and ``idle_ns``."""
        n = len(self)
        if self.times is None or n == 0 or bool((self.ops[:, 0] == OP_IDLE).any()):
            return self
        if not (ns_per_op >= 0 and min_gap_ns >= 1):
            raise ValueError(f"ns_per_op={ns_per_op} must be >= 0 and min_gap_ns={min_gap_ns} >= 1")
        t = (self.times - self.times[0]) * 1e9
        ahead = np.maximum(np.maximum.accumulate(t - np.arange(n) * float(ns_per_op)), 0.0)
        quant = (ahead // min_gap_ns).astype(np.int64) * int(min_gap_ns)
        inc = np.diff(quant, prepend=0)
        at = np.flatnonzero(inc > 0)
        if len(at) == 0:
            return self
        rows = np.zeros((len(at), 3), dtype=np.int64)
        rows[:, 0] = OP_IDLE
        rows[:, 2] = inc[at]
        meta = {**self.meta, "idle_rows": int(len(at)), "idle_ns": int(inc[at].sum())}
        return OpStream(np.insert(self.ops, at, rows, axis=0), self.n_slots,
                        np.insert(self.times, at, self.times[at]), self.source, self.fmt, meta)

    # ------------------------------------------------------------------ file
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the compact ``.npz`` (see the module docstring); returns the path."""
        p = Path(path)
        ops = self.ops
        slot_t = np.uint32 if self.n_slots < 1 << 32 else np.uint64
        size_t = np.uint32 if (len(ops) == 0 or int(ops[:, 2].max()) < 1 << 32) else np.uint64
        arrays: dict[str, np.ndarray] = {
            "kind": ops[:, 0].astype(np.uint8),
            "slot": ops[:, 1].astype(slot_t),
            "size": ops[:, 2].astype(size_t),
            "n_slots": np.array(self.n_slots, dtype=np.int64),
            "meta": np.array(json.dumps({"source": self.source, "format": self.fmt, **self.meta},
                                        default=str)),
        }
        if self.times is not None:
            arrays["time"] = np.asarray(self.times, dtype=np.float64)
        with open(p, "wb") as fh:  # np.savez_* appends .npz to a bare name; a handle does not
            np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]
        return p



# ---------------------------------------------------------------------------- validation
def _slot_order(slot: np.ndarray) -> np.ndarray:
    """Op indices sorted by slot, then by position (``np.lexsort((arange, slot))``, done as
    one quicksort of a unique int64 key when it fits)."""
    n = len(slot)
    hi = int(slot.max()) + 1 if n else 0
    if n and hi * n < 1 << 62 and int(slot.min()) >= 0:
        return np.argsort(slot.astype(np.int64) * n + np.arange(n, dtype=np.int64))
    return np.lexsort((np.arange(n), slot))


def validate_ops(ops: np.ndarray, n_slots: int, source: str = "<ops>",
                 unit: str = "record") -> None:
    """Check an op stream without a heap: known kinds, slots in range, sizes in range, and per
    slot the order malloc, realloc*, free, malloc ...  (idle rows: any slot in range, a time
    >= 0 in the size column, no part in the order).  Raises TraceError at the first bad op."""
    n = len(ops)
    if ops.ndim != 2 or ops.shape[1] != 3:
        raise TraceError(f"{source}: ops must have shape (n, 3), got {ops.shape}")
    if n == 0:
        return
    kind, slot, size = ops[:, 0], ops[:, 1], ops[:, 2]
    problems: list[tuple[int, str]] = []

    def first(mask: np.ndarray, what: Callable[[int], str]) -> None:
        idx = np.flatnonzero(mask)
        if len(idx):
            problems.append((int(idx[0]), what(int(idx[0]))))

    idle = kind == OP_IDLE
    first((kind < 0) | (kind > OP_IDLE), lambda i: f"unknown op kind {kind[i]}")
    first((slot < 0) | (slot >= np.where(idle, max(n_slots, 1), n_slots)),
          lambda i: f"slot {slot[i]} out of range 0..{n_slots - 1}")
    first(size < 0, lambda i: f"negative {'idle time' if idle[i] else 'size'} {size[i]}")
    first((size > MAX_REQUEST) & ~idle, lambda i: f"size {size[i]} exceeds the request limit {MAX_REQUEST}")
    if not problems:  # per slot, in order: idle rows name no block and take no part
        rows = np.flatnonzero(~idle) if idle.any() else None
        ks, ss = (kind, slot) if rows is None else (kind[rows], slot[rows])
        order = _slot_order(ss)
        k = ks[order]
        same = np.r_[False, ss[order][1:] == ss[order][:-1]]
        live_before = same & np.r_[False, k[:-1] != OP_FREE]
        bad = np.zeros(n, dtype=bool)
        at = order if rows is None else rows[order]
        bad[at] = ((k == OP_MALLOC) & live_before) | ((k != OP_MALLOC) & ~live_before)
        first(bad, lambda i: (f"malloc into occupied slot {slot[i]}" if kind[i] == OP_MALLOC
                              else f"{OP_NAMES[int(kind[i])]} of empty slot {slot[i]}"))
    if problems:
        i, msg = min(problems)
        raise TraceError(f"{source}: {unit} {i + 1}: {msg}")


def load_npz(path: str | os.PathLike[str]) -> OpStream:
    """Read an op-stream ``.npz`` written by :meth:`OpStream.save`, validated."""
    p = str(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            missing = {"kind", "slot", "size", "n_slots"} - set(z.files)
            if missing:
                raise TraceError(f"{p}: not a simalloc op stream (missing {', '.join(sorted(missing))})")
            kind, slot, size = z["kind"], z["slot"], z["size"]
            n_slots = int(z["n_slots"])
            times = z["time"] if "time" in z.files else None
            meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
    except TraceError:
        raise
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise TraceError(f"{p}: cannot read op stream: {exc}") from exc
    if not (kind.ndim == slot.ndim == size.ndim == 1 and len(kind) == len(slot) == len(size)):
        raise TraceError(f"{p}: kind/slot/size columns differ in shape "
                         f"({kind.shape}, {slot.shape}, {size.shape})")
    if times is not None and times.shape != kind.shape:
        raise TraceError(f"{p}: time column has {len(times)} rows, ops have {len(kind)}")
    if n_slots < 0:
        raise TraceError(f"{p}: n_slots={n_slots} is negative")
    for name, col in (("kind", kind), ("slot", slot), ("size", size)):
        if col.dtype.kind not in "iu":
            raise TraceError(f"{p}: column {name} has dtype {col.dtype}, expected integers")
        if col.dtype == np.uint64 and len(col) and int(col.max()) >= 1 << 63:
            raise TraceError(f"{p}: column {name} holds a value beyond int64")
    ops = np.empty((len(kind), 3), dtype=np.int64)
    ops[:, 0], ops[:, 1], ops[:, 2] = kind, slot, size
    validate_ops(ops, n_slots, p, "op")
    meta = meta if isinstance(meta, dict) else {}
    return OpStream(ops, n_slots, None if times is None else times.astype(np.float64), p,
                    str(meta.pop("format", "npz")), meta)

