"""How a public heap call enters and leaves the heap: the threading contract, and signals.

* A closed heap raises :class:`~simalloc.errors.HeapClosedError`.
* A heap serves one call at a time.  Its *gate* is a list holding one token; a call takes the
  token with ``del heap._gate[0]`` -- one ``DELETE_SUBSCR`` bytecode, atomic under the GIL, after
  which CPython runs no signal handler before the ``try`` that gives the token back.  (A
  ``threading.Lock`` would not do: ``acquire()`` is a call, and a handler may raise right after
  it returns, leaving the lock held for ever.)  A call that finds no token (a second thread, a
  signal handler re-entering) raises :class:`~simalloc.errors.ConcurrentUseError` before it
  changes anything.  A ``close()`` that arrives that way is deferred until the call returns.
* Signals (:mod:`simalloc.oslayer.signals`): a call that changes state outside the hot path
  (``@held``: realloc, calloc, trim, tick, force_reclaim ...) holds them for its whole length;
  the others hold them only from the slow path's first state change (or, with the plain-Python
  kernel, from their start) and deliver them at the next operation boundary, at the latest
  when the call returns.  So a ``KeyboardInterrupt`` lands between operations, never inside one.

* A call first delivers the events a batch that raised left in the kernel's queue
  (``slowpath.flush_queue``), so what it reads or changes is up to date.

``Heap.malloc`` and ``Heap.free`` inline the same steps (they are the per-call hot path; their
own slow-path callbacks take the queue first).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import ConcurrentUseError, HeapClosedError

__all__ = ["busy", "held", "open_call"]

F = TypeVar("F", bound=Callable[..., Any])


def busy() -> ConcurrentUseError:
    return ConcurrentUseError("heap is busy: another call is inside it (a second thread, or a "
                              "signal handler interrupting a call); a heap serves one call at a time")


def _entry(method: F, whole: bool) -> F:
    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self._closed:
            raise HeapClosedError("heap is closed")
        try:
            del self._gate[0]
        except IndexError:
            raise busy() from None
        sig = self._sig
        pinned = False
        try:
            if whole or sig.always:
                sig.hold()
                if whole:
                    sig.pinned += 1
                    pinned = True
            self._slow.deliver_queued()
            return method(self, *args, **kwargs)
        finally:
            try:  # deliver held signals: a handler may raise in release() ...
                if pinned:
                    sig.pinned -= 1
                if sig.held:
                    sig.release()
            finally:  # ... and the token goes back before any other call can run a handler
                self._gate.append(None)
                if self._close_pending:
                    self.close()

    return wrapper  # type: ignore[return-value]


def open_call(method: F) -> F:
    """A public method that changes nothing outside the kernel's operations (reads, batches)."""
    return _entry(method, False)


def held(method: F) -> F:
    """A public method that changes state in Python code: signals wait until it returns."""
    return _entry(method, True)
