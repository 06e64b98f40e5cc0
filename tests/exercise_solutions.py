"""Reference solutions of docs/exercises.md (``simalloc grade --exercise N tests/exercise_solutions.py:Class``).

Kept in the tests so a change to the grader, the suite or the heap that breaks an exercise
shows up as a failing test (tests/test_grade.py).
"""

from __future__ import annotations

import simalloc

__all__ = ["DecommitEveryEmpty", "KeepWarmReserve"]


class DecommitEveryEmpty(simalloc.ReleasePolicy):
    """Exercise 1: give every empty superslab's pages back at once (one MADV_DONTNEED each)
    and keep its address range cached; the next burst reuses the range without an mmap."""

    name = "decommit-every-empty"

    def on_superslab_empty(self, ctx, ev):
        return simalloc.Release.decommit("DONTNEED", why="exercise 1: release every empty superslab")


class KeepWarmReserve(simalloc.ReleasePolicy):
    """Exercise 2: keep a reserve of ``RESERVE`` empty superslabs committed (warm: the next
    burst writes into them without refaulting) and decommit the rest with MADV_DONTNEED."""

    name = "keep-warm-reserve"
    RESERVE = 4  # 3 faults too often, 5 keeps too much resident (docs/exercises.md)

    def on_superslab_empty(self, ctx, ev):
        if ctx.warm_cached_count() < self.RESERVE:
            return simalloc.Release.keep(why=f"exercise 2: reserve below {self.RESERVE}")
        return simalloc.Release.decommit("DONTNEED", why="exercise 2: reserve full")
