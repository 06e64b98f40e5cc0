"""Signal deferral: a signal's Python handler waits while the heap changes state in Python.

CPython runs a signal's Python handler (``KeyboardInterrupt`` for SIGINT, a test's SIGALRM
handler) in the main thread, between two bytecodes.  The heap's slow path, and the whole of the
plain-Python kernel, change several structures per operation, so a handler that raises in the
middle would leave them half updated.  :class:`SignalDeferral` *holds* signals from the moment
the heap starts such a change until the operation is complete: every Python-level handler is
swapped for a recorder (``signal.signal``), and :meth:`~SignalDeferral.release` puts the
handlers back and runs the recorded ones -- so they run, and may raise, at an operation
boundary.  (Blocking the signals with ``pthread_sigmask`` is not enough: numpy's BLAS threads
leave them unblocked, the kernel delivers them there, and CPython still runs the handler in the
main thread at its next bytecode.)

Who holds and releases (the "operation boundary" is where :meth:`release` runs):

* the slow path's state-changing callbacks hold on entry (a handler already due runs at the
  callback's first bytecode, before anything changed); holding sets the kernel's
  ``C_NEXT_TICK`` to 0, so the kernel stops at the start of its next operation -- the same
  compare it makes for the policy clock, nothing more per row -- and releases (``op_boundary``);
  the heap releases at the end of every call, and ``replay`` at the end of its batch;
* heap methods that are not on the hot path (``realloc``, ``calloc``, ``trim``, ``tick``,
  ``close`` ...) hold for their whole call;
* with the plain-Python kernel (``always``) every call holds from its start, and a batch opens a
  delivery window every :data:`WINDOW_OPS` rows.

Inside one batch (``Heap.replay``, :meth:`~SignalDeferral.batch`) the slow path holds
thousands of times; swapping every handler at each hold and back at each boundary (a scan of
the signal table, two ``signal()`` calls and a stop of the kernel) cost ~8 us a time, a fifth
of a churn run.  So in a batch the recorders, once installed, *stay* installed, and the hold
stays on with the kernel running free (``C_NEXT_TICK`` is not touched) until a signal comes.
The recorder itself then sets ``C_DEFERRED`` and ``C_NEXT_TICK`` to 0: the kernel stops at the
start of its next operation and the release there puts every handler back and runs it -- the
same operation boundary as without a batch.  (A recorder runs when CPython next executes Python
code -- the next slow-path callback, or the batch's end -- exactly when the real handler would
have run.)  The batch's end puts the handlers back.  While a batch runs, ``signal.getsignal``
called from a policy or an event sink shows the recorder.

Only the main thread runs Python signal handlers, so a heap used from another thread needs no
holding (and ``signal.signal`` only works in the main thread): there it is a no-op.  Exact on
CPython 3.11+; 3.10 checks for handlers before almost every bytecode, so a handler can still land
in the few bytecodes between a call's entry and its first hold.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

from ..constants import C_DEFERRED, C_NEXT_TICK, C_TICK_DUE

try:  # the C module under ``signal`` (whose wrappers convert to enums: ~10x slower per call)
    import _signal as _sig  # type: ignore[import-not-found, unused-ignore]
except ImportError:  # pragma: no cover - other interpreters
    _sig = signal  # type: ignore[no-redef, unused-ignore]

__all__ = ["DEFERRED_SIGNALS", "WINDOW_OPS", "SignalDeferral"]

_NOT_DEFERRED = {getattr(signal, n) for n in ("SIGKILL", "SIGSTOP", "SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL",
                                               "SIGTRAP", "SIGSYS", "SIGABRT") if hasattr(signal, n)}
#: The signals whose Python handlers wait while the heap changes state (the asynchronous ones).
DEFERRED_SIGNALS = tuple(sorted(int(s) for s in frozenset(signal.valid_signals()) - _NOT_DEFERRED))
#: Plain-Python kernel: rows between two delivery windows of a batch.
WINDOW_OPS = 64
_main_thread = threading.main_thread
_PLAIN = (int, type(None))  # what _signal.getsignal returns for SIG_DFL / SIG_IGN / no Python handler


class SignalDeferral:
    """The signal handlers of one heap's calls.  ``counters`` is the kernel's counter array:
    while signals are held ``C_DEFERRED`` is 1 and ``C_NEXT_TICK`` 0 (the kernel calls
    :meth:`op_boundary` at its next operation); released, ``C_NEXT_TICK`` is ``C_TICK_DUE``."""

    __slots__ = ("held", "pinned", "always", "_saved", "_pending", "_ctr", "_window", "_batch", "_swapped")

    def __init__(self, counters: Any, always: bool = False) -> None:
        self.held = False
        self.pinned = 0  # > 0 inside a heap call that holds for its whole length
        self.always = always
        self._saved: dict[int, Any] = {}  # signal -> the handler a recorder stands in for
        self._pending: list[int] = []
        self._ctr = counters
        self._window = WINDOW_OPS
        self._batch = 0  # > 0 inside batch(): the recorders stay installed between holds
        self._swapped = False  # the recorders are installed

    def _record(self, signum: int, frame: Any) -> None:
        self._pending.append(signum)
        self._ctr[C_DEFERRED] = 1  # the kernel stops at its next operation's start: op_boundary
        self._ctr[C_NEXT_TICK] = 0

    def hold(self) -> None:
        """Swap every Python-level handler for a recorder (no-op if held, or off the main
        thread; in a batch whose recorders are in place, only the flag is set and the kernel
        runs on).  A handler that was already due may still run (and raise) in here: then
        everything is put back."""
        if self.held or threading.current_thread() is not _main_thread():
            return
        self.held = True
        if self._swapped and not self.always:
            return  # a batch's recorders are in place: the kernel need not stop until one records
        self._ctr[C_DEFERRED] = 1
        self._ctr[C_NEXT_TICK] = 0
        if self._swapped:
            return
        self._swapped = True
        try:
            # one C-level pass over the table (SIG_DFL / SIG_IGN are ints, None: no Python
            # handler), then only the signals with a Python handler: ~2x faster than a loop
            rec = self._record
            table = zip(DEFERRED_SIGNALS, map(_sig.getsignal, DEFERRED_SIGNALS), strict=True)
            for s, h in [(s, h) for s, h in table if type(h) not in _PLAIN]:
                if callable(h) and h != rec:
                    self._saved[s] = h
                    _sig.signal(s, rec)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """Put the handlers back and run the recorded signals' handlers (they may raise: this
        is the operation boundary).  No-op while a whole-call hold (``pinned``) is in force."""
        if self.pinned:
            return
        if self._batch and not self._pending:  # in a batch, nothing recorded: recorders stay
            self.held = False
            self._ctr[C_DEFERRED] = 0
            self._ctr[C_NEXT_TICK] = self._ctr[C_TICK_DUE]
            return
        self._swapped = False
        saved, pending = self._saved, self._pending
        self._saved, self._pending = {}, []
        err: BaseException | None = None
        for s, h in saved.items():
            try:
                _sig.signal(s, h)
            except BaseException as exc:  # a handler that was due ran (and raised): restore all first
                err = err or exc
        self.held = False
        self._ctr[C_DEFERRED] = 0
        self._ctr[C_NEXT_TICK] = self._ctr[C_TICK_DUE]
        if err is not None:
            raise err
        for s in pending:
            h = saved.get(s)
            if callable(h):
                h(s, sys._getframe(0))

    def batch(self) -> _Batch:
        """``with sig.batch():`` around a kernel batch: recorders installed by a hold inside
        it stay until its end (module docstring), where the handlers go back.  Nests."""
        return _Batch(self)

    def op_boundary(self) -> None:
        """The kernel is between two operations and signals are held: deliver them now (the
        plain-Python kernel: every :data:`WINDOW_OPS` operations, then hold again)."""
        if not self.always:
            self.release()
            return
        self._window -= 1
        if self._window <= 0 and not self.pinned:
            self._window = WINDOW_OPS
            self.release()
            self.hold()


class _Batch:
    """The context manager of :meth:`SignalDeferral.batch`."""

    __slots__ = ("_sig",)

    def __init__(self, sig: SignalDeferral) -> None:
        self._sig = sig

    def __enter__(self) -> None:
        self._sig._batch += 1

    def __exit__(self, *exc: object) -> None:
        sig = self._sig
        sig._batch -= 1
        if not sig._batch and sig._swapped and not sig.held:
            sig.release()  # put the handlers back (and run any recorded since the last hold)
