"""Release-rule presets: the rules real allocators use to give memory back, as release policies.

Each preset is a :class:`~simalloc.policy.ReleasePolicy` with the allocator's own defaults,
selectable by name like the built-ins (``SIMALLOC_POLICY=jemalloc-decay``,
``Heap(policy="jemalloc-decay")``) or built with other knobs
(``Heap(policy=JemallocDecayPolicy(dirty_decay_ms=1000))``):

==================== ================================================ ====================
name                 rule (one line; the class docstring has it all)  clock
==================== ================================================ ====================
jemalloc-decay       smootherstep decay of dirty pages over 200 epochs activity or background
mimalloc-purge       purge after a delay (v2: extended; v3: fixed)     activity
tcmalloc-release     release ``release_rate`` bytes per second         background, 1 s
gperftools-scavenge  release one span per 1000/rate pages freed        frees only
glibc-trim           trim above ``trim_threshold`` on free; trim()     frees only
obmalloc             unmap an empty arena unless it is the last        frees only
==================== ================================================ ====================

How the allocators' words map onto simalloc:

* *dirty pages* (committed, unused) = EMPTY slabs inside live superslabs (``ctx.empty_slabs()``,
  announced one by one through ``on_slab_empty``) and empty superslabs kept warm in the LRU
  cache (announced through ``on_superslab_empty``).  A class's *current* slab is never
  announced when it empties (it stays bound), so no preset can release it.
* *purge / release / decommit* = ``ctx.decommit_slab(ss, slab, advice)`` for a slab; for an
  empty superslab, the :class:`~simalloc.policy.Release` returned by ``on_superslab_empty``.
* *time*: nanoseconds from, in order, the preset's ``time_source`` (a fake-time hook for tests
  and experiments: a zero-argument callable returning ns), ``ctx.clock().virtual_ns`` (the
  heap's virtual clock: ops x ``ns_per_op`` + idle time), else ``ctx.clock().seconds``.
* *clock kinds* (``clock_kind``, the table's last column) and idle time (``Heap.idle``,
  ``OP_IDLE`` rows): *activity-driven* presets act in ``tick`` only if operations were
  applied since the previous tick (an idle program never calls into these allocators), and
  ``Heap.idle`` does not tick them: they never release while idle.  *Background* presets act
  on every tick that finds their wake-up time reached, ops or not (a background thread);
  ``Heap.idle`` ticks them at each ``next_wake_ns()`` inside the idle span (tcmalloc every
  ``wake_interval_s``; jemalloc when its thread's sleep ends), with the clock standing at the
  wake-up.  *Free-driven* presets have no clock; ``Heap.idle`` does not tick them.

Gaps (what :class:`~simalloc.policy.PolicyContext` does not offer yet; every preset works
without them, and uses them as soon as the context has them):

* ``ctx.cached_superslabs() -> list[tuple[int, float, bool]]`` (index, cached since [s],
  decommitted) and ``ctx.decommit_cached(idx, advice="DONTNEED", why="") -> bool`` (decommit a
  cached superslab in place: warm -> cold, or MADV_FREE'd -> MADV_DONTNEED'd).  Without them a
  superslab kept warm at ``on_superslab_empty`` cannot be released later by a clock (jemalloc
  decay, mimalloc's delayed arena purge, tcmalloc's background release, ``collect()`` and
  ``trim()``): those presets then keep it warm and say so in ``Release.why``; the LRU cache's
  own count / memory / TTL limits still apply.
* ``ctx.purge_muzzy_slab(ss, slab, why="") -> bool``: MADV_DONTNEED a slab that was decommitted
  with MADV_FREE (jemalloc's muzzy -> clean step; ``ctx.decommit_slab`` accepts EMPTY slabs
  only).  Without it the muzzy stage is tracked but its purges are only counted
  (``counts["muzzy_purge_unsupported_pages"]``).
* reasons: every decommit passes its reason explicitly (``ctx.decommit_slab(..., why=...)``,
  ``ctx.decommit_cached(..., why=...)``), which the decision log (``simalloc.events``) records;
  the latest is also kept on the preset (``policy.last_reason``).

Units: pages are OS pages (``constants.PAGE_SIZE``); a slab's pages are its decommit range
(slab 0 without the superslab header).

Modules::

    base.py        PresetPolicy (clock, fake time, activity detection, reasons, counts), helpers
    jemalloc.py    smootherstep table, Decay (decay_t), JemallocDecayPolicy
    mimalloc.py    MimallocPurgePolicy
    tcmalloc.py    TcmallocReleasePolicy (Google tcmalloc)
    gperftools.py  GperftoolsScavengePolicy (gperftools tcmalloc)
    glibc.py       GlibcTrimPolicy
    obmalloc.py    ObmallocPolicy (CPython)

Importing this package fills :data:`simalloc.policy.PRESETS` (also reachable here as
``PRESETS``), in the order of the table above.
"""

from __future__ import annotations

from ..policy import PRESETS
from .base import PresetPolicy
from .glibc import GlibcTrimPolicy
from .gperftools import GperftoolsScavengePolicy
from .jemalloc import (
    BG_MIN_INTERVAL_NS,
    BG_NPAGES_THRESHOLD,
    H_STEPS,
    SMOOTHSTEP_BFP,
    SMOOTHSTEP_NSTEPS,
    Decay,
    JemallocDecayPolicy,
    smootherstep,
)
from .mimalloc import MimallocPurgePolicy
from .obmalloc import ObmallocPolicy
from .tcmalloc import TcmallocReleasePolicy

__all__ = [
    "BG_MIN_INTERVAL_NS",
    "BG_NPAGES_THRESHOLD",
    "Decay",
    "GlibcTrimPolicy",
    "GperftoolsScavengePolicy",
    "H_STEPS",
    "JemallocDecayPolicy",
    "MimallocPurgePolicy",
    "ObmallocPolicy",
    "PresetPolicy",
    "SMOOTHSTEP_BFP",
    "SMOOTHSTEP_NSTEPS",
    "TcmallocReleasePolicy",
    "smootherstep",
]

for _preset in (JemallocDecayPolicy, MimallocPurgePolicy, TcmallocReleasePolicy, GperftoolsScavengePolicy,
                GlibcTrimPolicy, ObmallocPolicy):
    PRESETS[_preset.name] = _preset
