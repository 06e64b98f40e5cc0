"""Release policies: what happens to memory that the application no longer uses.

A policy is a small class with four hooks (a template method, as SimPy's ``_do_put``):

``on_slab_empty(ctx, ev)``
    a slab inside a *live* superslab just became empty (``ev``: superslab index, slab index,
    class).  May call ``ctx.decommit_slab(...)`` (slab-granular purge, what Phase 54's
    follow-ups concluded was needed).
``on_superslab_empty(ctx, ev) -> Release``
    every slab of a superslab is empty (the release guard held).  Returns a :class:`Release`
    decision; the heap's single conversion point (``Heap._release_superslab``) carries it out
    through the OS layer.  This is hakmem's ``ss_should_keep_superslab`` +
    ``ss_maybe_decommit_superslab`` box.
``tick(ctx)``
    the clock moved (``ctx.clock()``: operations applied and seconds since the heap opened);
    called on slow-path events and every ``tick_interval_ops`` operations.  Decay or
    purge-delay policies (jemalloc ``dirty_decay_ms``, mimalloc ``purge_delay``) act here.
``allow_prewarm() -> bool``
    whether the heap may prewarm at start (LEAN suppresses it, as hakmem does).

Policies never call the OS and never bump counters; they decide, and the heap acts and counts.
Write a new one in a few lines (see ``examples/custom_policy.py``)::

    class KeepOne(ReleasePolicy):
        name = "keep-one"
        def on_superslab_empty(self, ctx, ev):
            return Release.keep() if ctx.cached_count() == 0 else Release.unmap()

Decision table of :class:`LeanPolicy` (branches numbered as in the code):

1. ``DECOMMIT=OFF``: keep (LEAN+OFF is prewarm suppression only).
2. committed superslab bytes (active + warm cached + this one) within ``TARGET_MB``: keep, warm.
3. over budget, ``lean_retire=decommit``: retire; decommit (FREE or DONTNEED); cache it cold.
4. over budget, ``lean_retire=unmap``: retire; unmap.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from .constants import SLAB_EMPTY, SS_ACTIVE
from .errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

    from .options import Config
    from .state import HeapState

__all__ = [
    "Clock",
    "DelayedSlabPurgePolicy",
    "FastPolicy",
    "LeanPolicy",
    "PolicyContext",
    "Release",
    "ReleasePolicy",
    "SlabEvent",
    "SuperslabEvent",
    "BUILTIN_POLICIES",
    "PRESETS",
    "make_policy",
    "policy_overrides",
]


class Clock(NamedTuple):  # (a NamedTuple: built on every slow-path event, ~5x cheaper)
    """The heap's clock: operations applied, wall seconds since the heap opened, and virtual
    nanoseconds: ``ops x ns_per_op`` (option ``ns_per_op``) plus the idle time
    (``Heap.idle``, ``OP_IDLE`` rows).  Policies that model a timed rule read ``virtual_ns``
    (None only from a clock built without it)."""

    ops: int
    seconds: float
    virtual_ns: int | None = None


class PolicyActions(Protocol):
    """What a :class:`PolicyContext` asks of the heap (its superslab life cycle)."""

    def decommit_slab(self, idx: int, slab: int, advice: str, why: str = "") -> bool: ...
    def decommit_cached(self, idx: int, advice: str = "DONTNEED", why: str = "") -> bool: ...
    def cached_superslabs(self) -> list[tuple[int, float, bool]]: ...


class PolicyContext:
    """What a release policy may see and do: a narrow, read-mostly view of the heap's state.

    Its actions -- :meth:`decommit_slab` (an EMPTY slab inside a live superslab) and
    :meth:`decommit_cached` (a superslab cached warm) -- go through the heap's superslab life
    cycle (which calls the OS layer and counts); decisions on a superslab that just emptied are
    returned as :class:`Release` values instead."""

    def __init__(self, state: HeapState, actions: PolicyActions) -> None:
        self._state = state
        self._actions = actions

    def __repr__(self) -> str:
        st = self._state
        return (f"<PolicyContext ops={st.ops()} active={st.n_active} cached={len(st.lru)} "
                f"(warm {st.lru.warm_count()}) committed={st.committed_superslab_bytes() >> 20} MiB>")

    @property
    def config(self) -> Config:
        return self._state.config

    def clock(self) -> Clock:
        return self._state.clock()

    def superslab_bytes(self) -> int:
        return self._state.ss_bytes

    def active_count(self) -> int:
        return self._state.n_active

    def cached_count(self) -> int:
        return len(self._state.lru)

    def warm_cached_count(self) -> int:
        return self._state.lru.warm_count()

    def committed_superslab_bytes(self) -> int:
        """Bytes of superslabs whose pages are committed: active ones plus warm cached ones
        (the LEAN budget is compared with this)."""
        return self._state.committed_superslab_bytes()

    def empty_slabs(self, ss: int | None = None) -> list[tuple[int, int]]:
        """(superslab, slab) of every EMPTY (not yet decommitted) slab in live superslabs, class
        by class in address order, or only those of superslab ``ss`` (slab order)."""
        st = self._state
        if ss is not None:
            sup = st.superslabs[ss] if 0 <= ss < len(st.superslabs) else None
            if sup is None or sup.state != SS_ACTIVE:
                return []
            return [(ss, s) for s, state in enumerate(sup.slab_states(st.nslabs)) if state == SLAB_EMPTY]
        return [k for d in st.empty for k in d if self.is_empty_slab(*k)]

    def iter_empty_slabs(self, cls: int) -> Iterator[tuple[int, int]]:
        """The EMPTY (not decommitted) slabs of class ``cls``, lazily and in no particular
        order: for a question the first few answer ("is there another one?")."""
        return (k for k in self._state.empty[cls].unordered() if self.is_empty_slab(*k))

    def is_empty_slab(self, ss: int, slab: int) -> bool:
        """True if slab ``slab`` of live superslab ``ss`` is EMPTY (committed, no block used)."""
        st = self._state
        sup = st.superslabs[ss] if 0 <= ss < len(st.superslabs) else None
        return (sup is not None and sup.state == SS_ACTIVE and 0 <= slab < st.nslabs
                and sup.slab_state(slab) == SLAB_EMPTY)

    def cached_superslabs(self) -> list[tuple[int, float, bool]]:
        """(index, heap seconds when cached, decommitted) of every cached superslab, oldest
        first."""
        return self._actions.cached_superslabs()

    def decommit_cached(self, idx: int, advice: str = "DONTNEED", why: str = "") -> bool:
        """Purge cached superslab ``idx`` in place (warm -> cold, or FREE'd -> DONTNEED'd).
        Returns False (and does nothing) if it is not cached or the advice changes nothing."""
        return self._actions.decommit_cached(idx, advice, why)

    def decommit_slab(self, ss: int, slab: int, advice: str = "DONTNEED", why: str = "") -> bool:
        """Decommit an EMPTY slab's pages (slab 0 keeps its header page).  Returns False (and
        does nothing) if the slab is no longer EMPTY or is some class's current slab."""
        return self._actions.decommit_slab(ss, slab, advice, why)


