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

The stream itself -- :class:`OpStream`, its ``.npz`` file (``OpStream.save`` /
:func:`load_npz`) and :func:`validate_ops` -- lives in :mod:`simalloc.workloads.opstream`
(the ``trace`` workload replays it) and is importable from here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..constants import MAX_REQUEST, OP_FREE, OP_MALLOC, OP_REALLOC
from ..errors import TraceError
from ..workloads.opstream import OpStream, load_npz, validate_ops

__all__ = ["EV_ALLOC", "EV_FREE", "EV_REALLOC", "EventList", "OpStream", "events_to_stream",
           "load_npz", "validate_ops"]

#: Event kinds (a reader's vocabulary; realloc carries both addresses).
EV_ALLOC = 0
EV_FREE = 1
EV_REALLOC = 2


def _hex(addr: int) -> str:
    return f"{addr:#x}"


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
