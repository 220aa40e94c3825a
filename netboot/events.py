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

import json
import sys
import threading
import time
from typing import IO, Any


class EventLog:
    """Append-only JSON-lines writer.  ``None`` path means events are discarded."""

    def __init__(self, path: str | None, server: str) -> None:
        self.server = server
        self._lock = threading.Lock()
        self._out: IO[str] | None
        if path is None:
            self._out = None
        elif path == "-":
            self._out = sys.stdout
        else:
            self._out = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115

    @property
    def enabled(self) -> bool:
        return self._out is not None

    def emit(self, event: str, **fields: Any) -> None:
        if self._out is None:
            return
        record: dict[str, Any] = {"ts": round(time.time(), 6), "server": self.server, "event": event}
        record.update(fields)
        line = json.dumps(record, separators=(",", ":"), default=str)
        with self._lock:
            self._out.write(line + "\n")

    def close(self) -> None:
        if self._out is not None and self._out is not sys.stdout:
            self._out.close()
        self._out = None


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