class SlabEvent(NamedTuple):
    """A slab of a live superslab became empty."""

    ss: int  # superslab index
    slab: int  # slab index inside it
    cls: int  # size class the slab was carved for
    ops: int  # operation count at the event
    seconds: float  # heap clock at the event


class SuperslabEvent(NamedTuple):
    """Every slab of superslab ``ss`` is empty."""

    ss: int
    ops: int
    seconds: float


@dataclass(frozen=True)
class Release:
    """A policy's decision for an empty superslab.

    ``action``: ``"keep"`` (into the LRU cache, committed), ``"decommit"`` (madvise with
    ``advice`` then into the LRU cache, cold) or ``"unmap"``.  ``retire`` marks a LEAN
    retirement (counted as ``lean_retire``).  ``why`` is the policy's reason in words
    (``Release.decommit("FREE", why="over budget by 2 MiB")``); it is commentary for logs and
    debugging, so it takes no part in equality: ``Release.keep(why="x") == Release.keep()``."""

    action: str
    advice: str = "DONTNEED"
    retire: bool = False
    why: str = field(default="", compare=False)

    @staticmethod
    def keep(why: str = "") -> Release:
        return Release("keep", why=why)

    @staticmethod
    def decommit(advice: str = "DONTNEED", retire: bool = False, why: str = "") -> Release:
        return Release("decommit", advice, retire, why)

    @staticmethod
    def unmap(retire: bool = False, why: str = "") -> Release:
        return Release("unmap", retire=retire, why=why)

    def __post_init__(self) -> None:
        if self.action not in ("keep", "decommit", "unmap"):
            raise ValueError(f"unknown release action {self.action!r}")
        if self.advice not in ("DONTNEED", "FREE"):
            raise ValueError(f"unknown advice {self.advice!r}")
        if not isinstance(self.why, str):
            raise TypeError(f"Release.why must be a str, not {type(self.why).__name__}")


