"""Tracing and replay: ground truth from the kernel, real programs' allocation traces.

* :mod:`.opstream` -- the compact op stream (``OpStream``; ``.npz`` files) and the one
  vectorised events -> ops conversion with validation;
* :mod:`.readers` -- CS:APP ``.rep``, glibc ``mtrace``, ``ltrace`` and memray readers
  (:func:`read_trace` picks one);
* :mod:`.replay` -- replay an op stream through ``Heap.replay`` and report mdriver's figures;
* :mod:`.ptracer` -- ``simalloc strace``: a python-ptrace syscall tracer (optional extra);
  :mod:`.syscalls` -- what it records (``SyscallTrace``); :mod:`.strace_report` -- its summary,
  JSON / CSV timelines, PNG and the comparison with real ``strace``;
* :mod:`.verify` -- ``simalloc verify``: the OS layer's counters against the traced syscalls;
* :mod:`.record` -- ``simalloc record``: memray capture -> op stream -> replay;
* :mod:`.native_trace` -- ``simalloc native --trace``: real allocators traced on op-stream
  files, beside the simalloc presets that model them;
* :mod:`.cli` -- the four subcommands (``add_subcommands``).

python-ptrace (GPL-2.0) and memray are optional: ``pip install 'simalloc[trace]'``.
"""

from __future__ import annotations

from .opstream import OpStream, events_to_stream, load_npz, validate_ops
from .readers import FORMATS, detect_format, read_trace

__all__ = ["FORMATS", "OpStream", "detect_format", "events_to_stream", "load_npz", "read_trace",
           "validate_ops"]
