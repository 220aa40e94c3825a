"""Holding an RFC 2090 session's first stream until a wave of clients has asked.

Why: RFC 2090 sends a late joiner the rest of the running stream, and later, as
master, everything it missed: a train of four iPXE VMs whose payload requests
arrive a few seconds apart (TCG boots do not keep step) put 1.7-1.9 x the payload
on the group in the lab (docs/matrix.md).  Held, the session answers every request
with a non-master OACK (iPXE then waits silently, kept alive by the session's
OACK keep-alive) and elects the first master only when ``min_clients`` clients
asked or ``max_wait`` seconds passed since the first.  udpcast's
``--min-clients``/``--max-wait`` and pyslamd's options of the same names do the
same.  PXE MTFTP sessions are never held: an iPXE MTFTP listener reopens after
0.25 s without a group packet and then falls back to plain TFTP.
"""

from __future__ import annotations

from dataclasses import dataclass

#: A request from a client of the file's last session, within this long of its end, is
#: a straggler of that wave (it failed or reopened) and is served at once; any other
#: request opens a new wave (held again).  iPXE gives up 15.75 s after its last packet,
#: so a client of the last wave is back within that time or not at all (pyslamd's rule;
#: pyatftpd also knows the last session's clients, so a new rack is held at once).
NEW_WAVE_AFTER = 16.0


@dataclass(frozen=True)
class Hold:
    """``--mcast-min-clients`` / ``--mcast-max-wait``."""

    min_clients: int = 1
    max_wait: float = 30.0

    def __post_init__(self) -> None:
        if self.min_clients < 1:
            raise ValueError("--mcast-min-clients must be at least 1")
        if self.max_wait < 0:
            raise ValueError("--mcast-max-wait must not be negative")

    @property
    def active(self) -> bool:
        return self.min_clients > 1 and self.max_wait > 0


class WaveClock:
    """When each file's last session ended and whom it served: a new wave or a straggler?"""

    def __init__(self, hold: Hold) -> None:
        self.hold = hold
        self._ended: dict[object, tuple[float, frozenset[str]]] = {}

    def hold_for(self, key: object, client_ip: str, now: float) -> Hold | None:
        """The hold for a new session of ``key`` opened by ``client_ip`` (None: serve at once)."""
        if not self.hold.active:
            return None
        ended, clients = self._ended.get(key, (float("-inf"), frozenset()))
        if client_ip in clients and now - ended < NEW_WAVE_AFTER:
            return None
        return self.hold

    def session_ended(self, key: object, now: float, client_ips: frozenset[str]) -> None:
        self._ended[key] = (now, client_ips)