def _mib(n: int) -> str:
    """Bytes for a reason string: ``2 MiB``, ``1.5 MiB``, ``64 KiB``."""
    if n % (1 << 20) == 0:
        return f"{n >> 20} MiB"
    if abs(n) >= 1 << 20:
        return f"{n / (1 << 20):.1f} MiB"
    return f"{n / 1024:g} KiB"


class ReleasePolicy:
    """Base policy: keep everything (hooks do nothing).  Subclass and override hooks.

    ``clock_kind`` says how the policy's clock runs while the program is idle
    (``Heap.idle``): ``"activity"`` (ticks come from operations; none while idle),
    ``"free-driven"`` (no clock at all) or ``"background"`` (a thread: while idle the heap
    ticks it at every :meth:`next_wake_ns` inside the idle span).  ``refill_order`` is the
    partial-slab refill order the heap uses under this policy (slowpath.py):
    ``"lowest-address"``, ``"most-full"`` or ``"lifo"``."""

    name = "base"
    clock_kind = "activity"
    refill_order = "lowest-address"

    def on_slab_empty(self, ctx: PolicyContext, ev: SlabEvent) -> None:
        """A slab in a live superslab emptied.  Default: leave it resident."""

    def on_superslab_empty(self, ctx: PolicyContext, ev: SuperslabEvent) -> Release:
        """A superslab emptied.  Default: keep it in the LRU cache."""
        return Release.keep(why="base policy: every empty superslab is kept")

    def tick(self, ctx: PolicyContext) -> None:
        """The clock moved.  Default: nothing."""

    def next_wake_ns(self, ctx: PolicyContext) -> int | None:
        """A ``"background"`` policy: the virtual ns at which its thread next wakes (None:
        asleep until an event wakes it).  ``Heap.idle`` ticks at each such time inside the
        idle span.  Default: None."""
        return None

    def scheduled(self, ctx: PolicyContext) -> set[tuple[int, int | None]]:
        """What the policy holds for a purge with a deadline: ``(superslab, slab)``, slab None
        for a whole cached superslab (``Heap.occupancy()`` draws it ``~``).  Default: none."""
        return set()

    def allow_prewarm(self) -> bool:
        return True

    def describe(self) -> str:
        return self.name


class FastPolicy(ReleasePolicy):
    """hakmem FAST mode (``HAKMEM_SS_MEM_LEAN=0``): every empty superslab goes to the LRU cache
    committed; only the cache's own count / memory / TTL limits ever unmap."""

    name = "fast"

    def on_superslab_empty(self, ctx: PolicyContext, ev: SuperslabEvent) -> Release:
        return Release.keep(why="FAST: every empty superslab is kept warm in the LRU cache "
                                "(only the cache's count / memory / TTL limits unmap)")


