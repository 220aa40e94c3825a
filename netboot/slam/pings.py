"""Which ping does a NACK answer?  A per-client ledger of pings out, matched in order.

Why it matters: a flow window (``window.py``) lets more data out only when the client
confirms what it took, and an iPXE NACK says nothing about which ping it answers.  iPXE
answers every ping as it takes it, after every frame queued before it, so answers come in
the order the pings went out: the oldest ping out is the one answered.  A ping asked
again after a timeout is simply one more ping: if the first was only late, both are
answered, in order.  What breaks the order is a ping that is lost: every later answer
would then be taken for the ping before its own, confirming too little.  The NACK itself
shows it: the client holds every block before the first gap it names (``floor``: the
first copy of the block just before that gap, or a later copy it provably took,
``copies.py``), so a ping that went out before that data was lost, unless the data
overtook it (see ``GHOST_AGE``).

Erring the other way would be worse: confirming data still on its way lets the window
overrun a receiver's ring, and makes blocks still on their way look lost.  (A first
version that sent a lost-looking ping "again" as a copy of the first took a copy's late
answer for the next ping's, dozens of times a second in the lab; one that trusted the
floor at once took the real-socket tests' overtaken pings for lost, with the same effect.)
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

#: A ping unanswered this long (seconds) is taken for lost once a later one is out.
STALE = 1.0
#: A ping that followed data the client has since shown it holds is dropped: it was lost,
#: or this answer is its own and the data overtook it (then the data itself confirms
#: more).  With a later ping out, dropping the wrong one would give this answer to the later
#: ping, so only once the ping is this old (seconds) or the data went out more than
#: ``REORDER`` datagrams after it: on a busy host a ping may reach the client after data
#: sent after it (the real-socket tests saw it overtaken by up to about 30 datagrams, a few
#: milliseconds).
GHOST_AGE = 0.02
REORDER = 48
#: A ping the stream waits for is asked again after this long (seconds), or four of the
#: client's fastest round trips, doubling with each retry: a lost ping must not stop the
#: stream for long, nor the retries to a descheduled guest fill its ring.
MIN_RETRY = 0.005
MAX_RETRY = 0.2


@dataclass(frozen=True)
class PingOut:
    seq: int  # the data sequence number the ping followed
    sent: float


class PingLedger:
    """Pings sent to one client and not yet answered, oldest first."""

    def __init__(self) -> None:
        self._out: deque[PingOut] = deque()
        #: The shortest round trip this client answered in (0: none yet).
        self.min_rtt = 0.0
        #: Pings asked again with no data between (the retry backs off with them).
        self.retries = 0
        #: Pings found lost.
        self.lost = 0

    def __len__(self) -> int:
        return len(self._out)

    def sent(self, seq: int, now: float) -> None:
        """A ping went out after data datagram ``seq``; the same question again (nothing sent
        since the last ping) is a retry, and the retries back off until new data goes out."""
        if self._out and self._out[-1].seq == seq:
            self.retries += 1
        else:
            self.retries = 0
        self._out.append(PingOut(seq, now))

    def answer(self, now: float, floor: int = 0) -> PingOut | None:
        """The client NACKed: the ping it answers (the oldest out not found lost), or None if
        none is out (unsolicited).  ``floor``: the client took data datagram ``floor`` before
        answering (see the module docstring)."""
        while self._stale(now) or self._ghost(now, floor):
            self._out.popleft()
            self.lost += 1
        if not self._out:
            return None
        ping = self._out.popleft()
        rtt = now - ping.sent
        self.min_rtt = rtt if not self.min_rtt else min(self.min_rtt, rtt)
        return ping

    def _stale(self, now: float) -> bool:
        return len(self._out) > 1 and now - self._out[0].sent > STALE

    def _ghost(self, now: float, floor: int) -> bool:
        head = self._out[0] if len(self._out) > 1 else None
        if head is None or head.seq >= floor:
            return False
        return now - head.sent >= GHOST_AGE or floor - head.seq > REORDER

    @property
    def in_ring(self) -> int:
        """Pings taken to sit in the client's ring: one if any is out.  Counting every
        unanswered one shut a small window for good once a few were lost (a 5 %-loss
        client's window of 2 held two lost pings and no data, until it stalled)."""
        return min(len(self._out), 1)

    def retry_at(self) -> float | None:
        """When to ask again if no answer came (None: nothing out)."""
        if not self._out:
            return None
        base = max(MIN_RETRY, 4 * self.min_rtt)
        return self._out[-1].sent + min(MAX_RETRY, base * float(2**self.retries))

    @property
    def newest(self) -> PingOut | None:
        return self._out[-1] if self._out else None

    @property
    def oldest(self) -> float | None:
        """When the oldest unanswered ping went out."""
        return self._out[0].sent if self._out else None

    def clear(self) -> None:
        self._out.clear()
