"""Trace readers: CS:APP malloclab ``.rep``, glibc ``mtrace``, ``ltrace`` output, memray
capture files and simalloc's own op-stream ``.npz`` -- all to one :class:`OpStream`.

:func:`read_trace` picks the reader from the file name or its first bytes (``fmt=`` forces
one).  Every reader checks its whole input before returning, and any defect -- a truncated
record, an unknown op, a negative size, a header whose counts disagree with the body, a free of
an address that is not live -- raises :class:`~simalloc.errors.TraceError` whose message
starts ``FILE: line N:`` (``record N`` for memray, ``op N`` for ``.npz``).

==========  ======================================================================  =====
format      what is read                                                            times
==========  ======================================================================  =====
``rep``     header ``heap_size num_ids num_ops weight`` (or ``num_ids num_ops``),   no
            then ``a ID BYTES`` / ``r ID BYTES`` / ``f ID``; IDs are the addresses
``mtrace``  ``+ PTR SIZE``, ``- PTR``, ``< OLD`` + ``> NEW SIZE`` (realloc),           no
            ``! OLD SIZE`` (failed realloc, ignored), optional ``@ caller`` prefix
``ltrace``  ``malloc(N) = P``, ``calloc(N, M) = P``, ``realloc(P, N) = Q``,              yes, with
            ``free(P)``, ``aligned_alloc/memalign(A, N) = P``, ``valloc(N) = P``;    -t/-tt/
            ``[pid N]`` / ``PID`` prefixes, ``lib->`` prefixes, ``<unfinished ...>``   -ttt/-r
            / ``<... resumed>`` pairs; other functions are skipped and counted
``memray``  ``memray.FileReader(path).get_allocation_records()``: MALLOC, CALLOC,     no
            POSIX_MEMALIGN, ALIGNED_ALLOC, MEMALIGN, VALLOC, PVALLOC, REALLOC, FREE
            and the PYMALLOC_* kinds; a FREE followed (same thread) by REALLOC is one
            realloc; MMAP/MUNMAP are skipped (``include_mmap=True`` replays them)
``npz``     an op stream written by ``OpStream.save`` (validated again)             kept
==========  ======================================================================  =====

Null results are not allocations (``malloc = 0``: skipped; ``free(0)``: skipped;
``realloc(p, 0) = 0``: a free of ``p``; a failed realloc: nothing happened).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import TraceError
from .opstream import (
    EV_ALLOC,
    EV_FREE,
    EV_REALLOC,
    EventList,
    OpStream,
    events_to_stream,
    load_npz,
)

__all__ = ["FORMATS", "MEMRAY_MISSING", "detect_format", "read_ltrace", "read_memray",
           "read_mtrace", "read_rep", "read_trace"]

FORMATS = ("rep", "mtrace", "ltrace", "memray", "npz")
MEMRAY_MISSING = ("memray is not installed: install the trace extra "
                  "(pip install 'simalloc[trace]', or pip install memray)")
_MEMRAY_MAGIC = b"memray"
_LZ4_MAGIC = b"\x04\x22\x4d\x18"  # memray run compresses its captures (lz4 frames)


def _lines(path: str) -> Iterable[tuple[int, str]]:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            yield from enumerate(fh, 1)
    except OSError as exc:
        raise TraceError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def _int(text: str, path: str, line: int, what: str, base: int = 10) -> int:
    try:
        return int(text, base)
    except ValueError:
        raise TraceError(f"{path}: line {line}: {what} {text!r} is not an integer") from None


# ---------------------------------------------------------------------------- .rep
def read_rep(path: str | os.PathLike[str], *, strict: bool = True) -> OpStream:
    """CS:APP malloclab ``.rep`` (mdriver's ``read_trace``).  IDs act as addresses, so an ID
    freed and allocated again is a new slot; the header's ``num_ids`` bounds the IDs and its
    ``num_ops`` must equal the number of op lines."""
    p = str(path)
    header: list[tuple[int, int]] = []  # (value, line)
    ev = EventList()
    header_done = False
    for n, raw in _lines(p):
        toks = raw.split()
        if not toks:
            continue
        if not header_done and toks[0].lstrip("-").isdigit():
            for t in toks:
                header.append((_int(t, p, n, "header field"), n))
            continue
        if not header_done:
            header_done = True
            if len(header) not in (2, 4):
                where = header[-1][1] if header else n
                raise TraceError(f"{p}: line {where}: header has {len(header)} numbers; expected "
                                 f"4 (heap_size num_ids num_ops weight) or 2 (num_ids num_ops)")
            vals = [v for v, _ in header]
            num_ids, num_ops = (vals[1], vals[2]) if len(vals) == 4 else (vals[0], vals[1])
            hdr_line = header[-1][1]
            if num_ids < 0 or num_ops < 0:
                raise TraceError(f"{p}: line {hdr_line}: negative count in the header "
                                 f"(num_ids={num_ids}, num_ops={num_ops})")
        op = toks[0]
        need = {"a": 3, "r": 3, "f": 2}.get(op)
        if need is None:
            raise TraceError(f"{p}: line {n}: unknown op {op!r} (expected a, r or f)")
        if len(toks) < need:
            raise TraceError(f"{p}: line {n}: truncated record {raw.strip()!r} "
                             f"('{op}' needs {need - 1} field{'s' if need > 2 else ''})")
        if len(toks) > need:
            raise TraceError(f"{p}: line {n}: unexpected field(s) after {' '.join(toks[:need])!r}")
        ident = _int(toks[1], p, n, "id")
        if not 0 <= ident < num_ids:
            raise TraceError(f"{p}: line {n}: id {ident} out of range 0..{num_ids - 1} "
                             f"(header num_ids={num_ids})")
        if op == "f":
            ev.free(ident, n)
            continue
        size = _int(toks[2], p, n, "size")
        if size < 0:
            raise TraceError(f"{p}: line {n}: negative size {size}")
        if op == "a":
            ev.alloc(ident, size, n)
        else:
            ev.realloc(ident, ident, size, n)
    if not header_done:
        if len(header) not in (2, 4):
            where = header[-1][1] if header else 1
            raise TraceError(f"{p}: line {where}: header has {len(header)} numbers; expected "
                             f"4 (heap_size num_ids num_ops weight) or 2 (num_ids num_ops)")
        vals = [v for v, _ in header]
        num_ops = vals[2] if len(vals) == 4 else vals[1]
        hdr_line = header[-1][1]
    if len(ev) != num_ops:
        raise TraceError(f"{p}: line {hdr_line}: header says num_ops={num_ops} but the file has "
                         f"{len(ev)} op line{'s' if len(ev) != 1 else ''}"
                         + (" (truncated?)" if len(ev) < num_ops else ""))
    return ev.to_stream(p, "rep", strict=strict, addr_fmt=str, what="id",
                        meta={"header": [v for v, _ in header]})


# ---------------------------------------------------------------------------- mtrace
_MT_CALLER = re.compile(r"^@ .*?\] ")
_NULLS = {"(nil)", "0", "0x0", "nil", "null", "NULL", "(null)"}


def _ptr(text: str, path: str, line: int) -> int:
    t = text.strip().rstrip(",")
    if t in _NULLS:
        return 0
    if not t.lower().startswith("0x"):
        raise TraceError(f"{path}: line {line}: {t!r} is not a pointer (expected 0x...)")
    v = _int(t, path, line, "pointer", 16)
    if v < 0 or v >= 1 << 64:
        raise TraceError(f"{path}: line {line}: pointer {t} out of range")
    return v


def read_mtrace(path: str | os.PathLike[str], *, strict: bool = True) -> OpStream:
    """glibc ``mtrace`` output (``MALLOC_TRACE=file``; since glibc 2.34 with
    ``LD_PRELOAD=libc_malloc_debug.so``)."""
    p = str(path)
    ev = EventList()
    pending_old: tuple[int, int] | None = None  # (old pointer, line) of a '<'
    started = ended = False
    skipped = {"failed": 0, "null_free": 0}
    for n, raw in _lines(p):
        line = raw.rstrip("\n")
        if not line.strip():
            continue
        line = _MT_CALLER.sub("", line, count=1)
        if line.startswith("@ "):
            raise TraceError(f"{p}: line {n}: malformed caller prefix {raw.strip()!r}")
        op, _, rest = line.partition(" ")
        toks = rest.split()
        if op == "=":
            if toks[:1] == ["Start"]:
                started, ended = True, False
            elif toks[:1] == ["End"]:
                ended = True
            else:
                raise TraceError(f"{p}: line {n}: unknown marker {line!r} (expected '= Start' or '= End')")
            continue
        if ended:
            raise TraceError(f"{p}: line {n}: record after '= End'")
        if pending_old is not None and op != ">":
            raise TraceError(f"{p}: line {pending_old[1]}: realloc '<' is not followed by its '>' line")
        need = {"+": 2, "-": 1, "<": 1, ">": 2, "!": 2}.get(op)
        if need is None:
            raise TraceError(f"{p}: line {n}: unknown op {op!r} in {raw.strip()!r} "
                             f"(expected + - < > ! or =)")
        if len(toks) < need:
            raise TraceError(f"{p}: line {n}: truncated record {raw.strip()!r}")
        if len(toks) > need:
            raise TraceError(f"{p}: line {n}: unexpected field(s) in {raw.strip()!r}")
        ptr = _ptr(toks[0], p, n)
        size = _int(toks[1], p, n, "size", 16) if need == 2 else 0
        if size < 0:
            raise TraceError(f"{p}: line {n}: negative size {toks[1]}")
        if op == "+":
            if ptr:
                ev.alloc(ptr, size, n)
            else:
                skipped["failed"] += 1
        elif op == "-":
            if ptr:
                ev.free(ptr, n)
            else:
                skipped["null_free"] += 1
        elif op == "<":
            pending_old = (ptr, n)
        elif op == ">":
            if pending_old is None:
                raise TraceError(f"{p}: line {n}: realloc '>' without the '<' line before it")
            old = pending_old[0]
            pending_old = None
            if not ptr:
                skipped["failed"] += 1
            elif old:
                ev.realloc(old, ptr, size, n)
            else:
                ev.alloc(ptr, size, n)
        else:  # '!': a failed realloc changed nothing
            skipped["failed"] += 1
    if pending_old is not None:
        raise TraceError(f"{p}: line {pending_old[1]}: truncated realloc ('<' without '>' at end of file)")
    meta: dict[str, Any] = {"skipped": skipped, "start_marker": started}
    return ev.to_stream(p, "mtrace", strict=strict, meta=meta)


# ---------------------------------------------------------------------------- ltrace
_LT_PREFIX = re.compile(
    r"^\s*(?:\[pid (?P<pid1>\d+)\]\s+|(?P<pid2>\d+)\s+(?=\S))?"
    r"(?:(?P<ts>\d+:\d+:\d+\.\d+|\d+\.\d+)\s+)?(?P<body>.*)$")
_LT_CALL = re.compile(r"^(?:[\w.+\-]+->)?(?P<fn>\w+)\((?P<args>.*)$")
_LT_RESUMED = re.compile(r"^<\.\.\. (?P<fn>\w+) resumed>\s?(?P<args>.*)$")
_LT_RESULT = re.compile(r"^(?P<args>.*?)\)\s*=\s*(?P<ret>\S+)(?:\s+<(?P<dur>[\d.]+)>)?\s*$")
_LT_UNFINISHED = re.compile(r"^(?P<args>.*?)\s*<unfinished \.\.\.>\s*$")
# function -> (arguments, index of the size argument(s), pointer argument index)
_LT_FUNCS: dict[str, tuple[int, tuple[int, ...], int | None]] = {
    "malloc": (1, (0,), None),
    "calloc": (2, (0, 1), None),
    "realloc": (2, (1,), 0),
    "reallocarray": (3, (1, 2), 0),
    "free": (1, (), 0),
    "cfree": (1, (), 0),
    "aligned_alloc": (2, (1,), None),
    "memalign": (2, (1,), None),
    "valloc": (1, (0,), None),
    "pvalloc": (1, (0,), None),
}


def _lt_time(ts: str, state: dict[str, float]) -> float:
    if ":" in ts:
        h, mnt, s = ts.split(":")
        t = int(h) * 3600 + int(mnt) * 60 + float(s)
        if "last" in state and t < state["last"] - 43200:  # past midnight
            state["wrap"] = state.get("wrap", 0.0) + 86400
        state["last"] = t
        return t + state.get("wrap", 0.0)
    v = float(ts)
    if v < 1e6:  # -r: seconds since the previous line
        state["rel"] = state.get("rel", 0.0) + v
        return state["rel"]
    return v


def read_ltrace(path: str | os.PathLike[str], *, strict: bool = True) -> OpStream:
    """``ltrace -e malloc+free+realloc+calloc`` output (any of ``-f``, ``-o``, ``-t``/``-tt``/
    ``-ttt``/``-r``, ``-T``).  Calls complete where their result is printed, so an
    ``<unfinished ...>`` call takes effect at its ``<... resumed>`` line."""
    p = str(path)
    ev = EventList()
    pending: dict[tuple[str, str], tuple[str, int]] = {}
    tstate: dict[str, float] = {}
    skipped: dict[str, int] = {"other_functions": 0, "failed": 0, "null_free": 0,
                               "posix_memalign": 0, "events": 0}
    for n, raw in _lines(p):
        line = raw.rstrip("\n")
        if not line.strip():
            continue
        m = _LT_PREFIX.match(line)
        assert m is not None  # the body group matches anything
        pid = m.group("pid1") or m.group("pid2") or ""
        body = m.group("body").strip()
        t = _lt_time(m.group("ts"), tstate) if m.group("ts") else np.nan
        if body.startswith(("+++", "---")):
            skipped["events"] += 1
            continue
        r = _LT_RESUMED.match(body)
        if r:
            fn = r.group("fn")
            key = (pid, fn)
            if key not in pending:
                if fn in _LT_FUNCS:
                    raise TraceError(f"{p}: line {n}: '<... {fn} resumed>' without its "
                                     f"'<unfinished ...>' line")
                skipped["other_functions"] += 1
                continue
            first_args, _first_line = pending.pop(key)
            tail = r.group("args")
            res = _LT_RESULT.match(tail)
            if not res:
                raise TraceError(f"{p}: line {n}: truncated record {body!r} (no result)")
            args = (first_args + res.group("args")).strip()
            _lt_event(ev, fn, args, res.group("ret"), p, n, t, skipped)
            continue
        c = _LT_CALL.match(body)
        if not c:
            raise TraceError(f"{p}: line {n}: unrecognised line {body!r}")
        fn, rest = c.group("fn"), c.group("args")
        if fn == "posix_memalign":
            skipped["posix_memalign"] += 1  # the result is written through a pointer we cannot see
            continue
        u = _LT_UNFINISHED.match(rest)
        if u:
            if fn in _LT_FUNCS:
                pending[(pid, fn)] = (u.group("args"), n)
            continue
        if fn not in _LT_FUNCS:
            skipped["other_functions"] += 1
            continue
        res = _LT_RESULT.match(rest)
        if not res:
            raise TraceError(f"{p}: line {n}: truncated record {body!r} (no ') = result')")
        _lt_event(ev, fn, res.group("args"), res.group("ret"), p, n, t, skipped)
    if pending:
        (_pid, fn), (_args, lineno) = min(pending.items(), key=lambda kv: kv[1][1])
        raise TraceError(f"{p}: line {lineno}: {fn}() <unfinished ...> never resumed "
                         f"(truncated trace?)")
    return ev.to_stream(p, "ltrace", strict=strict, meta={"skipped": skipped})


def _lt_event(ev: EventList, fn: str, args_text: str, ret: str, p: str, n: int, t: float,
              skipped: dict[str, int]) -> None:
    nargs, size_idx, ptr_idx = _LT_FUNCS[fn]
    args = [a.strip() for a in args_text.split(",")] if args_text.strip() else []
    if len(args) != nargs:
        raise TraceError(f"{p}: line {n}: {fn}() has {len(args)} argument(s), expected {nargs}")
    size = 1
    for i in size_idx:
        v = _int(args[i], p, n, f"{fn}() size", 0) if args[i].lower().startswith("0x") \
            else _int(args[i], p, n, f"{fn}() size")
        if v < 0:
            raise TraceError(f"{p}: line {n}: negative size {v} in {fn}()")
        size *= v
    old = _ptr(args[ptr_idx], p, n) if ptr_idx is not None else 0
    if fn in ("free", "cfree"):
        if old:
            ev.free(old, n, t)
        else:
            skipped["null_free"] += 1
        return
    new = _ptr(ret, p, n)
    if ptr_idx is None:  # malloc-like
        if new:
            ev.alloc(new, size, n, t)
        else:
            skipped["failed"] += 1
        return
    if not old:  # realloc(NULL, n) = malloc
        if new:
            ev.alloc(new, size, n, t)
        else:
            skipped["failed"] += 1
    elif new:
        ev.realloc(old, new, size, n, t)
    elif size == 0:  # realloc(p, 0) = NULL frees p
        ev.free(old, n, t)
    else:
        skipped["failed"] += 1


# ---------------------------------------------------------------------------- memray
# memray.AllocatorType values (stable in memray's file format).
_M_PYFREE, _M_PYMALLOC, _M_PYCALLOC, _M_PYREALLOC = 1, 2, 3, 4
_M_FREE, _M_MALLOC, _M_REALLOC, _M_CALLOC = 5, 6, 7, 8
_M_MMAP, _M_MUNMAP = 14, 15
_M_ALLOCS = (_M_PYMALLOC, _M_PYCALLOC, _M_MALLOC, _M_CALLOC, 9, 10, 11, 12, 13)
_RECORD_DTYPE = np.dtype([("k", np.uint8), ("a", np.uint64), ("s", np.uint64), ("t", np.int64)])


class _Stderr:
    """Capture file descriptor 2 (memray's C++ reader reports a truncated or corrupt capture
    only as ``Memray ERROR: ...`` lines there) and give back what was written."""

    def __enter__(self) -> _Stderr:
        import tempfile

        sys.stderr.flush()
        self.tmp = tempfile.TemporaryFile()
        self.saved = os.dup(2)
        os.dup2(self.tmp.fileno(), 2)
        self.text = ""
        return self

    def __exit__(self, *exc: object) -> None:
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.tmp.seek(0)
        self.text = self.tmp.read().decode("utf-8", "replace")
        self.tmp.close()
        other = "".join(ln for ln in self.text.splitlines(True) if "Memray ERROR" not in ln)
        if other:
            sys.stderr.write(other)

    def memray_error(self) -> str | None:
        errs = [ln.split("ERROR:", 1)[1].strip() for ln in self.text.splitlines() if "Memray ERROR" in ln]
        return errs[0] if errs else None


def _memray_reader(p: str) -> Any:
    try:
        import memray
    except ImportError as exc:
        raise TraceError(f"{p}: {MEMRAY_MISSING}") from exc
    try:
        try:
            return memray.FileReader(p, report_progress=False)
        except TypeError:  # older memray without report_progress
            return memray.FileReader(p)
    except Exception as exc:
        raise TraceError(f"{p}: not a readable memray capture: {exc}") from exc


def memray_records(path: str | os.PathLike[str]) -> np.ndarray:
    """Every allocation record of a memray capture as a structured array (``k`` allocator,
    ``a`` address, ``s`` size, ``t`` thread id), read through ``memray.FileReader``.  A
    truncated or corrupt capture (memray's reader stops early and says so on stderr) raises
    TraceError naming the first record it could not read."""
    import operator

    p = str(path)
    with _Stderr() as err:
        reader = _memray_reader(p)
        get = operator.attrgetter("allocator", "address", "size", "tid")
        try:
            recs = np.fromiter(map(get, reader.get_allocation_records()), dtype=_RECORD_DTYPE)
        except Exception as exc:
            raise TraceError(f"{p}: memray could not read the capture: {exc}") from exc
        finally:
            try:
                reader.close()
            except Exception:
                pass
    msg = err.memray_error()
    if msg:
        raise TraceError(f"{p}: record {len(recs) + 1}: truncated or corrupt capture "
                         f"(memray: {msg}; {len(recs):,} records read before it)")
    return recs


def memray_snapshots(path: str | os.PathLike[str]) -> list[tuple[float, int, int]]:
    """The capture's memory records: ``(seconds since the first, rss bytes, heap bytes)``."""
    p = str(path)
    reader = _memray_reader(p)
    try:
        snaps = list(reader.get_memory_snapshots())
    except Exception as exc:
        raise TraceError(f"{p}: memray could not read the memory records: {exc}") from exc
    if not snaps:
        return []
    t0 = snaps[0].time
    return [((s.time - t0) / 1000.0, int(s.rss), int(s.heap)) for s in snaps]


def read_memray(path: str | os.PathLike[str], *, strict: bool = True,
                include_mmap: bool = False) -> OpStream:
    """A memray capture (``memray run [--native] -o FILE script.py``; the default
    ALL_ALLOCATIONS file format).  Record numbers in messages count from 1 in
    ``get_allocation_records()`` order."""
    p = str(path)
    recs = memray_records(p)
    return records_to_stream(recs, p, strict=strict, include_mmap=include_mmap)


def records_to_stream(recs: np.ndarray, source: str, *, strict: bool = True,
                      include_mmap: bool = False) -> OpStream:
    """memray records (see :func:`memray_records`) -> :class:`OpStream`."""
    k, a, s, tid = recs["k"], recs["a"], recs["s"], recs["t"]
    n = len(recs)
    # one table lookup classifies every record: 0 alloc, 1 free, 2 realloc, 3 pymalloc free,
    # 4 pymalloc realloc, 5 skipped (mmap/munmap), 255 unknown
    lut = np.full(256, 255, dtype=np.uint8)
    lut[list(_M_ALLOCS)] = 0
    lut[[_M_FREE, _M_PYFREE, _M_REALLOC, _M_PYREALLOC]] = [1, 3, 2, 4]
    lut[[_M_MMAP, _M_MUNMAP]] = [0, 1] if include_mmap else [5, 5]
    cls = lut[k]
    if (cls == 255).any():
        i = int(np.flatnonzero(cls == 255)[0])
        raise TraceError(f"{source}: record {i + 1}: unknown allocator kind {int(k[i])}")
    big = s >= np.uint64(1 << 63)
    if big.any():
        i = int(np.flatnonzero(big)[0])
        raise TraceError(f"{source}: record {i + 1}: size {int(s[i])} is out of range")
    # A realloc is recorded as FREE(old) then REALLOC(new, size) by the same thread.
    multi = n > 1 and bool((tid != tid[0]).any())
    prev = np.arange(-1, n - 1, dtype=np.int64)
    if multi:  # several threads: the previous record of the same thread
        order = np.argsort(tid, kind="stable")
        prev[:] = -1
        same = tid[order][1:] == tid[order][:-1]
        prev[order[1:][same]] = order[:-1][same]
    pv = np.maximum(prev, 0)
    pcls = cls[pv]
    pair = (((cls == 2) & (pcls == 1)) | ((cls == 4) & (pcls == 3))) & (prev >= 0)
    cls[cls == 3] = 1
    cls[cls == 4] = 2
    if pair.any():
        cls[prev[pair]] = 6  # the FREE half of a realloc: absorbed
    nulls = (a == 0) & (cls < 3)
    cls[nulls] = 7
    idx = np.flatnonzero(cls < 3)
    ck = cls[idx]
    pi = pair[idx]
    ekind = np.where(pi, 2, ck == 1).astype(np.uint8)  # an unpaired realloc is a malloc
    ea = a[idx]
    eb = np.zeros(len(idx), dtype=np.uint64)
    if pi.any():
        eb[pi] = ea[pi]
        ea[pi] = a[pv[idx[pi]]]
    esize = s[idx].astype(np.int64)
    esize[ck == 1] = 0
    meta = {"records": n,
            "skipped": {"mmap_munmap": int(np.count_nonzero(cls == 5)), "null": int(nulls.sum())},
            "threads": (int(len(np.unique(tid))) if multi else 1) if n else 0}
    assert EV_ALLOC == 0 and EV_FREE == 1 and EV_REALLOC == 2
    return events_to_stream(ekind, ea, eb, esize, idx + 1, None, source=source, fmt="memray",
                            unit="record", strict=strict, meta=meta, pre_capture=True)


# ---------------------------------------------------------------------------- dispatch
def detect_format(path: str | os.PathLike[str]) -> str:
    """The format of ``path``: by extension (``.rep``, ``.npz``, ``.bin``/``.memray``,
    ``.mtrace``, ``.ltrace``), else by content.  Raises TraceError if unrecognised."""
    p = str(path)
    ext = Path(p).suffix.lower()
    by_ext = {".rep": "rep", ".npz": "npz", ".memray": "memray", ".bin": "memray", ".mtrace": "mtrace",
              ".ltrace": "ltrace"}
    if ext in by_ext:
        return by_ext[ext]
    try:
        with open(p, "rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise TraceError(f"{p}: cannot read: {exc.strerror or exc}") from exc
    if head.startswith(_MEMRAY_MAGIC) or head.startswith(_LZ4_MAGIC):
        return "memray"
    if head.startswith(b"PK"):
        return "npz"
    text = head.decode("utf-8", errors="replace")
    for line in text.splitlines():
        s = line.strip()
        if not s:
            continue
        if s.startswith("= Start") or re.match(r"^(@ .*?\] )?[-+<>!] (0x|\(nil\))", s):
            return "mtrace"
        if re.match(r"^-?\d+(\s+-?\d+)*$", s):
            return "rep"
        if _LT_CALL.match(_LT_PREFIX.match(s).group("body").strip()):  # type: ignore[union-attr]
            return "ltrace"
        break
    raise TraceError(f"{p}: line 1: unrecognised trace format (use --format "
                     f"{'/'.join(FORMATS)})")


_READERS: dict[str, Callable[..., OpStream]] = {
    "rep": read_rep, "mtrace": read_mtrace, "ltrace": read_ltrace, "memray": read_memray,
}


def read_trace(path: str | os.PathLike[str], fmt: str | None = None, *,
               strict: bool = True, **options: Any) -> OpStream:
    """Read any supported trace (see the module docstring) into a validated OpStream."""
    p = str(path)
    if not os.path.exists(p):
        raise TraceError(f"{p}: no such file")
    fmt = fmt or detect_format(p)
    if fmt == "npz":
        return load_npz(p)
    reader = _READERS.get(fmt)
    if reader is None:
        raise TraceError(f"{p}: unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    return reader(p, strict=strict, **options)
