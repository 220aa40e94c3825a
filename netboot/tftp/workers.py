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

from netboot.serverlog import reopen_logs
from netboot.stopping import ignore_stop_signals

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

    Why signals are taken synchronously (``sigwaitinfo``) rather than by a Python handler:
    with a handler, a SIGTERM that came while the workers were being forked was now and then
    caught at the C level and never acted on, and the supervisor and its workers went on
    serving (2 of 3 CI runs failed
    tests/tftp/test_cli.py::test_sigterm_while_the_workers_start_stops_every_worker; here
    2 runs of it in about 290, with Python 3.11.2: the supervisor's /proc status showed the
    handler installed, nothing pending or blocked, and it had forked two more workers).
    Here the stop signals stay blocked from ``main``'s first line (netboot/stopping.py), so
    one that comes at any moment is pending until this loop takes it, and SIGCHLD is taken
    the same way to reap and restart workers.  Each worker puts back the default actions
    and unblocks them before it runs.
    """
    children: dict[int, int] = {}
    born: dict[int, float] = {}
    stopping = False
    supervisor = os.getpid()
    waited = {*_FORWARDED, signal.SIGCHLD}
    signal.pthread_sigmask(signal.SIG_BLOCK, waited)

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:
            for signum in _FORWARDED:
                signal.signal(signum, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, waited)
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

    def forward(signum: int) -> None:
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

    def reap() -> int:
        status = 0
        while children:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                children.clear()
                break
            if pid == 0:
                break
            index = children.pop(pid, -1)
            code = os.waitstatus_to_exitcode(wait_status)
            lived = time.monotonic() - born.pop(pid, 0.0)
            if not stopping and index >= 0:
                log.error("worker %d (pid %d) exited with %d; starting a new one", index, pid, code)
                if lived < 1.0:
                    time.sleep(1.0)  # it fails at start (see the log above): do not spin
                spawn(index)
            elif code not in (0, -signal.SIGTERM, -signal.SIGINT):
                status = 1
        return status

    # Move everything imported so far out of the garbage collector's sight: its passes in
    # the workers would otherwise write to (and so un-share) every page of those objects.
    gc.collect()
    gc.freeze()
    for index in range(count):
        taken = signal.sigtimedwait(_FORWARDED, 0)  # a stop that came meanwhile: fork no more
        if taken is not None:
            forward(taken.si_signo)
        if stopping:
            break
        spawn(index)
    status = 0
    while children:
        info = signal.sigwaitinfo(waited)
        if info.si_signo == signal.SIGCHLD:
            status |= reap()
        else:
            forward(info.si_signo)
    # Every worker is gone: more signals are ignored, not left to the interpreter's exit
    # (which puts back the default action, and a late SIGTERM then ends us with -15).
    ignore_stop_signals()
    return status
