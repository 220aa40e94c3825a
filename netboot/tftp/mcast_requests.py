"""Requests (RRQs) joining a multicast session, and how each is answered.

Why it works this way (docs/multicast.md has the long form):

* A repeated RRQ from a known client is a retransmission: it gets the answer for its
  current role again, nothing else changes.
* A request's source address can be spoofed, and iPXE non-masters are silent, so a
  member is only known to be there once it has *answered* (any datagram to the session
  socket, which a blind spoofer cannot know; mcast_acks.py).  What an unanswered member
  costs is bounded by what it sent (issue 20: 30 silent requests drew 2,535 OACKs over
  90 s; atftpd 39): while no member has answered as master, every new requester is
  offered the master role at once (OACK mc=1); the first to ACK becomes master and
  later ACKs get ``,,0``.  A real iPXE client whose OACK was lost repeats its RRQ
  (answered again, one OACK per request), one whose ACK was lost repeats the ACK, so
  nothing is sent again on a timer; a candidate that has not answered after
  ``promote_timeout`` is dropped (``mcast_client_gone``) and costs nothing more.  A real
  client therefore never waits behind silent ones.
* At most ``max_members`` members are active at once; the service serves more by
  unicast (a flood of requests must not grow one session without bound).
* ``mtftp=True`` is PXE MTFTP: no OACK, 512-byte blocks.  A request that arrives while
  the group stream flows is left to the stream: the requester hears group DATA within
  ``listen_window`` and stays a silent listener, as MTFTP intends (an iPXE client that
  gets any unicast DATA becomes a master and ACKs every block it hears until it
  finishes: with 199 late joiners that is 199 ACKs per block, and in the lab that storm
  preceded NICs that stopped transmitting).  A request in a pause of a running pass
  (a master has answered, the group is quiet) is answered once on the group, which
  every requester hears: requests are answered once per pass, not once per request
  (issue 20: 500 silent MTFTP requests drew 4,414 DATA; atftpd 6).  With no answered
  master, the first requester is the candidate (unicast DATA, repeated every
  ``retransmit`` up to ``promote_timeout``); others get nothing until they ask again
  (iPXE repeats an unanswered RRQ after 0.25 s), and a repeated RRQ from a client that
  heard nothing is answered at once by unicast (so no iPXE client waits out its MTFTP
  timeouts and falls back to plain TFTP over a stale size, where atftpd's zero-filled
  images come from).  When the master finishes, the next client is promoted at once by
  unicast DATA (it then ACKs its first gap), before listeners' 0.25 s timers expire.
"""

from __future__ import annotations

from netboot.tftp.mcast_election import Election
from netboot.tftp.mcast_member import DONE, GONE, RELEASED, WAITING, Address, Member


