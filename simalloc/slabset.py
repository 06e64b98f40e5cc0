"""An ordered set of slabs, ``(superslab index, slab index)``, that pops its lowest member.

The refill stages take empty and partial slabs lowest address first (lowest superslab index,
then slab): new blocks fill the oldest superslabs, so younger ones can drain completely and
meet the release policy.  This is the address-ordered first fit that keeps fragmentation low
(CPython's obmalloc gets the same effect by serving from the fullest arena first).

Membership is a dict; the order is a binary heap with lazy deletion (removed keys stay in
the heap until popped or until a rebuild), so add / discard are O(1) / O(log n).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import Any

__all__ = ["KeySet", "SlabSet"]

Key = tuple[int, int]


class KeySet:
    """What every slab set shares: membership in ``_members`` (a dict keyed by slab), its size,
    truth value, ``in`` and iteration in address order.  Subclasses keep their pop order."""

    __slots__ = ("_members",)
    _members: dict[Key, Any]

    def __len__(self) -> int:
        return len(self._members)

    def __bool__(self) -> bool:
        return bool(self._members)

    def __contains__(self, key: object) -> bool:
        return key in self._members

    def __iter__(self) -> Iterator[Key]:
        return iter(sorted(self._members))

    def unordered(self) -> list[Key]:
        """The members in no particular order (no sort: for a scan that may stop early)."""
        return list(self._members)


class SlabSet(KeySet):
    """A set of slab keys with ``pop_lowest``."""

    __slots__ = ("_heap",)

    def __init__(self) -> None:
        self._members: dict[Key, None] = {}
        self._heap: list[Key] = []

    def add(self, key: Key) -> None:
        if key not in self._members:
            self._members[key] = None
            heapq.heappush(self._heap, key)

    def discard(self, key: Key) -> None:
        if self._members.pop(key, 0) is None and len(self._heap) > 2 * len(self._members) + 64:
            self._heap = sorted(self._members)  # a sorted list is a valid heap

    def pop_lowest(self) -> Key:
        """Remove and return the lowest member (KeyError if empty)."""
        while self._heap:
            key = heapq.heappop(self._heap)
            if key in self._members:
                del self._members[key]
                return key
        raise KeyError("pop from an empty SlabSet")

    def check(self) -> None:
        assert set(self._heap) >= set(self._members), "SlabSet: a member is missing from the heap"
