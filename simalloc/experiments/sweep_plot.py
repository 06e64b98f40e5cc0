"""A sweep's results: one line per configuration, its Pareto front, the parquet table and the plot.

The points of a sweep (:mod:`.sweep`) are grouped into *configurations*: every parameter but
the seed (policy, knobs, options, workload, ws, ops, epochs).  Over its seeds a configuration
gets the median throughput, the median resident figure (one of :data:`RESIDENT`: ``peak``,
``mean`` over operations, ``virtual_mean`` over virtual time -- idle gaps weigh their length,
where ``mean`` gives them no weight -- or ``final`` heap resident, from the exact model; the
table's header names the choice), the median syscalls/op, the worst settled drift, and a CV:
of the seeds' throughputs when there are two seeds or more, else the run's epoch CV.

Within one (workload, ws) group -- other groups are not comparable -- a configuration is
**Pareto-optimal** when no other one has both lower-or-equal resident and higher-or-equal
throughput, one of them strictly::

    throughput ^    *  front (no point up and to the left of it)
               |  *---*
               |  .    *---*      .  dominated
               |    .  .   .  *
               +--------------------> resident

Each configuration is compared with the group's FAST reference (``policy=fast``, no knobs:
the sweep adds it): resident and throughput in % of FAST, and the Phase 54 GO criteria
(:data:`GO`: resident at least 70% below FAST, throughput no worse than -10%, syscalls below
1e-6/op, settled drift <= 0, CV below 2%); ``go`` lists the unmet ones, or says ``GO``.

``OUT/pareto.png``: one panel per group, resident (MiB, x) against throughput (Mops/s, y),
colour = log10 of syscalls/op, the front joined by a line and ringed, FAST drawn as a star.
matplotlib's object API (no pyplot state); parquet through pandas + pyarrow (the ``sweep`` extra).
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import ConfigError

__all__ = ["GO", "RESIDENT", "configurations", "format_pareto", "pareto_flags", "write_parquet", "write_pareto_png"]

#: The Phase 54 GO criteria against FAST (see the module docstring).
GO: dict[str, float] = {"resident_pct": -70.0, "throughput_pct": -10.0, "syscalls_per_op": 1e-6,
                        "drift_pct": 0.0, "cv_pct": 2.0}
_GROUP = ("workload", "ws", "ops", "epochs")
#: The resident figures a sweep can be judged on (``--resident``): name -> (row column, meaning).
RESIDENT: MappingProxyType[str, tuple[str, str]] = MappingProxyType({
    "peak": ("peak_resident_bytes", "the exact high-water mark over the timed part"),
    "mean": ("mean_resident_bytes", "mean over operations (idle gaps weigh nothing)"),
    "virtual_mean": ("mean_resident_virtual_bytes", "mean over virtual time (idle gaps weigh their length)"),
    "final": ("final_resident_bytes", "at the end of the timed part"),
})


def _resident_column(resident: str) -> str:
    if resident not in RESIDENT:
        raise ConfigError(f"resident figure {resident!r}: expected one of {', '.join(RESIDENT)}")
    return RESIDENT[resident][0]


def _f(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def _median(xs: Iterable[float]) -> float:
    vals = [x for x in xs if not math.isnan(x)]
    return statistics.median(vals) if vals else math.nan


def _is_true(x: Any) -> bool:
    return str(x).strip().lower() in ("true", "1")


def configurations(rows: Iterable[Mapping[str, Any]], resident: str = "peak") -> list[dict[str, Any]]:
    """One dict per configuration (rows without an error, grouped over seeds); keys:
    ``workload ws ops epochs policy config reference seeds ops_per_s resident_bytes
    syscalls_per_op refaults_per_op drift_pct cv_pct`` and, once :func:`pareto_flags` ran,
    ``pareto resident_pct throughput_pct go``."""
    col = _resident_column(resident)
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for r in rows:
        if r.get("error"):
            continue
        k = tuple(str(r.get(c, "")) for c in (*_GROUP, "policy", "config"))
        groups.setdefault(k, []).append(r)
    out = []
    for k, rs in groups.items():
        thr = [_f(r.get("ops_per_s")) for r in rs]
        cv = (100.0 * statistics.stdev(thr) / statistics.mean(thr) if len(thr) > 1 and statistics.mean(thr)
              else _median(_f(r.get("epoch_cv_pct")) for r in rs))
        out.append({
            **dict(zip((*_GROUP, "policy", "config"), k, strict=True)),
            "reference": any(_is_true(r.get("reference")) for r in rs),
            "seeds": len(rs), "ops_per_s": _median(thr),
            "resident_bytes": _median(_f(r.get(col)) for r in rs),
            "syscalls_per_op": _median(_f(r.get("syscalls_per_op")) for r in rs),
            "refaults_per_op": _median(_f(r.get("refaults_per_op")) for r in rs),
            "drift_pct": max((_f(r.get("drift_settled_pct")) for r in rs), default=math.nan),
            "cv_pct": cv})
    return out


def pareto_flags(configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mark each configuration ``pareto`` (within its group) and compare it with its group's
    FAST reference (``resident_pct``, ``throughput_pct``: change in %, NaN without one; ``go``).
    Returns the list sorted by group, then resident."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for c in configs:
        groups.setdefault(tuple(str(c[g]) for g in _GROUP), []).append(c)
    for members in groups.values():
        fast = next((c for c in members if c["reference"] and c["policy"] == "fast"), None)
        for c in members:
            c["pareto"] = not any(
                o is not c and o["resident_bytes"] <= c["resident_bytes"] and o["ops_per_s"] >= c["ops_per_s"]
                and (o["resident_bytes"] < c["resident_bytes"] or o["ops_per_s"] > c["ops_per_s"])
                for o in members)
            c["resident_pct"] = (100.0 * (c["resident_bytes"] / fast["resident_bytes"] - 1)
                                 if fast and fast["resident_bytes"] else math.nan)
            c["throughput_pct"] = (100.0 * (c["ops_per_s"] / fast["ops_per_s"] - 1)
                                   if fast and fast["ops_per_s"] else math.nan)
            unmet = [name for name, ok in (
                ("resident", c["resident_pct"] <= GO["resident_pct"]),
                ("throughput", c["throughput_pct"] >= GO["throughput_pct"]),
                ("syscalls", c["syscalls_per_op"] < GO["syscalls_per_op"]),
                ("drift", c["drift_pct"] <= GO["drift_pct"]),
                ("cv", c["cv_pct"] < GO["cv_pct"])) if not ok]
            c["go"] = "GO" if not unmet else "no: " + ",".join(unmet)
    return sorted(configs, key=lambda c: (tuple(str(c[g]) for g in _GROUP), c["resident_bytes"]))


def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:+.1f}%"


def format_pareto(configs: Sequence[Mapping[str, Any]], resident: str = "peak") -> str:
    """The Pareto-optimal configurations (and FAST), a table per group."""
    lines: list[str] = []
    group: tuple[str, ...] | None = None
    refaults = any(not math.isnan(c["refaults_per_op"]) for c in configs)
    cw = min(64, max([len(str(c["config"])) for c in configs if c["pareto"] or c["reference"]] + [6]))
    _resident_column(resident)  # ConfigError for an unknown name
    rw = max(11, len(resident) + 4)
    head = (f"  {'policy':<16} {'config':<{cw}} {resident + ' KiB':>{rw}} {'vs FAST':>8} {'ops/s':>12} "
            f"{'vs FAST':>8} {'sysc/op':>8} " + (f"{'refault/op':>10} " if refaults else "")
            + f"{'drift':>7} {'cv':>6}  go")
    for c in configs:
        if not (c["pareto"] or c["reference"]):
            continue
        g = tuple(str(c[k]) for k in _GROUP)
        if g != group:
            group = g
            lines.append(f"Pareto front: {c['workload']} ws={c['ws']} ops={c['ops']} "
                         f"({c['seeds']} seed(s) per point; * = on the front; resident = "
                         f"{resident}: {RESIDENT[resident][1]})")
            lines.append(head)
        mark = "*" if c["pareto"] else " "
        lines.append(f"{mark} {c['policy'][:16]:<16} {c['config'][:cw]:<{cw}} {c['resident_bytes'] / 1024:>{rw},.0f} "
                     f"{_pct(c['resident_pct']):>8} {c['ops_per_s']:>12,.0f} {_pct(c['throughput_pct']):>8} "
                     f"{c['syscalls_per_op']:>8.2g} "
                     + (f"{c['refaults_per_op']:>10.3g} " if refaults else "")
                     + f"{c['drift_pct']:>+6.2f}% {c['cv_pct']:>5.2f}%  {c['go']}")
    return "\n".join(lines) if lines else "no finished point"


def write_parquet(csv_path: str | Path, out: str | Path) -> Path:
    """``points.csv`` -> ``points.parquet`` (one row per key, the latest), written atomically.
    Raises ImportError without pandas / pyarrow."""
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

    text = ("key", "policy", "workload", "config", "kernel", "describe", "error", "started_utc", "finished_utc")
    df = pd.read_csv(csv_path, keep_default_na=False, na_values=[""], dtype=dict.fromkeys(text, str))
    df = df.drop_duplicates("key", keep="last").reset_index(drop=True)
    for col in text:
        if col in df:
            df[col] = df[col].fillna("")
    out = Path(out)
    tmp = out.with_suffix(".parquet.tmp")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, out)
    return out


def write_pareto_png(configs: Sequence[Mapping[str, Any]], out: str | Path, resident: str = "peak") -> Path:
    """The Pareto plot (module docstring).  Raises ImportError without matplotlib."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for c in configs:
        groups.setdefault(tuple(str(c[g]) for g in _GROUP), []).append(c)
    n = max(1, len(groups))
    fig = Figure(figsize=(6.5 * n, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n, squeeze=False)[0]
    logs = [math.log10(max(c["syscalls_per_op"], 1e-9)) for c in configs if not math.isnan(c["syscalls_per_op"])]
    norm = Normalize(vmin=min(logs, default=-9.0), vmax=max(max(logs, default=-9.0), min(logs, default=-9.0) + 1))
    for ax, (g, members) in zip(axes, groups.items(), strict=False):
        xs = [c["resident_bytes"] / 2**20 for c in members]
        ys = [c["ops_per_s"] / 1e6 for c in members]
        cs = [math.log10(max(c["syscalls_per_op"], 1e-9)) for c in members]
        sc = ax.scatter(xs, ys, c=cs, cmap="viridis", norm=norm, s=36, zorder=3)
        front = sorted((c for c in members if c["pareto"]), key=lambda c: c["resident_bytes"])
        ax.plot([c["resident_bytes"] / 2**20 for c in front], [c["ops_per_s"] / 1e6 for c in front],
                drawstyle="steps-post", color="black", lw=1, zorder=2, label="Pareto front")
        ax.scatter([c["resident_bytes"] / 2**20 for c in front], [c["ops_per_s"] / 1e6 for c in front],
                   s=110, facecolors="none", edgecolors="black", zorder=4)
        for c in members:
            if c["reference"] and c["policy"] == "fast":
                ax.scatter([c["resident_bytes"] / 2**20], [c["ops_per_s"] / 1e6], marker="*", s=260,
                           color="red", edgecolors="black", zorder=5, label="FAST reference")
        ax.set_title(f"{os.path.basename(g[0])} ws={g[1]} ops={g[2]}", fontsize=10)
        ax.set_xlabel(f"heap resident, {resident} (MiB)")
        ax.set_ylabel("throughput (Mops/s)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
        fig.colorbar(sc, ax=ax, label="log10 syscalls/op (timed part)")
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out)
    return out
