"""The OS layer: the only code that makes memory syscalls, and what those syscalls really do.

* An AST scan enforces the layering: only ``simalloc/oslayer/`` imports ``mmap`` (except
  ``constants.py``, which may read ``mmap.PAGESIZE`` and nothing else), and only
  ``oslayer/posix.py`` creates mappings, calls ``madvise`` or closes (unmaps) an mmap.
* Mappings are private (MADV_FREE works; it fails on the shared mappings ``mmap.mmap(-1, n)``
  makes by default), decommit ranges are rounded inwards and never touch a neighbour's byte,
  every call is counted, and reservations are aligned to their size.
"""

from __future__ import annotations

import ast
import ctypes
import gc
import mmap
from pathlib import Path

import pytest

from simalloc import OSLayerError
from simalloc.constants import PAGE_SIZE
from simalloc.oslayer import (
    OSLayer,
    lazyfree_bytes,
    mincore_resident,
    pagemap_resident,
    posix,
    process_memory,
)

PKG = Path(__file__).resolve().parents[1] / "simalloc"
MiB = 1 << 20
P = PAGE_SIZE

# ---------------------------------------------------------------- layering (AST)

SOURCES = sorted(PKG.rglob("*.py"))
SYSCALL_ATTRS = {"madvise", "munmap", "mremap", "mprotect"}  # any call of these attributes


def _rel(path: Path) -> str:
    return path.relative_to(PKG.parent).as_posix()


def _tree(path: Path) -> ast.AST:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_sources_found():
    names = {_rel(p) for p in SOURCES}
    assert {"simalloc/heap.py", "simalloc/oslayer/posix.py", "simalloc/constants.py"} <= names


@pytest.mark.parametrize("path", SOURCES, ids=_rel)
def test_only_oslayer_imports_mmap(path):
    rel = _rel(path)
    if rel.startswith("simalloc/oslayer/"):
        return
    tree = _tree(path)
    aliases: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "mmap":
                    aliases.add(a.asname or "mmap")
        elif isinstance(node, ast.ImportFrom) and node.module == "mmap":
            pytest.fail(f"{rel}:{node.lineno}: `from mmap import ...` outside simalloc/oslayer/")
    if not aliases:
        return
    # constants.py reads the page size and nothing else; any other importer is a violation
    assert rel == "simalloc/constants.py", f"{rel} imports mmap outside simalloc/oslayer/"
    uses = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id in aliases]
    attrs = [n for n in ast.walk(tree)
             if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
             and n.value.id in aliases]
    assert uses and len(uses) == len(attrs), f"{rel}: mmap used other than as mmap.<attr>"
    assert {a.attr for a in attrs} == {"PAGESIZE"}, f"{rel}: only mmap.PAGESIZE may be read"


def _is_mm(expr: ast.AST) -> bool:
    """An expression that names an mmap object by this codebase's convention (``mm``, ``x.mm``)."""
    return ((isinstance(expr, ast.Name) and expr.id == "mm")
            or (isinstance(expr, ast.Attribute) and expr.attr == "mm"))


@pytest.mark.parametrize("path", SOURCES, ids=_rel)
def test_only_posix_makes_memory_syscalls(path):
    rel = _rel(path)
    if rel == "simalloc/oslayer/posix.py":
        return
    for node in ast.walk(_tree(path)):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        f = node.func
        where = f"{rel}:{node.lineno}"
        assert f.attr not in SYSCALL_ATTRS, f"{where}: calls .{f.attr}() outside oslayer/posix.py"
        assert f.attr != "mmap", f"{where}: creates a mapping outside oslayer/posix.py"
        assert not (f.attr in ("close", "resize") and _is_mm(f.value)), \
            f"{where}: closes (unmaps) an mmap outside oslayer/posix.py"


def test_posix_is_the_one_place():
    """The rule is not vacuous: posix.py really does all three."""
    tree = _tree(PKG / "oslayer" / "posix.py")
    attrs = {n.func.attr for n in ast.walk(tree)
             if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}
    assert {"mmap", "madvise", "close"} <= attrs


# ---------------------------------------------------------------- private mappings


