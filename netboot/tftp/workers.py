"""Pre-forked workers (``--workers N``) sharing the listening sockets.

Why: CPython runs one transfer loop per core at most, and concurrent transfers
are CPU-bound on the per-datagram overhead.  N processes wait on the *same*
inherited listening socket; whichever is idle first takes a request and owns
that transfer's socket for its whole life.  ``--maxthread`` stays a global limit
through a counter in shared memory.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from types import FrameType

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


def run_workers(count: int, run_one: Callable[[int], int]) -> int:
    """Fork ``count`` workers running ``run_one(index)``; forward signals; restart crashes."""
    children: dict[int, int] = {}
    born: dict[int, float] = {}
    stopping = False

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = 1
            try:
                code = run_one(index)
            except BaseException:
                log.exception("worker %d failed", index)
            finally:
                os._exit(code)
        children[pid] = index
        born[pid] = time.monotonic()

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    for index in range(count):
        spawn(index)
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, forward)
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
            spawn(index)
        elif code not in (0, -signal.SIGTERM, -signal.SIGINT):
            status = 1
    return status
