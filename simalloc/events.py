"""The decision log: every slow-path event and release-policy decision, as a structured record.

The hot path (the kernel) never logs.  The slow path and the superslab life cycle call
:meth:`EventLog.emit` at each event, behind one ``if st.log is not None`` -- so a heap without a
log (the default) pays one attribute test per slow-path event and nothing else::

    Heap(events=True)          records kept in memory:  heap.events()  -> list of dicts
                                                        heap.events(as_array=True) -> numpy
    Heap(events=sink)          each record (a dict) is passed to sink(record); nothing kept
    Heap(events=BreakOn("unmap"))          stop in pdb at the first unmap decision
    simalloc run ... --events FILE         JSON lines, one record per line
    simalloc run ... --break KIND          pdb at the first record of KIND (pure-Python kernel)

Both forms load straight into pandas: ``pd.DataFrame(heap.events())``, or
``pd.DataFrame(heap.events(as_array=True))``, or ``pd.read_json(FILE, lines=True)``.

Record fields (:data:`FIELDS`; -1 / "" / 0 when a field does not apply):

============  =====================================================================================
field         meaning
============  =====================================================================================
ops           operations applied when the event happened (the kernel's clock)
virtual_ns    the heap's virtual clock in ns (``Clock.virtual_ns``: ops x ``ns_per_op`` + time idle)
seconds       wall seconds since the heap opened (a slab_empty the kernel queued in a batch: when
              the slow path took the queue -- its ops and virtual_ns are the event's own)
kind          what happened (table below)
ss            superslab index
slab          slab index inside it
cls           size class
stage         ``refill``: the stage taken -- W (warm pool), 0.5, 1, partial, 2, 3 (slowpath.py);
              ``decommit_superslab``: ``empty`` (decided as it emptied) or ``cached`` (purged later)
advice        madvise advice of a decommit (FREE or DONTNEED)
bytes         bytes the event concerns: mapped, kept, decommitted or unmapped
why           the reason in words: the policy's for decisions (``Release.why``,
              ``decommit_slab(..., why=)``, else the policy's ``last_reason``), the slow path's else
============  =====================================================================================

Kinds (:data:`KINDS`) and the ``stats()`` counters their counts equal (tests/test_events.py):

===================  ============================================  ==========================================
kind                 when                                          count equals
===================  ============================================  ==========================================
slab_empty           a slab's last block came back                 ``slab_empty_events``
superslab_empty      every slab of a superslab is empty            ``ss_empty_events``
refill               a class bound a new current slab (``stage``)  ``slow_refills``; per stage ``stage_*``
                                                                   (stage 2 = ``stage_2_unused`` +
                                                                   ``stage_2_empty_other``)
acquire_lru          a superslab taken back from the LRU cache     ``ss_from_lru``
acquire_mmap         a fresh superslab mapped (Stage 3, prefill)   ``ss_fresh``
keep                 policy: the empty superslab stays committed   ``ss_cached - lean_decommit``
decommit_slab        policy: an EMPTY slab's pages given back      ``slab_decommits``
decommit_superslab   policy: an empty superslab's pages given back ``lean_decommit`` (empty) +
                                                                   ``cached_decommits`` (cached)
unmap                policy: the empty superslab is unmapped       ``ss_unmapped - lru_evictions``
evict                the LRU cache's count / bytes / TTL limit     ``lru_evictions``
                     unmapped a cached superslab
tick                 the policy's clock hook ran (``tick()``)      (no counter)
===================  ============================================  ==========================================

Not logged: prewarm (superslabs mapped before the first operation, ``prewarm_superslabs``),
the Mid and large tiers, and the unmaps of ``close()``.

Stopping in the debugger (issue 12): :class:`BreakOn` is a sink that calls ``breakpoint()``
(so ``PYTHONBREAKPOINT`` applies) at the first record of a kind.  In that frame ``record`` is
the event, ``ctx`` the policy's :class:`~simalloc.policy.PolicyContext`, ``policy`` the
policy and ``ev`` the event the policy saw (``SuperslabEvent`` / ``SlabEvent``, or None);
``up`` walks into the slow path and -- for ``decommit_slab`` and ``decommit_superslab``
(``cached``) -- into the policy's own frame that made the call; ``debug
policy.on_superslab_empty(ctx, ev)`` steps through a superslab decision again (the Release it
returns is not applied; a policy that counts will count twice); ``q`` ends the run with
``BdbQuit`` (``simalloc run`` then exits 1).  Use the pure-Python kernel
(``kernel="python"``) to see every frame::

    from simalloc import Heap
    from simalloc.events import BreakOn
    heap = Heap(kernel="python", policy="lean", events=BreakOn("decommit_superslab"))
"""