def test_reserved_mapping_is_private_anonymous():
    osl = OSLayer()
    m = osl.reserve(16 * P)
    try:
        # MADV_FREE is only valid on private anonymous memory: it succeeds here ...
        assert osl.decommit(m, 0, 16 * P, "FREE") == 16 * P
        assert osl.madvise_calls["FREE"] == 1
    finally:
        osl.release(m)
    # ... and fails (EINVAL) on the shared mapping mmap.mmap(-1, n) gives by default
    shared = mmap.mmap(-1, 16 * P)
    try:
        with pytest.raises(OSError):
            shared.madvise(mmap.MADV_FREE, 0, 16 * P)
    finally:
        shared.close()


def test_private_pages_are_really_dropped():
    osl = OSLayer()
    m = osl.reserve(8 * P)
    try:
        assert m.view is not None
        m.view[:] = b"\x22" * (8 * P)
        assert pagemap_resident([(m.addr, m.size)]) == 8 * P
        osl.decommit(m, 0, 8 * P, "DONTNEED")
        assert pagemap_resident([(m.addr, m.size)]) == 0
        assert bytes(m.view[:16]) == bytes(16)  # private: DONTNEED really discards the data
    finally:
        osl.release(m)


# ---------------------------------------------------------------- page rounding


@pytest.mark.parametrize(("offset", "length", "want"), [
    (0, P, (0, P)),
    (0, 3 * P, (0, 3 * P)),
    (1, P, (P, 0)),  # [1, P+1): no whole page inside
    (1, 2 * P - 1, (P, P)),  # [1, 2P): page 1 only
    (100, 50, (P, 0)),  # sub-page
    (P - 1, P + 2, (P, P)),  # [P-1, 2P+1): page 1 only
    (P, P - 1, (P, 0)),
    (2048, 64 * 1024 - 2048, (P, 64 * 1024 - P)),  # slab 0's data range: the header page stays
    (0, 0, (0, 0)),
])
def test_page_inward(offset, length, want):
    assert OSLayer.page_inward(offset, length) == want


def test_page_inward_exhaustive_small():
    for offset in range(0, 3 * P, 512):
        for length in range(0, 3 * P, 512):
            lo, n = OSLayer.page_inward(offset, length)
            if n:
                assert offset <= lo and lo + n <= offset + length
            # maximal: no whole page inside the range is left out
            pages_inside = [q for q in range(0, 8 * P, P) if offset <= q and q + P <= offset + length]
            assert n == len(pages_inside) * P


# ---------------------------------------------------------------- decommit precision


@pytest.mark.parametrize("how", ["DONTNEED", "FREE"])
@pytest.mark.parametrize(("offset", "length"), [
    (100, 3 * P),  # unaligned start: page 0 is kept
    (P + 7, 2 * P - 14),  # unaligned both ends, less than two pages: nothing whole inside
    (10, 100),  # sub-page: nothing to do
    (P, 2 * P + 1),  # aligned start, one byte into the next page
    (2 * P - 1, P + 2),  # one whole page in the middle
])
def test_decommit_never_touches_neighbours(how, offset, length):
    osl = OSLayer()
    m = osl.reserve(8 * P)
    try:
        v = m.view
        assert v is not None
        data = bytes((i * 13 + 5) % 251 + 1 for i in range(8 * P))
        v[:] = data
        n = osl.decommit(m, offset, length, how)
        lo, want_n = OSLayer.page_inward(offset, length)
        assert n == want_n
        if how == "FREE":
            osl.reclaim(m, 0, 8 * P)  # make the lazy free bite
        after = bytes(v)
        # every byte outside the whole pages advised is untouched ...
        assert after[:lo] == data[:lo]
        assert after[lo + n:] == data[lo + n:]
        # ... including the partial pages at both ends of the requested range
        assert after[offset:lo] == data[offset:lo]
        # and the whole pages inside are gone (they read zero)
        assert after[lo:lo + n] == bytes(n)
    finally:
        osl.release(m)


