"""Events the TFTP cores report through ``next_event()``.

Why plain (name, fields) pairs: the server forwards them unchanged to
:class:`netboot.events.EventLog` after adding who/what (client, file, session), so
the names here are exactly the names in ``docs/events.md``.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class CoreEvent(NamedTuple):
    name: str
    fields: dict[str, Any]


#: Names emitted by the cores (the server adds ``request``).
OACK = "oack"
DATA = "data"
ACK = "ack"
RETRANSMIT = "retransmit"
ERROR = "error"
DONE = "done"
