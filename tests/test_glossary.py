"""docs/glossary.md: every required term has an entry, and every file it names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GLOSSARY = ROOT / "docs" / "glossary.md"
TERMS = ("superslab", "slab", "size class", "stride", "header", "front cache", "carving",
         "EMPTY / UNUSED / DECOMMITTED", "LRU", "warm pool", "commit", "decommit", "MADV_FREE",
         "MADV_DONTNEED", "LazyFree", "RSS", "refault")
PATH = re.compile(r"`((?:simalloc|kernels|tests|benchmarks|examples|docs)/[\w./-]+\.\w+)`")


def _entries() -> dict[str, str]:
    out: dict[str, str] = {}
    for block in GLOSSARY.read_text(encoding="utf-8").split("\n\n"):
        m = re.match(r"\*\*(.+?)\*\* -- ", block)
        if m:
            out[m.group(1)] = block
    return out


def test_every_term_has_a_short_entry_naming_a_file() -> None:
    entries = _entries()
    assert list(entries) == list(TERMS)
    for term, text in entries.items():
        assert len(text.strip().splitlines()) <= 2, f"{term}: keep it to two lines"
        assert PATH.search(text), f"{term}: name the file that implements it"


def test_every_file_named_exists() -> None:
    named = PATH.findall(GLOSSARY.read_text(encoding="utf-8"))
    assert len(named) >= len(TERMS)
    missing = sorted({p for p in named if not (ROOT / p).is_file()})
    assert not missing, f"the glossary names files that do not exist: {missing}"
