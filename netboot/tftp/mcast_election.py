"""Who leads a multicast session: the master, and how the next one is found.

Why it works this way (docs/multicast.md has the long form):

* The master is the oldest unfinished client that answers.  Its ACK n is cumulative
  (iPXE ACKs the first gap of its bitmap) and asks for DATA n+1, which goes to the
  group (mcast_master.py).
* iPXE non-masters are silent, even when they finish.  So when the master is done:
  members that answered before and joined after the oldest block last went out on the
  group (they lack something) are promoted one at a time (OACK mc=1, repeated every
  ``retransmit``, skipped after ``promote_timeout`` and retried later); everyone else
  waiting is probed all at once (OACK mc=1 to each, repeated likewise): those that
  finished stay silent, the first that answers becomes master.  An answered client
  that ignores ``max_probes`` promotions, or an unanswered one that ignores one round,
  is assumed gone (mcast_leaving.py).
* MTFTP has no OACK: a promotion is any unicast DATA (iPXE then ACKs its first gap),
  and when the master finishes, clients that ACK what they hear continue at once.
* ``hold`` (RFC 2090 only, mcast_hold.py): no master is elected until enough clients
  asked or the wait is over; until then every client is a waiting non-master.
"""

from __future__ import annotations

from netboot.tftp.mcast_member import GONE, MASTER, WAITING, Member
from netboot.tftp.mcast_unicast import UnicastService
from netboot.tftp.rto import RttEstimator


class Election(UnicastService):
    def _master_unanswered(self) -> bool:
        """The master is a candidate that has not ACKed yet (or there is none)."""
        return self.master is None or not self.master.answered

    def _make_master(self, member: Member, now: float, reason: str, repeat_offer: bool = False) -> None:
        self.master = member
        member.state = MASTER
        member.last_heard = now
        member.promoted_at = now  # until its first ACK; skipped (or dropped) if it never answers
        member.repeat_offer = repeat_offer or self.mtftp
        self._measure(member)
        self._new_stream()
        self._emit("mcast_master", client=member.text, reason=reason, from_block=member.have + 1)

    def _new_stream(self) -> None:
        """A new master: nothing of its stream is in flight yet; the window starts at 1."""
        self.pending = 0
        self.sent_ahead = 0
        self._stuck_acks = 0
        self.window.restart()

    def _measure(self, member: Member) -> None:
        """Give a new master its round-trip estimator (kept if it leads again)."""
        tuning = self.tuning
        if tuning.adaptive_repair and member.rtt is None:
            # The plain RFC 6298 estimate: the trains' repair timing was measured without
            # the unicast cap (rto.py), so it is not applied here unmeasured.
            member.rtt = RttEstimator(
                tuning.repair_floor, tuning.repair_ceiling, tuning.repair_after, cap_factor=None
            )

    def _check_hold(self, now: float) -> None:
        """End the hold when enough clients asked or the wait is over; then elect the master.

        Why clients are counted by address: a repeated RRQ is the same client; one that
        gave up and reopened on a new port counts again, which can only end the hold early.
        """
        if self.hold is None or self.hold_until is None:
            return
        enough = len(self.members) >= self.hold.min_clients
        if not enough and now < self.hold_until:
            return
        waited = self.hold.max_wait - (self.hold_until - now)
        self.hold_until = None
        self._emit("gather_end", clients=len(self.members), reason="min_clients" if enough else "max_wait",
                   seconds=round(waited, 3))
        self._elect(now)

    def _elect(self, now: float) -> None:
        """Pick the next master once the current one is finished, skipped or deaf."""
        if self.master is not None or self.probing_until is not None or self.hold_until is not None:
            return
        if self.group_closed:
            self._unicast_tail(now)
            return
        waiting = [m for m in self.members.values() if m.state == WAITING]
        if not waiting:
            self._check_finished(now)
            return
        waiting.sort(key=lambda m: (m.probes, m.order))
        alive = [m for m in waiting if m.acking and now - m.last_heard < self.tuning.promote_timeout]
        if self.mtftp and alive:
            self._continue_from(alive[0], now)
            return
        if self.mtftp:
            waiting = self._drop_uncontacted(waiting, now)
            if not waiting:
                self._check_finished(now)
                return
        self._offer_role(waiting, now)

    def _continue_from(self, chosen: Member, now: float) -> None:
        """MTFTP: clients that ACK every block they hear: continue at once from the oldest one's gap."""
        self._make_master(chosen, now, reason="next")
        self._send_group(chosen.have + 1, now)
        self._send_unicast(chosen, chosen.have + 1, now)
        self.pending, self.pending_sent, self.pending_via = chosen.have + 1, now, "unicast"

    def _offer_role(self, waiting: list[Member], now: float) -> None:
        """Promote a client known to lack something, or else probe every waiting one."""
        needy = [m for m in waiting if m.answered and self._may_lack(m)]
        if needy and not self.mtftp:
            chosen = needy[0]
            self._make_master(chosen, now, reason="promoted", repeat_offer=True)
            self._promote(chosen, now)
            self._emit("mcast_promote", client=chosen.text, attempts=chosen.probes)
            return
        # The rest never answered, heard a whole pass, or (MTFTP) listened silently: those
        # that finished stay silent, the others answer with their first gap.  Ask all at
        # once, so a silent one delays nobody; an offer still standing is not made twice.
        waiting = [m for m in waiting if m.promoted_at is None]
        if not waiting:
            return
        self.probing_until = now + self.tuning.promote_timeout
        for member in waiting:
            member.promoted_at = now
            member.repeat_offer = True
            self._promote(member, now)
        self._emit("mcast_probe", clients=len(waiting), attempt=waiting[0].probes + 1)

    def _drop_uncontacted(self, waiting: list[Member], now: float) -> list[Member]:
        """MTFTP: requesters that asked once, heard nothing from us and never answered.

        Probing them would send one unicast DATA each to addresses nobody vouched for; a
        real iPXE client in their place asked again within 0.25 s and was answered then.
        Unless the group carried the stream after it asked: one told to wait because the
        candidate had not answered yet (``mcast_wait``), whose candidate then led the pass,
        listened to it as any later requester does, and asks nothing more.  It may lack what
        went out before it joined (block 1, milliseconds earlier), so it is probed like
        those; dropped, it timed out after the pass and fell back over a stale size.
        """
        kept = []
        for member in waiting:
            if member.contacted or member.answered or self.last_group_send > member.joined_at:
                kept.append(member)
                continue
            member.state = GONE
            self._emit("mcast_client_gone", client=member.text, attempts=0,
                       reason="asked once while another requester held the pass, never again")
        return kept

    def _promote(self, member: Member, now: float) -> None:
        """OACK mc=1 (RFC 2090), or any unicast DATA (MTFTP: iPXE then ACKs its first gap)."""
        if self.mtftp:
            self._send_unicast(member, member.have + 1, now)
            if member is self.master:
                self.pending, self.pending_sent, self.pending_via = member.have + 1, now, "unicast"
        else:
            self._send_oack(member, now, master=True, full=True)
