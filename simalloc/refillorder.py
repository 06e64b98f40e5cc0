"""Refill order: which partial slab a class's refill takes, as a policy choice.

When a class's current slab runs out, the slow path's partial stage (slowpath.py,
``stage_partial``) binds one of the class's *partial* slabs (not current, a quarter or more
of its blocks free).  Which one is the policy's ``refill_order`` (or the ``refill_order``
option, which overrides it):

==================  ===========================================================  ==========
order               takes                                                          cost
==================  ===========================================================  ==========
``lowest-address``  the lowest (superslab, slab): young superslabs drain (default)  O(log n)
``most-full``       the one with the fewest free blocks (CPython obmalloc's         O(log n)
                    ``usable_arenas`` order: nearly empty ones drain and are freed)  amortised
``lifo``            the one that became partial last (obmalloc's ``usedpools``    O(1)
                    lists, mimalloc's page queues: the most recently freed-into)
==================  ===========================================================  ==========

``most-full`` without a scan: a partial slab is never allocated from (it is not current),
so its free-block count only grows until it is taken or empties.  The set keeps a min-heap of
(free blocks when pushed, key); a popped entry whose slab has gained free blocks since is
pushed back with the new count (its old one was a lower bound, so an entry found unchanged is
the true minimum).  Each re-push follows at least one free into that slab, so the cost is
O(log n) per free into a partial slab, amortised.  Ties go to the lowest address.

Every set has the :class:`~simalloc.slabset.SlabSet` interface plus ``pop_next()`` (pop by its
order).  The EMPTY-slab stages (0.5, 1, 2's last resort) stay lowest-address first.

    >>> s = LifoSlabSet(); s.add((0, 3)); s.add((0, 1)); s.pop_next()
    (0, 1)
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from .errors import ConfigError
from .slabset import KeySet, SlabSet

__all__ = ["ORDERS", "LifoSlabSet", "LowestAddressSlabSet", "MostFullSlabSet", "make_slab_set",
           "resolve_order"]

Key = tuple[int, int]
#: The refill orders (``ReleasePolicy.refill_order``; option ``refill_order``).
ORDERS = ("lowest-address", "most-full", "lifo")
_ALIASES = {"lowest": "lowest-address"}


class LowestAddressSlabSet(SlabSet):
    """:class:`SlabSet` whose ``pop_next`` is ``pop_lowest``."""

    __slots__ = ()

    def pop_next(self) -> Key:
        return self.pop_lowest()


class LifoSlabSet(KeySet):
    """Slab keys popped last-added first (a dict keeps insertion order)."""

    __slots__ = ()

    def __init__(self) -> None:
        self._members: dict[Key, None] = {}

    def add(self, key: Key) -> None:
        self._members.setdefault(key, None)

    def discard(self, key: Key) -> None:
        self._members.pop(key, None)

    def pop_next(self) -> Key:
        """Remove and return the member added last (KeyError if empty)."""
        if not self._members:
            raise KeyError("pop from an empty LifoSlabSet")
        key = next(reversed(self._members))
        del self._members[key]
        return key

    def pop_lowest(self) -> Key:
        key = min(self._members)  # O(n): the refill stages use pop_next
        del self._members[key]
        return key

    def check(self) -> None:
        """Nothing to check: the dict is the set."""


class MostFullSlabSet(KeySet):
    """Slab keys popped fewest-free-blocks first (see the module docstring).  ``free_of(key)``
    reads a slab's free blocks now (capacity - used)."""

    __slots__ = ("_heap", "_free_of")

    def __init__(self, free_of: Callable[[Key], int]) -> None:
        self._members: dict[Key, int] = {}  # key -> free blocks when last pushed
        self._heap: list[tuple[int, Key]] = []
        self._free_of = free_of

    def add(self, key: Key) -> None:
        if key not in self._members:
            free = int(self._free_of(key))
            self._members[key] = free
            heapq.heappush(self._heap, (free, key))

    def discard(self, key: Key) -> None:
        if self._members.pop(key, None) is not None and len(self._heap) > 2 * len(self._members) + 64:
            self._heap = sorted((f, k) for k, f in self._members.items())

    def pop_next(self) -> Key:
        """Remove and return the member with the fewest free blocks now (KeyError if empty)."""
        heap, members = self._heap, self._members
        while heap:
            free, key = heap[0]
            if members.get(key) != free:  # removed, or pushed again with another count
                heapq.heappop(heap)
                continue
            now = int(self._free_of(key))
            if now != free:  # freed into since it was pushed: its count was a lower bound
                members[key] = now
                heapq.heapreplace(heap, (now, key))
                continue
            heapq.heappop(heap)
            del members[key]
            return key
        raise KeyError("pop from an empty MostFullSlabSet")

    def pop_lowest(self) -> Key:
        key = min(self._members)  # O(n): the refill stages use pop_next
        del self._members[key]
        return key

    def check(self) -> None:
        live = {k for f, k in self._heap if self._members.get(k) == f}
        assert live == set(self._members), "MostFullSlabSet: a member is missing from the heap"
        for k, f in self._members.items():
            assert self._free_of(k) >= f, f"MostFullSlabSet: slab {k} has fewer free blocks than pushed"


PartialSet = LowestAddressSlabSet | LifoSlabSet | MostFullSlabSet


def resolve_order(option: str, policy_order: object) -> str:
    """The refill order in force: the ``refill_order`` option unless it is ``policy``, then the
    policy's ``refill_order`` attribute.  An unknown order raises ConfigError."""
    order = option if option != "policy" else policy_order
    order = _ALIASES.get(str(order), order)
    if order not in ORDERS:
        raise ConfigError(f"refill_order {order!r}: expected one of {', '.join(ORDERS)}")
    return str(order)


def make_slab_set(order: str, free_of: Callable[[Key], int]) -> PartialSet:
    """An empty partial-slab set popping in ``order`` (one of :data:`ORDERS`)."""
    if order == "most-full":
        return MostFullSlabSet(free_of)
    if order == "lifo":
        return LifoSlabSet()
    return LowestAddressSlabSet()
