"""Which ping does a NACK answer?  A per-client ledger of pings out, matched in order.

Why it matters: a flow window (``window.py``) lets more data out only when the client
confirms what it took, and an iPXE NACK says nothing about which ping it answers.  iPXE
answers each ping as it takes it, after every frame queued before it, so answers come in
the order the pings went out: the oldest ping out is the one answered.  Two things break
that order, and each must err towards confirming too little, never too much (too much
lets the window overrun a receiver's ring and makes blocks still on their way look lost,
which the server then sends again):

* a ping lost on the way: later answers are then each taken for the ping before theirs
  (too little) until the lost one is old enough (``STALE``) to be dropped;
* a ping sent again while the first was only late (a guest descheduled for longer than
  the ping timeout): both are answered.  A ping sent again with no data between is
  recorded as a copy of the first, and after the first answer no new ping goes out for
  a short ``holdoff``: an answer in it is the copy's, so it can never be taken for the
  answer to a later ping.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

#: A ping unanswered this long (seconds) is taken for lost once a later one is out.
STALE = 1.0
#: After the first answer to a ping sent more than once, no new ping for at least this
#: long (seconds), and four of the client's fastest round trips: its copies' answers come
#: right behind the first.
MIN_HOLDOFF = 0.005
#: A ping the stream waits for is asked again after this long (seconds), or four of the
#: client's fastest round trips, doubling for each copy: a lost ping must not stop the
#: stream for long, and the copies of a ping to a descheduled guest must not fill its ring.
MIN_RETRY = 0.005
MAX_RETRY = 0.2


@dataclass
class PingOut:
    seq: int  # the data sequence number the ping followed
    sent: float  # when the first copy went out
    copies: int = 1
    last: float = 0.0  # when the latest copy went out
    answered_at: float | None = None  # when the first answer came, while copies' answers may follow


class PingLedger:
    """Pings sent to one client and not yet answered, oldest first."""

    def __init__(self) -> None:
        self._out: deque[PingOut] = deque()
        #: The shortest round trip this client answered in (0: none yet).
        self.min_rtt = 0.0

    def __len__(self) -> int:
        return sum(1 for p in self._out if p.answered_at is None)

    @property
    def frames(self) -> int:
        """Ping datagrams (copies included) that may still sit in the client's ring."""
        return sum(p.copies for p in self._out)

    def retry_at(self) -> float | None:
        """When to ask again if no answer came (None: nothing out)."""
        newest = self.newest
        if newest is None:
            return None
        base = max(MIN_RETRY, 4 * self.min_rtt)
        return newest.last + min(MAX_RETRY, base * float(2 ** (newest.copies - 1)))

    def _holdoff(self) -> float:
        return max(MIN_HOLDOFF, 4 * self.min_rtt)

    def expire(self, now: float) -> None:
        """A holdoff that has ended ends the wait for its copies' answers."""
        self._expire(now)

    def _expire(self, now: float) -> None:
        while self._out and self._out[0].answered_at is not None:
            if now < self._out[0].answered_at + self._holdoff():
                return
            self._out.popleft()  # the copies' answers did not come: they were lost

    def may_send(self, now: float) -> bool:
        """False during a holdoff (see the module docstring)."""
        self._expire(now)
        return not (self._out and self._out[0].answered_at is not None)

    def sent(self, seq: int, now: float) -> None:
        """A ping went out after data datagram ``seq`` (call ``may_send`` first)."""
        last = self._out[-1] if self._out else None
        if last is not None and last.seq == seq and last.answered_at is None:
            last.copies += 1  # nothing sent since: the same question again
            last.last = now
        else:
            self._out.append(PingOut(seq, now, last=now))

    def answer(self, now: float) -> PingOut | None:
        """The client NACKed: the ping it answers, or None if it answers none (unsolicited,
        or a copy's answer after the first)."""
        self._expire(now)
        while len(self._out) > 1 and self._out[0].answered_at is None and now - self._out[0].sent > STALE:
            self._out.popleft()  # lost: its answer would have come long ago
        if not self._out:
            return None
        head = self._out[0]
        if head.answered_at is not None:
            head.copies -= 1
            if head.copies <= 0:
                self._out.popleft()
            return None
        head.copies -= 1
        if head.copies > 0:
            head.answered_at = now
        else:
            self._out.popleft()
        rtt = now - head.sent
        self.min_rtt = rtt if not self.min_rtt else min(self.min_rtt, rtt)
        return head

    @property
    def oldest(self) -> float | None:
        """When the oldest unanswered ping went out."""
        return next((p.sent for p in self._out if p.answered_at is None), None)

    @property
    def newest(self) -> PingOut | None:
        return next((p for p in reversed(self._out) if p.answered_at is None), None)

    @property
    def holdoff_until(self) -> float | None:
        """While a holdoff lasts, its end."""
        head = self._out[0] if self._out else None
        if head is None or head.answered_at is None:
            return None
        return head.answered_at + self._holdoff()

    def clear(self) -> None:
        self._out.clear()
