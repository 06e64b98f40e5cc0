"""simalloc's options: one table of every tunable, its default, type, range, doc and env names.

Each :class:`Option` row names the option, its default and kind, its valid values (a closed
range ``[minimum, maximum]`` for numbers, the choices for a choice, the syntax for the policy
string), a one-line doc, and the environment variables that set it: hakmem's own name (so
hakmem's scripts and A/B commands work unchanged) and a ``SIMALLOC_<NAME>`` one.  When both are
set the ``SIMALLOC_`` name wins.

:class:`Config` is a frozen dataclass built from the table; ``Config.from_env(**overrides)``
reads the environment and applies overrides (given by option name *or* by environment name, so
``Config.from_env(HAKMEM_SS_MEM_LEAN="1")`` works).  An invalid value raises
:class:`~simalloc.errors.ConfigError` naming the variable (or, for a keyword override, the
keyword) -- never a silent fallback.  Invalid means any of:

* not of the option's kind (``HAKMEM_SS_MEM_LEAN=banana``, ``SIMALLOC_DEBUG=1.5``);
* empty: a variable set to ``""`` is an error, not "unset" (an empty value is most often a
  script's shell variable that was never set, ``HAKMEM_X=$TYPO``; unset the variable to get the
  default).  hakmem's documents give an empty value no meaning, so simalloc gives it none;
* not finite (``nan``, ``inf``, ``-inf``) or outside the row's ``[minimum, maximum]``; every
  number has both bounds, chosen so that a heap can be built with any value in range (e.g.
  ``tick_interval_ops`` <= 2**48, so the kernel's int64 clock cannot overflow);
* in conflict with another option (the error names both variables): ``front_drain_batch``
  above ``front_cache_cap``; ``prewarm_superslabs`` above ``max_superslabs``; a hot prewarm
  (``HAKMEM_TINY_PREWARM_C2..C5`` / ``_ALL``) that does not fit in ``max_superslabs``
  superslabs (each class rounded up to whole superslabs).

``Config.from_env`` also warns, once per call, about ``HAKMEM_*`` variables that are not in the
table (:class:`~simalloc.errors.UnmodelledOptionWarning`; e.g. ``HAKMEM_PROFILE``): they are
ignored, never silently and never as an error.

Value syntax: booleans accept ``1/0, true/false, yes/no, on/off``; sizes accept ``K``/``M``/``G``
suffixes; choices are case-insensitive.

Print the whole table with ``simalloc options`` or ``Config.from_env().dump()``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .constants import NUM_CLASSES, SS_LG_CHOICES, SS_LG_DEFAULT, nslabs, slab_capacity
from .errors import ConfigError, UnmodelledOptionWarning

__all__ = ["OPTIONS", "Config", "Option"]


@dataclass(frozen=True)
class Option:
    """One row of the option table.

    ``minimum``/``maximum`` bound every ``int``/``float`` option (both are required: checked at
    import); ``choices`` lists a ``choice`` option's values, or the built-in names a ``str``
    option accepts besides ``module:Class``."""

    name: str
    default: Any
    kind: str  # "bool" | "int" | "float" | "choice" | "str"
    doc: str
    env: tuple[str, ...] = ()
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None

    @property
    def env_names(self) -> tuple[str, ...]:
        """Environment names, the ``SIMALLOC_`` one first (it wins)."""
        return ("SIMALLOC_" + self.name.upper(), *self.env)

    def valid(self) -> str:
        """The valid values, as ``simalloc options`` prints them."""
        if self.kind == "bool":
            return "bool"
        if self.kind in ("int", "float"):
            if self.choices:
                return "|".join(map(str, self.choices))
            return f"{_num(self.minimum)}..{_num(self.maximum)}"
        if self.kind == "choice":
            return "|".join(map(str, self.choices))
        return "|".join(map(str, self.choices)) + "|module:Class"


def _num(x: float | None) -> str:
    """A bound for humans: ``65536`` -> ``64K``, ``1 << 48`` -> ``256T``... (exact values only)."""
    if x is None:
        return "?"
    if x == int(x):
        n = int(x)
        for suffix, shift in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
            if abs(n) >= 1 << shift and n % (1 << shift) == 0:
                return f"{n >> shift}{suffix}"
        return str(n)
    return f"{x:g}"


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_SUFFIX = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
#: ``module:Class`` for the ``policy`` option (dotted module path, one attribute).
_MODULE_CLASS = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def _parse(opt: Option, raw: Any, source: str) -> Any:
    """Convert ``raw`` (a string from the environment, or a Python value) for ``opt``; raise
    ConfigError naming ``source`` (the variable, keyword or option that supplied it)."""

    def bad(why: str) -> ConfigError:
        envs = " or ".join(opt.env_names)
        return ConfigError(f"{source}={raw!r}: {why} (option {opt.name!r}, env {envs}: {opt.doc})")

    if isinstance(raw, str) and not raw.strip():
        raise bad("empty value; give a value or unset the variable for the default "
                  f"({opt.default!r})")
    if opt.kind == "bool":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, int) and raw in (0, 1):
            return bool(raw)
        s = str(raw).strip().lower()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
        raise bad("expected a boolean (1/0, true/false, yes/no, on/off)")
    if opt.kind in ("int", "float"):
        what = "an integer" if opt.kind == "int" else "a number"
        if isinstance(raw, bool):
            raise bad(f"expected {what}")
        if isinstance(raw, (int, float)):
            val: float = raw
        else:
            s = str(raw).strip().lower()
            mult = 1
            if s and s[-1] in _SUFFIX:
                mult, s = _SUFFIX[s[-1]], s[:-1]
            try:
                val = (int(s, 0) if opt.kind == "int" else float(s)) * mult
            except ValueError:
                raise bad(f"expected {what}") from None
        if isinstance(val, float) and not math.isfinite(val):
            raise bad("expected a finite " + ("integer" if opt.kind == "int" else "number"))
        if opt.kind == "int":
            if val != int(val):
                raise bad("expected an integer")
            val = int(val)
        assert opt.minimum is not None and opt.maximum is not None
        if not opt.minimum <= val <= opt.maximum:
            raise bad(f"out of range: must be between {_num(opt.minimum)} and {_num(opt.maximum)}")
        if opt.choices and val not in opt.choices:
            raise bad(f"must be one of {', '.join(map(str, opt.choices))}")
        return val
    if opt.kind == "choice":
        s = str(raw).strip()
        for c in opt.choices:
            if s.lower() == str(c).lower():
                return c
        raise bad(f"must be one of {', '.join(map(str, opt.choices))}")
    if not isinstance(raw, str):
        raise bad("expected a string")
    s = raw.strip()
    if s not in opt.choices and not _MODULE_CLASS.match(s):
        raise bad(f"expected {', '.join(opt.choices)} or module:Class")
    return s


#: Largest counts and sizes the table admits (one place; see the rows).
_MAX_SUPERSLABS = 1 << 20  # the superslab table and its registry are arrays of this size
_MAX_BATCH = 1 << 16  # front cache capacity / refill / drain, and hot-prewarm blocks per class
_MAX_MB = 1 << 21  # 2 TiB: the most memory _MAX_SUPERSLABS superslabs of 2 MiB can map
_MAX_TTL_SEC = 365 * 24 * 3600.0  # one year (0 = no TTL)
_MAX_TICK_OPS = 1 << 48  # the kernel's next-tick counter (int64) adds this to the op count

#: The option table.  Order is the order of ``Config.dump()``.
OPTIONS: tuple[Option, ...] = (
    # -- geometry ------------------------------------------------------------------------
    Option("ss_lg", SS_LG_DEFAULT, "int", "superslab size exponent: 21 = 2 MiB, 20 = 1 MiB",
           ("HAKMEM_TINY_SS_FORCE_LG",), choices=SS_LG_CHOICES, minimum=min(SS_LG_CHOICES),
           maximum=max(SS_LG_CHOICES)),
    Option("tiny_max_class", 7, "int", "largest tiny class; bigger requests take the large (direct mmap) path",
           ("HAKMEM_TINY_MAX_CLASS",), minimum=0, maximum=NUM_CLASSES - 1),
    Option("tiny_max_size", 2047, "int",
           "largest user size of the tiny classes (also capped by tiny_max_class); hakmem: 1023, "
           "2047 = C7's whole stride (simalloc's default, docs/hakmem-model.md)", (), minimum=0, maximum=2047),
    Option("mid_tier", False, "bool",
           "Pool/Mid tier: requests above the tiny limit up to 32 KiB go to 8/16/32 KiB classes in shared "
           "regions instead of one mmap each (hakmem: on)", ()),
    Option("max_superslabs", 4096, "int", "size of the heap's superslab table (and 2x its address registry)",
           (), minimum=4, maximum=_MAX_SUPERSLABS),
    # -- front cache (hakmem's TLS SLL / unified cache) -----------------------------------
    Option("front_cache_cap", 64, "int", "per-class front cache capacity in blocks (hakmem TLS SLL cap 64)",
           (), minimum=0, maximum=_MAX_BATCH),
    Option("front_refill_batch", 16, "int", "blocks moved from the current slab into the front cache per refill",
           (), minimum=1, maximum=_MAX_BATCH),
    Option("front_drain_batch", 32, "int", "blocks returned to their slabs when a full front cache overflows",
           (), minimum=1, maximum=_MAX_BATCH),
    # -- LRU cache of empty superslabs (Phase 9) -----------------------------------------
    Option("ss_max_cached", 256, "int", "LRU cache: most empty superslabs kept",
           ("HAKMEM_SUPERSLAB_MAX_CACHED",), minimum=0, maximum=_MAX_SUPERSLABS),
    Option("ss_max_memory_mb", 512, "int", "LRU cache: most MiB of empty superslabs kept",
           ("HAKMEM_SUPERSLAB_MAX_MEMORY_MB",), minimum=0, maximum=_MAX_MB),
    Option("ss_ttl_sec", 60.0, "float", "LRU cache: seconds an empty superslab may stay cached (0 = no TTL)",
           ("HAKMEM_SUPERSLAB_TTL_SEC",), minimum=0, maximum=_MAX_TTL_SEC),
    # -- prewarm --------------------------------------------------------------------------
    Option("prewarm_superslabs", 0, "int", "superslabs mapped at start and pushed into the LRU (limits grow to fit)",
           ("HAKMEM_PREWARM_SUPERSLABS",), minimum=0, maximum=4096),
    Option("tiny_prewarm", True, "bool", "hot prewarm: fill the front caches of C2..C5 at start (LEAN suppresses it)",
           ()),
    Option("tiny_prewarm_c2", 128, "int", "hot prewarm blocks for C2", ("HAKMEM_TINY_PREWARM_C2",),
           minimum=0, maximum=_MAX_BATCH),
    Option("tiny_prewarm_c3", 128, "int", "hot prewarm blocks for C3", ("HAKMEM_TINY_PREWARM_C3",),
           minimum=0, maximum=_MAX_BATCH),
    Option("tiny_prewarm_c4", 64, "int", "hot prewarm blocks for C4", ("HAKMEM_TINY_PREWARM_C4",),
           minimum=0, maximum=_MAX_BATCH),
    Option("tiny_prewarm_c5", 64, "int", "hot prewarm blocks for C5", ("HAKMEM_TINY_PREWARM_C5",),
           minimum=0, maximum=_MAX_BATCH),
    Option("tiny_prewarm_all", -1, "int", "if >= 0, hot prewarm count for all of C2..C5",
           ("HAKMEM_TINY_PREWARM_ALL",), minimum=-1, maximum=_MAX_BATCH),
    # -- release policy (Memory-Lean, Phase 54) -------------------------------------------
    Option("policy", "auto", "str",
           "release policy: auto (lean if mem_lean else fast), fast, lean, slab-purge, a preset, or module:Class", (),
           choices=("auto", "fast", "lean", "slab-purge", "jemalloc-decay", "mimalloc-purge",
                    "tcmalloc-release", "gperftools-scavenge", "glibc-trim", "obmalloc")),
    Option("mem_lean", False, "bool", "Memory-Lean mode: release empty superslabs beyond the budget",
           ("HAKMEM_SS_MEM_LEAN",)),
    Option("mem_lean_decommit", "FREE", "choice",
           "how LEAN decommits: FREE (MADV_FREE), DONTNEED (MADV_DONTNEED), OFF (prewarm suppression only)",
           ("HAKMEM_SS_MEM_LEAN_DECOMMIT",), choices=("FREE", "DONTNEED", "OFF")),
    Option("mem_lean_target_mb", 10, "int", "LEAN budget: MiB of committed superslabs kept before releasing",
           ("HAKMEM_SS_MEM_LEAN_TARGET_MB",), minimum=0, maximum=_MAX_MB),
    Option("lean_range", "data", "choice",
           "what a superslab decommit covers: data (header page stays resident) or all",
           (), choices=("data", "all")),
    Option("lean_retire", "decommit", "choice",
           "what retiring an over-budget superslab does: decommit (keep the range, cached decommitted) or unmap",
           (), choices=("decommit", "unmap")),
    # -- superslab refill and acquisition (hakmem's warm pool, shared pool, prefault) -----
    Option("warm_pool_size", 16, "int",
           "per-class warm pool of superslabs consulted before the shared pool (0 = off; hakmem preset 16)",
           ("HAKMEM_WARM_POOL_SIZE",), minimum=0, maximum=1024),
    Option("warm_pool_prefill", 2, "int",
           "superslabs added to an empty warm pool on a miss (hakmem's WARM_POOL_PREFILL_BUDGET, 2)",
           (), minimum=0, maximum=64),
    Option("warm_pool_prefill_source", "shared", "choice",
           "where a prefill finds superslabs: shared (existing superslabs with room; never maps) or "
           "fresh (new superslabs: LRU, then mmap)", (), choices=("shared", "fresh")),
    Option("superslab_reuse", 0, "int",
           "1: refill Stage 0.5 reuses the lowest EMPTY slab of any class first; 0: an EMPTY slab serves "
           "another class only when no UNUSED slab is left", ("HAKMEM_SUPERSLAB_REUSE",), choices=(0, 1),
           minimum=0, maximum=1),
    Option("ss_prefault", 0, "int",
           "superslab prefault on acquisition: 0 off, 1 POPULATE (MADV_POPULATE_WRITE), 2 TOUCH (write every page)",
           ("HAKMEM_SS_PREFAULT",), choices=(0, 1, 2), minimum=0, maximum=2),
    Option("ss_acquire_advice", "mmap", "choice",
           "per-acquisition madvise (WILLNEED, or POPULATE_WRITE with ss_prefault=1): mmap (each superslab "
           "mapped), every (LRU pops too) or off", (), choices=("mmap", "every", "off")),
    Option("refill_order", "policy", "choice",
           "which partial slab a refill takes: policy (the release policy's refill_order), lowest-address, "
           "most-full, lifo", (), choices=("policy", "lowest-address", "most-full", "lifo")),
    # -- OS layer -------------------------------------------------------------------------
    Option("nohugepage", True, "bool", "madvise(MADV_NOHUGEPAGE) each superslab for reproducible residency", ()),
    Option("os_stats", False, "bool", "print one [SS_OS_STATS] line at close, as hakmem does",
           ("HAKMEM_SS_OS_STATS",)),
    # -- kernel, clock, debug -------------------------------------------------------------
    Option("kernel", "auto", "choice", "hot-path kernel: auto (Cython if built), cython, python",
           (), choices=("auto", "cython", "python")),
    Option("tick_interval_ops", 65536, "int", "batch replay returns to the policy's tick() every N ops (0 = never)",
           (), minimum=0, maximum=_MAX_TICK_OPS),
    Option("ns_per_op", 16.6, "float",
           "virtual clock: ns one operation takes (16.6 = 1e9 / 60.19M ops/s, hakmem FAST on Mixed WS=400, Phase "
           "54); virtual time = ops x ns_per_op + idle time (Heap.idle)", (), minimum=0, maximum=1e9),
    Option("debug", 0, "int", "0 off; 1 cheap checks; 2 check() after every slow-path event; 3 check() after every op",
           (), minimum=0, maximum=3),
    Option("secure", False, "bool", "hardened mode (mimalloc's secure mode): free-list links encoded with a per-heap "
           "key, freed blocks junk-filled and checked on reuse (README: what it catches, its cost)", ()),
)

_BY_NAME = {o.name: o for o in OPTIONS}
_BY_ENV = {e: o for o in OPTIONS for e in o.env_names}
_PREWARM_CLASSES = (2, 3, 4, 5)


def _stacklevel() -> int:
    """``stacklevel`` for a warning issued by the caller of this function that points at the
    first frame outside the simalloc package (the user's ``Heap()`` / ``Config.from_env()``)."""
    pkg = os.path.dirname(os.path.abspath(__file__)) + os.sep
    level, frame = 1, sys._getframe(1)
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(pkg):
        frame, level = frame.f_back, level + 1
    return level


def _warn_unmodelled(env: Mapping[str, str]) -> None:
    """One :class:`UnmodelledOptionWarning` naming every ``HAKMEM_*`` variable not in the table."""
    unknown = sorted(k for k in env if k.startswith("HAKMEM_") and k not in _BY_ENV)
    if unknown:
        warnings.warn(UnmodelledOptionWarning(
            f"{', '.join(unknown)}: not modelled by simalloc, ignored "
            "(`simalloc options` lists the variables it reads)"), stacklevel=_stacklevel())


def superslabs_for_prewarm(lg: int, cls: int, count: int) -> int:
    """Superslabs of size exponent ``lg`` that ``count`` blocks of class ``cls`` fill."""
    per = sum(slab_capacity(lg, s, cls) for s in range(nslabs(lg)))
    return -(-count // per)


@dataclass(frozen=True)
class Config:
    """All option values of one heap (frozen).  Build with :meth:`from_env` or :meth:`defaults`."""

    ss_lg: int = SS_LG_DEFAULT
    tiny_max_class: int = 7
    tiny_max_size: int = 2047
    mid_tier: bool = False
    max_superslabs: int = 4096
    front_cache_cap: int = 64
    front_refill_batch: int = 16
    front_drain_batch: int = 32
    ss_max_cached: int = 256
    ss_max_memory_mb: int = 512
    ss_ttl_sec: float = 60.0
    prewarm_superslabs: int = 0
    tiny_prewarm: bool = True
    tiny_prewarm_c2: int = 128
    tiny_prewarm_c3: int = 128
    tiny_prewarm_c4: int = 64
    tiny_prewarm_c5: int = 64
    tiny_prewarm_all: int = -1
    policy: str = "auto"
    mem_lean: bool = False
    mem_lean_decommit: str = "FREE"
    mem_lean_target_mb: int = 10
    lean_range: str = "data"
    lean_retire: str = "decommit"
    warm_pool_size: int = 16
    warm_pool_prefill: int = 2
    warm_pool_prefill_source: str = "shared"
    superslab_reuse: int = 0
    ss_prefault: int = 0
    ss_acquire_advice: str = "mmap"
    refill_order: str = "policy"
    nohugepage: bool = True
    os_stats: bool = False
    kernel: str = "auto"
    tick_interval_ops: int = 65536
    ns_per_op: float = 16.6
    debug: int = 0
    secure: bool = False

    # ------------------------------------------------------------------ constructors
    @classmethod
    def defaults(cls, **overrides: Any) -> Config:
        """The table's defaults plus ``overrides`` (the environment is not read)."""
        return cls.from_env({}, **overrides)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Read options from ``environ`` (default ``os.environ``), then apply ``overrides``.

        Overrides are keyed by option name (``mem_lean=True``) or environment name
        (``HAKMEM_SS_MEM_LEAN="1"``).  Raises :class:`ConfigError` on an unknown name or an
        invalid value, naming the variable; warns (:class:`UnmodelledOptionWarning`, once per
        call) about ``HAKMEM_*`` variables of ``environ`` that are not in the table."""
        env = os.environ if environ is None else environ
        _warn_unmodelled(env)
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for opt in OPTIONS:
            # hakmem name first, SIMALLOC_ name last so it wins
            for name in reversed(opt.env_names):
                if name in env:
                    values[opt.name] = _parse(opt, env[name], name)
                    sources[opt.name] = name
        return cls._build(values, overrides, sources)

    def replace(self, **overrides: Any) -> Config:
        """A copy with ``overrides`` (option or environment names) applied and validated."""
        return self._build(dataclasses.asdict(self), overrides, {})

    @classmethod
    def _build(cls, values: dict[str, Any], overrides: Mapping[str, Any],
               sources: dict[str, str]) -> Config:
        """``values`` updated by ``overrides`` (keyed by option or environment name), checked.
        ``sources`` maps option names to the variable or keyword that set them (for errors)."""
        for key, raw in overrides.items():
            found = _BY_NAME.get(key) or _BY_ENV.get(key)
            if found is None:
                raise ConfigError(f"unknown option {key!r} (see `simalloc options`)")
            values[found.name] = _parse(found, raw, key)
            sources[found.name] = key
        cfg = cls(**values)
        cfg.validate(sources)
        return cfg

    # ------------------------------------------------------------------ checks and views
    def validate(self, sources: Mapping[str, str] | None = None) -> None:
        """Check every field against the table and the cross-field rules.  ``sources`` (option
        name -> variable or keyword that set it) makes conflict errors name the variables."""
        src = dict(sources or {})
        for opt in OPTIONS:
            _parse(opt, getattr(self, opt.name), src.get(opt.name, opt.name))

        def who(name: str) -> str:
            val = getattr(self, name)
            if name in src:
                return f"{src[name]}={val}"
            if val == _BY_NAME[name].default:
                return f"{name}={val} (default; set by {' or '.join(_BY_NAME[name].env_names)})"
            return f"{name}={val}"

        def conflict(a: str, b: str, rule: str) -> ConfigError:
            return ConfigError(f"conflicting options: {who(a)} and {who(b)}: {rule}")

        if self.front_cache_cap and self.front_drain_batch > self.front_cache_cap:
            raise conflict("front_drain_batch", "front_cache_cap",
                           "front_drain_batch must not exceed front_cache_cap")
        if self.prewarm_superslabs > self.max_superslabs:
            raise conflict("prewarm_superslabs", "max_superslabs",
                           "prewarm_superslabs must not exceed max_superslabs")
        if self.tiny_prewarm:
            counts = self.prewarm_counts()
            need = {c: superslabs_for_prewarm(self.ss_lg, c, n) for c, n in counts.items()
                    if c <= self.tiny_max_class}
            if sum(need.values()) > self.max_superslabs:
                worst = max(need, key=lambda c: (need[c], counts[c]))
                name = "tiny_prewarm_all" if self.tiny_prewarm_all >= 0 else f"tiny_prewarm_c{worst}"
                detail = ", ".join(f"C{c}: {counts[c]} blocks -> {n}" for c, n in need.items())
                raise conflict(name, "max_superslabs",
                               f"the hot prewarm of C2..C5 needs {sum(need.values())} superslabs "
                               f"({detail}), more than max_superslabs")

    def prewarm_counts(self) -> dict[int, int]:
        """Hot-prewarm block counts by class (C2..C5), honouring ``tiny_prewarm_all``."""
        if self.tiny_prewarm_all >= 0:
            return dict.fromkeys(_PREWARM_CLASSES, self.tiny_prewarm_all)
        return {2: self.tiny_prewarm_c2, 3: self.tiny_prewarm_c3,
                4: self.tiny_prewarm_c4, 5: self.tiny_prewarm_c5}

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def diff(self) -> dict[str, Any]:
        """Only the values that differ from the defaults."""
        base = Config()
        return {k: v for k, v in self.as_dict().items() if getattr(base, k) != v}

    def dump(self) -> str:
        """A table of every option: name, value, valid values, environment names and doc."""
        lines = [f"{'option':<20} {'value':<10} {'valid':<26} {'env':<42} doc"]
        for opt in OPTIONS:
            val = getattr(self, opt.name)
            mark = "*" if val != opt.default else " "
            envs = ",".join(opt.env_names)
            lines.append(f"{opt.name:<20}{mark}{val!s:<10} {opt.valid():<26} {envs:<42} {opt.doc}")
        return "\n".join(lines)


# The dataclass defaults and the table must agree (one source of truth, checked at import),
# and every number has a range.
assert {f.name: f.default for f in dataclasses.fields(Config)} == {o.name: o.default for o in OPTIONS}
assert all(o.minimum is not None and o.maximum is not None for o in OPTIONS if o.kind in ("int", "float"))