from __future__ import annotations

import json
from collections.abc import Callable
from time import monotonic
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from .constants import C_OPS
from .errors import ConfigError
from .policy import SlabEvent, SuperslabEvent

if TYPE_CHECKING:
    from .policy import PolicyContext, ReleasePolicy
    from .state import HeapState

__all__ = ["FIELDS", "KINDS", "STAGES", "BreakOn", "EventLog", "JsonLines", "Sink", "Tee", "break_on",
           "make_log", "records_of", "run_sink"]

#: The fields of a record, in order.
FIELDS = ("ops", "virtual_ns", "seconds", "kind", "ss", "slab", "cls", "stage", "advice", "bytes", "why")
#: Every kind of record (module docstring).
KINDS = ("slab_empty", "superslab_empty", "refill", "acquire_lru", "acquire_mmap", "keep", "decommit_slab",
         "decommit_superslab", "unmap", "evict", "tick")
#: Refill stages (slowpath.py) and the ``stats()`` counters that count them.
STAGES: dict[str, tuple[str, ...]] = {
    "W": ("stage_warm_pool",), "0.5": ("stage_0_5_reuse",), "1": ("stage_1_free_slot",),
    "partial": ("stage_partial",), "2": ("stage_2_unused", "stage_2_empty_other"), "3": ("stage_3_new_ss",),
}
_INT_FIELDS = ("ops", "virtual_ns", "ss", "slab", "cls", "bytes")
_STR_FIELDS = ("kind", "stage", "advice", "why")

Sink = Callable[[dict[str, Any]], None]


class EventLog:
    """One heap's decision log: builds records, keeps them (``sink`` None) or passes each to
    ``sink``.  The slow path owns the only calls to :meth:`emit`."""

    __slots__ = ("_state", "_sink", "_rows", "ctx")

    def __init__(self, state: HeapState, ctx: PolicyContext, sink: Sink | None = None) -> None:
        self._state = state
        self._sink = sink
        self._rows: list[tuple[Any, ...]] = []
        self.ctx = ctx
        attach = getattr(sink, "attach", None)
        if callable(attach):  # BreakOn (and Tee) want the policy's view of the heap
            attach(ctx, state.policy)

    def emit(self, kind: str, ss: int = -1, slab: int = -1, cls: int = -1, stage: str = "",
             advice: str = "", nbytes: int = 0, why: str = "", ops: int | None = None) -> None:
        """Record one event now (the clock is read here: the fields of ``HeapState.clock()``,
        without building a Clock); ``ops``: an event the kernel queued at that operation count
        (its virtual time follows from it; the wall seconds stay the delivery's)."""
        st = self._state
        if ops is None:
            ops = st.kernel.counters.item(C_OPS)  # = st.ops(), the cheapest way (hot for churn)
        row = (ops, st.virtual_ns(ops), monotonic() - st.t0, kind, ss, slab, cls, stage, advice, nbytes, why)
        if self._sink is None:
            self._rows.append(row)
        else:
            self._sink(dict(zip(FIELDS, row, strict=True)))

    def __len__(self) -> int:
        return len(self._rows)

    def records(self) -> list[dict[str, Any]]:
        """The kept records as dicts (empty when a sink receives them instead)."""
        return [dict(zip(FIELDS, r, strict=True)) for r in self._rows]

    def array(self) -> np.ndarray:
        """The kept records as a numpy structured array (strings as fixed-width unicode)."""
        return _array(self._rows)


def _array(rows: list[tuple[Any, ...]]) -> np.ndarray:
    width = {f: max([1, *(len(r[FIELDS.index(f)]) for r in rows)]) for f in _STR_FIELDS}
    dtype = [(f, "<f8") if f == "seconds" else (f, "<i8") if f in _INT_FIELDS else (f, f"<U{width[f]}")
             for f in FIELDS]
    return np.array(rows, dtype=dtype)


def make_log(events: bool | Sink | None, state: HeapState, ctx: PolicyContext) -> EventLog | None:
    """The log ``Heap(events=...)`` asks for: None (off) for None/False, kept records for
    True, a sink for a callable.  Anything else raises ConfigError."""
    if events is None or events is False:
        return None
    if events is True:
        return EventLog(state, ctx)
    if callable(events):
        return EventLog(state, ctx, events)
    raise ConfigError(f"events must be True, False, None or a callable sink, not {type(events).__name__}")


def records_of(log: EventLog | None, as_array: bool = False) -> list[dict[str, Any]] | np.ndarray:
    """What ``Heap.events()`` returns for ``log`` (an empty list or array when off)."""
    if log is None:
        return _array([]) if as_array else []
    return log.array() if as_array else log.records()


