"""Shared fixtures of simalloc's test suite.

* ``kernel``: parametrized over every importable hot-path kernel (``simalloc.available_kernels()``:
  ``["cython", "python"]`` once the Cython kernel is built, else ``["python"]``), so every test
  that builds a heap runs against each kernel.  ``SIMALLOC_KERNEL=python`` (or ``cython``) in
  the suite's environment narrows it to that one kernel: ``SIMALLOC_KERNEL=python python -m
  pytest`` is the whole suite on the pure-Python kernel (``.ci/run``'s second pass), including
  the tests that build ``Heap()`` from the environment.
* ``make_heap(**overrides)``: a heap factory.  Heaps are built from ``Config.defaults(...)``
  (which ignores the environment, so stray ``HAKMEM_*`` / ``SIMALLOC_*`` variables cannot change
  a test) with the parametrized kernel, and every heap is closed at teardown.
* ``SIMALLOC_SUITE_SKIP_KERNEL_PARAM=1`` (``.ci/run``'s second pass): leave out the tests that take
  the ``kernel`` fixture -- the first pass already ran each of them on every kernel, the
  pure-Python one included -- and run the rest, which build heaps from the environment, on
  the kernel ``SIMALLOC_KERNEL`` names.
* ``clean_env``: removes every ``HAKMEM_*`` / ``SIMALLOC_*`` variable for tests that exercise
  the real environment path -- except the suite's own ``SIMALLOC_KERNEL=python|cython``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

try:
    import simalloc
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import simalloc

from simalloc import Config, Heap, ReleasePolicy

#: The suite's kernel selection (``SIMALLOC_KERNEL``), when it names one kernel.
SUITE_KERNEL = os.environ.get("SIMALLOC_KERNEL", "").strip().lower()
if SUITE_KERNEL not in ("python", "cython"):
    SUITE_KERNEL = ""
KERNELS = [SUITE_KERNEL] if SUITE_KERNEL else simalloc.available_kernels()


@pytest.fixture(params=KERNELS)
def kernel(request: pytest.FixtureRequest) -> str:
    """Name of the hot-path kernel under test."""
    return request.param


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``SIMALLOC_SUITE_SKIP_KERNEL_PARAM=1``: deselect the tests parametrized by ``kernel``."""
    if os.environ.get("SIMALLOC_SUITE_SKIP_KERNEL_PARAM") != "1":
        return
    keep = [i for i in items if "kernel" not in getattr(i, "fixturenames", ())]
    config.hook.pytest_deselected(items=[i for i in items if i not in keep])
    items[:] = keep


HeapFactory = Callable[..., Heap]


@pytest.fixture
def make_heap(kernel: str) -> Iterator[HeapFactory]:
    """``make_heap(config=None, *, policy=None, **overrides)`` -> a new heap on ``kernel``.

    ``overrides`` are option names (or environment names) applied to ``Config.defaults``; a
    ``config`` may be given instead of the defaults; ``policy`` may be a ``ReleasePolicy``
    instance (passed to ``Heap(policy=...)``) or an option string."""
    heaps: list[Heap] = []

    def factory(config: Config | None = None, *, policy: Any = None, **overrides: Any) -> Heap:
        instance = None
        if isinstance(policy, ReleasePolicy):
            instance = policy
        elif policy is not None:
            overrides["policy"] = policy
        if config is None:
            cfg = Config.defaults(kernel=kernel, **overrides)
        else:
            cfg = config.replace(kernel=kernel, **overrides)
        heap = Heap(cfg, policy=instance)
        heaps.append(heap)
        return heap

    yield factory
    for heap in heaps:
        heap.close()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Remove every HAKMEM_* / SIMALLOC_* variable (restored after the test), keeping the suite's
    ``SIMALLOC_KERNEL`` selection."""
    for name in list(os.environ):
        if name.startswith(("HAKMEM_", "SIMALLOC_")):
            monkeypatch.delenv(name)
    if SUITE_KERNEL:
        monkeypatch.setenv("SIMALLOC_KERNEL", SUITE_KERNEL)
    return monkeypatch
