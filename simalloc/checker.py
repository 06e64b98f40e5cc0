"""The invariant walk: every state machine and every list of a heap, checked against the bytes.

``check_state(state)`` (``Heap.check()``) walks, in order:

1. the front caches: each entry a distinct FREE-tagged block of an ACTIVE slab of its class;
2. every mapped superslab: registry and kernel tables agree with it; a CACHED one is in the
   LRU and no class is bound to it; an ACTIVE one passes :meth:`Superslab.check` (headers,
   free lists, block tags, counts) and each of its slabs is on exactly the list its state
   says (UNUSED: none; EMPTY/DECOMMITTED: ``empty[cls]``; ACTIVE: bound, ``partial[cls]`` or
   full);
3. the counts: active superslabs, live blocks (headers vs the kernel's counter);
4. the slab sets, the LRU, the registry, the warm pools (each entry an ACTIVE superslab, no
   duplicates, within the size), the Mid regions (page tables against counts, free stacks and
   allocation bits; see ``mid.MidTier.check``), and the memory report (parts sum to mapped bytes).

It raises ``AssertionError``; ``Heap.check()`` turns that into ``HeapCorruptionError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import constants as K
from .reports import memory_report

if TYPE_CHECKING:
    from .state import HeapState

__all__ = ["check_state"]


def _check_front_caches(st: HeapState) -> None:
    kern = st.kernel
    seen: set[int] = set()
    for cls in range(K.NUM_CLASSES):
        for h in kern.fc[cls, :kern.fc_count[cls]].tolist():
            idx, off = h >> 32, h & 0xFFFFFFFF
            assert h not in seen, f"front cache C{cls}: duplicate block"
            seen.add(h)
            ss = st.superslabs[idx]
            assert ss is not None and ss.state == K.SS_ACTIVE, \
                f"front cache C{cls}: block in inactive superslab"
            s = off >> K.SLAB_LG
            assert ss.slab_state(s) == K.SLAB_ACTIVE and ss.slab_class(s) == cls
            assert ss.w8[off] == K.FREE_TAG | cls, f"front cache C{cls}: header {ss.w8[off]:#x}"


def _check_slab_lists(st: HeapState, idx: int, bound: dict[tuple[int, int], int]) -> bool:
    """Each slab of active superslab ``idx`` is on the list its state says; returns whether
    the superslab has an UNUSED slab."""
    ss = st.superslab(idx)
    has_unused = False
    for s in range(st.nslabs):
        state = ss.slab_state(s)
        key = (idx, s)
        cls = ss.slab_class(s)
        in_empty = any(key in d for d in st.empty)
        in_partial = any(key in d for d in st.partial)
        if state == K.SLAB_UNUSED:
            has_unused = True
            assert not in_empty and not in_partial
        elif state in (K.SLAB_EMPTY, K.SLAB_DECOMMITTED):
            assert key in st.empty[cls] and not in_partial, f"slab {key} EMPTY but not listed"
            assert key not in bound
        else:
            used, cap = ss.meta(s, K.M_USED), ss.meta(s, K.M_CAPACITY)
            assert not in_empty, f"slab {key} ACTIVE but on an empty list"
            if key in bound:
                assert bound[key] == cls and not in_partial
            elif used <= cap - ((cap >> 2) or 1):
                assert key in st.partial[cls], f"slab {key} partial ({used}/{cap}) but not listed"
            else:  # full, or less than a quarter free: waits for more frees
                assert not in_partial, f"slab {key} listed partial at {used}/{cap}"
    return has_unused


def check_state(st: HeapState) -> None:
    """Walk every invariant of ``st`` (see the module docstring); AssertionError on the first
    violation."""
    kern = st.kernel
    _check_front_caches(st)
    fc = st.fc_by_slab()
    bound = st.bound()
    live = n_active = 0
    expected_registry: dict[int, int] = {}
    for idx, ss in enumerate(st.superslabs):
        if ss is None:
            assert kern.ss_base[idx] == 0
            continue
        expected_registry[ss.base] = idx
        assert int(kern.ss_base[idx]) == ss.base
        if ss.state == K.SS_CACHED:
            assert idx in st.lru, f"cached superslab {idx} not in the LRU"
            assert not any(k[0] == idx for k in bound), "a class is bound to a cached superslab"
            continue
        n_active += 1
        assert idx not in st.lru
        lv, _used = ss.check({s: n for (i, s), n in fc.items() if i == idx}, True,
                             int(kern.link_key), int(kern.link_mix))
        live += lv
        has_unused = _check_slab_lists(st, idx, bound)
        assert has_unused == (idx in st.has_unused), f"superslab {idx} has_unused mismatch"
    assert n_active == st.n_active, f"active count {st.n_active} != {n_active}"
    assert live == int(kern.counters[K.C_LIVE]), \
        f"live headers {live} != kernel live count {int(kern.counters[K.C_LIVE])}"
    for d in (*st.empty, *st.partial):
        d.check()
        for idx, _s in d:
            ss = st.superslabs[idx]
            assert ss is not None and ss.state == K.SS_ACTIVE
    st.lru.check()
    st.registry.check(expected_registry)
    st.warm.check(st)
    st.mid.check()
    memory_report(st)
