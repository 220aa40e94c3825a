"""The clients a multicast session serves by unicast: deaf ones, and a shared group's tail.

Why from the session socket: iPXE's TID filter takes only packets from the socket that
answered its request, so a client that cannot hear the group (mcast_master.py, "deaf")
or may no longer use it (below) gets its DATA from the same socket, one block per ACK,
with the repeat of a lost DATA on the client's round-trip timeout.
"""

from __future__ import annotations

from netboot.tftp.mcast_linger import Linger
from netboot.tftp.mcast_member import UNICAST, WAITING, Member


class UnicastService(Linger):
    def _unicast_ack(self, member: Member, number: int, now: float) -> None:
        block = number + 1
        if block == member.pending and now - member.pending_sent < self.tuning.repair_after / 2:
            return  # duplicate ACK within a round trip: no Sorcerer's Apprentice
        self._send_unicast(member, block, now)

    def _tail_deadlines(self) -> list[tuple[Member, float]]:
        """When each unicast-served client's DATA (and, closed group, each probe) goes again.

        iPXE's MTFTP client reopens (and then falls back to plain TFTP over a stale size,
        docs/multicast.md) when its 0.25 s timer expires, so a lost unicast DATA is
        repeated within its round-trip timeout, at most ``repair_after``, and a probe after
        ``mtftp_gap``, not on the 0.25 s tick (a deaf ``tftm://`` client gains the same).
        """
        due = []
        for member in self.members.values():
            if member.state == UNICAST and member.pending:
                wait = self.tuning.repair_after
                if member.rtt is not None:
                    wait = min(wait, member.rtt.base)
                due.append((member, member.pending_sent + wait))
            elif self.group_closed and member.state == WAITING and member.promoted_at is not None:
                due.append((member, member.last_unicast + self.tuning.mtftp_gap))
        return due

    def _unicast_tail(self, now: float) -> None:
        """Serve what is left of a shared-group MTFTP session by unicast.

        Why: iPXE fetches every ``mtftp://`` file on the one group 239.255.1.1:3001 and
        its TID filter takes the first packet a new request hears.  A VM that finished
        the kernel opens the initrd at once; group DATA of the kernel still flowing for
        slower VMs (promotions, the missing heads) was already queued in its NIC, so it
        locked onto the kernel's stream, stored kernel blocks as initrd blocks and
        printed ``ok`` (lab capture: ACK 37 right after initrd block 1, the kernel's
        blocks 2-37 on the group just before; docs/multicast.md, "One group for every
        file").  Once a client has finished, the others are past their shared pass:
        clients that ACK get their gaps by unicast, silent listeners are probed by
        unicast DATA, and the group stays free for the next file.
        """
        probed = 0
        for member in self.members.values():
            if member.state != WAITING:
                continue
            if member.acking and now - member.last_heard < self.tuning.promote_timeout:
                self._to_unicast_tail(member, now)
            elif member.promoted_at is None:
                member.promoted_at = now
                self._send_unicast(member, member.have + 1, now)
                probed += 1
        if probed:
            self._emit("mcast_probe", clients=probed, attempt=1, via="unicast")
        self._check_finished(now)

    def _to_unicast_tail(self, member: Member, now: float) -> None:
        member.state = UNICAST
        member.promoted_at = None
        member.acking = True
        member.pending = 0
        self._emit("mcast_unicast_tail", client=member.text, from_block=member.have + 1,
                   reason="the group is closed to this file (another file shares it)")
        self._unicast_ack(member, member.have, now)
