"""How a multicast session ends: at once, or after lingering for a client that went quiet.

Why a session lingers: no slow listener is left behind (issue 18: a TCG guest that was
not scheduled for a second or two missed its promotion, was dropped, and timed out).
A client that heard the stream (it answered, or joined while a master that answered
led) and then went quiet is skipped, never failed: the group goes on without it, and
once nobody is left the session *lingers* (``give_up_after``, 16 s, longer than iPXE's
15.75 s silence limit) without sending anything.  A late ACK in that time brings it
back (mcast_acks.py), and it gets the rest (it leads, the group being free).  Only
when the linger ends, or a client served by unicast stays silent as long, is it given
up, with an ERROR it can act on (never silence).
"""

from __future__ import annotations

from netboot.tftp.mcast_member import DONE, GONE, MASTER, RELEASED, UNICAST, WAITING, Member
from netboot.tftp.mcast_state import SessionState
from netboot.tftp.packets import ErrorCode, encode_error


def give_up_error(reason: str) -> bytes:
    """The ERROR a client given up hears: what happened, and what to do next."""
    text = f"pyatftpd gave up on this transfer: {reason}; fetch the file again"
    return encode_error(ErrorCode.NOT_DEFINED, text)


class Linger(SessionState):
    def _owed(self, member: Member) -> bool:
        """Went quiet, heard the stream, and cannot have the whole file: worth waiting for.

        A listener present while every block went out (again) probably finished silently,
        as iPXE non-masters do: it is owed nothing (no linger, no ERROR).
        """
        if member.state not in (GONE, RELEASED) or not member.heard_stream or member.have >= self.blocks:
            return False
        if member.led:
            return True  # its own ACKs as a master (or an MTFTP listener that ACKs) said what it lacks
        return self._may_lack(member)

    def _may_lack(self, member: Member) -> bool:
        """A block beyond what ``member`` holds last went to the group before it listened."""
        since = member.listening_since
        return member.have < self.blocks and min(self.block_last_group[member.have + 1 :]) < since

    def _check_finished(self, now: float) -> None:
        if self.finished:
            return
        if any(m.state in (WAITING, MASTER, UNICAST) for m in self.members.values()):
            return
        if self.linger_until is None and any(self._owed(m) for m in self.members.values()):
            self.linger_until = now + self.tuning.give_up_after
            self._emit("mcast_linger", seconds=self.tuning.give_up_after,
                       clients=sum(1 for m in self.members.values() if self._owed(m)))
            return
        if self.linger_until is not None and now < self.linger_until:
            return
        self._end(now)

    def _give_up_quiet(self, now: float) -> None:
        """The linger is over: whoever went quiet unfinished hears that it was given up."""
        self.linger_until = None
        if any(m.state in (WAITING, MASTER, UNICAST) for m in self.members.values()):
            return
        waited = f"no answer for {self.tuning.give_up_after:.0f} s"
        error = give_up_error(waited)
        for member in self.members.values():
            if self._owed(member):
                self._out.append((error, member.addr))
                self._emit("mcast_client_gone", client=member.text, ok=False, error_sent=True,
                           reason=f"{waited} after the session went quiet")
        self._end(now)

    def _end(self, now: float) -> None:
        self.finished = True
        self._emit(
            "mcast_session_end",
            seconds=round(now - self.started, 4),
            clients=len(self.members),
            done=sum(1 for m in self.members.values() if m.state == DONE),
            group_bytes=self.group_bytes,
            group_packets=self.group_packets,
            unicast_bytes=self.unicast_bytes,
            keepalives=self.keepalives,
            group_ratio=round(self.group_bytes / self.size, 4) if self.size else None,
        )
