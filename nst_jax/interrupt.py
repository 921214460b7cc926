"""Stopping on a signal at a safe moment.

The command line installs :func:`install` before it imports anything heavy: SIGINT
(Ctrl-C), SIGTERM and SIGHUP then only note the request, and the run stops at its next
safe point (:func:`check`: after a step's results reached the host, between two scales or
two frames), saves what it has and exits with :func:`exit_code`. Raising inside XLA's
compiler or a running program instead crashed the process (signal 11). A second signal
while the first is pending stops at once. Library users who install nothing keep Python's
own KeyboardInterrupt, and :func:`check` does nothing for them.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager

SIGNALS = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}  # 128 + the signal's number

_pending: int | None = None
_process = False  # install() was called: the process is the command, and may leave by os._exit


def _note(signum, frame) -> None:
    global _pending
    if _pending is not None:  # asked twice: stop now, saving nothing more
        sys.stderr.write("interrupted again: stopped at once; nothing more was saved\n")
        sys.stderr.flush()
        os._exit(SIGNALS.get(_pending, 130))
    _pending = signum


def install() -> None:
    """Note SIGINT, SIGTERM and SIGHUP instead of acting on them (main thread only; a
    signal that is ignored, as SIGHUP under nohup, stays ignored)."""
    global _process
    _process = True
    _take()


def _take() -> dict:
    """Our handler for each signal still at its default; {signal: the handler it had}."""
    taken = {}
    if threading.current_thread() is threading.main_thread():
        for sig in SIGNALS:
            if signal.getsignal(sig) in (signal.SIG_DFL, signal.default_int_handler):
                taken[sig] = signal.signal(sig, _note)
    return taken


@contextmanager
def installed():
    """:func:`install` for the block only (a command run inside another program, as a
    test's): the handlers it took are given back and a signal it noted is forgotten."""
    taken = _take()
    try:
        yield
    finally:
        for sig, handler in taken.items():
            signal.signal(sig, handler)
        if taken:
            reset()


def leave(code: int) -> None:
    """End the command with ``code``. After an interruption, in the console script, by
    ``os._exit`` once the output streams are flushed: every file is written by then, and
    the interpreter's teardown while XLA's threads still run is what crashed."""
    if _process and _pending is not None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    sys.exit(code)


def settle() -> None:
    """The command is over: from now on SIGINT, SIGTERM and SIGHUP are ignored where we
    took them. Python's teardown gives them back their default action, so a signal in it
    killed a process whose files were all written (exit -15 instead of 0)."""
    if threading.current_thread() is threading.main_thread():
        for sig in SIGNALS:
            if signal.getsignal(sig) is _note:
                signal.signal(sig, signal.SIG_IGN)


def only_at_safe_points() -> bool:
    """Whether no signal can raise in this thread between two safe points: it is not the
    main thread, or each signal's handler is ours, ignored or the default (none raises)."""
    return threading.current_thread() is not threading.main_thread() or all(
        signal.getsignal(sig) in (_note, signal.SIG_IGN, signal.SIG_DFL, None) for sig in SIGNALS)


def in_command() -> bool:
    """Whether the process is the command (:func:`install` was called): it ends when the
    command does, so a thread left waiting in it cannot outlive the run."""
    return _process


def requested() -> bool:
    """Whether a signal asked the run to stop."""
    return _pending is not None


def check() -> None:
    """Raise KeyboardInterrupt if a signal asked the run to stop (a safe point)."""
    if _pending is not None:
        raise KeyboardInterrupt


def exit_code() -> int:
    """The exit status of an interrupted command: 128 + the signal's number (130 for
    Ctrl-C, 143 for SIGTERM, 129 for SIGHUP); 130 when no signal was noted."""
    return SIGNALS.get(_pending, 130)


def reset() -> None:
    """Forget a noted signal (tests)."""
    global _pending
    _pending = None
