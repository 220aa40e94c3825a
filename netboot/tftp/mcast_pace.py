"""How fast an RFC 2090 group stream may go: learned from what listeners lost.

Why: RFC 2090 listeners are silent, so the only pace the server sees is the master's
(it sends block n+1 when the master ACKs block n), and a listener that cannot take
frames that fast loses them without a word.  In the lab's tftm train (four TCG guests
on two cores) the listeners' losses came from the host not scheduling a guest for tens
of milliseconds while the stream went on, not from one slow NIC: with the slowest guest
leading, the fastest one still lost 27 % of the blocks, while a stream held to one block
per 2-4 ms carried 1.00-1.08 x the file (docs/findings.md, "RFC 2090 listeners
overflow").  A fixed pace would be wrong on real hardware, where a LAN takes thousands of
blocks a second, so the session learns it:

* The lead rotates: each member that answered and was there when the stream began leads
  ``blocks`` blocks in turn (mcast_pacing.py).  A new leader's first ACK is its first
  gap, and the ACKs it needs to reach the stream's head are the blocks it lost while it
  listened: that is the feedback RFC 2090 otherwise lacks, and those blocks go to the
  group again, so every listener that lost them gets them too.
* The gap between group blocks follows that feedback (AIMD, as TCP's window does): a
  listener that lost more than ``LOSS_TARGET`` of what it should have heard widens the
  gap by half (with no gap yet: to 1.5 x the spacing it heard); one that lost nothing
  narrows it by a tenth, down to none at all (the master's ACKs alone clock the stream).

This module is the bookkeeping; it sends nothing and reads no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Address = tuple[str, int]

#: Losing more than this share of the blocks it should have heard slows the stream.
LOSS_TARGET = 0.01
#: The widest gap the feedback sets: 50 blocks a second (70 KB/s at 1432 bytes).
MAX_GAP = 0.02
#: A gap narrowed below this is dropped: the master's round trip is slower anyway.
MIN_GAP = 0.0002


@dataclass
class Listening:
    """Since when a member has listened (it stopped leading, or the stream began)."""

    packets: int
    since: float


@dataclass
class LossReport:
    """One new leader's losses while it listened: what the gap was set from."""

    leader: Address
    lost: int
    heard: int
    spacing: float
    gap_before: float
    gap_after: float


@dataclass
class PaceControl:
    #: Blocks each member leads in turn (0: no rotation, the first to answer leads).
    blocks: int
    #: The current least gap between group blocks, in seconds.
    gap: float = 0.0
    started: bool = False
    #: When the stream began: members that joined later lack its start and do not lead
    #: in turn (leading would rewind the stream for everyone).
    epoch: float = 0.0
    leader: Address | None = None
    #: The leader's advancing ACKs so far, and the stream's head when it took over.
    acks: int = 0
    head: int = 0
    catchup: int = 0
    judged: bool = True
    listening: dict[Address, Listening] = field(default_factory=dict)
    reports: list[LossReport] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.blocks > 0

    def start(self, now: float, packets: int, members: list[Address]) -> None:
        """The stream began: everyone there listens from now."""
        self.started = True
        self.epoch = now
        for addr in members:
            self.listening[addr] = Listening(packets, now)

    def follow(self, leader: Address, head: int) -> None:
        """``leader`` leads from now; ``head`` is the newest block the group has had (0: the
        lead changed for another reason, and its catch-up says nothing)."""
        self.leader = leader
        self.acks = 0
        self.head = head
        self.catchup = 0
        self.judged = head == 0 or leader not in self.listening

    def stopped_leading(self, addr: Address, now: float, packets: int) -> None:
        self.listening[addr] = Listening(packets, now)

    def advance(self, block: int, now: float, packets: int) -> LossReport | None:
        """The leader asks for ``block`` next; once it has caught up with the head it had
        when it took over, its losses set the gap (returned, for the event)."""
        self.acks += 1
        if self.judged:
            return None
        if block <= self.head:
            self.catchup += 1
            return None
        self.judged = True
        assert self.leader is not None
        listened = self.listening[self.leader]
        heard = max(1, packets - listened.packets - self.catchup)
        spacing = (now - listened.since) / heard
        before = self.gap
        if self.catchup > LOSS_TARGET * heard:
            # No gap yet: the stream went at the spacing it heard, and that was too fast.
            self.gap = min(MAX_GAP, (self.gap or spacing) * 1.5)
        else:
            self.gap = self.gap / 1.1 if self.gap / 1.1 >= MIN_GAP else 0.0
        report = LossReport(self.leader, self.catchup, heard, spacing, before, self.gap)
        self.reports.append(report)
        return report

    @property
    def turn_over(self) -> bool:
        return self.acks >= self.blocks
