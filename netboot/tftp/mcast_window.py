"""How many blocks a multicast session keeps in flight ahead of its master (``--mcast-window``).

Why a window at all: lock-step sends one block per master round trip, so on real
hardware a pass is bound by the round trip (issue 18: 7 MB/s at 0.2 ms), and more
blocks in flight would go faster.  Why it starts and usually stays at 1: every block
goes to every listener, and a listener that takes frames in more slowly than they come
(a small receive ring, a guest that is not scheduled) loses the surplus, needs those
blocks again later, and then the group carries more and the pass ends later (issue 18:
a fixed 8-block window on TCG got the master done 1.4 x faster, left three listeners
behind, and put 2.025 x the file on the group).  Listeners are silent, so the session
only learns that they fall behind from what it can see:

* the master's ACKs: iPXE ACKs every DATA with its first gap, so two ACKs that do not
  move while later blocks are in flight mean the master lost a block (``gap``);
* MTFTP listeners that ACK what they hear, and a client that becomes master later and
  asks for a block that went out while it listened, in a window (``behind``).

The size grows by one block per window of blocks the master acknowledged in order
(additive increase), halves on every such sign (multiplicative decrease), and after
``CLOSE_AFTER`` signs stays at 1 for the rest of the session.  The default limit is 1
(docs/multicast.md, "More than one block in flight"): lock-step, exactly as before.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Signs that listeners fall behind after which the session stays in lock-step.
CLOSE_AFTER = 3


@dataclass
class StreamWindow:
    #: ``--mcast-window``: the most blocks in flight (1: lock-step).
    limit: int = 1
    size: float = 1.0
    signs: int = 0
    closed: bool = False

    @property
    def blocks(self) -> int:
        if self.closed or self.limit <= 1:
            return 1
        return max(1, min(self.limit, int(self.size)))

    def acknowledged(self, count: int) -> None:
        """The master acknowledged ``count`` more blocks in order."""
        if not self.closed and self.size < self.limit:
            self.size = min(float(self.limit), self.size + count / self.size)

    def fell_behind(self) -> None:
        """A sign that some client does not keep up with the window: halve it."""
        self.signs += 1
        self.size = max(1.0, self.size / 2)
        if self.signs >= CLOSE_AFTER:
            self.closed = True
            self.size = 1.0

    def restart(self) -> None:
        """A new master: its round trip is unknown, start again at lock-step."""
        self.size = 1.0
