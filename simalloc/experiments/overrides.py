"""Config overrides as the command line spells them: ``KEY=VALUE[,KEY=VALUE...]``.

Keys are option names (``mem_lean``) or environment names (``HAKMEM_SS_MEM_LEAN``,
``SIMALLOC_MEM_LEAN``); values stay strings and are parsed by
:meth:`simalloc.Config.from_env`, which raises :class:`~simalloc.errors.ConfigError` naming
the variable.  A config file holds one ``KEY=VALUE`` per line (``#`` comments, blank lines and
a leading ``export`` allowed), so a hakmem env snippet can be used as is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..options import OPTIONS, Config

__all__ = ["format_overrides", "merge_overrides", "option_name", "parse_assignments", "parse_scalar",
           "read_config_file", "validate_overrides"]


def parse_scalar(text: str) -> Any:
    """A workload parameter value from the command line: int, float, None, bool or the string."""
    low = text.strip().lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def option_name(key: str) -> str:
    """The option a key names (an option name or any of its environment names); unknown keys
    are returned unchanged (``Config.from_env`` reports them)."""
    for opt in OPTIONS:
        if key == opt.name or key in opt.env_names:
            return opt.name
    return key


def parse_assignments(texts: Iterable[str], what: str = "override") -> dict[str, str]:
    """``["A=1,B=2", "C=3"]`` -> ``{"A": "1", "B": "2", "C": "3"}`` (later keys win).
    Raises ConfigError for an item without ``=`` or with an empty key."""
    out: dict[str, str] = {}
    for text in texts:
        for item in text.split(","):
            item = item.strip()
            if not item:
                continue
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep or not key:
                raise ConfigError(f"{what} {item!r}: expected KEY=VALUE (e.g. HAKMEM_SS_MEM_LEAN=1)")
            out[key] = value.strip()
    return out


def read_config_file(path: str | Path) -> dict[str, str]:
    """KEY=VALUE lines of a small config file (see the module docstring)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config file {str(p)!r}: {exc.strerror or exc}") from exc
    out: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if line.startswith("export "):
            line = line[len("export "):].strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{p}:{n}: expected KEY=VALUE, got {raw.strip()!r}")
        out[key.strip()] = value.strip().strip("'\"")
    return out


def merge_overrides(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``extra``; a key of ``extra`` replaces every key of ``base`` that
    names the same option (``mem_lean`` replaces ``HAKMEM_SS_MEM_LEAN``)."""
    taken = {option_name(k) for k in extra}
    out = {k: v for k, v in base.items() if option_name(k) not in taken}
    out.update(extra)
    return out


def validate_overrides(overrides: Mapping[str, Any]) -> Config:
    """The config these overrides give on top of the environment (raises ConfigError)."""
    return Config.from_env(**dict(overrides))


def format_overrides(overrides: Mapping[str, Any]) -> str:
    """``{"A": "1", "B": "x"}`` -> ``"A=1 B=x"`` (empty: ``"(defaults)"``)."""
    if not overrides:
        return "(defaults)"
    return " ".join(f"{k}={v}" for k, v in overrides.items())
