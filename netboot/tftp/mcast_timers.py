"""A multicast session's clock: repairs, offers repeated or timed out, keep-alives.

Why the session keeps talking to silent clients: iPXE non-masters never ACK, and iPXE
gives up after 15.75 s without a packet.  So waiting RFC 2090 clients get their OACK
(mc=0, no address) again on one session schedule, every ``keepalive`` seconds to those
with no unicast for as long (a deaf waiting client would otherwise hit that limit), and
once a client has answered, an MTFTP group never stays quiet longer than ``mtftp_gap``
while a client is unfinished (an iPXE MTFTP listener reopens after 0.25 s of silence
and then falls back to plain TFTP).
"""

from __future__ import annotations

from netboot.tftp.mcast_member import MASTER, UNICAST, WAITING, Member
from netboot.tftp.mcast_pacing import Pacing


class Timers(Pacing):
    def get_timer(self) -> float | None:
        if self.finished:
            return None
        deadline = self._next_tick
        if self.master is not None and self.pending and self.held_request is None:
            deadline = min(deadline, self.pending_sent + self._repair_wait(self.master))
        if self._keepalive_due_possible():
            deadline = min(deadline, self.last_group_send + self.tuning.mtftp_gap)
        for _member, due in self._tail_deadlines():
            deadline = min(deadline, due)
        if self.hold_until is not None:
            deadline = min(deadline, self.hold_until)
        if self.held_until is not None:
            deadline = min(deadline, self.held_until)
        if self.linger_until is not None:
            deadline = min(deadline, self.linger_until)
        return deadline

    def handle_timer(self, now: float) -> None:
        if self.finished:
            return
        if self.held_until is not None and now >= self.held_until:
            self._release_held(now)
        master = self.master
        if master is not None and self.pending and self.held_request is None:
            self._master_timer(master, now)
        if self._keepalive_due_possible() and now >= self.last_group_send + self.tuning.mtftp_gap:
            self._mtftp_keepalive(now)
        for member, due in self._tail_deadlines():
            if due <= now:
                block = member.pending if member.state == UNICAST else member.have + 1
                self._send_unicast(member, block, now)
        if self.hold_until is not None and now >= self.hold_until:
            self._check_hold(now)
        if self.linger_until is not None and now >= self.linger_until:
            self._give_up_quiet(now)
            return
        if now >= self._next_tick:
            self._next_tick = now + self.tuning.tick
            self._housekeeping(now)

    def _listeners_waiting(self) -> bool:
        return any(m.state in (WAITING, MASTER) for m in self.members.values())

    def _keepalive_due_possible(self) -> bool:
        """MTFTP: the group must not go quiet (listeners reopen after 0.25 s of silence).

        Only once a client has answered: until then nobody is known to listen, and group
        DATA for requesters that never answer is traffic an attacker can ask for.
        """
        return (
            self.mtftp
            and self.answered_once
            and not self.group_closed
            and self.last_group_send >= 0
            and self._listeners_waiting()
        )

    def _mtftp_keepalive(self, now: float) -> None:
        """Group DATA now, so no listener's 0.25 s timer expires; unanswered probes again."""
        for member in self.members.values():
            if member.state == WAITING and member.promoted_at is not None and member.contacted:
                self._send_unicast(member, member.have + 1, now)
        master = self.master
        if master is not None and master.promoted_at is not None:
            self._send_unicast(master, master.have + 1, now)
        if self.group_closed:
            return
        self._send_group(self.pending or self.last_group_block or 1, now)
        self.keepalives += 1

    def _housekeeping(self, now: float) -> None:
        self._master_offer_timer(now)
        if self.probing_until is not None and now >= self.probing_until:
            self.probing_until = None
        for member in list(self.members.values()):
            self._waiting_timer(member, now)
        self._keepalive_round(now)
        if self.master is None and self.probing_until is None:
            self._elect(now)
        self._check_finished(now)

    def _master_offer_timer(self, now: float) -> None:
        """A master that has not answered its offer: offered again, or skipped at the timeout."""
        tuning = self.tuning
        if self.master is not None and self.master.promoted_at is not None:
            if now - self.master.promoted_at >= tuning.promote_timeout:
                reason = f"no answer to promotion within {tuning.promote_timeout} s"
                self._skip(self.master, now, reason=reason)
            elif self.master.repeat_offer and now - self.master.last_unicast >= tuning.retransmit:
                if self.mtftp:
                    self._send_unicast(self.master, self.master.have + 1, now)
                else:
                    self._send_oack(self.master, now, master=True, full=True)

    def _waiting_timer(self, member: Member, now: float) -> None:
        """A waiting client's offer timed out or repeated, or (MTFTP) its ACKs stopped."""
        if member.state != WAITING:
            return
        tuning = self.tuning
        offered = member.promoted_at
        if offered is not None and now - offered >= tuning.promote_timeout:
            if self.mtftp and not member.acking and member.contacted:
                self._release(member, now)
            else:
                self._skip(member, now, reason="no answer to a promotion probe")
            return
        repeat_due = offered is not None and now - member.last_unicast >= tuning.retransmit
        if not self.mtftp and repeat_due and member.repeat_offer:
            self._send_oack(member, now, master=True, full=True)  # a lost probe must not lose it
            return
        if self.mtftp and repeat_due and not member.acking:
            # An unanswered probe again, even while another master keeps the group busy
            # (then no keepalive repeats it): a lost probe must not get an unfinished
            # listener released, which then falls back to plain TFTP (CI, 2026-11-28).
            self._send_unicast(member, member.have + 1, now)
            return
        if self.mtftp and member.acking and now - member.last_heard >= tuning.master_silence:
            # Quiet, not gone: a guest the host did not schedule ACKs again when it runs.
            member.acking = False
            quiet = now - member.last_heard
            self._emit("mcast_client_quiet", client=member.text,
                       reason=f"stopped acknowledging the group stream {quiet:.1f} s ago; "
                       "a listener again, probed at the end of the pass")

    def _keepalive_round(self, now: float) -> None:
        """Silent unicast clients given up; waiting RFC 2090 clients kept from iPXE's silence limit."""
        tuning = self.tuning
        keepalive_round = now >= self._next_keepalive
        if keepalive_round:
            self._next_keepalive = now + tuning.keepalive
        for member in self.members.values():
            if member.state == UNICAST:
                if now - member.last_heard >= tuning.unicast_silence:
                    self._give_up(member, now, f"no ACK for {now - member.last_heard:.0f} s")
            elif (
                keepalive_round
                and member.state == WAITING
                and not self.mtftp
                and not member.rfc_style
                and member.promoted_at is None
                and now - member.last_unicast >= tuning.keepalive
            ):
                self._send_oack(member, now, master=False, full=False)