def test_decommit_unknown_advice():
    osl = OSLayer()
    m = osl.reserve(P)
    try:
        with pytest.raises(OSLayerError):
            osl.decommit(m, 0, P, "PAGEOUT")
        with pytest.raises(OSLayerError):
            osl.decommit(m, 0, P, "dontneed")
        assert osl.decommitted_bytes == 0
    finally:
        osl.release(m)


# ---------------------------------------------------------------- lazy free and reclaim


def test_free_then_pageout_reclaims_only_untouched_pages():
    n = 256  # pages; LazyFree lags by a per-CPU batch of 8-16 pages, so use a few hundred
    osl = OSLayer()
    m = osl.reserve(n * P)
    try:
        v = m.view
        assert v is not None
        v[:] = b"\x33" * (n * P)
        osl.decommit(m, 0, n * P, "FREE")
        # MADV_FREE: still resident, data still readable, counted as LazyFree
        assert pagemap_resident([(m.addr, m.size)]) == n * P
        assert bytes(v[:4]) == b"\x33" * 4
        assert lazyfree_bytes([(m.addr, m.size)]) >= (n - 32) * P
        v[5 * P] = 0x44  # rewriting a page cancels its lazy free
        osl.reclaim(m, 0, n * P)
        assert osl.madvise_calls["PAGEOUT"] == 1
        assert bytes(v[5 * P:5 * P + 2]) == b"\x44\x33"  # the rewritten page kept everything
        assert bytes(v[0:4]) == bytes(4)  # the others went back to the kernel: zero
        assert bytes(v[(n - 1) * P:]) == bytes(P)
        assert pagemap_resident([(m.addr, m.size)]) <= 2 * P
        assert osl.decommitted_bytes == n * P  # reclaim is not a decommit
    finally:
        osl.release(m)


def test_pageout_keeps_dirty_pages():
    osl = OSLayer()
    m = osl.reserve(4 * P)
    try:
        assert m.view is not None
        m.view[:] = b"\x5a" * (4 * P)
        osl.reclaim(m, 0, 4 * P)
        assert bytes(m.view) == b"\x5a" * (4 * P)  # live (dirty) data always survives
        osl.reclaim(m, 1, 10)  # sub-page: rounded inwards to nothing, no call
        assert osl.madvise_calls["PAGEOUT"] == 1
    finally:
        osl.release(m)


# ---------------------------------------------------------------- counters


def test_counters():
    osl = OSLayer(nohugepage=True)
    assert osl.syscalls == 0 and osl.madvise_total == 0
    a = osl.reserve(4 * P)
    b = osl.reserve(8 * P)
    assert osl.mmap_total == 2 and osl.munmap_total == 0
    assert osl.madvise_calls["NOHUGEPAGE"] == 2
    assert osl.mapped_bytes == 12 * P == osl.mapped_peak
    assert osl.decommit(a, 0, 4 * P, "DONTNEED") == 4 * P
    assert osl.decommit(b, P, 2 * P, "FREE") == 2 * P
    assert osl.decommit(b, 1, P, "FREE") == 0  # nothing whole inside: no syscall
    osl.reclaim(b, 0, 8 * P)
    assert osl.madvise_calls["DONTNEED"] == 1 and osl.madvise_calls["FREE"] == 1
    assert osl.madvise_calls["PAGEOUT"] == 1
    assert osl.madvise_total == 5
    assert osl.decommitted_bytes == 6 * P
    osl.release(a)
    assert osl.munmap_total == 1 and osl.mapped_bytes == 8 * P and osl.mapped_peak == 12 * P
    osl.release(b)
    assert osl.munmap_total == 2 and osl.mapped_bytes == 0
    assert osl.syscalls == osl.mmap_total + osl.munmap_total + osl.madvise_total == 9
    plain = OSLayer(nohugepage=False)
    c = plain.reserve(P)
    assert plain.madvise_total == 0
    plain.release(c)


def test_release_with_live_view_is_deferred():
    osl = OSLayer()
    m = osl.reserve(4 * P)
    assert m.view is not None
    user = m.view[P:2 * P]  # a user's view into the mapping
    user[:4] = b"keep"
    osl.release(m)
    assert osl.deferred_unmaps == 1 and osl.munmap_total == 0
    assert osl.madvise_calls["DONTNEED"] == 1  # the pages are dropped at once
    assert osl.mapped_bytes == 0
    assert bytes(user[:4]) == bytes(4)  # still readable, no crash
    user.release()
    del user
    gc.collect()
    osl.close()  # retries the deferred unmap
    assert osl.munmap_total == 1


