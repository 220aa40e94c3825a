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
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
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
