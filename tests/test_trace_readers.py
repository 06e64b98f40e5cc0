"""Trace readers and the op-stream conversion (simalloc.trace): formats, slot mapping, bad input
with locations, the .npz round trip, and Hypothesis fuzzing of every text reader."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simalloc import TraceError
from simalloc.constants import OP_FREE, OP_MALLOC, OP_REALLOC
from simalloc.trace import OpStream, detect_format, events_to_stream, load_npz, read_trace, validate_ops
from simalloc.trace.opstream import EV_ALLOC, EV_FREE, EV_REALLOC, EventList
from simalloc.trace.readers import read_ltrace, read_mtrace, read_rep, records_to_stream

DATA = Path(__file__).parent / "data"


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def rows(s: OpStream) -> list[tuple[int, int, int]]:
    return [tuple(r) for r in s.ops.tolist()]


# ---------------------------------------------------------------------------- independent figures
def peak_live_rep(path: Path) -> int:
    """Peak live payload of a .rep, straight from its text (no simalloc code)."""
    toks = path.read_text().split()
    i = 4 if not toks[2].isalpha() and not toks[3].isalpha() else 2
    live: dict[str, int] = {}
    cur = peak = 0
    while i < len(toks):
        op = toks[i]
        if op in ("a", "r"):
            cur += int(toks[i + 2]) - live.get(toks[i + 1], 0)
            live[toks[i + 1]] = int(toks[i + 2])
            i += 3
        else:
            cur -= live.pop(toks[i + 1])
            i += 2
        peak = max(peak, cur)
    return peak


def peak_live_mtrace(path: Path) -> int:
    live: dict[str, int] = {}
    cur = peak = 0
    old = None
    for line in path.read_text().splitlines():
        line = re.sub(r"^@ .*?\] ", "", line)
        f = line.split()
        if not f or f[0] == "=":
            continue
        if f[0] == "+":
            live[f[1]] = int(f[2], 16)
            cur += live[f[1]]
        elif f[0] == "-":
            cur -= live.pop(f[1])
        elif f[0] == "<":
            old = f[1]
        elif f[0] == ">":
            cur -= live.pop(old)
            live[f[1]] = int(f[2], 16)
            cur += live[f[1]]
        peak = max(peak, cur)
    return peak


def peak_live_ltrace(path: Path) -> int:
    live: dict[int, int] = {}
    cur = peak = 0
    for line in path.read_text().splitlines():
        m = re.search(r"(\w+)\(([^)]*)\)\s*=\s*(\S+)", line)
        if not m:
            continue
        fn, args, ret = m.group(1), [a.strip() for a in m.group(2).split(",")], m.group(3)
        if fn == "free":
            cur -= live.pop(int(args[0], 16))
        elif fn == "malloc":
            live[int(ret, 16)] = int(args[0])
            cur += int(args[0])
        elif fn == "calloc":
            live[int(ret, 16)] = int(args[0]) * int(args[1])
            cur += int(args[0]) * int(args[1])
        elif fn == "realloc":
            if args[0] not in ("0", "nil"):
                cur -= live.pop(int(args[0], 16))
            live[int(ret, 16)] = int(args[1])
            cur += int(args[1])
        peak = max(peak, cur)
    return peak


# ---------------------------------------------------------------------------- conversion
def test_address_reuse_is_a_new_slot_and_realloc_keeps_its_slot(tmp_path: Path) -> None:
    ev = EventList()
    ev.alloc(0x1000, 10, 1)
    ev.alloc(0x2000, 20, 2)
    ev.free(0x1000, 3)
    ev.alloc(0x1000, 30, 4)  # same address again: a new lifetime, a new slot
    ev.realloc(0x2000, 0x3000, 40, 5)  # moves: keeps slot 1
    ev.alloc(0x2000, 50, 6)  # the old address of the realloc, reused
    ev.realloc(0x3000, 0x3000, 60, 7)  # in place
    ev.free(0x3000, 8)
    s = ev.to_stream("x", "test")
    assert rows(s) == [(OP_MALLOC, 0, 10), (OP_MALLOC, 1, 20), (OP_FREE, 0, 0), (OP_MALLOC, 2, 30),
                       (OP_REALLOC, 1, 40), (OP_MALLOC, 3, 50), (OP_REALLOC, 1, 60), (OP_FREE, 1, 0)]
    assert s.n_slots == 4
    validate_ops(s.ops, s.n_slots)
    assert list(s.live_payload()) == [10, 30, 20, 50, 70, 120, 140, 80]
    assert s.summary()["peak_live_payload"] == 140


@pytest.mark.parametrize("case, message", [
    ([(EV_FREE, 0x10, 0, 0)], "line 1: free of unknown address 0x10"),
    ([(EV_ALLOC, 0x10, 0, 1), (EV_FREE, 0x10, 0, 0), (EV_FREE, 0x10, 0, 0)], "line 3: free of unknown"),
    ([(EV_ALLOC, 0x10, 0, 1), (EV_ALLOC, 0x10, 0, 1)], "line 2: allocation at address 0x10, which is still live"),
    ([(EV_REALLOC, 0x10, 0x20, 5)], "line 1: realloc of unknown address 0x10"),
    ([(EV_ALLOC, 0x10, 0, -1)], "line 1: negative size -1"),
    ([(EV_ALLOC, 0x10, 0, 1), (7, 0, 0, 0)], "line 2: unknown op kind 7"),
    ([(EV_ALLOC, 0x10, 0, 1 << 41)], "line 1: size 2199023255552 exceeds"),
])
def test_bad_events_name_the_line(case: list[tuple[int, int, int, int]], message: str) -> None:
    k, a, b, z = (np.array(c) for c in zip(*case, strict=True))
    with pytest.raises(TraceError, match=re.escape(f"f.txt: {message}")):
        events_to_stream(k, a, b, z, np.arange(1, len(k) + 1), source="f.txt", fmt="t", unit="line")


def test_lenient_repairs_and_counts() -> None:
    ev = EventList()
    ev.free(0x99, 1)  # unknown: dropped
    ev.alloc(0x10, 8, 2)
    ev.alloc(0x10, 16, 3)  # over a live block: the old one is freed first
    ev.realloc(0x77, 0x20, 4, 4)  # realloc of unknown: a malloc
    ev.free(0x10, 5)
    s = ev.to_stream("x", "t", strict=False)
    assert rows(s) == [(OP_MALLOC, 0, 8), (OP_FREE, 0, 0), (OP_MALLOC, 1, 16), (OP_MALLOC, 2, 4),
                       (OP_FREE, 1, 0)]
    assert s.meta["repaired"] == {"dropped_frees": 1, "realloc_as_malloc": 1, "implicit_frees": 1}
    validate_ops(s.ops, s.n_slots)


def test_validate_ops_catches_slot_misuse() -> None:
    ops = np.array([[OP_MALLOC, 0, 8], [OP_MALLOC, 0, 8]], dtype=np.int64)
    with pytest.raises(TraceError, match="op 2: malloc into occupied slot 0"):
        validate_ops(ops, 1, "s", "op")
    ops = np.array([[OP_FREE, 0, 0]], dtype=np.int64)
    with pytest.raises(TraceError, match="op 1: free of empty slot 0"):
        validate_ops(ops, 1, "s", "op")
    ops = np.array([[OP_MALLOC, 0, 8], [OP_REALLOC, 1, 8]], dtype=np.int64)
    with pytest.raises(TraceError, match="op 2: slot 1 out of range"):
        validate_ops(ops, 1, "s", "op")


# ---------------------------------------------------------------------------- .rep
@pytest.mark.parametrize("name", ["tiny", "binary", "realloc", "short2"])
def test_rep_files_peak_payload_matches_the_text(name: str) -> None:
    p = DATA / f"{name}.rep"
    s = read_trace(p)
    assert s.fmt == "rep"
    assert s.summary()["peak_live_payload"] == peak_live_rep(p)
    validate_ops(s.ops, s.n_slots)


@pytest.mark.parametrize("text, message", [
    ("20000\n2\n3\n1\na 0 100\nf 0\n", "line 4: header says num_ops=3 but the file has 2 op lines (truncated?)"),
    ("20000\n2\n1\n1\na 0 100\nf 0\n", "line 4: header says num_ops=1 but the file has 2 op lines"),
    ("20000 2 3\na 0 1\n", "line 1: header has 3 numbers"),
    ("20000\n2\n2\n1\na 0\nf 0\n", "line 5: truncated record 'a 0'"),
    ("20000\n2\n2\n1\na 0 -5\nf 0\n", "line 5: negative size -5"),
    ("20000\n2\n2\n1\nx 0 5\nf 0\n", "line 5: unknown op 'x'"),
    ("20000\n2\n2\n1\na 5 5\nf 5\n", "line 5: id 5 out of range 0..1"),
    ("20000\n2\n2\n1\na 0 5\nf 1\n", "line 6: free of unknown id 1"),
    ("20000\n2\n2\n1\na 0 5\nr 1 9\n", "line 6: realloc of unknown id 1"),
    ("20000\n2\n2\n1\na 0 5z\nf 0\n", "line 5: size '5z' is not an integer"),
    ("", "line 1: header has 0 numbers"),
])
def test_rep_errors(tmp_path: Path, text: str, message: str) -> None:
    p = write(tmp_path, "bad.rep", text)
    with pytest.raises(TraceError) as ei:
        read_rep(p)
    assert str(ei.value).startswith(f"{p}: ")
    assert message in str(ei.value)


# ---------------------------------------------------------------------------- mtrace
def test_mtrace_real_program() -> None:
    p = DATA / "sort.mtrace"  # coreutils sort under glibc mtrace (build_trace_data.py)
    s = read_trace(p)
    assert s.fmt == "mtrace" and s.summary()["mallocs"] > 100
    assert s.summary()["peak_live_payload"] == peak_live_mtrace(p)


def test_mtrace_forms(tmp_path: Path) -> None:
    text = ("= Start\n@ ./t:[0x122b] + 0x10 0x20\n@ /lib/x.so:(sym+0x1)[0x7f] + 0x30 0x8\n"
            "+ (nil) 0x100\n< 0x10\n@ [0x1] > 0x40 0x60\n! 0x30 0x1000\n- 0x30\n- 0x40\n= End\n")
    s = read_mtrace(write(tmp_path, "m.mtrace", text))
    assert rows(s) == [(OP_MALLOC, 0, 32), (OP_MALLOC, 1, 8), (OP_REALLOC, 0, 96), (OP_FREE, 1, 0),
                       (OP_FREE, 0, 0)]
    assert s.meta["skipped"]["failed"] == 2


@pytest.mark.parametrize("text, message", [
    ("= Start\n+ 0x10\n", "line 2: truncated record"),
    ("= Start\n+ 0x10 0x8\n- 0x20\n", "line 3: free of unknown address 0x20"),
    ("= Start\n* 0x10 0x8\n", "line 2: unknown op '*'"),
    ("= Start\n+ 0x10 -0x8\n", "line 2: negative size -0x8"),
    ("= Start\n+ 0x10 0x8\n< 0x10\n", "line 3: truncated realloc"),
    ("= Start\n+ 0x10 0x8\n< 0x10\n- 0x10\n", "line 3: realloc '<' is not followed"),
    ("= Start\n> 0x10 0x8\n", "line 2: realloc '>' without"),
    ("= Start\n+ zz 0x8\n", "line 2: 'zz' is not a pointer"),
    ("= Start\n= End\n+ 0x10 0x8\n", "line 3: record after '= End'"),
])
def test_mtrace_errors(tmp_path: Path, text: str, message: str) -> None:
    p = write(tmp_path, "bad.mtrace", text)
    with pytest.raises(TraceError, match=re.escape(f"{p}: {message}")):
        read_mtrace(p)


# ---------------------------------------------------------------------------- ltrace
def test_ltrace_real_program() -> None:
    p = DATA / "wordfreq.ltrace"  # a word counter, ltrace -tt (build_trace_data.py)
    s = read_trace(p)
    assert s.fmt == "ltrace" and s.summary()["reallocs"] >= 3
    assert s.summary()["peak_live_payload"] == peak_live_ltrace(p)
    assert s.times is not None and s.times[0] == 0 and np.all(np.diff(s.times) >= 0)


def test_ltrace_forms(tmp_path: Path) -> None:
    text = ("[pid 7] 12:00:00.000001 prog->malloc(16 <unfinished ...>\n"
            "[pid 8] 12:00:00.000002 free(0) = <void>\n"
            "[pid 7] 12:00:00.000003 <... malloc resumed> ) = 0x10\n"
            "9 12:00:00.5 calloc(3, 4) = 0x20\n"
            "realloc(0x10, 0) = 0\n"
            "realloc(0, 8) = 0x30\n"
            "realloc(0x30, 80) = 0x40 <0.000012>\n"
            "posix_memalign(0x7ffd, 64, 100) = 0\n"
            "strlen(\"x\") = 1\n"
            "free(0x20) = <void>\n"
            "--- SIGCHLD (Child exited) ---\n"
            "+++ exited (status 0) +++\n")
    s = read_ltrace(write(tmp_path, "l.ltrace", text))
    assert rows(s) == [(OP_MALLOC, 0, 16), (OP_MALLOC, 1, 12), (OP_FREE, 0, 0), (OP_MALLOC, 2, 8),
                       (OP_REALLOC, 2, 80), (OP_FREE, 1, 0)]
    assert s.meta["skipped"]["posix_memalign"] == 1 and s.meta["skipped"]["other_functions"] == 1
    assert s.times is not None and s.times[1] == pytest.approx(0.499997)


@pytest.mark.parametrize("text, message", [
    ("malloc(16) = 0x10\nfree(0x20) = <void>\n", "line 2: free of unknown address 0x20"),
    ("malloc(16 <unfinished ...>\n", "line 1: malloc() <unfinished ...> never resumed"),
    ("malloc(16\n", "line 1: truncated record"),
    ("<... malloc resumed> ) = 0x10\n", "line 1: '<... malloc resumed>' without"),
    ("malloc(-16) = 0x10\n", "line 1: negative size -16"),
    ("calloc(3) = 0x10\n", "line 1: calloc() has 1 argument(s), expected 2"),
    ("what is this\n", "line 1: unrecognised line"),
])
def test_ltrace_errors(tmp_path: Path, text: str, message: str) -> None:
    p = write(tmp_path, "bad.ltrace", text)
    with pytest.raises(TraceError, match=re.escape(f"{p}: {message}")):
        read_ltrace(p)


# ---------------------------------------------------------------------------- memray
def synthetic_records(rows_: list[tuple[int, int, int, int]]) -> np.ndarray:
    from simalloc.trace.readers import _RECORD_DTYPE

    return np.array(rows_, dtype=_RECORD_DTYPE)


def test_memray_records_realloc_pairs_and_threads() -> None:
    # kinds: MALLOC 6, FREE 5, REALLOC 7, CALLOC 8, MMAP 14, PYMALLOC_MALLOC 2 / FREE 1
    recs = synthetic_records([
        (6, 0x10, 8, 1), (6, 0x20, 8, 2),
        (5, 0x10, 0, 1), (6, 0x90, 4, 2), (7, 0x30, 64, 1),  # thread 2 between FREE and REALLOC
        (5, 0x500, 0, 1),  # allocated before the capture began
        (14, 0x7000, 4096, 1), (8, 0x40, 24, 2), (2, 0x50, 16, 1), (1, 0x50, 0, 1),
        (7, 0x60, 32, 2),  # realloc(NULL, 32): a malloc
    ])
    s = records_to_stream(recs, "cap.bin")
    assert rows(s) == [(OP_MALLOC, 0, 8), (OP_MALLOC, 1, 8), (OP_MALLOC, 2, 4), (OP_REALLOC, 0, 64),
                       (OP_MALLOC, 3, 24), (OP_MALLOC, 4, 16), (OP_FREE, 4, 0), (OP_MALLOC, 5, 32)]
    assert s.meta["pre_capture"] == {"frees": 1, "reallocs": 0}
    assert s.meta["skipped"]["mmap_munmap"] == 1


def test_memray_records_errors() -> None:
    with pytest.raises(TraceError, match="cap.bin: record 3: free of unknown address 0x10"):
        records_to_stream(synthetic_records([(6, 0x10, 8, 1), (5, 0x10, 0, 1), (5, 0x10, 0, 1)]), "cap.bin")
    with pytest.raises(TraceError, match="cap.bin: record 2: unknown allocator kind 99"):
        records_to_stream(synthetic_records([(6, 0x10, 8, 1), (99, 0x10, 0, 1)]), "cap.bin")


def test_memray_capture_of_a_real_program() -> None:
    memray = pytest.importorskip("memray")
    p = DATA / "textwork.memray.bin"
    s = read_trace(p)
    assert s.fmt == "memray" and len(s) > 10_000 and s.summary()["reallocs"] > 100
    # memray's own peak (its high-water mark pass) is the independent figure
    assert s.summary()["peak_live_payload"] == memray.FileReader(str(p)).metadata.peak_memory
    npz = load_npz(DATA / "textwork.npz")
    assert np.array_equal(npz.ops, s.ops) and npz.n_slots == s.n_slots


def test_memray_truncated_capture(tmp_path: Path) -> None:
    pytest.importorskip("memray")
    data = (DATA / "textwork.memray.bin").read_bytes()
    p = tmp_path / "cut.bin"
    p.write_bytes(data[: len(data) // 3])
    with pytest.raises(TraceError, match=re.escape(str(p)) + r": (record \d+: truncated|not a readable)"):
        read_trace(p)


def test_memray_missing_says_which_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real = builtins.__import__

    def fake(name: str, *a: object, **k: object) -> object:
        if name == "memray":
            raise ImportError("no memray")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(TraceError, match=r"simalloc\[trace\]"):
        read_trace(DATA / "textwork.memray.bin")


# ---------------------------------------------------------------------------- npz
def test_npz_round_trip_and_validation(tmp_path: Path) -> None:
    s = read_trace(DATA / "wordfreq.ltrace")
    p = s.save(tmp_path / "w.npz")
    back = read_trace(p)
    assert np.array_equal(back.ops, s.ops) and back.n_slots == s.n_slots
    assert back.times is not None and np.allclose(back.times, s.times)  # type: ignore[arg-type]
    assert back.fmt == "ltrace"
    bad = s.ops.copy()
    bad[5, 0] = OP_MALLOC if bad[5, 0] != OP_MALLOC else OP_FREE
    OpStream(bad, s.n_slots).save(tmp_path / "bad.npz")
    with pytest.raises(TraceError, match=r"bad\.npz: op \d+: "):
        read_trace(tmp_path / "bad.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(TraceError, match="junk.npz: cannot read op stream"):
        read_trace(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", x=np.arange(3))
    with pytest.raises(TraceError, match="not a simalloc op stream"):
        read_trace(tmp_path / "other.npz")


def test_detect_format(tmp_path: Path) -> None:
    assert detect_format(DATA / "tiny.rep") == "rep"
    assert detect_format(write(tmp_path, "a.txt", "= Start\n+ 0x1 0x2\n")) == "mtrace"
    assert detect_format(write(tmp_path, "b.txt", "@ ./x:[0x1] + 0x1 0x2\n")) == "mtrace"
    assert detect_format(write(tmp_path, "c.txt", "12 3\na 0 1\n")) == "rep"
    assert detect_format(write(tmp_path, "d.txt", "[pid 3] malloc(3) = 0x4\n")) == "ltrace"
    with pytest.raises(TraceError, match="unrecognised trace format"):
        detect_format(write(tmp_path, "e.txt", "%%% hello\n"))
    with pytest.raises(TraceError, match="no such file"):
        read_trace(tmp_path / "missing.rep")


# ---------------------------------------------------------------------------- fuzzing
_REP_TOKENS = st.sampled_from(["a", "r", "f", "x", "0", "1", "2", "3", "-1", "7", "100", "99999999999999",
                               "2040", "a 0", "f", "\n", " ", "\t", "1e3", "0x10"])
_MT_TOKENS = st.sampled_from(["= Start", "= End", "+", "-", "<", ">", "!", "0x10", "0x20", "0x30",
                              "(nil)", "0x8", "-0x8", "@ ./t:[0x1]", "@ [0x2]", "\n", " ", "zz"])
_LT_TOKENS = st.sampled_from(["malloc(", "free(", "realloc(", "calloc(", ")", " = ", "0x10", "0x20",
                              "0", "16", "-3", ", ", "<void>", " <unfinished ...>", "<... malloc resumed> ",
                              "[pid 3] ", "\n", "12:00:01.5 ", "+++ exited +++"])

FUZZ_COUNTS: dict[str, int] = {}


def _fuzz_one(tmp_path: Path, name: str, reader: object, text: str) -> None:
    p = tmp_path / name
    p.write_text(text)
    try:
        s = reader(p)  # type: ignore[operator]
    except TraceError as exc:
        assert str(exc).startswith(f"{p}: "), str(exc)
        assert re.match(rf"{re.escape(str(p))}: (line|record|op) \d+: ", str(exc)), str(exc)
    else:
        validate_ops(s.ops, s.n_slots)  # anything accepted is replayable
        assert s.summary()["peak_live_payload"] >= 0
    FUZZ_COUNTS[name] = FUZZ_COUNTS.get(name, 0) + 1


_FUZZ = settings(max_examples=300, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@_FUZZ
@given(st.lists(_REP_TOKENS, max_size=40).map(" ".join))
def test_fuzz_rep(tmp_path: Path, text: str) -> None:
    _fuzz_one(tmp_path, "f.rep", read_rep, text)


@_FUZZ
@given(st.lists(_REP_TOKENS, max_size=30).map(lambda t: "100 4 " + str(len(t) // 3) + " 1\n" + " ".join(t)))
def test_fuzz_rep_with_header(tmp_path: Path, text: str) -> None:
    _fuzz_one(tmp_path, "g.rep", read_rep, text)


@_FUZZ
@given(st.lists(_MT_TOKENS, max_size=40).map(" ".join))
def test_fuzz_mtrace(tmp_path: Path, text: str) -> None:
    _fuzz_one(tmp_path, "f.mtrace", read_mtrace, text)


@_FUZZ
@given(st.lists(_LT_TOKENS, max_size=40).map("".join))
def test_fuzz_ltrace(tmp_path: Path, text: str) -> None:
    _fuzz_one(tmp_path, "f.ltrace", read_ltrace, text)


@_FUZZ
@given(st.text(max_size=200))
def test_fuzz_any_text(tmp_path: Path, text: str) -> None:
    for name, reader in (("t.rep", read_rep), ("t.mtrace", read_mtrace), ("t.ltrace", read_ltrace)):
        _fuzz_one(tmp_path, name, reader, text)


@_FUZZ
@given(st.binary(max_size=300))
def test_fuzz_npz_bytes(tmp_path: Path, data: bytes) -> None:
    p = tmp_path / "f.npz"
    p.write_bytes(b"PK\x03\x04" + data)
    with pytest.raises(TraceError, match=re.escape(str(p))):
        load_npz(p)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 5), st.integers(0, 5), st.integers(0, 300)),
                max_size=60), st.booleans())
def test_fuzz_events_conversion_matches_a_model(evs: list[tuple[int, int, int, int]], strict: bool) -> None:
    """Random event lists: accepted ones replay on a plain slot model with the same payload."""
    k, a, b, z = (np.array(c, dtype=np.int64) for c in zip(*evs, strict=True)) if evs else \
        (np.zeros(0, np.int64),) * 4
    try:
        s = events_to_stream(k, a, b, z, np.arange(1, len(evs) + 1), source="e", fmt="t", strict=strict)
    except TraceError as exc:
        assert strict and re.match(r"e: record \d+: ", str(exc))
        return
    validate_ops(s.ops, s.n_slots)
    # model: address -> size, replaying the events with the same repairs
    live: dict[int, int] = {}
    cur = peak = 0
    for kind, addr, new, size in evs:
        if kind == EV_FREE:
            if addr in live:
                cur -= live.pop(addr)
        elif kind == EV_ALLOC:
            cur -= live.pop(addr, 0)
            live[addr] = size
            cur += size
        else:
            cur -= live.pop(addr, 0)
            cur -= live.pop(new, 0)
            live[new] = size
            cur += size
        peak = max(peak, cur)
    assert s.summary()["peak_live_payload"] == peak
    assert s.summary()["final_live_payload"] == cur