class LeanPolicy(ReleasePolicy):
    """hakmem Memory-Lean mode (Phase 54): keep empty superslabs while the committed superslab
    bytes stay within ``target_mb``; beyond it, retire them (decommit or unmap).  Suppresses
    prewarm.  Source: ``ss_release_policy_box`` / ``ss_mem_lean_env_box`` (hakmem-design.md s4)."""

    name = "lean"

    def __init__(self, decommit: str = "FREE", target_mb: int = 10, retire: str = "decommit"):
        self.decommit = decommit
        self.target_bytes = target_mb << 20
        self.retire = retire

    def should_keep(self, ctx: PolicyContext) -> bool:
        """hakmem's ``ss_should_keep_superslab``: true while budget remains."""
        if self.decommit == "OFF":
            return True  # 1. prewarm suppression only
        return ctx.committed_superslab_bytes() + ctx.superslab_bytes() <= self.target_bytes  # 2.

    def on_superslab_empty(self, ctx: PolicyContext, ev: SuperslabEvent) -> Release:
        if self.decommit == "OFF":
            return Release.keep(why="LEAN with DECOMMIT=OFF: keep (prewarm suppression only)")  # 1.
        need = ctx.committed_superslab_bytes() + ctx.superslab_bytes()
        budget = (f"{_mib(ctx.committed_superslab_bytes())} committed + "
                  f"{_mib(ctx.superslab_bytes())} this superslab")
        if self.should_keep(ctx):
            return Release.keep(why=f"within budget: {budget} <= {_mib(self.target_bytes)} "
                                    "target; keep it warm")  # 2.
        over = f"over budget by {_mib(need - self.target_bytes)}: {budget} > " \
               f"{_mib(self.target_bytes)} target"
        if self.retire == "unmap":
            return Release.unmap(retire=True, why=f"{over}; retire: unmap")  # 4.
        return Release.decommit(self.decommit, retire=True,
                                why=f"{over}; retire: decommit ({self.decommit})")  # 3.

    def allow_prewarm(self) -> bool:
        return False

    def describe(self) -> str:
        return f"lean(decommit={self.decommit}, target={self.target_bytes >> 20} MiB, retire={self.retire})"


class DelayedSlabPurgePolicy(FastPolicy):
    """Slab-granular purge with a delay (mimalloc ``purge_delay`` style): an empty slab inside
    a live superslab is decommitted once it has stayed empty for ``delay_ops`` operations
    (0 = at once; negative = never).  Empty superslabs are handled as in FAST.

    This is the remedy Phase 54's follow-ups point to (hz3 S55: "partial subrelease of free
    runs inside live segments is required"); it shows the interface carries it unchanged."""

    name = "slab-purge"

    def __init__(self, delay_ops: int = 0, advice: str = "DONTNEED"):
        self.delay_ops = delay_ops
        self.advice = advice
        self._pending: dict[tuple[int, int], int] = {}  # (ss, slab) -> deadline in ops
        #: The reason for the latest slab decision (also passed as ``decommit_slab(..., why=)``).
        self.last_reason = ""

    def on_slab_empty(self, ctx: PolicyContext, ev: SlabEvent) -> None:
        where = f"slab {ev.ss}.{ev.slab} (C{ev.cls}) empty"
        if self.delay_ops < 0:
            self.last_reason = f"{where}: keep (delay_ops < 0: never purge)"
            return
        if self.delay_ops == 0:
            self.last_reason = f"{where}: decommit at once ({self.advice}, delay_ops=0)"
            ctx.decommit_slab(ev.ss, ev.slab, self.advice, why=self.last_reason)
        else:
            self._pending[(ev.ss, ev.slab)] = ev.ops + self.delay_ops
            self.last_reason = (f"{where}: purge scheduled at op {ev.ops + self.delay_ops} "
                                f"(delay_ops={self.delay_ops})")

    def on_superslab_empty(self, ctx: PolicyContext, ev: SuperslabEvent) -> Release:
        return Release.keep(why="slab-purge: empty superslabs are kept warm as in FAST")

    def tick(self, ctx: PolicyContext) -> None:
        now = ctx.clock().ops
        for key, deadline in list(self._pending.items()):
            if deadline <= now:
                del self._pending[key]
                self.last_reason = (f"slab {key[0]}.{key[1]} stayed empty {self.delay_ops} ops "
                                    f"(due at op {deadline}, now {now}): decommit ({self.advice})")
                ctx.decommit_slab(key[0], key[1], self.advice, why=self.last_reason)  # no-op unless still empty

    def scheduled(self, ctx: PolicyContext) -> set[tuple[int, int | None]]:
        return set(self._pending)