# ---------------------------------------------------------------- reserve


@pytest.mark.parametrize("align", [2 * MiB, 1 * MiB])
def test_reserve_alignment(align):
    osl = OSLayer()
    maps = [osl.reserve(align, align=align) for _ in range(6)]
    try:
        for m in maps:
            assert m.addr % align == 0
            assert m.size == align and len(m.view) == align
            assert m.map_size in (align, 2 * align)
            assert m.alignment_waste == m.map_size - m.size
            assert posix.address_of(m.mm) + m.offset == m.addr
            # the window is real, writable memory at that address
            m.view[0] = 0x7E
            m.view[align - 1] = 0x7F
            assert ctypes.string_at(m.addr, 1) == b"\x7e"
            assert ctypes.string_at(m.addr + align - 1, 1) == b"\x7f"
        # every misaligned first attempt was unmapped: live mappings == reservations
        assert osl.mmap_total - osl.munmap_total == len(maps)
        assert osl.munmap_total == osl.align_retries
        assert osl.mapped_bytes == sum(m.map_size for m in maps)
        assert osl.alignment_waste == sum(m.alignment_waste for m in maps)
    finally:
        for m in maps:
            osl.release(m)
    assert osl.mapped_bytes == 0 and osl.mmap_total == osl.munmap_total
    assert osl.alignment_waste == 0


def test_reserve_alignment_waste_is_never_touched():
    osl = OSLayer()
    m = osl.reserve(MiB, align=2 * MiB)  # 1 MiB window aligned to 2 MiB: often needs a retry
    try:
        assert m.addr % (2 * MiB) == 0
        m.view[:] = b"\x01" * MiB
        assert pagemap_resident([(m.addr, m.size)]) == MiB
        if m.map_size > m.size:
            base = m.addr - m.offset
            head = [(base, m.offset)] if m.offset else []
            tail_start = m.addr + m.size
            tail = [(tail_start, base + m.map_size - tail_start)]
            assert pagemap_resident(head + tail) == 0
    finally:
        osl.release(m)


@pytest.mark.parametrize("size", [0, -P, 100, P + 1])
def test_reserve_rejects_bad_sizes(size):
    osl = OSLayer()
    with pytest.raises(OSLayerError):
        osl.reserve(size)
    assert osl.mmap_total == 0


def test_reserve_failure_is_oslayer_error():
    osl = OSLayer()
    with pytest.raises(OSLayerError):
        osl.reserve(1 << 62)  # far beyond the address space
    assert osl.mapped_bytes == 0


# ---------------------------------------------------------------- residency probes


def test_residency_probes_agree_on_written_pages():
    osl = OSLayer()
    m = osl.reserve(32 * P)
    try:
        assert pagemap_resident([(m.addr, m.size)]) == 0
        assert m.view is not None
        for i in range(0, 32, 2):  # write every other page
            m.view[i * P] = 1
        assert pagemap_resident([(m.addr, m.size)]) == 16 * P
        assert mincore_resident([(m.addr, m.size)]) == 16 * P
        _ = bytes(m.view[P:P + 1])  # a read maps the shared zero page:
        assert pagemap_resident([(m.addr, m.size)]) == 16 * P  # pagemap ignores it
        assert mincore_resident([(m.addr, m.size)]) >= 16 * P  # mincore may count it
        assert lazyfree_bytes([]) == 0
    finally:
        osl.release(m)
    mem = process_memory()
    assert mem["vm_rss_bytes"] > 0 and mem["vm_hwm_bytes"] >= mem["vm_rss_bytes"]


def test_advice_table():
    assert posix.ADVICE["DONTNEED"] == mmap.MADV_DONTNEED
    assert posix.ADVICE["FREE"] == mmap.MADV_FREE
    assert posix.ADVICE["PAGEOUT"] == posix.MADV_PAGEOUT == 21
    assert posix.MADV_COLD == 20
