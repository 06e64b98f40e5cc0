"""Release policies written in a few lines, for tests (importable as ``policies_for_tests``:
pytest puts ``tests/`` on ``sys.path``; ``SIMALLOC_POLICY=policies_for_tests:UnmapEmpty``)."""

from __future__ import annotations

from simalloc import Release, ReleasePolicy


class UnmapEmpty(ReleasePolicy):
    """Unmap every superslab the moment it becomes empty (no LRU cache at all)."""

    name = "unmap-empty"

    def on_superslab_empty(self, ctx, ev):
        return Release.unmap()


class DecommitAll(ReleasePolicy):
    """Decommit (DONTNEED) every empty superslab and keep it cached, cold; no prewarm."""

    name = "decommit-all"

    def on_superslab_empty(self, ctx, ev):
        return Release.decommit("DONTNEED")

    def allow_prewarm(self):
        return False


class RaisingTick(ReleasePolicy):
    """A broken policy: its clock hook raises once the heap has applied 2,000 operations (after
    the prewarm, so the heap builds and the failure comes mid-run; ``tick_interval_ops`` must be
    small enough to tick).  ``simalloc ab`` must exit 1, not print a verdict and exit 0."""

    name = "raising-tick"

    def tick(self, ctx):
        if ctx.clock().ops > 2_000:
            raise RuntimeError("policy tick exploded (test policy)")


class RaisingPrewarm(ReleasePolicy):
    """A broken policy that raises while the heap is being built (its prewarm question)."""

    name = "raising-prewarm"

    def allow_prewarm(self):
        raise RuntimeError("policy exploded during heap construction (test policy)")
