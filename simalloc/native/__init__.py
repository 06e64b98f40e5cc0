"""Native yardstick: the Mixed benchmark in C under glibc, jemalloc, mimalloc or tcmalloc.

``driver.c`` (shipped as source) runs exactly the op stream of
:class:`simalloc.workloads.MixedWorkload` -- same xorshift32, same undrained prefault with
``seed + 0xDEADBEEF``, same final drain inside the timed region -- against the process's
``malloc``/``free``; another allocator is swapped in with ``LD_PRELOAD``.  It prints one line
``ops=... cycles=... drain=... prefault=... seconds=... ops_per_s=... max_rss_kb=...
ru_maxrss_kb=...``.  ``max_rss_kb`` is the driver's own peak (``VmHWM``): ``ru_maxrss`` alone
would report the forking Python process's peak, which Linux carries across ``execve``.

* :func:`compile_driver` builds it on first use with ``$CC`` (else ``cc``, ``gcc``, ``clang``)
  ``-O2`` into a cache directory: ``$SIMALLOC_CACHE_DIR``, else ``$XDG_CACHE_HOME/simalloc``
  (``~/.cache/simalloc``), else a per-user temporary directory.  The binary's name carries a
  hash of the source, compiler and flags, so an edited driver is rebuilt.
* :func:`find_allocators` lists the allocators installed here: ``glibc`` (no preload) always,
  then ``jemalloc`` / ``mimalloc`` / ``tcmalloc`` when their shared library is found in the
  usual library directories or in ``ldconfig -p`` (Debian packages: libjemalloc2,
  libmimalloc2.0, libtcmalloc-minimal4).
* :func:`run_native` runs the driver (``runs`` times) and parses each line into a dict.
* :func:`run_trace` / :func:`stream_checksum`: the driver's ``trace`` mode hashes the first N
  timed rows (word-wise FNV-1a-64 over ``kind, slot, size``); the same hash over
  ``MixedWorkload.op_stream()`` proves both run the identical sequence.
* :func:`run_file`: the driver's ``file`` mode replays an op-stream file (raw int64 rows
  ``kind, slot, size``, :mod:`.opfile`) -- the file ``Heap.replay`` is fed from too (one
  stream, two consumers); ``simalloc native --trace`` is :mod:`simalloc.trace.native_trace`.

Everything raises :class:`NativeUnavailable` (an :class:`~simalloc.errors.AllocatorError`) with
a message saying what is missing, never a bare ``OSError``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from ..errors import AllocatorError, ConfigError

__all__ = ["ALLOCATOR_LIBS", "CFLAGS", "DRIVER_SOURCE", "NativeUnavailable", "cache_dir",
           "compile_driver", "file_args", "find_allocators", "find_compiler", "parse_line",
           "run_file", "run_native", "run_trace", "stream_checksum"]

#: The C source of the driver (package data).
DRIVER_SOURCE = Path(__file__).with_name("driver.c")
#: Compiler flags.
CFLAGS: tuple[str, ...] = ("-O2", "-std=c11")
#: Allocator name -> shared-library file names tried in order (None: the C library itself).
ALLOCATOR_LIBS: MappingProxyType[str, tuple[str, ...]] = MappingProxyType({
    "glibc": (),
    "jemalloc": ("libjemalloc.so.2", "libjemalloc.so"),
    "mimalloc": ("libmimalloc.so.2", "libmimalloc.so.2.0", "libmimalloc.so.2.1", "libmimalloc.so"),
    "tcmalloc": ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4", "libtcmalloc_minimal.so"),
})
_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK64 = (1 << 64) - 1
_LINE = re.compile(r"(\w+)=(\S+)")


class NativeUnavailable(AllocatorError):
    """The native yardstick cannot run here (no C compiler, build failure, allocator library
    not installed, or the driver failed)."""


# ---------------------------------------------------------------------------- build
def cache_dir() -> Path:
    """Where the compiled driver lives (created if needed; see the module docstring)."""
    env = os.environ.get("SIMALLOC_CACHE_DIR")
    candidates: list[Path] = []
    if env:
        candidates.append(Path(env).expanduser())
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        candidates.append((Path(xdg) if xdg else Path.home() / ".cache") / "simalloc")
        candidates.append(Path(tempfile.gettempdir()) / f"simalloc-{os.getuid()}")
    for d in candidates:
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(d, os.W_OK | os.X_OK):
            return d
    where = ", ".join(str(d) for d in candidates)
    raise NativeUnavailable(f"no writable cache directory for the native driver (tried {where}); "
                            "set SIMALLOC_CACHE_DIR")


def find_compiler() -> list[str] | None:
    """The C compiler command: ``$CC`` (may carry flags), else ``cc``, ``gcc`` or ``clang``."""
    cc = os.environ.get("CC")
    if cc:
        parts = shlex.split(cc)
        if parts and shutil.which(parts[0]):
            return [shutil.which(parts[0]) or parts[0], *parts[1:]]
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return [path]
    return None


def compile_driver(force: bool = False) -> Path:
    """Build ``driver.c`` (once; ``force`` rebuilds) and return the executable's path."""
    if not DRIVER_SOURCE.is_file():
        raise NativeUnavailable(f"driver source missing: {DRIVER_SOURCE} (broken installation?)")
    cc = find_compiler()
    if cc is None:
        raise NativeUnavailable("no C compiler found (tried $CC, cc, gcc, clang); install one "
                                "(e.g. apt-get install gcc) to run the native yardstick")
    src = DRIVER_SOURCE.read_bytes()
    key = hashlib.sha256(src + "\0".join([*cc, *CFLAGS]).encode()).hexdigest()[:16]
    out = cache_dir() / f"mixed-driver-{key}"
    if out.is_file() and os.access(out, os.X_OK) and not force:
        return out
    fd, tmp = tempfile.mkstemp(prefix=out.name + ".", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        proc = subprocess.run([*cc, *CFLAGS, "-o", tmp, str(DRIVER_SOURCE)],
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise NativeUnavailable(f"compiling the native driver failed ({' '.join(cc)} exit "
                                    f"{proc.returncode}):\n{proc.stderr.strip()}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)  # atomic: concurrent builders agree on the result
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NativeUnavailable(f"compiling the native driver failed: {exc}") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


# ---------------------------------------------------------------------------- allocators
def _lib_dirs() -> list[Path]:
    dirs = []
    multiarch = sysconfig.get_config_var("MULTIARCH")
    for base in ("/usr/lib", "/lib", "/usr/local/lib"):
        if multiarch:
            dirs.append(Path(base) / str(multiarch))
    dirs += [Path("/usr/lib64"), Path("/usr/lib"), Path("/usr/local/lib"), Path("/lib64"),
             Path("/lib")]
    return dirs


def _ldconfig_cache() -> dict[str, str]:
    """``ldconfig -p``: library file name -> path (first entry wins; empty if unavailable)."""
    exe = shutil.which("ldconfig") or next(
        (p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig") if os.access(p, os.X_OK)), None)
    if exe is None:
        return {}
    try:
        text = subprocess.run([exe, "-p"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, path = line.strip().partition(" => ")
        if sep:
            out.setdefault(name.split(" ", 1)[0], path.strip())
    return out


def find_allocators() -> dict[str, Path | None]:
    """Installed allocators: ``{"glibc": None, "jemalloc": Path(...), ...}`` (None = no
    preload; allocators whose library is not found are left out)."""
    found: dict[str, Path | None] = {"glibc": None}
    ldcache: dict[str, str] | None = None
    for name, libs in ALLOCATOR_LIBS.items():
        if not libs:
            continue
        hit: Path | None = None
        for lib in libs:
            hit = next((d / lib for d in _lib_dirs() if (d / lib).is_file()), None)
            if hit is not None:
                break
        if hit is None:
            if ldcache is None:
                ldcache = _ldconfig_cache()
            path = next((ldcache[lib] for lib in libs if lib in ldcache), None)
            hit = Path(path) if path else None
        if hit is not None:
            found[name] = hit
    return found


def _preload_for(allocator: str | os.PathLike[str]) -> tuple[str, Path | None]:
    """(label, library) for an allocator name from :func:`find_allocators` or a library path."""
    name = os.fspath(allocator)
    if name in ALLOCATOR_LIBS:
        found = find_allocators()
        if name not in found:
            raise NativeUnavailable(f"{name} is not installed (looked for "
                                    f"{', '.join(ALLOCATOR_LIBS[name])} in the library "
                                    f"directories and ldconfig -p)")
        return name, found[name]
    if os.sep in name and Path(name).is_file():
        return Path(name).name, Path(name)
    raise NativeUnavailable(f"unknown allocator {name!r}: expected one of "
                            f"{', '.join(ALLOCATOR_LIBS)} or a path to a shared library")


# ---------------------------------------------------------------------------- running
def parse_line(line: str) -> dict[str, Any]:
    """Parse the driver's ``key=value ...`` line (ints, floats, ``0x`` hex)."""
    out: dict[str, Any] = {}
    for key, val in _LINE.findall(line):
        if val.startswith("0x"):
            out[key] = int(val, 16)
        elif re.fullmatch(r"-?\d+", val):
            out[key] = int(val)
        else:
            out[key] = float(val)
    missing = {"ops", "seconds", "ops_per_s", "max_rss_kb"} - set(out)
    if missing:
        raise NativeUnavailable(f"unexpected driver output {line!r} (missing {sorted(missing)})")
    return out


def _run(lib: Path | None, args: list[str], timeout: float | None) -> dict[str, Any]:
    exe = compile_driver()
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if lib is not None:
        env["LD_PRELOAD"] = str(lib)
    try:
        proc = subprocess.run([str(exe), *args], capture_output=True, text=True, env=env,
                              timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NativeUnavailable(f"native driver failed to run: {exc}") from exc
    if lib is not None and "cannot be preloaded" in proc.stderr:
        raise NativeUnavailable(f"LD_PRELOAD={lib} was not loaded: {proc.stderr.strip()}")
    if proc.returncode != 0:
        raise NativeUnavailable(f"native driver exited with {proc.returncode}: "
                                f"{proc.stderr.strip() or proc.stdout.strip()}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("ops=")]
    if not lines:
        raise NativeUnavailable(f"native driver printed no result line: {proc.stdout!r}")
    return parse_line(lines[-1])


def _check_args(cycles: int, ws: int, seed: int) -> list[str]:
    if cycles < 0 or not 1 <= ws < 1 << 32:
        raise ConfigError(f"cycles={cycles} must be >= 0 and ws={ws} in 1..2**32-1")
    if seed & 0xFFFFFFFF == 0 or (seed + 0xDEADBEEF) & 0xFFFFFFFF == 0:
        raise ConfigError(f"seed={seed}: xorshift32 state 0 (timed or prefault seed)")
    return [str(int(cycles)), str(int(ws)), str(int(seed) & 0xFFFFFFFF)]


def run_native(allocator: str | os.PathLike[str], cycles: int, ws: int = 400, seed: int = 1,
               runs: int = 1, *, timeout: float | None = None) -> list[dict[str, Any]]:
    """Run the Mixed driver ``runs`` times under ``allocator`` (a :func:`find_allocators` name
    or a library path).  Each dict: ``allocator, ops, seconds, ops_per_s, max_rss_bytes`` plus
    ``cycles, drain, prefault, ws, seed, library, ru_maxrss_bytes``.  ``ops`` = cycles + drain frees, the
    same count as ``MixedWorkload.total_ops``."""
    args = _check_args(cycles, ws, seed)
    label, lib = _preload_for(allocator)
    rows = []
    for _ in range(runs):
        d = _run(lib, args, timeout)
        rows.append({
            "allocator": label, "ops": d["ops"], "seconds": d["seconds"],
            "ops_per_s": d["ops_per_s"], "max_rss_bytes": d["max_rss_kb"] * 1024,
            "cycles": d.get("cycles", cycles), "drain": d.get("drain", 0),
            "prefault": d.get("prefault", cycles // 10), "ws": ws, "seed": seed,
            "ru_maxrss_bytes": d.get("ru_maxrss_kb", d["max_rss_kb"]) * 1024,
            "library": str(lib) if lib else None,
        })
    return rows


def run_trace(cycles: int, ws: int = 400, seed: int = 1, max_ops: int | None = None,
              allocator: str | os.PathLike[str] = "glibc") -> dict[str, Any]:
    """The driver in ``trace`` mode: its parsed line, with ``trace_ops`` (rows hashed) and
    ``fnv1a`` (see :func:`stream_checksum`)."""
    args = _check_args(cycles, ws, seed) + ["trace"]
    if max_ops is not None:
        args.append(str(int(max_ops)))
    _label, lib = _preload_for(allocator)
    return _run(lib, args, None)


def file_args(path: str | os.PathLike[str], timed_from: int = 0,
              out: str | os.PathLike[str] | None = None) -> list[str]:
    """The driver's arguments for ``file`` mode (``driver file PATH [TIMED_FROM [OUT]]``)."""
    if timed_from < 0:
        raise ConfigError(f"timed_from={timed_from} must be >= 0")
    args = ["file", os.fspath(path), str(int(timed_from))]
    return args + [os.fspath(out)] if out is not None else args


def run_file(allocator: str | os.PathLike[str], path: str | os.PathLike[str],
             timed_from: int = 0, runs: int = 1, *,
             timeout: float | None = None) -> list[dict[str, Any]]:
    """Replay the op-stream file ``path`` (raw int64 rows, see :mod:`.opfile`) with the driver
    under ``allocator``, ``runs`` times; rows before ``timed_from`` are the untimed warm-up.
    Each dict: the driver's line parsed (``ops, warmup_ops, n_slots, seconds, ops_per_s,
    max_rss_kb, rss_kb, rss_anon_kb, base_rss_kb``) plus ``allocator`` and ``library``."""
    label, lib = _preload_for(allocator)
    args = file_args(path, timed_from)
    return [{"allocator": label, "library": str(lib) if lib else None, **_run(lib, args, timeout)}
            for _ in range(runs)]


def stream_checksum(rows: np.ndarray) -> int:
    """Word-wise FNV-1a-64 of int64 ``(kind, slot, size)`` rows, as the driver's trace mode
    computes it: for each of the three words of each row, ``h ^= word; h *= 0x100000001b3``
    (mod 2**64), from ``h = 0xcbf29ce484222325``."""
    h = _FNV_OFFSET
    for w in np.ascontiguousarray(rows, dtype=np.int64).ravel().tolist():
        h = ((h ^ (w & _MASK64)) * _FNV_PRIME) & _MASK64
    return h


if __name__ == "__main__":  # pragma: no cover - manual use: python -m simalloc.native C WS SEED
    c, w, s = (int(x) for x in sys.argv[1:4])
    for name in find_allocators():
        print(run_native(name, c, w, s)[0])
