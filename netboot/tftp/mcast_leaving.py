"""How a client stops being served: finished, skipped, released, or given up.

Why a skip is not a failure: a client that did not answer its promotion may only be
slow (a guest the host did not schedule), so it waits again and is asked later; it is
assumed gone only after ``max_probes`` promotions, or at once if it never answered
anything (a spoofed request's address, mcast_requests.py).  A client given up always
hears why (an ERROR, mcast_linger.py), never silence.
"""

from __future__ import annotations

from netboot.tftp.mcast_election import Election
from netboot.tftp.mcast_linger import give_up_error
from netboot.tftp.mcast_member import DONE, GONE, RELEASED, WAITING, Member


class Leaving(Election):
    def _finish_member(self, member: Member, now: float, ok: bool, reason: str) -> None:
        member.state = DONE if ok else GONE
        if ok and self.shared_group and not self.group_closed:
            self.group_closed = True
            self._emit("mcast_group_closed", client=member.text,
                       reason="the first client finished and another file shares "
                       f"{self.group.group}:{self.group.port}: the rest goes by unicast")
        self._emit("done" if ok else "mcast_client_gone", client=member.text, ok=ok, reason=reason,
                   seconds=round(now - member.joined_at, 4), bytes=self.size if ok else None,
                   unicast_bytes=member.unicast_bytes)
        self._left(member, now)

    def _skip(self, member: Member, now: float, reason: str) -> None:
        member.probes += 1
        member.promoted_at = None
        member.repeat_offer = False
        # A member that never answered anything is not offered the role again: it may be a
        # spoofed address, and a real client in its place would have answered (mcast_requests.py).
        gone = member.probes >= self.tuning.max_probes or not member.answered
        if not member.answered:
            reason += "; it never answered anything, so it is not asked again"
        member.state = GONE if gone else WAITING
        self._emit("mcast_client_gone" if gone else "mcast_skip", client=member.text, reason=reason,
                   attempts=member.probes)
        self._left(member, now)

    def _release(self, member: Member, now: float) -> None:
        member.state = RELEASED
        member.promoted_at = None
        self._emit("mcast_listener_released", client=member.text, seconds=round(now - member.joined_at, 4),
                   reason="silent after the stream: finished, or will ask again (iPXE reopens)")
        self._check_finished(now)

    def _give_up(self, member: Member, now: float, reason: str) -> None:
        """Stop serving ``member`` and tell it so: an ERROR it can act on, never silence."""
        self._out.append((give_up_error(reason), member.addr))
        member.state = GONE
        self._emit("mcast_client_gone", client=member.text, reason=reason, ok=False,
                   seconds=round(now - member.joined_at, 4), error_sent=True)
        self._left(member, now)

    def withdraw(self, addr: tuple[str, int], now: float, reason: str) -> bool:
        """The client at ``addr`` is served elsewhere now: stop serving it here, at once.

        Why not wait for it to time out: an MTFTP member that fell back to plain TFTP
        before it heard the stream (mtftp_held.py) would be probed, waited for and
        lingered on for nothing.  Returns False when ``addr`` is no active member.
        """
        member = self.members.get(addr)
        if member is None or member.state in (DONE, GONE, RELEASED):
            return False
        member.state = GONE
        member.promoted_at = None
        self._emit("mcast_withdrawn", client=member.text, reason=reason)
        self._left(member, now)
        return True

    def _left(self, member: Member, now: float) -> None:
        """``member`` is no longer served: if it led, the group needs a new master."""
        if self.master is member:
            self.master = None
            self.pending = 0
            self._elect(now)
        self._check_finished(now)
