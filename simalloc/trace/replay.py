"""Replay an :class:`OpStream` through ``Heap.replay`` and report what malloclab's mdriver
reports, plus what only a heap with real memory can: resident bytes, syscalls and page faults.

The stream runs in the kernel's batch loop (``Heap.replay``; reallocs go through the heap's
slow path from inside that loop) in ``samples`` pieces.  Between pieces -- outside the timed
part -- the heap's resident bytes are sampled from its exact page model (``heap.resident()``,
a few counters: microseconds, simalloc/pages.py), and one piece boundary is placed right after
the operation where the live payload peaks, so the resident figure at the payload peak is
always measured.  The kernel's figure (``heap.residency()``: ``/proc/self/pagemap`` and smaps,
milliseconds per call) is read once, at the end, as a cross-check of the model.

Figures (:func:`replay_stream` returns them as a dict):

* ``ops``, ``seconds`` (sum of the timed ``Heap.replay`` calls), ``ops_per_s``;
* ``peak_live_payload``: the largest sum of live requested bytes (from the stream alone);
* ``peak_resident_bytes``: the exact high-water mark of the heap's resident pages (page model:
  no peak is missed between samples); ``resident_at_peak_payload``: resident bytes right after
  the payload peak; ``mean_resident_virtual_bytes``: resident bytes averaged over the heap's
  virtual time (idle spans weigh their length);
* ``final_resident_bytes`` / ``final_lazyfree_bytes``: the page model at the end;
  ``kernel_resident_bytes`` / ``kernel_lazyfree_bytes``: what the kernel says at the end
  (pagemap; LazyFree of the VMAs holding the heap, which may merge with neighbours), equal to
  the model's figure when the model is exact (pages.py);
* ``util``: mdriver's utilisation with the kernel's truth as the heap size,
  ``peak_live_payload / peak_resident_bytes``; ``util_mapped`` uses the peak of mapped bytes
  (mdriver's own definition divides by the heap's size, which for mdriver is its brk extent);
* ``syscalls`` and ``syscalls_per_op`` (mmap + munmap + madvise of the heap, from its OS
  layer), ``madvise_by_advice``;
* ``minor_faults`` / ``faults_per_op``: the process's minor page faults during the timed calls
  (first touches plus refaults of pages the policy gave back).
* ``process_rss_bytes``: the process's VmRSS at the end (the interpreter included).

Times from the trace drive the heap's clock when present (``use_times``, default on): the
stream gets ``OP_IDLE`` rows where the trace's time runs ahead of the heap's virtual clock
(``OpStream.with_idle`` at the heap's ``ns_per_op``), so a program's quiet spells are idle time
for the policy (background policies tick during them).  ``idle_rows``, ``idle_s`` and
``virtual_s`` (the heap's virtual clock at the end) report it; ``ops`` counts operations only.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..policy import policy_overrides  # re-exported: --policy NAME -> overrides
from .opstream import OpStream

__all__ = ["policy_overrides", "replay_stream", "trace_workload_params"]


def _boundaries(n: int, samples: int, extra: int) -> list[int]:
    pts = {int(x) for x in np.linspace(0, n, max(samples, 1) + 1)}
    if 0 <= extra < n:
        pts.add(extra + 1)
    return sorted(pts)


def _sample(heap: Any, op: int, st: Mapping[str, Any] | None) -> tuple[int, int, int, int]:
    """``(op, resident, lazyfree, mapped)`` from the heap's page model (microseconds; no
    ``/proc`` read); ``mapped`` is 0 unless ``st`` (a ``stats()``) is given."""
    r = heap.resident()
    return (op, int(r["resident_bytes"]), int(r["lazyfree_bytes"]),
            int(st["mapped_bytes"]) if st is not None else 0)


def replay_stream(stream: OpStream, overrides: Mapping[str, Any] | None = None, *,
                  samples: int = 64, heap_factory: Callable[..., Any] | None = None,
                  timeline: bool = False, use_times: bool = True) -> dict[str, Any]:
    """Replay ``stream`` on a fresh heap built with ``overrides`` (on top of the environment)
    and return the figures listed in the module docstring.  ``timeline=True`` adds
    ``timeline``: ``(op, resident, lazyfree, mapped)`` per sample (page model; ``mapped``
    from ``stats()``, read only for the timeline).  ``use_times``: the trace's
    times drive the heap's clock (idle rows; module docstring)."""
    from ..heap import Heap

    factory = heap_factory or Heap
    heap = factory(**dict(overrides or {}))
    if use_times and stream.times is not None:
        try:
            stream = stream.with_idle(float(getattr(getattr(heap, "config", None), "ns_per_op", 0.0)))
        except BaseException:
            heap.close()
            raise
    summary = stream.summary()
    n = len(stream)
    try:
        slots = stream.new_slots()
        ops = np.ascontiguousarray(stream.ops, dtype=np.int64)
        bounds = _boundaries(n, samples, summary["peak_live_at_op"])
        st0 = heap.stats()
        samples_out = [_sample(heap, 0, st0 if timeline else None)]
        seconds = 0.0
        faults = 0
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            if hi <= lo:
                continue
            chunk = ops[lo:hi]
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t0 = time.perf_counter()
            heap.replay(chunk, slots)
            seconds += time.perf_counter() - t0
            faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
            samples_out.append(_sample(heap, hi, heap.stats() if timeline else None))
        st = heap.stats()
        model = heap.resident()
        kernel = heap.residency()  # the kernel's figure, once: the cross-check of the model
        clock = heap.clock()
    finally:
        heap.close()
    peak_res = max(int(model["resident_peak_bytes"]), *(s[1] for s in samples_out))
    at_peak = next((s[1] for s in samples_out if s[0] == summary["peak_live_at_op"] + 1), None)
    syscalls = int(st["syscalls"]) - int(st0["syscalls"])
    payload = summary["peak_live_payload"]
    n_ops = n - summary["idle_rows"]
    out: dict[str, Any] = {
        "policy": st.get("policy"),
        "kernel": st.get("kernel"),
        "ops": n_ops,
        "idle_rows": summary["idle_rows"],
        "idle_s": summary["idle_ns"] / 1e9,
        "virtual_s": (getattr(clock, "virtual_ns", None) or 0) / 1e9,
        "mallocs": summary["mallocs"],
        "frees": summary["frees"],
        "reallocs": summary["reallocs"],
        "n_slots": summary["n_slots"],
        "seconds": seconds,
        "ops_per_s": n_ops / seconds if seconds > 0 else 0.0,
        "peak_live_payload": payload,
        "final_live_payload": summary["final_live_payload"],
        "peak_resident_bytes": peak_res,
        "resident_at_peak_payload": at_peak,
        "mean_resident_virtual_bytes": float(model["resident_mean_virtual_bytes"]),
        "final_resident_bytes": int(model["resident_bytes"]),
        "final_lazyfree_bytes": int(model["lazyfree_bytes"]),
        "kernel_resident_bytes": int(kernel["resident_bytes"]),
        "kernel_lazyfree_bytes": int(kernel["lazyfree_bytes"]),
        "mapped_peak_bytes": int(st.get("mapped_peak_bytes", 0)),
        "util": payload / peak_res if peak_res else 0.0,
        "util_mapped": payload / st["mapped_peak_bytes"] if st.get("mapped_peak_bytes") else 0.0,
        "syscalls": syscalls,
        "syscalls_per_op": syscalls / n_ops if n_ops else 0.0,
        "mmap_total": int(st["mmap_total"]) - int(st0["mmap_total"]),
        "munmap_total": int(st["munmap_total"]) - int(st0["munmap_total"]),
        "madvise_by_advice": {k: int(v) - int(st0["madvise_by_advice"].get(k, 0))
                              for k, v in st["madvise_by_advice"].items()},
        "minor_faults": int(faults),
        "faults_per_op": faults / n_ops if n_ops else 0.0,
        "process_rss_bytes": int(kernel.get("vm_rss_bytes", kernel.get("rss_bytes", 0)) or 0),
    }
    if timeline:
        out["timeline"] = samples_out
    return out


