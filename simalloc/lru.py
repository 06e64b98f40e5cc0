"""The LRU cache of empty superslabs (hakmem Phase 9 ``ss_cache_box``).

An empty superslab that the policy keeps goes here instead of being unmapped, so the next
superslab acquisition is a list pop, not an mmap.  Eviction ends in munmap and happens when:

1. the cache holds more than ``max_cached`` superslabs (oldest first);
2. it holds more than ``max_bytes`` (oldest first);
3. an entry has been cached longer than ``ttl`` seconds (checked on slow-path events and ticks).

Acquisition pops the most recently cached entry, preferring warm (committed) ones over
decommitted ones: warm memory costs no page faults.

Invariant (checked by :meth:`check`): entries are unique and ``len(self) <= max_cached`` and
``bytes <= max_bytes`` after every :meth:`evict_over_limits`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["CacheEntry", "SuperslabCache"]


@dataclass
class CacheEntry:
    idx: int  # superslab index
    since: float  # seconds (heap clock) when cached
    decommitted: bool  # pages given back (cold) or not (warm)


class SuperslabCache:
    """Ordered (oldest first) cache of empty superslab indices with count/bytes/TTL limits."""

    def __init__(self, max_cached: int, max_bytes: int, ttl: float, ss_bytes: int) -> None:
        self.max_cached = max_cached
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.ss_bytes = ss_bytes
        self._entries: OrderedDict[int, CacheEntry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, idx: int) -> bool:
        return idx in self._entries

    @property
    def bytes(self) -> int:
        return len(self._entries) * self.ss_bytes

    def entries(self) -> list[CacheEntry]:
        return list(self._entries.values())

    def warm_count(self) -> int:
        return sum(1 for e in self._entries.values() if not e.decommitted)

    def push(self, idx: int, now: float, decommitted: bool) -> None:
        self._entries[idx] = CacheEntry(idx, now, decommitted)

    def pop(self) -> CacheEntry | None:
        """Most recently cached warm entry, else most recent cold one, else None."""
        for e in reversed(self._entries.values()):
            if not e.decommitted:
                return self._entries.pop(e.idx)
        if self._entries:
            return self._entries.popitem(last=True)[1]
        return None

    def mark_decommitted(self, idx: int) -> None:
        """The cached superslab ``idx`` was purged in place (its age and order are kept)."""
        self._entries[idx].decommitted = True

    def grow_to_fit(self, count: int) -> None:
        """Raise the limits so ``count`` entries fit (superslab prewarm does this)."""
        self.max_cached = max(self.max_cached, count)
        self.max_bytes = max(self.max_bytes, count * self.ss_bytes)

    def evict_over_limits(self, now: float) -> list[int]:
        """Remove and return the indices that break a limit (the caller unmaps them)."""
        out: list[int] = []
        while self._entries and (len(self._entries) > self.max_cached
                                 or self.bytes > self.max_bytes):
            out.append(self._entries.popitem(last=False)[0])
        if self.ttl > 0:
            while self._entries:
                first = next(iter(self._entries.values()))
                if now - first.since <= self.ttl:
                    break
                out.append(self._entries.popitem(last=False)[0])
        return out

    def check(self) -> None:
        assert len(self._entries) <= self.max_cached, "LRU over count limit"
        assert self.bytes <= self.max_bytes, "LRU over memory limit"
        since = [e.since for e in self._entries.values()]
        assert since == sorted(since), "LRU entries out of order"
