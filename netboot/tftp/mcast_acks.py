"""What a multicast session makes of the datagrams its clients send to the session socket.

Why any datagram counts as an answer: a request's source address can be spoofed, but a
blind spoofer cannot know the session socket's port, so a member is known to be there
once anything (ACK, ERROR) came from it (mcast_requests.py).  An ACK from a client that
was skipped, released or given up brings it back: it was slow, not gone
(mcast_linger.py).
"""

from __future__ import annotations

import struct

from netboot.tftp.mcast_member import DONE, GONE, MASTER, RELEASED, UNICAST, WAITING, Address, Member
from netboot.tftp.mcast_pacing import Pacing
from netboot.tftp.packets import ErrorCode, Opcode, encode_error


class Acks(Pacing):
    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        if self.finished or len(data) < 4:
            return
        opcode, number = struct.unpack_from("!HH", data)
        member = self.members.get(addr)
        if member is None:
            if opcode != Opcode.ERROR:
                self._out.append((encode_error(ErrorCode.UNKNOWN_TID, "unknown transfer ID"), addr))
            return
        if opcode == Opcode.ERROR:
            member.answered = True
            if member.state not in (DONE, GONE):
                self._finish_member(member, now, ok=False, reason=f"client sent ERROR {number}")
            return
        if opcode != Opcode.ACK or len(data) != 4:
            return
        member.answered = True
        self.answered_once = True
        self._on_ack(member, number, now)

    def _on_ack(self, member: Member, number: int, now: float) -> None:
        member.last_heard = now
        if member.state in (GONE, RELEASED):
            member.state = WAITING  # it was not gone after all
            member.probes = 0
            self.linger_until = None
            self._emit("mcast_client_back", client=member.text, first_gap=number + 1)
        if member.state == DONE:
            return
        if number > member.have:
            member.have = number
        if member.have >= self.blocks:
            self._finish_member(member, now, ok=True, reason="acknowledged the last block")
            return
        if member.state == UNICAST:
            self._unicast_ack(member, number, now)
            return
        if member is self.master:
            if member.promoted_at is not None:  # its first answer as master
                self._check_behind(member, number + 1, now)
            member.acking = member.led = True
            member.promoted_at = None
            if not self._defer_for_pace(member, number + 1, now):
                self._serve_master(member, number + 1, now)
            return
        # a client that is not the master (MTFTP: any ACK while no master speaks is an answer)
        if member.promoted_at is not None or (self.mtftp and self._master_unanswered()):
            self._offer_answered(member, number, now)
            return
        if self.mtftp:
            member.acking = member.led = True
            self._check_behind(member, number + 1, now)
            return
        if not member.acking and number == 0:
            member.rfc_style = True  # RFC 2090 example: a non-master confirms its OACK with ACK 0
            return
        member.acking = True

    def _offer_answered(self, member: Member, number: int, now: float) -> None:
        """A client offered the role (or, MTFTP, any client while no master speaks) ACKed."""
        if self.group_closed:
            self._to_unicast_tail(member, now)
            return
        member.promoted_at = None
        member.repeat_offer = False
        member.probes = 0
        if self._master_unanswered():
            silent = self.master
            if silent is not None:  # a candidate that never answered: this one leads
                silent.state = WAITING  # its offer stands until promote_timeout
            self.probing_until = None
            self.master = member
            member.state = MASTER
            member.acking = True
            self._measure(member)
            self._new_stream()
            self._check_behind(member, number + 1, now)
            self._emit("mcast_master", client=member.text, from_block=number + 1, reason="probe")
            self._master_ack(member, number + 1, now)
        elif not self.mtftp:
            self._send_oack(member, now, master=False, full=False)  # answered a probe too late
