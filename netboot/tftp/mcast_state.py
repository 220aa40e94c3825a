"""What a multicast session knows, and the datagrams and events it queues.

Why a base class of its own: the session is one state machine split by concept into
layers (docs/multicast.md, "Code"); every layer reads this state and sends through
these methods, and none of them touches a socket or a clock (sans-I/O: the transport
collects :meth:`SessionState.datagrams_to_send` and :meth:`SessionState.next_event`).
One session socket sends every OACK and every DATA, unicast or group, so iPXE's TID
filter (source IP *and* port) accepts them: the core only names destinations.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable
from typing import Any

from netboot.tftp.events import CoreEvent
from netboot.tftp.mcast_hold import Hold
from netboot.tftp.mcast_member import Address, Member
from netboot.tftp.mcast_pace import PaceControl
from netboot.tftp.mcast_pool import GroupPort
from netboot.tftp.mcast_tuning import Tuning
from netboot.tftp.mcast_window import StreamWindow
from netboot.tftp.packets import Opcode

BlockReader = Callable[[int, int], bytes]

#: iPXE tracks 16-bit block numbers relative to each client's first gap; beyond this a
#: multicast session cannot be followed reliably, so larger files are served unicast.
MAX_MULTICAST_BLOCKS = 65535


class SessionState:
    """The state every layer of the session reads, and its output queues."""

    def __init__(
        self,
        read: BlockReader,
        size: int,
        blksize: int,
        group: GroupPort,
        now: float,
        *,
        mtftp: bool = False,
        tuning: Tuning | None = None,
        shared_group: bool = False,
        hold: Hold | None = None,
    ) -> None:
        """Long because it declares every field the layers share, each with why it is there."""
        self.read = read
        self.size = size
        self.blksize = blksize
        self.group = group
        self.group_addr: Address = (group.group, group.port)
        self.mtftp = mtftp
        self.tuning = tuning or Tuning()
        #: MTFTP: another file is offered on the same group:port (iPXE's one fixed group).
        self.shared_group = shared_group and mtftp
        #: Set when the first client of a shared-group session finishes: from then on the
        #: group carries nothing of this file (mcast_unicast.py).
        self.group_closed = False
        self.blocks = size // blksize + 1
        if self.blocks > MAX_MULTICAST_BLOCKS:
            raise ValueError(f"{self.blocks} blocks exceed {MAX_MULTICAST_BLOCKS} for a multicast session")
        self.started = now
        self.members: dict[Address, Member] = {}
        self._order = 0
        self.master: Member | None = None
        self.finished = False
        # group stream state
        self.pending = 0  # block the master was last sent (0: none)
        self.pending_sent = 0.0
        self.pending_via = ""
        self.last_group_send = -1.0
        self.last_group_block = 0
        self.keepalives = 0
        self.block_last_group = [-1.0] * (self.blocks + 1)
        #: When each block first went to the group, and whether a window was open then.
        self.block_first_group = [-1.0] * (self.blocks + 1)
        self.block_windowed = bytearray(self.blocks + 1)
        self.window = StreamWindow(self.tuning.window)
        #: The newest block sent to the group for the current master, and its stuck ACKs.
        self.sent_ahead = 0
        self._stuck_acks = 0
        #: RFC 2090: the lead rotates and listeners' losses set the pace (mcast_pacing.py).
        #: ``pace.gap``: at least this long between group blocks (0: the master's ACKs alone
        #: clock the stream); a master's request that comes sooner is held.
        tuning = self.tuning
        self.pace = PaceControl(0, 0.0) if mtftp else PaceControl(tuning.pace_blocks, tuning.group_gap)
        self.held_request: tuple[Address, int] | None = None
        self.held_until: float | None = None
        self.probing_until: float | None = None
        #: Some member has answered: a real client is here, keepalives and probes may flow.
        self.answered_once = False
        #: Set when no client is active but some went quiet unfinished (mcast_linger.py).
        self.linger_until: float | None = None
        self._next_tick = now + self.tuning.tick
        self._next_keepalive = now + self.tuning.keepalive
        # figures
        self.group_bytes = 0
        self.group_packets = 0
        self.unicast_bytes = 0
        self._out: list[tuple[bytes, Address]] = []
        self._events: deque[CoreEvent] = deque()
        self._emit("mcast_session_start", group=group.group, port=group.port, blksize=blksize,
                   blocks=self.blocks, bytes=size, mode="mtftp" if mtftp else "rfc2090")
        #: While set, no master is elected (mcast_election.py).
        self.hold: Hold | None = hold if hold is not None and hold.active and not mtftp else None
        self.hold_until: float | None = None
        if self.hold is not None:
            self.hold_until = now + self.hold.max_wait
            self._emit("gather_start", min_clients=self.hold.min_clients, max_wait=self.hold.max_wait)

    # --- the output half of the aioquic-shaped interface ----------------------------------

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        out, self._out = self._out, []
        return out

    def next_event(self) -> CoreEvent | None:
        return self._events.popleft() if self._events else None

    # --- output -----------------------------------------------------------------------------

    def _payload(self, block: int) -> bytes:
        return self.read((block - 1) * self.blksize, self.blksize)

    def _send_group(self, block: int, now: float) -> None:
        if self.block_first_group[block] < 0:
            self.block_first_group[block] = now
            if self.window.blocks > 1:
                self.block_windowed[block] = 1
        payload = self._payload(block)
        self._out.append((struct.pack("!HH", Opcode.DATA, block & 0xFFFF) + payload, self.group_addr))
        self.group_bytes += len(payload)
        self.group_packets += 1
        self.last_group_send = now
        self.last_group_block = block
        self.block_last_group[block] = now

    def _send_unicast(self, member: Member, block: int, now: float) -> None:
        if not 1 <= block <= self.blocks:
            return
        payload = self._payload(block)
        self._out.append((struct.pack("!HH", Opcode.DATA, block & 0xFFFF) + payload, member.addr))
        member.unicast_bytes += len(payload)
        self.unicast_bytes += len(payload)
        member.last_unicast = now
        member.pending, member.pending_sent = block, now

    def _send_oack(self, member: Member, now: float, master: bool, full: bool) -> None:
        value = self.group.oack_value(master) if full else f",,{1 if master else 0}"
        options = [*member.acknowledged, ("multicast", value)]
        body = b"".join(n.encode() + b"\0" + v.encode() + b"\0" for n, v in options)
        self._out.append((struct.pack("!H", Opcode.OACK) + body, member.addr))
        member.last_unicast = now

    def _emit(self, name: str, **fields: Any) -> None:
        self._events.append(CoreEvent(name, fields))