# ---------------------------------------------------------------------------- sinks
class JsonLines:
    """A sink writing each record as one JSON line to ``target`` (a path or an open text file;
    a path is opened, truncated and owned).  Each line is written as the event happens;
    :meth:`close` flushes (and closes a file it opened)."""

    def __init__(self, target: str | TextIO) -> None:
        if isinstance(target, str):
            try:
                self._out: TextIO = open(target, "w", encoding="utf-8")  # noqa: SIM115 (closed by close())
            except OSError as exc:
                raise ConfigError(f"--events {target}: cannot open ({exc})") from exc
            self._owned = True
        else:
            self._out, self._owned = target, False
        self.count = 0

    def __call__(self, record: dict[str, Any]) -> None:
        self._out.write(json.dumps(record, allow_nan=False))
        self._out.write("\n")
        self.count += 1

    def close(self) -> None:
        self._out.flush()
        if self._owned:
            self._out.close()


class Tee:
    """A sink passing each record to several sinks in order (e.g. a file and a :class:`BreakOn`)."""

    def __init__(self, *sinks: Sink) -> None:
        self.sinks = sinks

    def attach(self, ctx: PolicyContext, policy: ReleasePolicy) -> None:
        for s in self.sinks:
            attach = getattr(s, "attach", None)
            if callable(attach):
                attach(ctx, policy)

    def __call__(self, record: dict[str, Any]) -> None:
        for s in self.sinks:
            s(record)

    def close(self) -> None:
        for s in self.sinks:
            close = getattr(s, "close", None)
            if callable(close):
                close()


class BreakOn:
    """A sink that stops in pdb (``breakpoint()``) at the first record of ``kind`` (every one
    with ``every=True``).  See the module docstring for what the stopped frame shows."""

    def __init__(self, kind: str, *, every: bool = False) -> None:
        if kind not in KINDS:
            raise ConfigError(f"unknown event kind {kind!r}; expected one of {', '.join(KINDS)}")
        self.kind = kind
        self.every = every
        self.hits = 0
        self.ctx: PolicyContext | None = None
        self.policy: ReleasePolicy | None = None

    def attach(self, ctx: PolicyContext, policy: ReleasePolicy) -> None:
        """Called by the heap's log: the context and policy the stopped frame shows."""
        self.ctx, self.policy = ctx, policy

    def __call__(self, record: dict[str, Any]) -> None:
        if record["kind"] != self.kind or (self.hits and not self.every):
            return
        self.hits += 1
        self.stop(record)

    def stop(self, record: dict[str, Any]) -> None:
        """The frame pdb opens in: ``record``, ``ctx``, ``policy`` and ``ev`` are its locals."""
        ctx, policy = self.ctx, self.policy
        ev: SlabEvent | SuperslabEvent | None = None
        if record["kind"] == "slab_empty":
            ev = SlabEvent(record["ss"], record["slab"], record["cls"], record["ops"], record["seconds"])
        elif record["kind"] in ("superslab_empty", "keep", "unmap", "decommit_superslab") \
                and record["stage"] != "cached":
            ev = SuperslabEvent(record["ss"], record["ops"], record["seconds"])
        hook = ("on_slab_empty" if isinstance(ev, SlabEvent) else "on_superslab_empty" if ev is not None
                else "")
        again = f"\n  'debug policy.{hook}(ctx, ev)' steps through the decision again (not applied)." if hook else ""
        print(f"simalloc: stopped at {record['kind']} (ops={record['ops']}, superslab {record['ss']}, "
              f"slab {record['slab']}): {record['why']}\n  locals: record, ctx, policy, ev; 'up' walks into "
              f"the slow path (and, for purges a policy made, the policy's own frame); 'c' continues.{again}",
              flush=True)
        breakpoint()  # PYTHONBREAKPOINT applies
        _here = (record, ctx, policy, ev)  # <- you are here: p record; p ctx; p policy; up; c
        del _here


def break_on(kind: str, *, every: bool = False, then: Sink | None = None) -> Sink:
    """A sink for ``Heap(events=...)`` that stops in pdb at the first record of ``kind``
    (``then``: another sink that receives every record too, e.g. a :class:`JsonLines`)."""
    brk = BreakOn(kind, every=every)
    return brk if then is None else Tee(then, brk)


def run_sink(path: str = "", break_kind: str = "") -> Tee | None:
    """The sink of ``simalloc run --events FILE --break KIND`` (None when neither is given);
    the caller closes it when the run ends."""
    sinks: list[Sink] = []
    if path:
        sinks.append(JsonLines(path))
    if break_kind:
        sinks.append(BreakOn(break_kind))
    return Tee(*sinks) if sinks else None
