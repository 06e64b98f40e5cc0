"""The occupancy map: where the heap's memory sits, superslab by superslab and slab by slab.

:func:`snapshot` (``Heap.occupancy()``) reads one :class:`Occupancy` from the heap's state:
every mapped superslab (active and cached) and every slab in it, with the facts that live in
different places of the heap::

    fact                          where it lives
    ----------------------------  ---------------------------------------------------------
    superslab state, cold/warm    Superslab.state / .decommitted            (superslab.py)
    slab state, class, used, cap  the slab's meta record in the header page (superslab.py)
    blocks in the front caches    the kernel's fc table, by slab            (state.fc_by_slab)
    current slab of a class       the kernel's cur_ss / cur_slab            (state.bound)
    resident / lazy pages         the kernel's pstate table, one byte/page  (pages.py)
    scheduled for purge           the policy's own queue                    (ReleasePolicy.scheduled)

:func:`render_map` (``Heap.show()``) draws it as text, one character per 64 KiB slab, in the
spirit of mimalloc's ``mi_arenas_print`` (one row per superslab; ``m`` stands for the header
that shares slab 0's first page)::

    occupancy at op 6,768 (policy slab-purge, kernel cython): 2 superslabs mapped (1 active, 1 cached), ...
       ss  state         res KiB  slabs
        0  ACTIVE            408  m 11_2__14 4~--.... ........ ........
        1  CACHED cold      2048  m -------- -------- -------- -------- (2044 lazy)
      slabs: .=20  1=3  2=1  4=2  _=3  -=34  ~=1
    legend: ...

Slab characters (``SLAB_CHARS``), from the slab's point of view:

====  ========================================================================================
``.``  UNUSED: never claimed since the superslab was (re)activated; its pages never touched
``0``  ACTIVE, no block out (a class's current slab that emptied, or just claimed)
``1``  ACTIVE, fill < 25% (used / capacity; blocks held in front caches count as used, as
       they do for the release guard; :class:`SlabOccupancy` has them apart as ``front_cache``)
``2``  ACTIVE, fill 25-50%; ``3``: 50-75%; ``4``: >= 75%
``_``  EMPTY, committed: no block out, pages still resident (dirty, reusable at once)
``-``  EMPTY, decommitted: pages given back (MADV_DONTNEED, or MADV_FREE: then ``lazy_pages``)
``~``  EMPTY (committed or decommitted) and scheduled for purge by the release policy
====  ========================================================================================

A cached superslab shows its slabs as they were cached: a warm one (pages committed) reads
its slab records (``_``, ``-``, ``.``); a cold one (decommitted: its header page may read zero)
shows every slab ``-``.  *Scheduled for purge* is what the policy's
:meth:`~simalloc.policy.ReleasePolicy.scheduled` returns (a pending purge with a deadline:
slab-purge's delay, jemalloc-decay's dirty and muzzy pages, mimalloc-purge's marked pages),
intersected with the slabs that are still empty: a stale entry (the slab was reused since) is
not shown, as the policy's purge would be a no-op.

:func:`plot_map` writes the map as a PNG and :class:`Timeline` takes a map every N operations
and stacks them into one image (time left to right, slabs top to bottom).  Both need
matplotlib (the ``plot`` extra); it is imported inside those functions only, and its absence
raises ``ImportError`` with :data:`PLOT_HINT`, the project's one-line hint.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import constants as K

if TYPE_CHECKING:
    from .heap import Heap
    from .policy import PolicyContext
    from .state import HeapState

__all__ = ["CODE_COLORS", "CODE_NAMES", "LEGEND", "PLOT_HINT", "SLAB_CHARS", "Occupancy",
           "SlabOccupancy", "SuperslabOccupancy", "Timeline", "codes", "plot_map", "plot_timeline",
           "render_map", "snapshot"]

#: The one line shown when a PNG is asked for without matplotlib (same as ``simalloc ab --report``).
PLOT_HINT = 'simalloc: plotting needs matplotlib: pip install "simalloc[plot]"'

#: Slab state names (``SlabOccupancy.state``).
UNUSED, ACTIVE, EMPTY, DECOMMITTED = "unused", "active", "empty", "decommitted"
_STATE_NAMES = {K.SLAB_UNUSED: UNUSED, K.SLAB_ACTIVE: ACTIVE, K.SLAB_EMPTY: EMPTY,
                K.SLAB_DECOMMITTED: DECOMMITTED}

#: Map character -> meaning (module docstring); ``m`` is the header cell of each row.
SLAB_CHARS: dict[str, str] = {
    "m": "header (superslab metadata, first page of slab 0)",
    ".": "unused (never claimed, never touched)",
    "0": "active, no block out",
    "1": "active, fill < 25%",
    "2": "active, fill 25-50%",
    "3": "active, fill 50-75%",
    "4": "active, fill >= 75%",
    "_": "empty, committed (pages resident)",
    "-": "empty, decommitted (pages given back)",
    "~": "empty, scheduled for purge by the policy",
}

#: The legend printed under the map.
LEGEND = ("legend: m header   . unused   0 active, no block out   1 2 3 4 active, fill quartile\n"
          "        (<25% <50% <75% >=75%; front-cache blocks count as used)   _ empty, committed\n"
          "        - empty, decommitted   ~ empty, scheduled for purge")

#: Numeric codes for the images (:func:`codes`): index -> name and colour.
CODE_NAMES = ("not mapped", "header", "unused", "active 0%", "active <25%", "active <50%",
              "active <75%", "active >=75%", "empty committed", "empty decommitted",
              "scheduled for purge")
CODE_COLORS = ("#ffffff", "#525252", "#e6e6e6", "#edf8e9", "#bae4b3", "#74c476", "#31a354",
               "#006d2c", "#fd8d3c", "#9ecae1", "#8856a7")
_CHAR_CODE = {"m": 1, ".": 2, "0": 3, "1": 4, "2": 5, "3": 6, "4": 7, "_": 8, "-": 9, "~": 10}
_ANSI = {"1": "31", "2": "33", "3": "36", "4": "32", "~": "35", "_": "33;2", "-": "34",
         ".": "90", "m": "90", "0": "37"}


@dataclass(frozen=True)
class SlabOccupancy:
    """One 64 KiB slab.  ``used`` counts every block out of the slab, the ``front_cache``
    ones included (so ``used - front_cache`` blocks are held by the program); ``capacity`` is
    0 for unclaimed slabs and in cold cached superslabs.  Pages are OS pages of the slab's
    64 KiB (slab 0's first page also holds the header)."""

    slab: int
    state: str  # "unused", "active", "empty" or "decommitted"
    cls: int | None  # size class (None: never claimed, or unknown in a cold cached superslab)
    used: int
    front_cache: int
    capacity: int
    current: bool  # the current slab of its class
    pages: int
    resident_pages: int  # resident, LazyFree included
    lazy_pages: int  # given back with MADV_FREE, not yet reclaimed (resident)
    decommitted: bool
    scheduled: bool

    @property
    def fill(self) -> float:
        """used / capacity (0.0 when the slab holds no class)."""
        return self.used / self.capacity if self.capacity else 0.0

    @property
    def char(self) -> str:
        """The map character (module docstring)."""
        if self.scheduled and self.state in (EMPTY, DECOMMITTED):
            return "~"
        if self.state == ACTIVE:
            return "0" if self.used == 0 else str(min(4, 1 + 4 * self.used // self.capacity))
        return {UNUSED: ".", EMPTY: "_", DECOMMITTED: "-"}[self.state]


@dataclass(frozen=True)
class SuperslabOccupancy:
    """One mapped superslab: its state (``"ACTIVE"`` or ``"CACHED"``), whether it is cached
    cold (``decommitted``) and scheduled for purge as a whole, its pages and its slabs."""

    index: int
    state: str
    decommitted: bool
    scheduled: bool
    header_resident: bool
    pages: int
    resident_pages: int
    lazy_pages: int
    slabs: tuple[SlabOccupancy, ...]

    @property
    def label(self) -> str:
        """``ACTIVE``, ``CACHED warm`` or ``CACHED cold``."""
        if self.state != "CACHED":
            return self.state
        return "CACHED cold" if self.decommitted else "CACHED warm"

    @property
    def chars(self) -> str:
        """The row's characters: the header cell then one per slab, ungrouped."""
        return "m" + "".join(s.char for s in self.slabs)


@dataclass(frozen=True)
class Occupancy:
    """A snapshot of the heap's superslabs (see the module docstring)."""

    ops: int
    seconds: float
    virtual_ns: int | None  # the heap clock's virtual time (None if the clock has none)
    policy: str
    kernel: str
    nslabs: int
    page_size: int
    superslabs: tuple[SuperslabOccupancy, ...]

    @property
    def resident_bytes(self) -> int:
        """Resident bytes of every mapped superslab (LazyFree included)."""
        return sum(s.resident_pages for s in self.superslabs) * self.page_size

    def counts(self) -> dict[str, int]:
        """Slabs per map character (every key of :data:`SLAB_CHARS` except ``m``)."""
        out = dict.fromkeys((c for c in SLAB_CHARS if c != "m"), 0)
        for ss in self.superslabs:
            for s in ss.slabs:
                out[s.char] += 1
        return out

    def rows(self) -> list[dict[str, Any]]:
        """One dict per slab (superslab columns prefixed ``ss_``): loads into pandas as is."""
        out = []
        for ss in self.superslabs:
            head = {"ops": self.ops, "ss": ss.index, "ss_state": ss.label, "ss_scheduled": ss.scheduled}
            for s in ss.slabs:
                out.append({**head, **asdict(s), "char": s.char})
        return out


# ---------------------------------------------------------------------------- snapshot
def snapshot(st: HeapState, ctx: PolicyContext) -> Occupancy:
    """Read the occupancy of every mapped superslab of ``st`` (``Heap.occupancy()``)."""
    kern: Any = st.kernel
    pps = int(kern.pps)
    per_slab = K.SLAB_SIZE // K.PAGE_SIZE
    pstate = np.asarray(kern.pstate)
    fc = st.fc_by_slab()
    bound = st.bound()
    sched = {(int(i), None if s is None or s < 0 else int(s)) for i, s in st.policy.scheduled(ctx)}
    out = []
    for ss in st.mapped():
        idx = ss.idx
        pages = pstate[idx * pps:(idx + 1) * pps].reshape(st.nslabs, per_slab)
        is_lazy = pages == K.PAGE_LAZY
        res = ((pages == K.PAGE_RESIDENT) | is_lazy).sum(axis=1).tolist()
        lazy = is_lazy.sum(axis=1).tolist()
        cached = ss.state == K.SS_CACHED
        whole = (idx, None) in sched and cached
        slabs = []
        for s in range(st.nslabs):
            if cached and ss.decommitted:
                state, cls, used, cap = DECOMMITTED, None, 0, 0
            else:
                state = _STATE_NAMES.get(ss.slab_state(s), DECOMMITTED)
                cls = None if state == UNUSED else ss.slab_class(s)
                used = ss.meta(s, K.M_USED) if state == ACTIVE else 0
                cap = ss.meta(s, K.M_CAPACITY) if cls is not None else 0
            can_purge = state in (EMPTY, DECOMMITTED)
            slabs.append(SlabOccupancy(
                slab=s, state=state, cls=cls, used=used, front_cache=fc.get((idx, s), 0), capacity=cap,
                current=(idx, s) in bound, pages=per_slab, resident_pages=int(res[s]),
                lazy_pages=int(lazy[s]), decommitted=state == DECOMMITTED,
                scheduled=can_purge and (whole or (idx, s) in sched)))
        out.append(SuperslabOccupancy(
            index=idx, state=K.SS_STATE_NAMES[ss.state], decommitted=ss.decommitted, scheduled=whole,
            header_resident=int(pages[0, 0]) in (K.PAGE_RESIDENT, K.PAGE_LAZY), pages=pps,
            resident_pages=int(sum(res)), lazy_pages=int(sum(lazy)), slabs=tuple(slabs)))
    c = st.clock()
    return Occupancy(ops=c.ops, seconds=c.seconds, virtual_ns=getattr(c, "virtual_ns", None),
                     policy=st.policy.describe(), kernel=str(kern.name), nslabs=st.nslabs,
                     page_size=K.PAGE_SIZE, superslabs=tuple(out))


# ---------------------------------------------------------------------------- text
def _paint(text: str, color: bool) -> str:
    if not color:
        return text
    out, prev = [], ""
    for ch in text:
        code = _ANSI.get(ch, "")
        if code != prev:
            out.append(f"\x1b[{code}m" if code else "\x1b[0m")
            prev = code
        out.append(ch)
    return "".join(out) + ("\x1b[0m" if prev else "")


def render_map(occ: Occupancy, *, color: bool = False, group: int = 8, legend: bool = True) -> str:
    """The occupancy map as text: a title line, one row per superslab (index, state, resident
    KiB, then ``m`` and one character per slab in groups of ``group``), and the legend.
    ``color`` adds ANSI colours (the fill quartiles as in mimalloc: red, yellow, cyan, green);
    callers pass it only when writing to a terminal."""
    n, n_act = len(occ.superslabs), sum(s.state == "ACTIVE" for s in occ.superslabs)
    lines = [f"occupancy at op {occ.ops:,} (policy {occ.policy}, kernel {occ.kernel}): "
             f"{n} superslab{'' if n == 1 else 's'} mapped ({n_act} active, {n - n_act} cached), "
             f"{occ.resident_bytes >> 10:,} KiB resident"]
    if occ.superslabs:
        lines.append(f"  {'ss':>3}  {'state':<12} {'res KiB':>8}  slabs")
    for ss in occ.superslabs:
        cells = ss.chars[1:]
        step = group if group > 0 else len(cells) or 1
        body = " ".join(cells[i:i + step] for i in range(0, len(cells), step))
        lazy = f" ({ss.lazy_pages * occ.page_size >> 10} lazy)" if ss.lazy_pages else ""
        lines.append(f"  {ss.index:>3}  {ss.label:<12} {ss.resident_pages * occ.page_size >> 10:>8}  "
                     f"{_paint('m ' + body, color)}{lazy}")
    if not occ.superslabs:
        lines.append("  (no superslab mapped)")
    counts = occ.counts()
    lines.append("  slabs: " + "  ".join(f"{c}={n}" for c, n in counts.items() if n))
    if legend:
        lines.append(LEGEND)
    return "\n".join(lines)


# ---------------------------------------------------------------------------- images
def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError(PLOT_HINT, name="matplotlib") from exc


def codes(occ: Occupancy, n_superslabs: int | None = None) -> np.ndarray:
    """The map as an ``int8`` array ``(n_superslabs, 1 + nslabs)`` of :data:`CODE_NAMES`
    indices, row = superslab index (rows of unmapped indices are 0, "not mapped");
    ``n_superslabs`` defaults to the highest mapped index + 1."""
    n = n_superslabs if n_superslabs is not None else max((s.index + 1 for s in occ.superslabs), default=0)
    out = np.zeros((n, 1 + occ.nslabs), dtype=np.int8)
    for ss in occ.superslabs:
        if ss.index < n:
            out[ss.index] = [_CHAR_CODE[c] for c in ss.chars]
    return out


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _cmap() -> tuple[Any, Any]:
    from matplotlib.colors import BoundaryNorm, ListedColormap

    n = len(CODE_COLORS)
    return ListedColormap(CODE_COLORS), BoundaryNorm(np.arange(-0.5, n), n)


def _legend(fig: Any, used: Iterable[int]) -> None:
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=CODE_COLORS[i], edgecolor="#999999", label=CODE_NAMES[i])
               for i in sorted(set(used)) if i > 0]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4) or 1,
               fontsize="small", frameon=False)


