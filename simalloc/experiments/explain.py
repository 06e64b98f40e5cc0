"""Why LEAN did (not) retire anything: Phase 54's question, answered from a heap's reports."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..heap import Heap

__all__ = ["explain_lean"]


def explain_lean(heap: Heap) -> str:
    """One line saying why LEAN did (not) retire anything on ``heap``."""
    e = heap.empty_report()
    s = heap.stats()
    target = heap.config.mem_lean_target_mb
    if s["lean_retire"]:
        return (f"lean_retire={s['lean_retire']}: {e['superslabs_ever_empty']} superslab(s) became "
                f"fully empty; those over the {target} MiB budget were retired.")
    if e["superslabs_ever_empty"] and heap.policy.name == "lean":
        why = (f"{e['superslabs_ever_empty']} superslab(s) became fully empty but stayed within the "
               f"{target} MiB budget (or DECOMMIT=OFF)")
    else:
        why = f"{e['superslabs_ever_empty']} superslab(s) ever became fully empty"
    return (f"lean_retire=0 because {why}: the release guard needs every slab of a superslab "
            f"empty, and {e['live_blocks']} live block(s) plus {e['front_cache_blocks']} "
            f"front-cache block(s) in {e['active_slabs']} slab(s) keep "
            f"{e['superslabs_active']} superslab(s) alive. Slabs emptied "
            f"{e['slab_empty_events']} time(s) inside live superslabs; "
            f"{e['empty_slabs_in_live_superslabs']} empty slab(s) "
            f"({e['empty_slab_bytes_in_live_superslabs'] >> 10} KiB) sit there now, out of a "
            f"superslab policy's reach (a slab-granular policy such as slab-purge can take them).")
