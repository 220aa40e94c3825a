"""How a server stops: the first SIGTERM (or SIGINT) stops it, more are ignored.

Why a module: a supervisor forwards one SIGTERM and ``kill`` of the process group sends
another, so a second one often lands while the server is already closing.  Left to
asyncio, closing a loop that still holds its handlers puts back the default action, and
the late signal killed the exit (status -15) or, once the wake-up fd was closed, printed
an EBADF traceback.  Both servers (and pyatftpd's worker supervisor) call this as soon as
they stop serving.
"""

from __future__ import annotations

import asyncio
import signal

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