def _mib(b: float | int | None) -> str:
    return "-" if b is None else f"{b / (1 << 20):,.2f}"


def format_replay(stream: OpStream, results: list[tuple[str, dict[str, Any]]]) -> str:
    """mdriver-style table: one row per policy."""
    s = stream.summary()
    lines = [
        f"trace: {stream.source} ({stream.fmt}): {s['ops']:,} ops = {s['mallocs']:,} malloc, "
        f"{s['frees']:,} free, {s['reallocs']:,} realloc; {s['n_slots']:,} slots; peak live "
        f"payload {s['peak_live_payload']:,} B ({_mib(s['peak_live_payload'])} MiB) at op "
        f"{s['peak_live_at_op'] + 1:,}"
        + (f"; trace spans {s['duration_s']:.3f} s" if s["duration_s"] is not None else ""),
    ]
    skipped = {k: v for k, v in (stream.meta.get("skipped") or {}).items() if v}
    if skipped or stream.meta.get("repaired") or stream.meta.get("pre_capture"):
        notes = [f"skipped {skipped}" if skipped else "",
                 f"repaired {stream.meta['repaired']}" if stream.meta.get("repaired") else "",
                 f"blocks from before the capture {stream.meta['pre_capture']}"
                 if any((stream.meta.get("pre_capture") or {}).values()) else ""]
        lines.append("notes: " + "; ".join(x for x in notes if x))
    hdr = (f"{'policy':<22} {'valid':>5} {'util':>5} {'ops':>10} {'secs':>9} {'Kops':>8} "
           f"{'peak res MiB':>12} {'final res MiB':>13} {'util(map)':>9} {'syscalls/op':>11} "
           f"{'faults/op':>9}")
    lines += [hdr, "-" * len(hdr)]
    for label, r in results:
        if "error" in r:
            lines.append(f"{label:<22} {'no':>5}  {r['error']}")
            continue
        lines.append(
            f"{label:<22} {'yes':>5} {100 * r['util']:>4.0f}% {r['ops']:>10,} {r['seconds']:>9.4f} "
            f"{r['ops_per_s'] / 1000:>8,.0f} {_mib(r['peak_resident_bytes']):>12} "
            f"{_mib(r['final_resident_bytes']):>13} {100 * r['util_mapped']:>8.0f}% "
            f"{r['syscalls_per_op']:>11.3g} {r['faults_per_op']:>9.3g}")
    for label, r in results:
        if "error" not in r:
            adv = ", ".join(f"{k} {v}" for k, v in r["madvise_by_advice"].items() if v) or "none"
            lines.append(f"  {label}: {r['policy']}; kernel {r['kernel']}; mmap {r['mmap_total']}, "
                         f"munmap {r['munmap_total']}, madvise: {adv}; resident at the payload "
                         f"peak {_mib(r['resident_at_peak_payload'])} MiB; at the end the kernel "
                         f"says {_mib(r['kernel_resident_bytes'])} MiB resident (model "
                         f"{_mib(r['final_resident_bytes'])})"
                         + (f"; trace times: {r['idle_rows']:,} idle rows, {r['idle_s']:.3f} s idle, "
                            f"virtual clock {r['virtual_s']:.3f} s" if r.get("idle_rows") else ""))
    return "\n".join(lines)


def trace_workload_params(path: str) -> tuple[dict[str, Any], int]:
    """``simalloc ab --trace TRACE``: the ``trace`` workload's parameters for any trace the
    readers know, and its op count.  An op-stream ``.npz`` is used as it is; any other format
    is read, validated and saved to a temporary ``.npz`` (removed when the process exits;
    spawned ``--isolate`` runs read it meanwhile).  A bad trace is a ConfigError (exit 2)."""
    import atexit
    import tempfile

    from ..errors import TraceError
    from .readers import detect_format, read_trace

    try:
        stream = read_trace(path)
        if detect_format(path) == "npz":
            return {"path": os.path.abspath(path)}, len(stream)
        fd, tmp = tempfile.mkstemp(prefix="simalloc-trace-", suffix=".npz")
        os.close(fd)
        atexit.register(_remove, tmp)
        stream.save(tmp)
    except TraceError as exc:
        raise ConfigError(f"--trace: {exc}") from exc
    return {"path": tmp}, len(stream)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
