"""Structured protocol events, one JSON object per line (``--events FILE``).

Why: tests and the lab assert on what a server did (joins, promotions, fallbacks,
retransmissions, completions) and must never scrape human log text for it.

Every line has at least ``ts`` (Unix time, float seconds), ``server`` (the program
that wrote it) and ``event``.  Other fields depend on the event; common ones:

=============  =============================================================
``client``     ``"ip:port"`` of the peer
``file``       the requested file name, as the client sent it
``session``    an id shared by the events of one transfer or multicast session
``block``      a TFTP block number (on the wire) or a SLAM packet number
``bytes``      payload bytes (``done``: the whole transfer)
``seconds``    elapsed seconds (``done``)
``reason``     why an error, fallback or skip happened
=============  =============================================================

The event names are listed in ``docs/events.md``.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sys
import threading
import time
from typing import Any

log = logging.getLogger("netboot.events")


class EventLog:
    """Append-only JSON-lines writer.  ``None`` path means events are discarded.

    A line that cannot be written (a full disk, a file system gone read-only) is
    counted, never raised: events are evidence about the service, and losing them
    must not cost a client its reply.  The first failure is logged at once, the
    count again at :meth:`close`.
    """

    def __init__(self, path: str | None, server: str) -> None:
        self.server = server
        self.path = path
        #: Lines that could not be written.
        self.dropped = 0
        self._lock = threading.Lock()
        self._stdout = path == "-"
        #: A file is written unbuffered with O_APPEND, one write per line: nothing piles up
        #: in a buffer while the disk is full, and workers sharing the file never interleave.
        self._fd = -1
        if path is not None and not self._stdout:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    @property
    def enabled(self) -> bool:
        return self._fd >= 0 or self._stdout

    def emit(self, event: str, **fields: Any) -> None:
        if not self.enabled:
            return
        record: dict[str, Any] = {"ts": round(time.time(), 6), "server": self.server, "event": event}
        record.update(fields)
        line = json.dumps(record, separators=(",", ":"), default=str) + "\n"
        with self._lock:
            try:
                if self._stdout:
                    sys.stdout.write(line)
                    sys.stdout.flush()
                elif self._fd >= 0:
                    data = line.encode("utf-8")
                    if os.write(self._fd, data) != len(data):
                        raise OSError(errno.ENOSPC, "short write (file system full?)")
            except (OSError, ValueError) as exc:  # ValueError: stdout was closed under us
                self._count_failure(exc)

    def _count_failure(self, exc: Exception) -> None:
        self.dropped += 1
        if self.dropped == 1:
            reason = getattr(exc, "strerror", None) or str(exc)
            log.warning(
                "cannot write events to %s (%s): serving goes on; events that cannot be written "
                "are counted and the count is logged at stop",
                self.path,
                reason,
            )

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
            self._fd = -1
            self._stdout = False
        if self.dropped:
            log.warning("%d event(s) could not be written to %s", self.dropped, self.path)


def read_events(path: str) -> list[dict[str, Any]]:
    """Parse an events file; a half-written last line (server still running) is skipped."""
    events = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return events