#: Release-rule presets by name (``jemalloc-decay``, ``mimalloc-purge``, ...): name -> class,
#: constructed with no arguments (the allocator's own defaults).  ``simalloc.presets`` fills it
#: when imported; :func:`make_policy` imports it lazily (presets.py imports this module).
PRESETS: dict[str, Callable[[], ReleasePolicy]] = {}


#: The built-in policy names and the config overrides each stands for: the one table behind
#: ``--policy`` of ``replay`` / ``record`` / ``verify``, the sweep's and the grader's names.
BUILTIN_POLICIES: MappingProxyType[str, MappingProxyType[str, str]] = MappingProxyType({
    "fast": MappingProxyType({"policy": "fast", "mem_lean": "0"}),
    "lean": MappingProxyType({"policy": "lean", "mem_lean": "1", "mem_lean_decommit": "FREE"}),
    "lean-free": MappingProxyType({"policy": "lean", "mem_lean": "1", "mem_lean_decommit": "FREE"}),
    "lean-dontneed": MappingProxyType({"policy": "lean", "mem_lean": "1", "mem_lean_decommit": "DONTNEED"}),
    "slab-purge": MappingProxyType({"policy": "slab-purge", "mem_lean": "0"}),
})


def policy_overrides(name: str) -> dict[str, str]:
    """Config overrides for a policy name -- every name :func:`make_policy` accepts: a
    built-in of :data:`BUILTIN_POLICIES`, ``auto`` (``{}``: the environment decides), a preset
    of :data:`PRESETS` or ``module:Class`` (``{"policy": name}``).  ConfigError otherwise."""
    name = name.strip()
    if name in BUILTIN_POLICIES:
        return dict(BUILTIN_POLICIES[name])
    if name == "auto":
        return {}
    if ":" in name:
        return {"policy": name}
    importlib.import_module(".presets", __package__)  # registers the presets
    if name in PRESETS:
        return {"policy": name}
    names = ", ".join([*BUILTIN_POLICIES, "auto", *PRESETS])
    raise ConfigError(f"policy {name!r}: expected one of {names} or module:Class")


def make_policy(config: Config) -> ReleasePolicy:
    """The policy a config names: ``auto`` (LEAN if ``mem_lean`` else FAST), ``fast``,
    ``lean``, ``slab-purge``, a preset of :data:`PRESETS` (``simalloc.presets``) or
    ``module:Class`` (constructed with no arguments)."""
    name = config.policy.strip()
    if name == "auto":
        name = "lean" if config.mem_lean else "fast"
    if name == "fast":
        return FastPolicy()
    if name == "lean":
        return LeanPolicy(config.mem_lean_decommit, config.mem_lean_target_mb, config.lean_retire)
    if name == "slab-purge":
        return DelayedSlabPurgePolicy()
    if ":" not in name:
        importlib.import_module(".presets", __package__)  # registers the presets
        if name in PRESETS:
            return PRESETS[name]()
    if ":" in name:
        mod, _, attr = name.partition(":")
        try:
            obj: Any = getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"SIMALLOC_POLICY={name!r}: cannot load ({exc})") from exc
        try:
            pol = obj()
        except Exception as exc:
            raise ConfigError(f"SIMALLOC_POLICY={name!r}: cannot construct ({exc})") from exc
        if not isinstance(pol, ReleasePolicy):
            raise ConfigError(f"SIMALLOC_POLICY={name!r} is not a ReleasePolicy")
        return pol
    names = ", ".join(["auto", "fast", "lean", "slab-purge", *PRESETS])
    raise ConfigError(f"SIMALLOC_POLICY={name!r}: expected {names} or module:Class")
