"""What the server did with one failed VM, in one line a CI log can carry.

Why: a CI log is often all a reader has (the run's artifacts stay on the runner).  A
train VM that failed through the server's doing (refused, given up, never answered)
can only be explained from the server's events, so the failed VM's own events are
told in order, with their times, ports (a new port is a reopen) and reasons.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from netboot.events import as_server_events

#: Per-block events of the unicast core: one per DATA or ACK, not a story.
BLOCK_EVENTS = frozenset({"data", "retransmit", "ack"})
#: Fields worth a word, in this order, when an event has them.
DETAIL_FIELDS = ("master", "late", "stream_block", "from_block", "other_file", "unicast_bytes", "reason")
#: Events kept from the start and from the end of a long story.
HEAD, TAIL = 3, 9


def server_story(server_events: Sequence[Mapping[str, Any]], client_ip: str, limit: int = 900) -> str:
    """The server's events for ``client_ip``, ``+seconds event file :port (details)``,
    times from its first timed event ("" when the server logged nothing for it)."""
    mine = [
        e for e in as_server_events(server_events) if e.client_ip == client_ip and e.event not in BLOCK_EVENTS
    ]
    if not mine:
        return ""
    start = next((e.ts for e in mine if e.ts), 0.0)
    words = [_word(e, start) for e in mine]
    if len(words) > HEAD + TAIL:
        words = [*words[:HEAD], f"… {len(words) - HEAD - TAIL} more …", *words[-TAIL:]]
    text = "; ".join(words)
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


def _word(event: Any, start: float) -> str:
    file = str(event.get("file", "")).rsplit("/", 1)[-1]
    port = f":{event.client[1]}" if event.client is not None else ""
    details = []
    for name in DETAIL_FIELDS:
        value = event.get(name)
        if value is None or value is False or value == "":
            continue
        text = str(value)
        details.append(name if value is True else f"{name}={text[:90]}")
    options = event.get("options")
    if event.event == "request" and isinstance(options, Mapping):
        details.append("options " + ",".join(options) if options else "no options")
    said = f" ({', '.join(details)})" if details else ""
    when = f"+{event.ts - start:.2f} " if event.ts else ""  # atftpd's log lines carry no time
    return f"{when}{event.event} {file}{port}{said}"
