"""The presets' shared machinery: the :class:`PresetPolicy` base (clock, fake time, activity
detection, reasons, counts) and the helpers every family uses (slab sizes, the proposed
cached-superslab methods of the context).  The overview is :mod:`simalloc.presets`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import constants as K
from ..policy import PolicyContext, ReleasePolicy

Key = tuple[int, int]  # (superslab, slab); slab -1 stands for the whole (cached) superslab
MS = 1_000_000  # ns per ms
SEC = 1_000_000_000  # ns per s


def _slab_bytes(ctx: PolicyContext, slab: int) -> int:
    """Bytes a slab's decommit gives back (slab 0 keeps its header page; rounded inwards)."""
    start = K.slab_data_start(ctx.config.ss_lg, slab)
    start = -(-start // K.PAGE_SIZE) * K.PAGE_SIZE
    return (slab + 1) * K.SLAB_SIZE - start


def _slab_pages(ctx: PolicyContext, slab: int) -> int:
    return _slab_bytes(ctx, slab) // K.PAGE_SIZE


def _has_cached_api(ctx: PolicyContext) -> bool:
    """Does the context offer the (proposed) cached-superslab methods?  See the module docstring."""
    return (callable(getattr(ctx, "cached_superslabs", None))
            and callable(getattr(ctx, "decommit_cached", None)))


def _cached(ctx: PolicyContext) -> list[tuple[int, float, bool]]:
    """(idx, since, decommitted) of every cached superslab (empty if the context cannot say)."""
    if not _has_cached_api(ctx):
        return []
    api: Any = ctx
    return [(int(i), float(t), bool(d)) for i, t, d in api.cached_superslabs()]


def _decommit_cached(ctx: PolicyContext, idx: int, advice: str, why: str) -> bool:
    if not _has_cached_api(ctx):
        return False
    api: Any = ctx
    return bool(api.decommit_cached(idx, advice, why=why))


def _ms(ns: int | float) -> str:
    return f"{ns / MS:g} ms"


class PresetPolicy(ReleasePolicy):
    """Base of the presets: the clock (``now_ns``), activity detection, the reason of the latest
    slab decision (``last_reason``), event counts (``counts``) and ``describe()`` from
    :meth:`knobs`.

    ``time_source`` (keyword, every preset): a zero-argument callable returning the time in ns;
    when given it replaces the heap's clock (tests drive time with it instead of sleeping).

    ``refill_order`` declares the partial-slab refill order the preset's allocator uses
    ("lowest-address": simalloc's lowest superslab index first; "most-full"; "lifo"); the
    heap's partial stage honours it (simalloc/refillorder.py; obmalloc uses "most-full").

    ``clock_kind`` (module docstring) also says what ``Heap.idle`` does: "background" presets
    override :meth:`next_wake_ns` and are ticked at each wake-up inside an idle span;
    "activity" and "free-driven" ones are not ticked at all while idle."""

    name = "preset"
    #: The source file(s) the preset models (``repo: path``).
    source = ""
    #: "activity", "background" or "free-driven" (see the module docstring).
    clock_kind = ""
    refill_order = "lowest-address"

    def __init__(self, *, time_source: Callable[[], int] | None = None) -> None:
        self.time_source = time_source
        #: The reason for the latest decision (also passed as ``why=`` to the context's
        #: ``decommit_slab`` / ``decommit_cached``: the decision log's reason).
        self.last_reason = ""
        #: What the preset did, by kind (``slab_purges``, ``epochs``, ...).
        self.counts: dict[str, int] = {}
        self._last_ops = -1

    def knobs(self) -> dict[str, Any]:
        """The preset's knobs and their values (constructor arguments)."""
        return {}

    def describe(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.knobs().items())
        return f"{self.name}({args})"

    def now_ns(self, ctx: PolicyContext) -> int:
        """The preset's clock in ns: ``time_source``, else the heap's virtual ns, else wall s."""
        if self.time_source is not None:
            return int(self.time_source())
        clock = ctx.clock()
        virtual = getattr(clock, "virtual_ns", None)
        if virtual is not None:
            return int(virtual)
        return int(clock.seconds * SEC)

    def _active(self, ctx: PolicyContext) -> bool:
        """True if operations were applied since the previous call (the program is not idle)."""
        ops = ctx.clock().ops
        active = ops != self._last_ops
        self._last_ops = ops
        return active

    def _count(self, what: str, n: int = 1) -> None:
        self.counts[what] = self.counts.get(what, 0) + n

    def _purge_slab(self, ctx: PolicyContext, key: Key, advice: str, why: str) -> bool:
        """Decommit an EMPTY slab (no-op if it was reused meanwhile), giving ``why`` to the
        context (the decision log's reason) and keeping it in ``last_reason``."""
        self.last_reason = f"slab {key[0]}.{key[1]}: {why}"
        ok = ctx.decommit_slab(key[0], key[1], advice, why=self.last_reason)
        if ok:
            self._count("slab_purges")
        return ok

    def _purge_cached(self, ctx: PolicyContext, idx: int, advice: str, why: str) -> bool:
        """Purge a cached superslab in place, ``why`` given to the context (as for slabs)."""
        self.last_reason = f"cached superslab {idx}: {why}"
        ok = _decommit_cached(ctx, idx, advice, why)
        if ok:
            self._count("superslab_purges")
        return ok
