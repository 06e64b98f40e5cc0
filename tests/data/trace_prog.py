"""A small real Python program whose allocations the trace tests replay (see build_trace_data.py).

It does ordinary work: builds a text, counts words with a dict, sorts, round-trips JSON,
runs a regex over lines and grows and shrinks lists -- so its malloc stream (under
PYTHONMALLOC=malloc) has small objects, growing containers (realloc) and a few big buffers.
"""

import json
import re
from collections import Counter

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron "
         "pi rho sigma tau upsilon phi chi psi omega").split()


def main() -> None:
    lines = []
    for i in range(600):
        w = [WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(1 + i % 9)]
        lines.append(f"{i:05d} " + " ".join(w))
    text = "\n".join(lines)
    counts = Counter(text.split())
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    doc = json.dumps({"top": top, "lines": lines[:200]})
    back = json.loads(doc)
    pat = re.compile(r"^(\d+) (\w+)")
    firsts = [m.group(2) for m in map(pat.match, lines) if m]
    grow: list[list[int]] = []
    for i in range(200):
        grow.append(list(range(i)))
        if i % 3 == 0:
            grow.pop(0)
    del grow
    print(len(back["lines"]), len(firsts), top[0])


if __name__ == "__main__":
    main()
