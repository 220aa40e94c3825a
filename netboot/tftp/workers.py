"""Pre-forked workers (``--workers N``) sharing the listening sockets.

Why: CPython runs one transfer loop per core at most, and concurrent transfers
are CPU-bound on the per-datagram overhead.  N processes wait on the *same*
inherited listening socket; whichever is idle first takes a request and owns
that transfer's socket for its whole life.  ``--maxthread`` stays a global limit
through a counter in shared memory.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from types import FrameType

from netboot.serverlog import reopen_logs
from netboot.stopping import ignore_stop_signals, release_stop_signals

log = logging.getLogger("pyatftpd")


class SharedSlots:
    """A transfer counter shared by forked workers (a semaphore-guarded int)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._count = multiprocessing.Value("i", 0)

    def acquire(self) -> bool:
        with self._count.get_lock():
            if self._count.value >= self.limit:
                return False
            self._count.value += 1
            return True

    def release(self) -> None:
        with self._count.get_lock():
            self._count.value = max(0, self._count.value - 1)

    def in_use(self) -> int:
        return int(self._count.value)


class WorkerLoad:
    """Per-worker transfer counts in shared memory, so requests go to the least busy worker.

    Why: all workers wait on one socket and the first to wake takes the request;
    left alone, one process could end up with most transfers of a burst and its
    GIL would serialize them while the other core idles.  A worker busier than
    the least busy one steps back for a moment and lets that one read the request.
    """

    def __init__(self, workers: int) -> None:
        self._counts = multiprocessing.Array("i", workers, lock=False)
        self.index = 0

    def publish(self, active: int) -> None:
        self._counts[self.index] = active

    def should_take(self) -> bool:
        counts = self._counts
        return bool(counts[self.index] <= min(counts))


_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """Make the kernel send SIGTERM to this worker when the supervisor dies.

    Why: a supervisor killed with SIGKILL cannot forward anything, and orphaned
    workers would keep serving the port (and holding files) with nobody to stop
    them.  The ``getppid`` check closes the window in which the parent died
    before the request was made.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the forwarded signals still work
        pass
    if os.getppid() != parent:
        os._exit(0)


def run_workers(count: int, run_one: Callable[[int], int]) -> int:
    """Fork ``count`` workers running ``run_one(index)``; forward signals; restart crashes.

    The forwarding handlers are installed before the first fork (a stop signal held
    until then, see netboot/stopping.py, ends the supervisor before it forks), and the
    forwarded signals are blocked around each fork: a SIGTERM arriving while the
    workers start is then either forwarded to every worker or delivered after
    the new one is in ``children``, never lost (which left workers running after
    their supervisor had exited).
    """
    children: dict[int, int] = {}
    born: dict[int, float] = {}
    stopping = False
    supervisor = os.getpid()

    def spawn(index: int) -> None:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, _FORWARDED)
        try:
            pid = os.fork()
            if pid == 0:
                for signum in _FORWARDED:
                    signal.signal(signum, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_SETMASK, previous)
                code = 1
                try:
                    _die_with_parent(supervisor)
                    code = run_one(index)
                except BaseException:
                    log.exception("worker %d failed", index)
                finally:
                    os._exit(code)
            children[pid] = index
            born[pid] = time.monotonic()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        if signum == signal.SIGHUP:
            reopen_logs()  # logrotate: each process reopens its own --logfile
        else:
            stopping = True
        for pid in children:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    for signum in _FORWARDED:
        signal.signal(signum, forward)
    release_stop_signals()  # one held since main() started: forwarded (to nobody) and nothing forks
    # Move everything imported so far out of the garbage collector's sight: its passes in
    # the workers would otherwise write to (and so un-share) every page of those objects.
    gc.collect()
    gc.freeze()
    for index in range(count):
        if stopping:
            break
        spawn(index)
    status = 0
    while children:
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        index = children.pop(pid, -1)
        code = os.waitstatus_to_exitcode(wait_status)
        lived = time.monotonic() - born.pop(pid, 0.0)
        if not stopping and index >= 0:
            log.error("worker %d (pid %d) exited with %d; starting a new one", index, pid, code)
            if lived < 1.0:
                time.sleep(1.0)  # it fails at start (see the log above): do not spin
            if not stopping:
                spawn(index)
        elif code not in (0, -signal.SIGTERM, -signal.SIGINT):
            status = 1
    # Every worker is gone: more signals are ignored, not left to the interpreter's exit
    # (which puts back the default action, and a late SIGTERM then ends us with -15).
    ignore_stop_signals()
    return status
