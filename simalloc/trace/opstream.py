"""The compact op-stream every trace reader produces, and the one conversion that builds it.

A reader turns its format into *events* -- ``ALLOC(addr, size)``, ``FREE(addr)``,
``REALLOC(old, new, size)``, each with the line or record number it came from and, where the
trace has one, a time -- and :func:`events_to_stream` turns the events into an
:class:`OpStream`: int64 rows ``(kind, slot, size)`` with the kinds of
:mod:`simalloc.constants` (``OP_MALLOC`` 0, ``OP_FREE`` 1, ``OP_REALLOC`` 2), ready for
``Heap.replay(ops, slots)`` with ``slots = np.zeros(n_slots, np.uint64)``.

Addresses become slots by *lifetime*, not by address: an allocation opens a slot, a realloc
keeps its slot (the block moves, the slot follows it), a free closes it, and an address freed
and handed out again is a new slot.  Slots are numbered in the order their lifetimes begin.

The conversion is vectorised (numpy sorts, no Python loop per event), so a memray capture of
millions of records converts in about the time memray takes to read it.  It validates while it
converts: a free (or realloc) of an address that is not live, an allocation at an address that
is still live, a negative or absurd size -- each raises :class:`~simalloc.errors.TraceError`
naming the file and the line or record, before anything touches a heap.  ``strict=False``
repairs instead (drops frees of unknown addresses, turns a realloc of an unknown address into a
malloc, frees a live block implicitly when its address is handed out again) and counts each
repair in ``OpStream.meta["repaired"]``; lossy tracers (ltrace with threads, memray attached
mid-run) need it.

File format (``OpStream.save`` / :func:`load_npz`): a numpy ``.npz`` (compressed) with
``kind`` (uint8), ``slot`` (uint32, or uint64 beyond 2**32 slots), ``size`` (uint32 or uint64),
optionally ``time`` (float64 seconds since the trace began), ``n_slots`` and ``meta`` (a JSON
string: source, format, counts).  About 3-6 bytes per operation after compression.
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

from ..constants import MAX_REQUEST, OP_FREE, OP_MALLOC, OP_REALLOC
from ..errors import TraceError

__all__ = ["EV_ALLOC", "EV_FREE", "EV_REALLOC", "EventList", "OpStream", "events_to_stream",
           "load_npz", "validate_ops"]

#: Event kinds (a reader's vocabulary; realloc carries both addresses).
EV_ALLOC = 0
EV_FREE = 1
EV_REALLOC = 2

OP_NAMES = {OP_MALLOC: "malloc", OP_FREE: "free", OP_REALLOC: "realloc"}


def _hex(addr: int) -> str:
    return f"{addr:#x}"


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
        freed block's size for a free, ``new - old`` for a realloc."""
        ops = self.ops
        n = len(ops)
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        kind, slot, size = ops[:, 0], ops[:, 1], ops[:, 2]
        # The size a slot held before op i is the size set by the previous op on that slot.
        order = _slot_order(slot)
        prev = np.full(n, -1, dtype=np.int64)
        same = slot[order][1:] == slot[order][:-1]
        prev[order[1:][same]] = order[:-1][same]
        prev_size = np.where(prev >= 0, size[np.maximum(prev, 0)], 0)
        return np.where(kind == OP_MALLOC, size,
                        np.where(kind == OP_FREE, -prev_size, size - prev_size))

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
        live = self.live_payload()
        peak_at = int(np.argmax(live)) if len(live) else -1
        return {
            "ops": len(self),
            "mallocs": int(np.count_nonzero(kind == OP_MALLOC)),
            "frees": int(np.count_nonzero(kind == OP_FREE)),
            "reallocs": int(np.count_nonzero(kind == OP_REALLOC)),
            "n_slots": self.n_slots,
            "peak_live_payload": int(live[peak_at]) if len(live) else 0,
            "peak_live_at_op": peak_at,
            "final_live_payload": int(live[-1]) if len(live) else 0,
            "max_size": int(ops[:, 2].max()) if len(ops) else 0,
            "duration_s": (float(self.times[-1] - self.times[0])
                           if self.times is not None and len(self.times) else None),
        }

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
    slot the order malloc, realloc*, free, malloc ...  Raises TraceError at the first bad op."""
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

    first((kind < 0) | (kind > 2), lambda i: f"unknown op kind {kind[i]}")
    first((slot < 0) | (slot >= n_slots), lambda i: f"slot {slot[i]} out of range 0..{n_slots - 1}")
    first(size < 0, lambda i: f"negative size {size[i]}")
    first(size > MAX_REQUEST, lambda i: f"size {size[i]} exceeds the request limit {MAX_REQUEST}")
    if not problems:
        order = _slot_order(slot)
        k = kind[order]
        same = np.r_[False, slot[order][1:] == slot[order][:-1]]
        live_before = same & np.r_[False, k[:-1] != OP_FREE]
        bad = np.zeros(n, dtype=bool)
        bad[order] = ((k == OP_MALLOC) & live_before) | ((k != OP_MALLOC) & ~live_before)
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


# ---------------------------------------------------------------------------- events
class EventList:
    """Events appended one at a time by the text readers (lists, turned into arrays once)."""

    def __init__(self) -> None:
        self.kind: list[int] = []
        self.a: list[int] = []
        self.b: list[int] = []
        self.size: list[int] = []
        self.where: list[int] = []
        self.time: list[float] = []

    def __len__(self) -> int:
        return len(self.kind)

    def alloc(self, addr: int, size: int, where: int, t: float = np.nan) -> None:
        self._add(EV_ALLOC, addr, 0, size, where, t)

    def free(self, addr: int, where: int, t: float = np.nan) -> None:
        self._add(EV_FREE, addr, 0, 0, where, t)

    def realloc(self, old: int, new: int, size: int, where: int, t: float = np.nan) -> None:
        self._add(EV_REALLOC, old, new, size, where, t)

    def _add(self, k: int, a: int, b: int, size: int, where: int, t: float) -> None:
        self.kind.append(k)
        self.a.append(a)
        self.b.append(b)
        self.size.append(size)
        self.where.append(where)
        self.time.append(t)

    def to_stream(self, source: str, fmt: str, *, unit: str = "line", strict: bool = True,
                  addr_fmt: Callable[[int], str] = _hex, what: str = "address",
                  meta: dict[str, Any] | None = None) -> OpStream:
        t = np.array(self.time, dtype=np.float64)
        times = None if not len(t) or np.isnan(t).all() else t
        return events_to_stream(
            np.array(self.kind, dtype=np.uint8), np.array(self.a, dtype=np.uint64),
            np.array(self.b, dtype=np.uint64), np.array(self.size, dtype=np.int64),
            np.array(self.where, dtype=np.int64), times, source=source, fmt=fmt, unit=unit,
            strict=strict, addr_fmt=addr_fmt, what=what, meta=meta)


def _group_order(addr: np.ndarray, tkey: np.ndarray) -> np.ndarray:
    """Permutation sorting by ``addr``, then by the unique int64 ``tkey`` (what
    ``np.lexsort((tkey, addr))`` gives, with two quicksorts instead of stable sorts)."""
    m = len(addr)
    if m == 0:
        return np.zeros(0, dtype=np.int64)
    o = np.argsort(addr)
    sa = addr[o]
    rank = np.empty(m, dtype=np.int64)
    rank[o] = np.cumsum(np.r_[0, sa[1:] != sa[:-1]])
    tr = tkey - tkey.min()
    span = int(tr.max()) + 1
    if span * (int(rank.max()) + 1) < 1 << 62:
        return np.argsort(rank * span + tr)
    return np.lexsort((tkey, rank))


def events_to_stream(kind: np.ndarray, a: np.ndarray, b: np.ndarray, size: np.ndarray,
                     where: np.ndarray, times: np.ndarray | None = None, *, source: str,
                     fmt: str, unit: str = "record", strict: bool = True,
                     addr_fmt: Callable[[int], str] = _hex, what: str = "address",
                     meta: dict[str, Any] | None = None, pre_capture: bool = False) -> OpStream:
    """Events -> validated :class:`OpStream` (see the module docstring).

    ``kind`` uint8 (EV_*), ``a`` (alloc: the address; free: the freed address; realloc: the
    old address), ``b`` (realloc: the new address), ``size`` int64, ``where`` (line or record
    number for messages), ``times`` (float64 or None).  ``unit`` and ``what`` word the messages
    ("line 12: free of unknown address 0x..."; ``.rep`` says "id").

    ``pre_capture=True`` (memray, whose hooks start after the interpreter has allocated): a
    free or realloc of an address the trace has not mentioned before is a block allocated
    before the capture began -- the free is dropped, the realloc becomes a malloc, and both
    are counted in ``meta["pre_capture"]``; a free of an address already freed is still an
    error."""
    kind = np.asarray(kind, dtype=np.uint8)
    n = len(kind)
    a = np.asarray(a, dtype=np.uint64)
    b = np.asarray(b, dtype=np.uint64)
    size = np.asarray(size, dtype=np.int64)
    where = np.asarray(where, dtype=np.int64)
    meta = dict(meta or {})
    meta.setdefault("events", n)

    def fail(i: int, msg: str) -> TraceError:
        return TraceError(f"{source}: {unit} {int(where[i])}: {msg}")

    # -- per-event checks ---------------------------------------------------------------
    problems: list[tuple[int, str]] = []
    for mask, msg in (((kind > EV_REALLOC), "unknown op kind {k}"),
                      ((kind != EV_FREE) & (size < 0), "negative size {s}"),
                      ((kind != EV_FREE) & (size > MAX_REQUEST),
                       f"size {{s}} exceeds the request limit {MAX_REQUEST}")):
        idx = np.flatnonzero(mask)
        if len(idx):
            i = int(idx[0])
            problems.append((i, msg.format(k=int(kind[i]), s=int(size[i]))))
    if problems:
        i, msg = min(problems)
        raise fail(i, msg)

    # -- address events: an end (free / realloc's old) and a start (alloc / realloc's new) --
    is_re = kind == EV_REALLOC
    end_ev = np.flatnonzero((kind == EV_FREE) | is_re)
    start_ev = np.flatnonzero((kind == EV_ALLOC) | is_re)
    ae_ev = np.concatenate([end_ev, start_ev])
    ae_addr = np.concatenate([a[end_ev], np.where(is_re, b, a)[start_ev]])
    ae_start = np.concatenate([np.zeros(len(end_ev), bool), np.ones(len(start_ev), bool)])
    order = _group_order(ae_addr, ae_ev.astype(np.int64) * 2 + ae_start)
    s_ev, s_addr, s_start = ae_ev[order], ae_addr[order], ae_start[order]
    m = len(order)
    same = np.r_[False, s_addr[1:] == s_addr[:-1]] if m else np.zeros(0, bool)
    live_before = same & np.r_[False, s_start[:-1]] if m else np.zeros(0, bool)
    unknown_end = ~s_start & ~live_before
    over_live = s_start & live_before
    first_seen = ~same
    if pre_capture:
        pre = unknown_end & first_seen
        meta["pre_capture"] = {"frees": int(np.count_nonzero(pre & (kind[s_ev] == EV_FREE))),
                               "reallocs": int(np.count_nonzero(pre & (kind[s_ev] == EV_REALLOC)))}
        strict_unknown = unknown_end & ~first_seen
    else:
        strict_unknown = unknown_end

    repaired = {"dropped_frees": 0, "realloc_as_malloc": 0, "implicit_frees": 0}
    if strict and (strict_unknown.any() or over_live.any()):
        cand: list[tuple[int, str]] = []
        j = np.flatnonzero(strict_unknown)
        if len(j):
            jj = int(j[np.argmin(s_ev[j])])
            i = int(s_ev[jj])
            verb = "realloc" if kind[i] == EV_REALLOC else "free"
            cand.append((i, f"{verb} of unknown {what} {addr_fmt(int(s_addr[jj]))} (never "
                            f"allocated, or already freed)"))
        j = np.flatnonzero(over_live)
        if len(j):
            jj = int(j[np.argmin(s_ev[j])])
            i = int(s_ev[jj])
            cand.append((i, f"allocation at {what} {addr_fmt(int(s_addr[jj]))}, which is still "
                            f"live (its free is missing from the trace)"))
        i, msg = min(cand)
        raise fail(i, msg + " (strict=False / --lenient repairs this)")

    # -- segments (lifetimes at one address) and chains (a realloc continues a lifetime) --
    # A segment is named by the sorted position of its start; an end closes segment j-1.
    pos_of = np.empty(m, dtype=np.int64)
    pos_of[order] = np.arange(m)
    end_pos = pos_of[:len(end_ev)]  # sorted positions of the end halves, per end_ev entry
    start_pos = pos_of[len(end_ev):]
    end_valid = ~unknown_end[end_pos]
    ev_end_seg = np.full(n, -1, dtype=np.int64)
    ev_end_seg[end_ev[end_valid]] = end_pos[end_valid] - 1
    ev_start_seg = np.full(n, -1, dtype=np.int64)
    ev_start_seg[start_ev] = start_pos
    pred = np.arange(m, dtype=np.int64)
    linked = is_re & (ev_end_seg >= 0)
    pred[ev_start_seg[linked]] = ev_end_seg[linked]
    nodes = np.flatnonzero(pred != np.arange(m))  # segments continuing a realloc chain
    while len(nodes):  # pointer jumping: every segment -> the first segment of its chain
        nxt = pred[pred[nodes]]
        moved = nxt != pred[nodes]
        pred[nodes] = nxt
        nodes = nodes[moved]
    roots = np.flatnonzero(s_start & (pred == np.arange(m)))
    roots = roots[np.argsort(s_ev[roots], kind="stable")]  # slots in order of first malloc
    slot_of_root = np.full(m, -1, dtype=np.int64)
    slot_of_root[roots] = np.arange(len(roots))
    seg_slot = slot_of_root[pred]

    # -- rows ---------------------------------------------------------------------------
    keep = np.ones(n, dtype=bool)
    free_dropped = (kind == EV_FREE) & (ev_end_seg < 0)
    keep &= ~free_dropped
    op_kind = np.where(kind == EV_ALLOC, OP_MALLOC,
                       np.where(kind == EV_FREE, OP_FREE,
                                np.where(linked, OP_REALLOC, OP_MALLOC))).astype(np.int64)
    op_slot = np.where(kind == EV_FREE, seg_slot[np.maximum(ev_end_seg, 0)],
                       seg_slot[np.maximum(ev_start_seg, 0)])
    op_size = np.where(kind == EV_FREE, 0, size)
    idx = np.flatnonzero(keep)
    key_ev = idx.astype(np.int64) * 2 + 1
    rows_k, rows_s, rows_z = op_kind[idx], op_slot[idx], op_size[idx]
    rows_t = times[idx] if times is not None else None
    imp = np.flatnonzero(over_live)  # lenient: free the live block an allocation lands on
    if len(imp):
        imp_ev = s_ev[imp]
        key_ev = np.concatenate([key_ev, imp_ev.astype(np.int64) * 2])
        rows_k = np.concatenate([rows_k, np.full(len(imp), OP_FREE, np.int64)])
        rows_s = np.concatenate([rows_s, seg_slot[imp - 1]])
        rows_z = np.concatenate([rows_z, np.zeros(len(imp), np.int64)])
        if rows_t is not None:
            rows_t = np.concatenate([rows_t, times[imp_ev]])  # type: ignore[index]
        o = np.argsort(key_ev, kind="stable")
        rows_k, rows_s, rows_z = rows_k[o], rows_s[o], rows_z[o]
        if rows_t is not None:
            rows_t = rows_t[o]
    ops = np.empty((len(rows_k), 3), dtype=np.int64)
    ops[:, 0], ops[:, 1], ops[:, 2] = rows_k, rows_s, rows_z
    if not strict:
        pre_n = sum(meta.get("pre_capture", {}).values())
        repaired["dropped_frees"] = int(free_dropped.sum())
        repaired["realloc_as_malloc"] = int((is_re & ~linked).sum())
        repaired["dropped_frees"] -= meta.get("pre_capture", {}).get("frees", 0)
        repaired["realloc_as_malloc"] -= meta.get("pre_capture", {}).get("reallocs", 0)
        del pre_n
        repaired["implicit_frees"] = int(len(imp))
        meta["repaired"] = repaired
    if rows_t is not None and len(rows_t):
        rows_t = rows_t - rows_t[0]
    return OpStream(ops, int(len(roots)), rows_t, source, fmt, meta)
