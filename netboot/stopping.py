"""How a server stops: the first SIGTERM (or SIGINT) stops it, more are ignored.

Why a module: a supervisor forwards one SIGTERM and ``kill`` of the process group sends
another, so a second one often lands while the server is already closing.  Left to
asyncio, closing a loop that still holds its handlers puts back the default action, and
the late signal killed the exit (status -15) or, once the wake-up fd was closed, printed
an EBADF traceback.  Both servers (and pyatftpd's worker supervisor) call this as soon as
they stop serving.

The other end: a SIGTERM that comes before a server has its handlers.  From the moment a
pidfile exists an admin (or a test) may send one, and a daemon started by a shell or a CI
runner that ignores SIGTERM inherits that disposition: such a signal was lost and left
pyatftpd's supervisor and workers serving.  So the servers hold the stop signals (blocked,
hence pending, never ignored or fatal) from their first line until their handlers are in
place, and then release them (pyatftpd's worker supervisor instead keeps them blocked and
takes them with ``sigwaitinfo``: netboot/tftp/workers.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator

#: The signals the servers act on (SIGHUP reopens the logs; once stopping, it is moot).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def ignore_stop_signals(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Ignore ``STOP_SIGNALS`` from now on; with ``loop``, take its handlers off first
    (still inside it, so that closing it has none to put back)."""
    # Blocked meanwhile: taking a loop's handler off puts back the default action, and a
    # signal between that and SIG_IGN would still end the process.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        for signum in STOP_SIGNALS:
            if loop is not None:
                loop.remove_signal_handler(signum)
            signal.signal(signum, signal.SIG_IGN)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextlib.contextmanager
def held_stop_signals() -> Iterator[None]:
    """Keep ``STOP_SIGNALS`` pending until :func:`release_stop_signals`; the mask as before on exit.

    A server's ``main`` runs inside it.  Why blocked rather than handled: nothing can be
    stopped yet, and a handler run in the middle of writing the pidfile or forking would
    leave half of it behind.  Linux keeps a blocked signal pending even when its disposition
    is "ignore", so an inherited SIG_IGN cannot swallow it either.  Why restore on exit: a
    caller in the same process (a test calling ``main``) keeps its own Ctrl-C.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def release_stop_signals() -> None:
    """Deliver the held stop signals to the handlers just installed (and any later ones)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
