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
