"""Sans-I/O multicast session: one file, one blksize, one group:port, many clients.

Why this design (protocols.md sections 1-3 and 6; docs/multicast.md has the long form):

* One session socket sends every OACK and every DATA, unicast or group, so iPXE's TID
  filter (source IP *and* port) accepts them.  The core only names destinations.
* A client is identified by (ip, port).  A repeated RRQ from a known client is a
  retransmission: it gets the OACK for its current role again, nothing else changes.
* The master is the oldest unfinished client that answers.  Its ACK n is cumulative
  (iPXE ACKs the first gap of its bitmap) and asks for DATA n+1, which goes to the group.
* Lost-block repair is ours, not the client's: if the master has not acknowledged the
  group copy within its retransmission timeout, the block is repeated to the master by
  unicast.  The timeout comes from the master's measured round trips (RFC 6298,
  :mod:`netboot.tftp.rto`, sampled on blocks it acknowledged without a repair; 20 ms at
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
  socket in parallel, ``multicast_not_received`` records the evidence, and the group
  passes to the next client.
* A request's source address can be spoofed, and iPXE non-masters are silent, so a
  member is only known to be there once it has *answered* (any datagram to the session
  socket, which a blind spoofer cannot know).  What an unanswered member costs is
  bounded by what it sent (issue 20: 30 silent requests drew 2,535 OACKs over 90 s;
  atftpd 39): while no member has answered as master, every new requester is offered
  the master role at once (OACK mc=1); the first to ACK becomes master and later ACKs
  get ``,,0``.  A real iPXE client whose OACK was lost repeats its RRQ (answered again,
  one OACK per request), one whose ACK was lost repeats the ACK, so nothing is sent
  again on a timer; a candidate that has not answered after ``promote_timeout`` is
  dropped (``mcast_client_gone``) and costs nothing more.  A real client therefore
  never waits behind silent ones.
* iPXE non-masters are silent, even when they finish.  So when the master is done:
  members that answered before and joined after the oldest block last went out on the
  group (they lack something) are promoted one at a time (OACK mc=1, repeated every
  ``retransmit``, skipped after ``promote_timeout`` and retried later); everyone else
  waiting is probed all at once (OACK mc=1 to each, repeated likewise): those that
  finished stay silent, the first that answers becomes master.  An answered client
  that ignores ``max_probes`` promotions, or an unanswered one that ignores one round,
  is assumed gone.
* Waiting clients that never ACK (iPXE style) get their OACK (mc=0, no address) again
  on one session schedule, every ``keepalive`` seconds to those with no unicast for as
  long: a deaf waiting client would otherwise hit iPXE's 15.75 s silence limit.
* At most ``max_members`` members are active at once; the service serves more by
  unicast (a flood of requests must not grow one session without bound).
* No slow listener is left behind (issue 18: a TCG guest that was not scheduled for a
  second or two missed its promotion, was dropped, and timed out).  A client that heard
  the stream (it answered, or joined while a master that answered led) and then went
  quiet is skipped, never failed: the group goes on without it, and once nobody is left
  the session *lingers* (``give_up_after``, 16 s, longer than iPXE's 15.75 s silence
  limit) without sending anything.  A late ACK in that time brings it back, and it gets
  the rest (it leads, the group being free).  Only when the linger ends, or a client
  served by unicast stays silent as long, is it given up, with an ERROR it can act on
  (never silence); an MTFTP client that stops ACKing what it hears is just a quiet
  listener again.
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
* ``hold`` (RFC 2090 only, mcast_hold.py): no master is elected until enough clients
  asked or the wait is over; until then every client is a waiting non-master.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from netboot.tftp.events import CoreEvent
from netboot.tftp.mcast_hold import Hold
from netboot.tftp.mcast_pool import GroupPort
from netboot.tftp.mcast_window import StreamWindow
from netboot.tftp.packets import ErrorCode, Opcode, encode_error
from netboot.tftp.rto import RttEstimator

Address = tuple[str, int]
BlockReader = Callable[[int, int], bytes]

#: iPXE tracks 16-bit block numbers relative to each client's first gap; beyond this a
#: multicast session cannot be followed reliably, so larger files are served unicast.
MAX_MULTICAST_BLOCKS = 65535

WAITING, MASTER, UNICAST, DONE, GONE = "waiting", "master", "unicast", "done", "gone"
#: MTFTP: a silent listener that did not answer the end-of-stream probe.  Not a failure:
#: an iPXE listener that finished is silent, and one that still lacks blocks reopens
#: (new RRQ) when the group goes quiet, and is answered then.
RELEASED = "released"


@dataclass
class Tuning:
    repair_after: float = 0.15
    #: The master's repair timeout from its round trips (False: always ``repair_after``).
    adaptive_repair: bool = True
    repair_floor: float = 0.02
    repair_ceiling: float = 1.0
    retransmit: float = 0.25
    master_silence: float = 2.0
    promote_timeout: float = 1.0
    max_probes: int = 3
    #: Waiting iPXE clients get a ``,,0`` OACK after this long without unicast.  iPXE's
    #: silence limit backs off from 0.25 s and fails once its timeout passes 10 s: a
    #: packet at most every 4 s (two rounds) keeps it at 4-8 s, even with one lost.
    keepalive: float = 2.0
    #: Active members (not done or gone) of one session; more requests go unicast.
    max_members: int = 512
    #: ``--mcast-window``: blocks in flight ahead of the master at most (mcast_window.py).
    window: int = 1
    deaf_blocks: int = 3
    #: The same for a master that has acknowledged a group copy: 10 % losses give 16 in a
    #: row about once in 10^16 blocks; a NIC that stops hearing the group still shows it.
    deaf_blocks_after_hearing: int = 16
    #: A unicast-served client silent this long is given up (with an ERROR).
    unicast_silence: float = 16.0
    #: How long a session with no active client waits for one that went quiet (see above).
    give_up_after: float = 16.0
    tick: float = 0.25
    #: MTFTP: a request within this long of the last group DATA is left to the stream.
    listen_window: float = 0.1
    #: MTFTP: the group never stays quiet longer than this while a client is unfinished.
    #: iPXE's MTFTP client reopens after 0.25 s without a packet, and in the lab a reopen
    #: never put an MTFTP RRQ on the wire: the client fell straight back to plain TFTP over
    #: a stale size and printed ok over holes (docs/multicast.md, "Never let a listener
    #: time out").  Pauses (promotions, end-of-stream probes) get keepalive DATA instead.
    mtftp_gap: float = 0.12


@dataclass
class Member:
    addr: Address
    order: int
    joined_at: float
    acknowledged: list[tuple[str, str]] = field(default_factory=list)
    state: str = WAITING
    have: int = 0
    acking: bool = False
    rfc_style: bool = False
    #: Sent anything to the session socket (ACK, ERROR): it is there (see the docstring).
    answered: bool = False
    #: The current offer of the master role (promoted_at) is repeated every ``retransmit``
    #: (a promotion or probe of a waiting client; an offer made at its request is not:
    #: the client repeats the request itself).
    repeat_offer: bool = False
    #: MTFTP: heard something of the session (unicast DATA, or it joined while the group
    #: stream flowed); only such listeners are probed at the end of a pass.
    contacted: bool = False
    #: Its round trips while it is the master (the repair timeout, see the docstring).
    rtt: RttEstimator | None = None
    #: The block from which it was last seen to fall behind a window (mcast_window.py).
    behind_from: int = 0
    #: It joined while a master that had answered led: it heard the stream (a listener).
    listener: bool = False
    #: It ACKed as the master (or, MTFTP, ACKed what it heard): ``have`` is what it holds.
    led: bool = False

    @property
    def heard_stream(self) -> bool:
        """A real client in all likelihood: it answered, or listened to a stream a real master led."""
        return self.answered or self.listener
    last_heard: float = 0.0
    last_unicast: float = 0.0
    promoted_at: float | None = None
    probes: int = 0
    consecutive_repairs: int = 0
    repairs: int = 0
    #: Blocks it acknowledged from the group copy alone (proof it hears the group).
    group_acked: int = 0
    # unicast service (deaf clients, or a lone MTFTP master's repair)
    pending: int = 0
    pending_sent: float = 0.0
    pending_via: str = ""
    unicast_bytes: int = 0

    @property
    def text(self) -> str:
        return f"{self.addr[0]}:{self.addr[1]}"


class MulticastSession:
    """One session; drive it with the aioquic-shaped methods below."""

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
        #: group carries nothing of this file (see :meth:`_unicast_tail`).
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
        self.probing_until: float | None = None
        #: Some member has answered: a real client is here, keepalives and probes may flow.
        self.answered_once = False
        #: Set when no client is active but some went quiet unfinished (see the docstring).
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
        #: While set, no master is elected (see :meth:`_check_hold`).
        self.hold: Hold | None = hold if hold is not None and hold.active and not mtftp else None
        self.hold_until: float | None = None
        if self.hold is not None:
            self.hold_until = now + self.hold.max_wait
            self._emit("gather_start", min_clients=self.hold.min_clients, max_wait=self.hold.max_wait)

    # --- aioquic-shaped interface --------------------------------------------------------

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        out, self._out = self._out, []
        return out

    def next_event(self) -> CoreEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        if self.finished:
            return None
        deadline = self._next_tick
        if self.master is not None and self.pending:
            deadline = min(deadline, self.pending_sent + self._repair_wait(self.master))
        if self._keepalive_due_possible():
            deadline = min(deadline, self.last_group_send + self.tuning.mtftp_gap)
        for _member, due in self._tail_deadlines():
            deadline = min(deadline, due)
        if self.hold_until is not None:
            deadline = min(deadline, self.hold_until)
        if self.linger_until is not None:
            deadline = min(deadline, self.linger_until)
        return deadline

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

    def handle_timer(self, now: float) -> None:
        if self.finished:
            return
        master = self.master
        if master is not None and self.pending:
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

    # --- requests (from the listening socket, via the service) -------------------------

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

    def _master_unanswered(self) -> bool:
        """The master is a candidate that has not ACKed yet (or there is none)."""
        return self.master is None or not self.master.answered

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
            self._send_group(block, now)
        self.pending, self.pending_sent, self.pending_via = block, now, "group"
        self._send_unicast(member, block, now)
        member.contacted = True

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

    def _stream_flowing(self, now: float) -> bool:
        """A master that answered drives the group: a new requester hears it within ms."""
        master = self.master
        quiet = now - self.last_group_send
        return master is not None and master.answered and quiet < self.tuning.listen_window

    # --- ACK handling ---------------------------------------------------------------------------

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
            self._master_ack(member, number + 1, now)
            return
        # a client that is not the master (MTFTP: any ACK while no master speaks is an answer)
        if member.promoted_at is not None or (self.mtftp and self._master_unanswered()):
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
            return
        if self.mtftp:
            member.acking = member.led = True
            self._check_behind(member, number + 1, now)
            return
        if not member.acking and number == 0:
            member.rfc_style = True  # RFC 2090 example: a non-master confirms its OACK with ACK 0
            return
        member.acking = True

    def _repair_wait(self, master: Member) -> float:
        tuning = self.tuning
        if master.rtt is not None:
            return master.rtt.rto
        return tuning.repair_after if self.pending_via == "group" else tuning.retransmit

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
            if self.pending_via == "group":
                master.consecutive_repairs = 0
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

    def _deaf_after(self, master: Member) -> int:
        """Repairs in a row that prove ``master`` deaf (fewer for one never heard on the group)."""
        heard = master.group_acked > 0
        return self.tuning.deaf_blocks_after_hearing if heard else self.tuning.deaf_blocks

    def _window_sign(self, reason: str, now: float) -> None:
        """Evidence that a client does not keep up with the window (mcast_window.py)."""
        if self.tuning.window <= 1:
            return
        before = self.window.blocks
        self.window.fell_behind()
        self._emit("mcast_window", blocks=self.window.blocks, before=before, reason=reason,
                   closed=self.window.closed)

    def _repair(self, master: Member, now: float) -> None:
        if self.pending_via == "group":
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

    def _unicast_ack(self, member: Member, number: int, now: float) -> None:
        block = number + 1
        if block == member.pending and now - member.pending_sent < self.tuning.repair_after / 2:
            return  # duplicate ACK within a round trip: no Sorcerer's Apprentice
        self._send_unicast(member, block, now)

    # --- roles ------------------------------------------------------------------------------

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

    def _measure(self, member: Member) -> None:
        """Give a new master its round-trip estimator (kept if it leads again)."""
        tuning = self.tuning
        if tuning.adaptive_repair and member.rtt is None:
            member.rtt = RttEstimator(tuning.repair_floor, tuning.repair_ceiling, tuning.repair_after)

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
        if self.master is member:
            self.master = None
            self.pending = 0
            self._elect(now)
        self._check_finished(now)

    def _skip(self, member: Member, now: float, reason: str) -> None:
        member.probes += 1
        member.promoted_at = None
        member.repeat_offer = False
        # A member that never answered anything is not offered the role again: it may be a
        # spoofed address, and a real client in its place would have answered (see above).
        gone = member.probes >= self.tuning.max_probes or not member.answered
        if not member.answered:
            reason += "; it never answered anything, so it is not asked again"
        member.state = GONE if gone else WAITING
        self._emit("mcast_client_gone" if gone else "mcast_skip", client=member.text, reason=reason,
                   attempts=member.probes)
        if self.master is member:
            self.master = None
            self.pending = 0
            self._elect(now)
        self._check_finished(now)

    def _release(self, member: Member, now: float) -> None:
        member.state = RELEASED
        member.promoted_at = None
        self._emit("mcast_listener_released", client=member.text, seconds=round(now - member.joined_at, 4),
                   reason="silent after the stream: finished, or will ask again (iPXE reopens)")
        self._check_finished(now)

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
            # Clients that ACK every block they hear: continue at once from the oldest one's gap.
            chosen = alive[0]
            self._make_master(chosen, now, reason="next")
            self._send_group(chosen.have + 1, now)
            self._send_unicast(chosen, chosen.have + 1, now)
            self.pending, self.pending_sent, self.pending_via = chosen.have + 1, now, "unicast"
            return
        if self.mtftp:
            waiting = self._drop_uncontacted(waiting, now)
            if not waiting:
                self._check_finished(now)
                return
        oldest_block = min(self.block_last_group[1:])
        needy = [m for m in waiting if m.answered and m.joined_at > oldest_block]
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
        """
        kept = []
        for member in waiting:
            if member.contacted or member.answered:
                kept.append(member)
                continue
            member.state = GONE
            self._emit("mcast_client_gone", client=member.text, attempts=0,
                       reason="asked once while another requester held the pass, never again")
        return kept

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

    def _promote(self, member: Member, now: float) -> None:
        """OACK mc=1 (RFC 2090), or any unicast DATA (MTFTP: iPXE then ACKs its first gap)."""
        if self.mtftp:
            self._send_unicast(member, member.have + 1, now)
            if member is self.master:
                self.pending, self.pending_sent, self.pending_via = member.have + 1, now, "unicast"
        else:
            self._send_oack(member, now, master=True, full=True)

    def _housekeeping(self, now: float) -> None:
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
        if self.probing_until is not None and now >= self.probing_until:
            self.probing_until = None
        for member in list(self.members.values()):
            if (
                member.state == WAITING
                and member.promoted_at is not None
                and now - member.promoted_at >= tuning.promote_timeout
            ):
                if self.mtftp and not member.acking and member.contacted:
                    self._release(member, now)
                else:
                    self._skip(member, now, reason="no answer to a promotion probe")
            elif (
                not self.mtftp
                and member.state == WAITING
                and member.promoted_at is not None
                and member.repeat_offer
                and now - member.last_unicast >= tuning.retransmit
            ):
                self._send_oack(member, now, master=True, full=True)  # a lost probe must not lose it
            elif (
                self.mtftp
                and member.state == WAITING
                and member.promoted_at is not None
                and not member.acking
                and now - member.last_unicast >= tuning.retransmit
            ):
                # An unanswered probe again, even while another master keeps the group busy
                # (then no keepalive repeats it): a lost probe must not get an unfinished
                # listener released, which then falls back to plain TFTP (CI, 2026-11-28).
                self._send_unicast(member, member.have + 1, now)
            elif (
                self.mtftp
                and member.state == WAITING
                and member.acking
                and now - member.last_heard >= tuning.master_silence
            ):
                # Quiet, not gone: a guest the host did not schedule ACKs again when it runs.
                member.acking = False
                quiet = now - member.last_heard
                self._emit("mcast_client_quiet", client=member.text,
                           reason=f"stopped acknowledging the group stream {quiet:.1f} s ago; "
                           "a listener again, probed at the end of the pass")
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
        if self.master is None and self.probing_until is None:
            self._elect(now)
        self._check_finished(now)

    def _owed(self, member: Member) -> bool:
        """Went quiet, heard the stream, and cannot have the whole file: worth waiting for.

        A listener present while every block went out (again) probably finished silently,
        as iPXE non-masters do: it is owed nothing (no linger, no ERROR).
        """
        if member.state not in (GONE, RELEASED) or not member.heard_stream or member.have >= self.blocks:
            return False
        if member.led:
            return True  # its own ACKs as a master (or an MTFTP listener that ACKs) said what it lacks
        return member.joined_at > min(self.block_last_group[1:])

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

    def _give_up(self, member: Member, now: float, reason: str) -> None:
        """Stop serving ``member`` and tell it so: an ERROR it can act on, never silence."""
        text = (f"pyatftpd gave up on this transfer: {reason}; fetch the file again")
        self._out.append((encode_error(ErrorCode.NOT_DEFINED, text), member.addr))
        member.state = GONE
        self._emit("mcast_client_gone", client=member.text, reason=reason, ok=False,
                   seconds=round(now - member.joined_at, 4), error_sent=True)
        if self.master is member:
            self.master = None
            self.pending = 0
            self._elect(now)
        self._check_finished(now)

    def _give_up_quiet(self, now: float) -> None:
        """The linger is over: whoever went quiet unfinished hears that it was given up."""
        self.linger_until = None
        if any(m.state in (WAITING, MASTER, UNICAST) for m in self.members.values()):
            return
        waited = f"no answer for {self.tuning.give_up_after:.0f} s"
        text = f"pyatftpd gave up on this transfer: {waited}; fetch the file again"
        for member in self.members.values():
            if self._owed(member):
                self._out.append((encode_error(ErrorCode.NOT_DEFINED, text), member.addr))
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
