"""The group stream the master's ACKs clock: lost-block repair, deaf masters, the window.

Why it works this way (docs/multicast.md has the long form):

* The master's ACK n is cumulative (iPXE ACKs the first gap of its bitmap) and asks
  for DATA n+1, which goes to the group; with ``--mcast-window`` more blocks may be in
  flight ahead of it (mcast_window.py).
* Lost-block repair is ours, not the client's: if the master has not acknowledged the
  group copy within its retransmission timeout, the block is repeated to the master by
  unicast.  The timeout comes from the master's measured round trips (RFC 6298,
  :mod:`netboot.tftp.rto`, sampled on blocks it acknowledged without a repair; 10 ms at
  least, 1 s at most, ``repair_after`` before the first sample), so a lost block costs
  tens of milliseconds on a fast path and a slow master is not repaired (and taken for
  deaf) needlessly.  ``adaptive_repair=False`` keeps the fixed ``repair_after``.  The
  master never times out, waiting clients keep hearing the stream, and the evidence for
  deafness comes for free:
* A master that needed the unicast copy for ``deaf_blocks`` blocks in a row, and has
  never acknowledged a block it got from the group, cannot hear the group (the stock-ROM
  bug).  One that has heard the group needs ``deaf_blocks_after_hearing`` in a row: on a
  lossy link (5 % each way: one block in ten needs a repair) three in a row came about
  once per thousand blocks, and every 2 MiB MTFTP fetch was taken for deaf and finished
  by unicast (issue 18's lab run: at block 518, 6.6 % by the group).  It is served by unicast from the session
  socket in parallel (mcast_unicast.py), ``multicast_not_received`` records the
  evidence, and the group passes to the next client.
"""

from __future__ import annotations

from netboot.tftp.mcast_leaving import Leaving
from netboot.tftp.mcast_member import UNICAST, Member


class MasterStream(Leaving):
    def _repair_wait(self, master: Member) -> float:
        tuning = self.tuning
        if master.rtt is not None:
            wait = master.rtt.rto
        else:
            wait = tuning.retransmit if self.pending_via == "unicast" else tuning.repair_after
        if self.mtftp and master.answered:
            # iPXE's MTFTP client reopens after 0.25 s without a packet, and a reopen falls
            # back to plain TFTP over a stale size: a backed-off repair must not outwait it.
            # (A requester that never answered is not held so: it costs what it sent.)
            wait = min(wait, tuning.mtftp_gap)
        return wait

    def _deaf_after(self, master: Member) -> int:
        """Repairs in a row that prove ``master`` deaf (fewer for one never heard on the group)."""
        heard = master.group_acked > 0
        return self.tuning.deaf_blocks_after_hearing if heard else self.tuning.deaf_blocks

    def _master_ack(self, master: Member, block: int, now: float) -> None:
        """The master asks for ``block`` (its ACK is the block before its first gap)."""
        if block == self.pending:
            if self.sent_ahead > self.pending:
                # Later blocks are in flight and each brings the same ACK: it lost this one.
                self._stuck_acks += 1
                if self._stuck_acks == 2:
                    self._window_sign("the master's ACKs stopped at a gap", now)
                    self._repair(master, now)
                return
            # The master still lacks the pending block: repeat it (not a duplicate within RTT).
            if now - self.pending_sent >= self._repair_wait(master) / 2:
                self._repair(master, now)
            return
        self._stuck_acks = 0
        if self.pending and block > self.pending:
            if self.pending_via in ("group", "both"):
                master.consecutive_repairs = 0
                if self.pending_via == "group":
                    master.group_acked += 1
                if master.rtt is not None:  # sent once, answered: a round trip (Karn)
                    master.rtt.sample(now - self.pending_sent)
            elif master.consecutive_repairs >= self._deaf_after(master):
                self._declare_deaf(master, block, now)
                return
            self.window.acknowledged(min(block, self.sent_ahead + 1) - self.pending)
        if block > self.sent_ahead:
            self._send_group(block, now)
            self.sent_ahead = block
        self.pending, self.pending_sent, self.pending_via = block, self.block_last_group[block], "group"
        last = min(self.blocks, block + self.window.blocks - 1)
        for ahead in range(self.sent_ahead + 1, last + 1):
            self._send_group(ahead, now)
        self.sent_ahead = max(self.sent_ahead, last)

    def _window_sign(self, reason: str, now: float) -> None:
        """Evidence that a client does not keep up with the window (mcast_window.py)."""
        if self.tuning.window <= 1:
            return
        before = self.window.blocks
        self.window.fell_behind()
        self._emit("mcast_window", blocks=self.window.blocks, before=before, reason=reason,
                   closed=self.window.closed)

    def _check_behind(self, member: Member, first_gap: int, now: float) -> None:
        """A client asks for a block that went out in a window while it listened: it fell behind."""
        if not (1 <= first_gap <= self.blocks) or first_gap <= member.behind_from:
            return
        first_sent = self.block_first_group[first_gap]
        if not self.block_windowed[first_gap] or first_sent < member.joined_at:
            return
        if first_gap + self.window.blocks > self.sent_ahead and member is self.master:
            return  # still in flight to this master: its own gap is handled by its ACKs
        member.behind_from = first_gap
        self._window_sign(f"{member.text} missed block {first_gap}, sent in a window while it listened", now)

    def _repair(self, master: Member, now: float) -> None:
        if self.pending_via in ("group", "both"):
            master.consecutive_repairs += 1
            master.repairs += 1
        if master.rtt is not None:
            master.rtt.timed_out()
        self._send_unicast(master, self.pending, now)
        if self.mtftp and self.answered_once:
            self._send_group(self.pending, now)  # MTFTP listeners reopen after 0.25 s of silence
        self.pending_sent, self.pending_via = now, "unicast"

    def _master_timer(self, master: Member, now: float) -> None:
        if now - master.last_heard >= self.tuning.master_silence:
            self._skip(master, now, reason=f"master silent for {now - master.last_heard:.1f} s")
            return
        if now >= self.pending_sent + self._repair_wait(master):  # as get_timer computes it
            self._repair(master, now)

    def _declare_deaf(self, member: Member, block: int, now: float) -> None:
        self._emit(
            "multicast_not_received",
            client=member.text,
            block=block - 1,
            blocks_repaired_in_a_row=member.consecutive_repairs,
            repairs=member.repairs,
            reason=(
                f"the last {member.consecutive_repairs} blocks sent to {self.group.group}:{self.group.port} "
                "were acknowledged only after a unicast copy: serving this client by unicast"
            ),
        )
        member.state = UNICAST
        if self.master is member:
            self.master = None
            self.pending = 0
        member.pending = 0
        self._unicast_ack(member, block - 1, now)
        self._elect(now)
