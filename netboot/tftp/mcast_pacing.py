"""RFC 2090: the lead rotates, and the stream goes no faster than its listeners keep up.

Why it works this way (mcast_pace.py has the feedback rule, docs/multicast.md "Pace"):
the stream goes at the master's pace and listeners cannot say they fall behind.  So
every member that answered (in a held session, all: the hold ends with a probe every
member answers; without one, iPXE's non-masters never speak and the first master leads
alone) and was there when the stream began leads ``pace_blocks``
blocks in turn (OACK mc=0 to the one leaving the role, OACK mc=1 to the next, which
ACKs its first gap), and what the new leader lost while it listened sets the least gap
between group blocks.  A master's request that comes before that gap has passed is held
until it has (the held request is served from the timer).  A member that never
answered is never offered the role here (a spoofed requester gets nothing more); a
leader chosen by the election's own rules (the last one finished, was skipped, is
deaf) is followed as it is, its catch-up not taken for losses.
"""

from __future__ import annotations

from netboot.tftp.mcast_master import MasterStream
from netboot.tftp.mcast_member import WAITING, Member


class Pacing(MasterStream):
    def _pace_ack(self, master: Member, now: float) -> None:
        """The master's ACK moved the stream on: learn from it, and pass the lead on when due."""
        pace = self.pace
        if self.mtftp or not pace.active:
            return
        if not pace.started:
            pace.start(now, self.group_packets, [m.addr for m in self.members.values()])
        if pace.leader != master.addr:
            pace.follow(master.addr, head=0)
        report = pace.advance(self.pending, now, self.group_packets)
        if report is not None:
            self._emit(
                "mcast_pace", client=master.text, lost=report.lost, heard=report.heard,
                spacing_ms=round(report.spacing * 1000, 3), gap_ms=round(report.gap_after * 1000, 3),
            )  # fmt: skip
        if pace.turn_over:
            self._pass_the_lead(master, now)

    def _pass_the_lead(self, master: Member, now: float) -> None:
        """The next member of the stream's start, in join order, leads; none: keep leading.

        A master that is not one of them (a late joiner promoted for what it lacks) keeps
        the lead, and so does any master on the pass's last turn: a listener that already
        has every block is silent, and offering it the lead would stall the stream.
        """
        pace = self.pace
        pace.acks = 0
        turns = sorted(
            (m for m in self.members.values()
             if (m is master or (m.state == WAITING and m.answered)) and m.joined_at <= pace.epoch),
            key=lambda m: m.order,
        )  # fmt: skip
        if len(turns) < 2 or master not in turns or self.sent_ahead + pace.blocks >= self.blocks:
            return
        chosen = turns[(turns.index(master) + 1) % len(turns)]
        head = self.sent_ahead
        pace.stopped_leading(master.addr, now, self.group_packets)
        self._hand_over(master, chosen, now)
        pace.follow(chosen.addr, head)

    def _defer_for_pace(self, master: Member, block: int, now: float) -> bool:
        """Hold the master's request for ``block`` until ``pace.gap`` after the last group
        block, so the stream never outruns the listeners' pace (a repeat is not held)."""
        gap = self.pace.gap
        due = self.last_group_send + gap
        if gap <= 0 or block <= self.pending or now >= due:
            return False
        held = self.held_request
        if held is None or block > held[1]:
            self.held_request = (master.addr, block)
        self.held_until = due
        return True

    def _release_held(self, now: float) -> None:
        """The gap has passed: the held request is served as if it had just come."""
        held, self.held_request, self.held_until = self.held_request, None, None
        if held is None:
            return
        master = self.master
        if master is None or master.addr != held[0] or master.promoted_at is not None:
            return  # the lead changed meanwhile: its own ACKs drive the stream now
        self._serve_master(master, held[1], now)

    def _serve_master(self, master: Member, block: int, now: float) -> None:
        """The master asks for ``block``: the stream goes on, and the pace learns from it."""
        before = self.pending
        self._master_ack(master, block, now)
        if self.master is master and self.pending > before:
            self._pace_ack(master, now)

    def _hand_over(self, old: Member, new: Member, now: float) -> None:
        """Demote ``old`` to a listener and offer ``new`` the lead (it ACKs its first gap)."""
        old.state = WAITING
        old.led = False  # a listener again: what it lacks is what went out before now
        old.listening_since = now
        self._send_oack(old, now, master=False, full=False)
        self._make_master(new, now, reason="turn", repeat_offer=True)
        self._promote(new, now)
