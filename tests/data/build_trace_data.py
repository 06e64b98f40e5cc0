"""Rebuild the real traces under tests/data (run by hand; the tests only read the results).

    python tests/data/build_trace_data.py

* ``textwork.memray.bin``: ``memray run`` (PYTHONMALLOC=malloc, so every object allocation is
  a malloc) of ``trace_prog.py``, a small real Python program; ``textwork.npz``: the same
  capture converted to simalloc's op stream, with memray's own ``peak_memory`` in its meta
  (the independent figure the tests check the replay's peak live payload against).
* ``sort.mtrace``: glibc mtrace of coreutils ``sort -n`` on 300 numbers (mtrace switched on
  by a two-line LD_PRELOAD constructor, libc_malloc_debug.so preloaded: glibc >= 2.34).
* ``wordfreq.ltrace``: ``ltrace -tt -e malloc+free+realloc+calloc`` of ``wordfreq.c`` (a word
  counter with a realloc-grown hash table) on 400 generated words.

* ``*.rep``: CS:APP malloclab traces written here: ``tiny.rep`` (a handful of ops),
  ``binary.rep`` (binary-bal's pattern: alternate 64 B and 448 B blocks, free the big ones,
  allocate 512 B blocks into the holes), ``realloc.rep`` (realloc-bal's: one block grown by
  realloc while small blocks come and go) and ``short2.rep`` (the two-number header variant).

Each step is skipped (with a message) when its tool is missing.  Files stay under 200 KB.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))


def memray_capture() -> None:
    try:
        import memray
    except ImportError:
        print("skip textwork: memray not installed")
        return
    from simalloc.trace.readers import read_memray

    out = HERE / "textwork.memray.bin"
    env = dict(os.environ, PYTHONMALLOC="malloc")
    subprocess.run([sys.executable, "-m", "memray", "run", "-f", "-q", "-o", str(out),
                    str(HERE / "trace_prog.py")], check=True, env=env, stdout=subprocess.DEVNULL)
    stream = read_memray(out)
    stream.meta["memray_peak_memory"] = int(memray.FileReader(str(out)).metadata.peak_memory)
    stream.meta["program"] = "tests/data/trace_prog.py"
    stream.source = "tests/data/textwork.memray.bin"
    stream.save(HERE / "textwork.npz")
    print(f"textwork: {out.stat().st_size:,} B capture, {len(stream):,} ops, "
          f"{(HERE / 'textwork.npz').stat().st_size:,} B npz")


def mtrace_sort(tmp: Path) -> None:
    cc, sort = shutil.which("gcc") or shutil.which("cc"), shutil.which("sort")
    dbg = "/usr/lib/x86_64-linux-gnu/libc_malloc_debug.so.0"
    if not (cc and sort and os.path.exists(dbg)):
        print("skip sort.mtrace: needs gcc, sort and libc_malloc_debug.so")
        return
    (tmp / "on.c").write_text("#include <mcheck.h>\n"
                              "__attribute__((constructor)) static void on(void) { mtrace(); }\n")
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(tmp / "on.so"), str(tmp / "on.c")], check=True)
    nums = list(range(1, 301))
    random.Random(1).shuffle(nums)
    (tmp / "nums.txt").write_text("\n".join(map(str, nums)) + "\n")
    out = HERE / "sort.mtrace"
    env = dict(os.environ, MALLOC_TRACE=str(out), LD_PRELOAD=f"{dbg} {tmp / 'on.so'}")
    subprocess.run([sort, "-n", str(tmp / "nums.txt")], check=True, env=env, stdout=subprocess.DEVNULL)
    print(f"sort.mtrace: {out.stat().st_size:,} B")


def ltrace_wordfreq(tmp: Path) -> None:
    cc, ltrace = shutil.which("gcc") or shutil.which("cc"), shutil.which("ltrace")
    if not (cc and ltrace):
        print("skip wordfreq.ltrace: needs gcc and ltrace")
        return
    exe = tmp / "wordfreq"
    subprocess.run([cc, "-O1", "-o", str(exe), str(HERE / "wordfreq.c")], check=True)
    rng = random.Random(3)
    words = ["".join(rng.choice("abcdefgh") for _ in range(rng.randint(2, 5))) for _ in range(400)]
    out = HERE / "wordfreq.ltrace"
    with open(tmp / "words.txt", "w") as fh:
        fh.write(" ".join(words) + "\n")
    with open(tmp / "words.txt") as fin:
        subprocess.run([ltrace, "-tt", "-e", "malloc+free+realloc+calloc", "-o", str(out), str(exe)],
                       check=True, stdin=fin, stdout=subprocess.DEVNULL)
    print(f"wordfreq.ltrace: {out.stat().st_size:,} B")


def rep_files() -> None:
    def write(name: str, ops: list[str], num_ids: int, header4: bool = True) -> None:
        head = [str(num_ids * 1000), str(num_ids), str(len(ops)), "1"] if header4 else \
            [str(num_ids), str(len(ops))]
        (HERE / name).write_text("\n".join(head + ops) + "\n")

    write("tiny.rep", ["a 0 2040", "a 1 2040", "f 1", "a 2 48", "a 3 4072", "f 3", "a 4 4072",
                       "f 0", "f 2", "a 5 4072", "f 4", "f 5"], 6)
    ops, n = [], 600
    for i in range(n):
        ops.append(f"a {i} {64 if i % 2 == 0 else 448}")
    for i in range(1, n, 2):
        ops.append(f"f {i}")
    for i in range(n // 2):
        ops.append(f"a {n + i} 512")
    for i in range(0, n, 2):
        ops.append(f"f {i}")
    for i in range(n // 2):
        ops.append(f"f {n + i}")
    write("binary.rep", ops, n + n // 2)
    ops = ["a 0 512", "a 1 128"]
    size = 512
    for i in range(2, 202):
        size += 128
        ops += [f"r 0 {size}", f"a {i} 128", f"f {i - 1}"]
    ops += ["f 201", "f 0"]
    write("realloc.rep", ops, 202)
    write("short2.rep", ["a 0 100", "a 1 200", "r 0 300", "f 1", "a 2 7", "f 0", "f 2"], 3,
          header4=False)
    print("rep files: tiny, binary, realloc, short2")


if __name__ == "__main__":
    rep_files()
    memray_capture()
    with tempfile.TemporaryDirectory() as d:
        mtrace_sort(Path(d))
        ltrace_wordfreq(Path(d))