def plot_map(occ: Occupancy, path: str | Path) -> Path:
    """Write the map as a PNG at ``path`` (rows: superslabs, columns: header then slabs);
    returns the path.  Needs matplotlib (``ImportError`` with :data:`PLOT_HINT` otherwise)."""
    _require_matplotlib()
    grid = codes(occ)
    rows = max(len(grid), 1)
    fig = _figure(max(6.0, 0.22 * (occ.nslabs + 1) + 2), min(2.6 + 0.22 * rows, 16.0))
    ax = fig.add_subplot()
    cmap, norm = _cmap()
    ax.imshow(grid if len(grid) else np.zeros((1, occ.nslabs + 1), np.int8), cmap=cmap, norm=norm,
              aspect="auto", interpolation="nearest")
    step = max(1, rows // 24)
    ax.set_yticks(range(0, rows, step))
    ax.set_yticklabels([f"{i}" for i in range(0, rows, step)], fontsize="small")
    ax.set_ylabel("superslab")
    ax.set_xlabel("slab (column 0: header)")
    ax.set_title(f"occupancy at op {occ.ops:,}: {occ.policy} ({occ.resident_bytes >> 10:,} KiB resident)",
                 fontsize="medium")
    _legend(fig, grid.ravel().tolist() or [1])
    out = Path(path)
    fig.savefig(out)
    return out


def plot_timeline(frames: Sequence[Occupancy], path: str | Path) -> Path:
    """Stack ``frames`` into one PNG: time (operations) left to right, every slab of every
    superslab index ever mapped top to bottom (header first), with the superslabs' resident
    KiB above.  Returns the path.  Needs matplotlib."""
    _require_matplotlib()
    if not frames:
        raise ValueError("plot_timeline: no frames")
    n = max((s.index + 1 for f in frames for s in f.superslabs), default=1)
    width = 1 + frames[0].nslabs
    grid = np.stack([codes(f, n).reshape(-1) for f in frames], axis=1)  # (n * width, frames)
    ops = [f.ops for f in frames]
    fig = _figure(9.0, min(4.0 + 0.01 * len(grid), 14.0))
    top, ax = fig.subplots(2, 1, sharex=True, height_ratios=(1, 4))
    top.plot(ops, [f.resident_bytes / 1024 for f in frames], color="#333333", linewidth=1)
    top.set_ylabel("res KiB", fontsize="small")
    top.set_ylim(bottom=0)
    top.tick_params(labelbottom=False, labelsize="small")
    top.set_title(f"occupancy timeline: {frames[-1].policy}, {len(frames)} maps", fontsize="medium")
    cmap, norm = _cmap()
    x0 = ops[0]
    x1 = ops[-1] if ops[-1] > ops[0] else ops[0] + 1
    ax.imshow(grid, cmap=cmap, norm=norm, aspect="auto", interpolation="nearest",
              extent=(x0, x1, len(grid), 0))
    step = max(1, n // 16)
    ax.set_yticks([i * width + width / 2 for i in range(0, n, step)])
    ax.set_yticklabels([f"ss {i}" for i in range(0, n, step)], fontsize="small")
    ax.set_xlabel("operations")
    _legend(fig, grid.ravel().tolist())
    out = Path(path)
    fig.savefig(out)
    return out


class Timeline:
    """Maps of a heap taken every ``every_ops`` operations, for :func:`plot_timeline`.

    ``replay(rows, slots)`` applies an op stream in pieces of ``every_ops`` rows with a map
    after each piece; :meth:`snap` takes one now (e.g. after each chunk of
    ``Workload.run_chunks``).  ``frames`` holds the maps, oldest first."""

    def __init__(self, heap: Heap, every_ops: int) -> None:
        if type(every_ops) is not int or every_ops < 1:
            raise ValueError(f"every_ops must be an int >= 1, not {every_ops!r}")
        self.heap = heap
        self.every_ops = every_ops
        self.frames: list[Occupancy] = []

    def snap(self) -> Occupancy:
        """Take a map now."""
        occ = self.heap.occupancy()
        self.frames.append(occ)
        return occ

    def replay(self, rows: np.ndarray, slots: np.ndarray) -> int:
        """``Heap.replay`` in pieces of ``every_ops`` rows, a map after each; returns the rows
        applied."""
        done = 0
        for lo in range(0, len(rows), self.every_ops):
            done += self.heap.replay(rows[lo:lo + self.every_ops], slots)
            self.snap()
        return done

    def plot(self, path: str | Path) -> Path:
        """:func:`plot_timeline` of the frames."""
        return plot_timeline(self.frames, path)
