"""simalloc's options: one table of every tunable, its default, type, doc and environment names.

Each :class:`Option` row names the option, its default and kind, a one-line doc, and the
environment variables that set it: hakmem's own name (so hakmem's scripts and A/B commands work
unchanged) and a ``SIMALLOC_<NAME>`` one.  When both are set the ``SIMALLOC_`` name wins.

:class:`Config` is a frozen dataclass built from the table; ``Config.from_env(**overrides)``
reads the environment and applies overrides (given by option name *or* by environment name, so
``Config.from_env(HAKMEM_SS_MEM_LEAN="1")`` works).  An invalid value raises
:class:`~simalloc.errors.ConfigError` naming the variable -- never a silent fallback.

Value syntax: booleans accept ``1/0, true/false, yes/no, on/off``; sizes accept ``K``/``M``/``G``
suffixes; choices are case-insensitive.

Print the whole table with ``simalloc options`` or ``Config.from_env().dump()``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .constants import SS_LG_CHOICES, SS_LG_DEFAULT
from .errors import ConfigError

__all__ = ["OPTIONS", "Config", "Option"]


@dataclass(frozen=True)
class Option:
    """One row of the option table."""

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


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_SUFFIX = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def _parse(opt: Option, raw: Any, source: str) -> Any:
    """Convert ``raw`` (a string from the environment, or a Python value) for ``opt``."""

    def bad(why: str) -> ConfigError:
        return ConfigError(f"{source}={raw!r}: {why} (option {opt.name!r}: {opt.doc})")

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
        if isinstance(raw, bool):
            raise bad(f"expected {'an integer' if opt.kind == 'int' else 'a number'}")
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
                raise bad(f"expected {'an integer' if opt.kind == 'int' else 'a number'}") from None
        if opt.kind == "int":
            if val != int(val):
                raise bad("expected an integer")
            val = int(val)
        if opt.minimum is not None and val < opt.minimum:
            raise bad(f"must be >= {opt.minimum}")
        if opt.maximum is not None and val > opt.maximum:
            raise bad(f"must be <= {opt.maximum}")
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
    return raw


#: The option table.  Order is the order of ``Config.dump()``.
OPTIONS: tuple[Option, ...] = (
    # -- geometry ------------------------------------------------------------------------
    Option("ss_lg", SS_LG_DEFAULT, "int", "superslab size exponent: 21 = 2 MiB, 20 = 1 MiB",
           ("HAKMEM_TINY_SS_FORCE_LG",), choices=SS_LG_CHOICES),
    Option("tiny_max_class", 7, "int", "largest tiny class; bigger requests take the large (direct mmap) path",
           ("HAKMEM_TINY_MAX_CLASS",), minimum=0, maximum=7),
    Option("max_superslabs", 4096, "int", "size of the heap's superslab table (and 2x its address registry)",
           (), minimum=4, maximum=1 << 20),
    # -- front cache (hakmem's TLS SLL / unified cache) -----------------------------------
    Option("front_cache_cap", 64, "int", "per-class front cache capacity in blocks (hakmem TLS SLL cap 64)",
           (), minimum=0, maximum=1 << 16),
    Option("front_refill_batch", 16, "int", "blocks moved from the current slab into the front cache per refill",
           (), minimum=1, maximum=1 << 16),
    Option("front_drain_batch", 32, "int", "blocks returned to their slabs when a full front cache overflows",
           (), minimum=1, maximum=1 << 16),
    # -- LRU cache of empty superslabs (Phase 9) -----------------------------------------
    Option("ss_max_cached", 256, "int", "LRU cache: most empty superslabs kept",
           ("HAKMEM_SUPERSLAB_MAX_CACHED",), minimum=0),
    Option("ss_max_memory_mb", 512, "int", "LRU cache: most MiB of empty superslabs kept",
           ("HAKMEM_SUPERSLAB_MAX_MEMORY_MB",), minimum=0),
    Option("ss_ttl_sec", 60.0, "float", "LRU cache: seconds an empty superslab may stay cached (0 = no TTL)",
           ("HAKMEM_SUPERSLAB_TTL_SEC",), minimum=0),
    # -- prewarm --------------------------------------------------------------------------
    Option("prewarm_superslabs", 0, "int", "superslabs mapped at start and pushed into the LRU (limits grow to fit)",
           ("HAKMEM_PREWARM_SUPERSLABS",), minimum=0, maximum=4096),
    Option("tiny_prewarm", True, "bool", "hot prewarm: fill the front caches of C2..C5 at start (LEAN suppresses it)",
           ()),
    Option("tiny_prewarm_c2", 128, "int", "hot prewarm blocks for C2", ("HAKMEM_TINY_PREWARM_C2",), minimum=0),
    Option("tiny_prewarm_c3", 128, "int", "hot prewarm blocks for C3", ("HAKMEM_TINY_PREWARM_C3",), minimum=0),
    Option("tiny_prewarm_c4", 64, "int", "hot prewarm blocks for C4", ("HAKMEM_TINY_PREWARM_C4",), minimum=0),
    Option("tiny_prewarm_c5", 64, "int", "hot prewarm blocks for C5", ("HAKMEM_TINY_PREWARM_C5",), minimum=0),
    Option("tiny_prewarm_all", -1, "int", "if >= 0, hot prewarm count for all of C2..C5",
           ("HAKMEM_TINY_PREWARM_ALL",), minimum=-1),
    # -- release policy (Memory-Lean, Phase 54) -------------------------------------------
    Option("policy", "auto", "str",
           "release policy: auto (lean if mem_lean else fast), fast, lean, or module:Class", ()),
    Option("mem_lean", False, "bool", "Memory-Lean mode: release empty superslabs beyond the budget",
           ("HAKMEM_SS_MEM_LEAN",)),
    Option("mem_lean_decommit", "FREE", "choice",
           "how LEAN decommits: FREE (MADV_FREE), DONTNEED (MADV_DONTNEED), OFF (prewarm suppression only)",
           ("HAKMEM_SS_MEM_LEAN_DECOMMIT",), choices=("FREE", "DONTNEED", "OFF")),
    Option("mem_lean_target_mb", 10, "int", "LEAN budget: MiB of committed superslabs kept before releasing",
           ("HAKMEM_SS_MEM_LEAN_TARGET_MB",), minimum=0),
    Option("lean_range", "data", "choice",
           "what a superslab decommit covers: data (header page stays resident) or all",
           (), choices=("data", "all")),
    Option("lean_retire", "decommit", "choice",
           "what retiring an over-budget superslab does: decommit (keep the range, cached decommitted) or unmap",
           (), choices=("decommit", "unmap")),
    # -- OS layer -------------------------------------------------------------------------
    Option("nohugepage", True, "bool", "madvise(MADV_NOHUGEPAGE) each superslab for reproducible residency", ()),
    Option("os_stats", False, "bool", "print one [SS_OS_STATS] line at close, as hakmem does",
           ("HAKMEM_SS_OS_STATS",)),
    # -- kernel, clock, debug -------------------------------------------------------------
    Option("kernel", "auto", "choice", "hot-path kernel: auto (Cython if built), cython, python",
           (), choices=("auto", "cython", "python")),
    Option("tick_interval_ops", 65536, "int", "batch replay returns to the policy's tick() every N ops (0 = never)",
           (), minimum=0),
    Option("debug", 0, "int", "0 off; 1 cheap checks; 2 check() after every slow-path event; 3 check() after every op",
           (), minimum=0, maximum=3),
)

_BY_NAME = {o.name: o for o in OPTIONS}
_BY_ENV = {e: o for o in OPTIONS for e in o.env_names}


@dataclass(frozen=True)
class Config:
    """All option values of one heap (frozen).  Build with :meth:`from_env` or :meth:`defaults`."""

    ss_lg: int = SS_LG_DEFAULT
    tiny_max_class: int = 7
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
    nohugepage: bool = True
    os_stats: bool = False
    kernel: str = "auto"
    tick_interval_ops: int = 65536
    debug: int = 0

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
        invalid value, naming the variable."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for opt in OPTIONS:
            # hakmem name first, SIMALLOC_ name last so it wins
            for name in reversed(opt.env_names):
                if name in env and env[name] != "":
                    values[opt.name] = _parse(opt, env[name], name)
        return cls._build(values, overrides)

    def replace(self, **overrides: Any) -> Config:
        """A copy with ``overrides`` (option or environment names) applied and validated."""
        return self._build(dataclasses.asdict(self), overrides)

    @classmethod
    def _build(cls, values: dict[str, Any], overrides: Mapping[str, Any]) -> Config:
        """``values`` updated by ``overrides`` (keyed by option or environment name), checked."""
        for key, raw in overrides.items():
            found = _BY_NAME.get(key) or _BY_ENV.get(key)
            if found is None:
                raise ConfigError(f"unknown option {key!r} (see `simalloc options`)")
            values[found.name] = _parse(found, raw, key)
        cfg = cls(**values)
        cfg.validate()
        return cfg

    # ------------------------------------------------------------------ checks and views
    def validate(self) -> None:
        """Check every field against the table and the cross-field rules."""
        for opt in OPTIONS:
            _parse(opt, getattr(self, opt.name), opt.name)
        if self.front_drain_batch > max(self.front_cache_cap, 1):
            raise ConfigError(
                f"front_drain_batch={self.front_drain_batch} exceeds front_cache_cap={self.front_cache_cap}"
            )

    def prewarm_counts(self) -> dict[int, int]:
        """Hot-prewarm block counts by class (C2..C5), honouring ``tiny_prewarm_all``."""
        if self.tiny_prewarm_all >= 0:
            return {c: self.tiny_prewarm_all for c in (2, 3, 4, 5)}
        return {2: self.tiny_prewarm_c2, 3: self.tiny_prewarm_c3,
                4: self.tiny_prewarm_c4, 5: self.tiny_prewarm_c5}

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def diff(self) -> dict[str, Any]:
        """Only the values that differ from the defaults."""
        base = Config()
        return {k: v for k, v in self.as_dict().items() if getattr(base, k) != v}

    def dump(self) -> str:
        """A table of every option: name, value, environment names and doc."""
        lines = [f"{'option':<20} {'value':<10} {'env':<42} doc"]
        for opt in OPTIONS:
            val = getattr(self, opt.name)
            mark = "*" if val != opt.default else " "
            envs = ",".join(opt.env_names)
            lines.append(f"{opt.name:<20}{mark}{val!s:<10} {envs:<42} {opt.doc}")
        return "\n".join(lines)


# The dataclass defaults and the table must agree (one source of truth, checked at import).
assert {f.name: f.default for f in dataclasses.fields(Config)} == {o.name: o.default for o in OPTIONS}