class Requests(Election):
    def active_members(self) -> int:
        return sum(1 for m in self.members.values() if m.state not in (DONE, GONE, RELEASED))

    def accepting(self) -> bool:
        """New requests join this session (not one that only lingers for a quiet client)."""
        return not self.finished and self.linger_until is None

    def add_request(
        self, addr: Address, acknowledged: list[tuple[str, str]], now: float, may_listen: bool = True
    ) -> bool:
        """An RRQ for this session from ``addr`` (``acknowledged``: its OACK options, in order).

        ``may_listen`` (MTFTP): False when another file's session shares the group:port, so
        a requester left to listen could lock onto the wrong stream.  Returns False, with
        nothing sent, when the session already has ``max_members`` active members.
        """
        member = self.members.get(addr)
        if member is not None and member.state not in (DONE, GONE):
            self._emit("mcast_rrq_retransmit", client=member.text, role=member.state)
            self._answer_request(member, now, answer_now=True, repeated=True)
            return True
        if self.active_members() >= self.tuning.max_members:
            self._emit("mcast_full", client=f"{addr[0]}:{addr[1]}", members=self.tuning.max_members)
            return False
        self._order += 1
        member = Member(addr, self._order, now, list(acknowledged), last_heard=now, last_unicast=now)
        self.members[addr] = member
        late = self.group_packets > 0
        held = self.hold_until is not None
        if (
            self.master is None
            and not held
            and (self.probing_until is None or self.mtftp)
            and not self.group_closed
        ):
            self._make_master(member, now, reason="first" if not late else "idle")
        elif not self.mtftp and not held and self._master_unanswered():
            member.promoted_at = now  # RFC 2090: a candidate too; the first to answer leads
        elif not self.mtftp:
            member.listener = self.master is not None and self.master.answered
        self._emit("mcast_join", client=member.text, master=member is self.master, late=late,
                   stream_block=self.pending, **({"held": True} if held else {}))
        self._answer_request(member, now, answer_now=not may_listen)
        if held:
            self._check_hold(now)
        return True

    def _answer_request(
        self, member: Member, now: float, answer_now: bool = False, repeated: bool = False
    ) -> None:
        if not self.mtftp:
            offered = member is self.master or member.promoted_at is not None
            self._send_oack(member, now, master=offered, full=True)
            return
        if member is self.master:
            self._answer_master(member, now)
            return
        self._answer_mtftp(member, now, answer_now, repeated)

    def _answer_mtftp(self, member: Member, now: float, answer_now: bool, repeated: bool) -> None:
        """A request from an MTFTP client that is not the master: listen, wait, lead, or unicast."""
        if not answer_now and not member.acking and self._stream_flowing(now):
            member.contacted = member.listener = True
            self._emit("mcast_listen", client=member.text, stream_block=self.pending)
            return
        if not answer_now and self.master is not None and self.master.answered:
            # A pause in a running pass: one group DATA answers every requester at once.
            if now - self.last_group_send >= self.tuning.mtftp_gap:
                self._send_group(self.pending or self.last_group_block or 1, now)
            member.contacted = member.listener = True
            self._emit("mcast_listen", client=member.text, stream_block=self.pending)
            return
        if not answer_now and not self.group_closed:
            # A candidate that never answered holds the pass: nothing for this requester yet;
            # a real client asks again within 0.25 s (answered below), a spoofed one costs nothing.
            self._emit("mcast_wait", client=member.text, reason="another requester has not answered yet")
            return
        if repeated and self._master_unanswered() and not self.group_closed:
            # It asked again, so it is there and heard nothing: it leads instead of a silent candidate.
            if self.master is not None:
                self.master.state = WAITING
                self.master.promoted_at = None
            self._make_master(member, now, reason="asked again")
            self._answer_master(member, now)
            return
        # It asked again while a pass runs (it heard nothing), or it may not listen (another
        # file shares the group): answer now by unicast; it then ACKs its first gap.
        self._send_unicast(member, self.pending or 1, now)
        member.acking = True
        member.contacted = True
        member.last_heard = now

    def _answer_master(self, member: Member, now: float) -> None:
        """MTFTP: block ``have+1`` by unicast (which makes iPXE the master) and on the group."""
        block = member.have + 1
        if now - self.last_group_send >= self.tuning.mtftp_gap or self.last_group_block != block:
            if block == 1 and self.blocks > 1 and self.tuning.last_block_first:
                # The size first (mcast_tuning.py, ``last_block_first``).  Every file of a
                # session has at most 65535 blocks, so iPXE places it by its number alone.
                self._send_group(self.blocks, now)
            self._send_group(block, now)
        # "both": its ACK times a round trip but proves nothing about hearing the group.
        self.pending, self.pending_sent, self.pending_via = block, now, "both"
        self._send_unicast(member, block, now)
        member.contacted = True

    def _stream_flowing(self, now: float) -> bool:
        """A master that answered drives the group: a new requester hears it within ms."""
        master = self.master
        quiet = now - self.last_group_send
        return master is not None and master.answered and quiet < self.tuning.listen_window
