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
from collections.abc import Iterable, Iterator, Mapping
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


class ServerEvent(Mapping[str, Any]):
    """One line of an events file: typed where every reader needs it, a mapping for the rest.

    Why a class: the lab reads these files in many places, and each used to parse the
    client's ``"ip:port"`` by hand.  ``event``, ``ts``, ``server``, ``client`` and
    ``client_ip`` are parsed once here; event-specific fields stay reachable as
    ``event["block"]`` or ``event.get("block")``, and ``dict(event)`` is the original line.
    """

    __slots__ = ("_fields", "ts", "server", "event", "client", "client_ip")

    def __init__(self, fields: Mapping[str, Any]) -> None:
        self._fields = dict(fields)
        ts = self._fields.get("ts", 0.0)
        self.ts = float(ts) if isinstance(ts, int | float) and not isinstance(ts, bool) else 0.0
        self.server = str(self._fields.get("server", ""))
        self.event = str(self._fields.get("event", ""))
        self.client = parse_address(self._fields.get("client"))
        self.client_ip = self.client[0] if self.client is not None else None

    def __getitem__(self, key: str) -> Any:
        return self._fields[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        return f"ServerEvent({self._fields!r})"

    def to_line(self) -> str:
        """The event as one JSON line (for an excerpt file of one boot's events)."""
        return json.dumps(self._fields, separators=(",", ":"), default=str)


def parse_address(value: object) -> tuple[str, int] | None:
    """``"ip:port"`` (IPv6 as ``"[addr]:port"`` or ``"addr:port"``) as (ip, port), else None."""
    if not isinstance(value, str) or ":" not in value:
        return None
    host, _, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return (host, int(port)) if host and port.isdigit() else None


def read_events(path: str | os.PathLike[str]) -> list[ServerEvent]:
    """Parse an events file; a broken or half-written line (server still running) is skipped."""
    events = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "event" in record:
                events.append(ServerEvent(record))
    return events


def as_server_events(events: Iterable[Mapping[str, Any]]) -> list[ServerEvent]:
    """Events from any source (a file, atftpd's log, a test) in the one typed model."""
    return [e if isinstance(e, ServerEvent) else ServerEvent(e) for e in events]


def events_text(events: Iterable[Mapping[str, Any]]) -> str:
    """Events as JSON lines, the format of ``--events``."""
    return "".join(
        (e.to_line() if isinstance(e, ServerEvent) else json.dumps(dict(e), default=str)) + "\n"
        for e in events
    )
