"""pyslamd's protocol core, sans-I/O: what to send, to whom and when; never how.

Why it is shaped this way: mini-slamd answers each NACK with the (at most 4) blocks
iPXE asked for and then waits for the next NACK, about 6 KB/s with a real ROM.
iPXE, however, ignores blocks it already holds and accepts any block of the
transaction at any time, so this core keeps the group fed instead:

* an iPXE NACK capped at 4 blocks ("the gap goes on") starts an in-order *stream*
  from its first gap to the end of the file, paced by a token bucket; a fresh
  client's ``20 21 00`` gets block 0 and a ping, and its answer ``(1, 4)`` starts it;
* after a wave's first full pass, such a NACK streams only a *credit* of blocks
  (16, doubling while the client's next NACK begins where the last stream stopped):
  one that lost short bursts gets those, not the file again;
* reported gaps behind the stream are *repaired* first; blocks sent after the ping
  a NACK answers are still in flight and are not repeated; while the master reports
  gaps it is asked again right after their repairs, so an old gap is walked at the
  round trip's pace;
* a *master* client (the first NACKer still listed, as in mini-slamd) is pinged
  every ``ping_every`` blocks and at least every ``master_ping_interval`` so that it
  NACKs at once, which reports loss while the stream runs; when the stream has
  ended, up to ``probe_parallel`` clients are pinged at a time so that their
  remaining gaps are found quickly;
* a stream skips blocks that every listed client already holds (a late joiner's
  second pass);
* each listener of the pace set (the master and up to 7 more) has a flow window
  (``window.py``, ``flow_windows``, the default): the stream never has more on its way
  to one of them than its window, confirmed by its answers to pings (matched in order,
  ``pings.py``) and by the first gap its NACKs name, so a guest that stops taking frames
  stops the stream instead of losing it;
* with ``flow_windows`` off (``--pacing rate``), the pacing rate (``pacing.py``) backs
  off when the master's answers report fresh loss, long loss runs or queueing, or when
  it stops answering, and grows back on its answers otherwise.

With ``min_clients`` > 1 the first stream of a wave is *held* (udpcast's
``--min-clients``/``--max-wait``): nodes that power on seconds apart would otherwise
each need a pass of their own, and a fast pass starves the CPU of the ones still
booting.  While held, one datagram every ``gather_keepalive`` seconds goes to the
group: often enough that iPXE's 15 s slave timer never fires, rarely enough (more
than its 1 s slave timeout) that every waiting client NACKs and so is counted.

Clients that do not answer ``missed_pings_to_drop`` pings in a row are dropped
(the master is replaced within a second); a lone NUL removes a client at once.
Every data datagram of a transaction carries the same header bytes.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from netboot.slam.copies import CopyWatch
from netboot.slam.ints import IPXE32_LIMIT
from netboot.slam.pacing import LISTENER_CUT, Pacer
from netboot.slam.packets import (
    DEFAULT_BLOCK_SIZE,
    MAX_DATAGRAM,
    Disconnect,
    Header,
    MalformedSlam,
    Nack,
    decode_client_datagram,
    encode_data,
    encode_ping,
)
from netboot.slam.pings import PingLedger
from netboot.slam.window import Flow

Address = tuple[str, int]

#: The longest header + packet number pyslamd emits: 32-bit transaction ids (5 bytes),
#: sizes below 2**29 (4 bytes), a 2-byte block size and a packet number below 2**29.
MAX_OVERHEAD = 5 + 4 + 2 + 4
MAX_BLOCK_SIZE = MAX_DATAGRAM - MAX_OVERHEAD

#: iPXE asks for at most this many blocks per NACK; a NACK this long means "the gap goes on".
IPXE_MAX_BLOCKS_PER_NACK = 4

#: Only blocks sent this recently count as loss at the current rate.
LOSS_HORIZON = 0.5

#: A client heard this long after the server went idle starts a new wave (a hold again):
#: iPXE gives up 15 s after its last group datagram, so anyone of the last wave (say, one
#: dropped as silent before it finished) is back sooner or not at all.
NEW_WAVE_AFTER = 16.0

#: After a wave's first full pass a capped NACK ("the gap goes on") is taken at its word
#: only when the same client's previous one ended where it begins; the stream then sends
#: this many blocks and doubles while the next probe confirms the gap still goes on.
#: iPXE names only its first gap, so "goes on" may mean 4 blocks or the rest of the file.
FIRST_CREDIT = 16


@dataclass(frozen=True)
class Content:
    """One transaction: an immutable snapshot of the file and its id."""

    transaction: int
    data: bytes

    def __post_init__(self) -> None:
        if len(self.data) >= IPXE32_LIMIT:
            raise ValueError(
                f"file is {len(self.data)} bytes; SLAM sizes must stay below 2**29 "
                f"({IPXE32_LIMIT}) for 32-bit iPXE clients"
            )
        if not 0 <= self.transaction < 2**32:
            raise ValueError("transaction id must fit 32 bits")


#: The default pacing ceiling in payload bytes/s: 1 Gbit/s.  A ceiling, not a target:
#: the ramp below and the back-off rules find what the master's NIC takes.
DEFAULT_RATE = 125_000_000


@dataclass
class ServerConfig:
    block_size: int = DEFAULT_BLOCK_SIZE
    #: Pacing ceiling in data datagrams per second (the CLI converts bytes/s).
    max_rate: float = DEFAULT_RATE / DEFAULT_BLOCK_SIZE
    min_rate: float = 100.0
    #: A stream starts at this rate (at most half the ceiling; None: half), about
    #: 2.9 MB/s at 1451 bytes, a quarter of what a 100 Mbit NIC takes...
    start_rate: float | None = 2000.0
    #: ...and multiplies it by this on every clean master answer (about every 64
    #: datagrams) until the first fresh loss or cut: a LAN reaches the ceiling in about
    #: 0.1 s, a slow NIC is overrun by at most this factor before the back-off rules
    #: take over (docs/pyslamd.md).  1.0: no ramp, growth only by the window rules.
    slow_start: float = 1.5
    burst: int = 16
    #: At most this many data datagrams beyond the last one the master confirmed (by
    #: answering a ping sent after it): a receiver too busy to answer stops the stream
    #: before its queue overflows, long before the rate rules react.
    max_unconfirmed: int = 512
    ping_every: int = 64
    #: ...or at least this often (seconds), so that a dead master is noticed quickly.
    master_ping_interval: float = 0.1
    #: With each of those pings, this many clients in all (the master included) are asked,
    #: and a loss run any of them reports slows the stream (see ``_ping_pace_set``).
    pace_set: int = 8
    #: Gate the stream on a flow window per listener of the pace set (``window.py``): a
    #: receiver that is not running (a descheduled guest) stops the stream instead of
    #: losing it.  False: the rate rules alone, as before 2026-12-06.
    flow_windows: bool = True
    #: A listener of the pace set with a ping out that has not answered for this long stops
    #: gating the stream until it answers again (a guest switched off must not stop the
    #: wave; one that answers is running, whatever pings it lost: ``_stall_at``).
    stall_after: float = 0.5
    #: A ping is given up after 3 round-trip times, within these bounds...
    min_ping_timeout: float = 0.01
    max_ping_timeout: float = 0.2
    #: ...and a client that misses this many in a row, for at least ``silence``, is dropped.
    missed_pings_to_drop: int = 3
    silence: float = 0.6
    probe_parallel: int = 32
    #: A client whose NACK asked for nothing we can send is pinged again only after this.
    idle_probe_interval: float = 0.5
    #: Unsolicited NACKs: blocks sent this recently are assumed to be still in flight.
    in_flight_holdoff: float = 0.05
    max_clients: int = 4096
    #: The master's ping round trip this far above its best means data is queueing up.
    queue_delay_limit: float = 0.25
    loss_backoff_threshold: float = 0.15
    loss_growth_threshold: float = 0.08
    #: Hold a wave's first stream until this many clients have NACKed (1: never hold)...
    min_clients: int = 1
    #: ...or until this long after the first of them did.
    max_wait: float = 30.0
    #: While held, one datagram this often (seconds): see the module docstring.
    gather_keepalive: float = 2.0

    def __post_init__(self) -> None:
        if not 1 <= self.block_size <= MAX_BLOCK_SIZE:
            raise ValueError(
                f"block size must be 1..{MAX_BLOCK_SIZE} so that a datagram fits {MAX_DATAGRAM} bytes"
            )
        if self.max_rate < self.min_rate:
            self.min_rate = self.max_rate
        if self.min_clients < 1:
            raise ValueError("min_clients must be at least 1")
        if self.pace_set < 1:
            raise ValueError("pace_set must be at least 1 (the master)")
        if self.max_wait < 0:
            raise ValueError("max_wait must not be negative")
        if not 1.2 <= self.gather_keepalive <= 7.0:
            # Below iPXE's 1 s slave timeout (plus slack) waiting clients never NACK and are
            # never counted; above about 7 s one lost keepalive lets iPXE's 15 s timer fire.
            raise ValueError("gather_keepalive must be within 1.2..7 s")


@dataclass(frozen=True)
class Event:
    """Something worth logging; ``name`` is one of the event names in docs/events.md."""

    name: str
    fields: dict[str, Any]


@dataclass
class Peer:
    address: Address
    joined: float
    first_gap: int = 0
    ping_sent: float | None = None
    #: A ping not answered yet, even if given up on: a late NACK still answers it.
    awaiting: bool = False
    last_heard: float = 0.0
    last_ping: float = 0.0
    awaiting_since: float = 0.0
    srtt: float = 0.05
    ping_seq: int = 0
    #: The data sequence number the latest ping followed (the next one is due from it).
    last_ping_seq: int = 0
    #: ``ping_seq`` of the answer before the latest (flow windows: see ``_sent_before``).
    prev_ping_seq: int = 0
    #: With flow windows: the pings not answered yet, matched to answers in order
    #: (``pings.py``).
    pings: PingLedger = field(default_factory=PingLedger)
    #: When the ping the latest answer belongs to was sent (its round trip).
    answered_ping_at: float = 0.0
    missed_pings: int = 0
    next_probe: float = 0.0
    nacks: int = 0
    #: Where this client's last capped NACK ended: a next one starting there confirms a
    #: gap longer than iPXE can name in one NACK.
    capped_end: int | None = None
    #: The ping sequence of this client's latest answer without fresh loss: a listener of
    #: the pace set that has not answered so since the rate last grew holds its growth.
    clean_seq: int = -1


@dataclass
class Stats:
    data_sent: int = 0
    data_bytes: int = 0
    pings_sent: int = 0
    nacks: int = 0
    disconnects: int = 0
    malformed: int = 0
    repairs: int = 0
    passes: int = 0
    #: Flow windows halved on a listener's loss.
    window_cuts: int = 0
    #: Pace-set listeners that stopped answering long enough to stop gating the stream.
    stalls: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class SlamServer:
    """Serves one file to one group.  Feed it datagrams and time; it says what to send."""

    def __init__(
        self, content: Content, group: Address, config: ServerConfig | None = None, now: float = 0.0
    ) -> None:
        self.config = config or ServerConfig()
        self.group = group
        self.stats = Stats()
        self.peers: OrderedDict[Address, Peer] = OrderedDict()
        self.master: Address | None = None
        cfg = self.config
        self.pacer = Pacer(
            cfg.max_rate,
            cfg.min_rate,
            cfg.burst,
            now,
            cfg.loss_backoff_threshold,
            cfg.loss_growth_threshold,
            start_rate=cfg.start_rate,
            slow_start=cfg.slow_start,
        )
        # With flow windows a loss shrinks the window of the listener that lost it; cutting
        # the shared rate too only slowed everyone (a lone guest-model client took 0.82 s
        # instead of 0.38 s for 5 MiB, with no fewer bytes on the group).
        self.pacer.cuts = not self.config.flow_windows
        self._events: deque[Event] = deque()
        self._unicast: list[tuple[bytes, Address]] = []
        self._seq = 0
        self._chase = False
        self._confirmed_seq = 0
        #: The pace set's flow windows (``flow_windows``), by address.
        self.flows: dict[Address, Flow] = {}
        #: The pace set: the master, then the earliest-joined other clients.
        self._pace_members: list[Address] = []
        #: Data sequence number when the pacing rate last went up.
        self._grown_seq = 0
        self._min_rtt = float("inf")
        self._idle_reported = True
        self._probe_wakeup: float | None = None
        self.master_changes = 0
        #: Holding the stream for a wave of clients: armed now and whenever the server goes
        #: idle; the deadline runs from the wave's first client.
        self._gather_armed = self.config.min_clients > 1
        self._gather_deadline: float | None = None
        self._idle_since: float | None = None
        self._next_keepalive = now
        self._set_content(content, now)

    # ------------------------------------------------------------------ content

    def _set_content(self, content: Content, now: float) -> None:
        self.content = content
        self.header = Header(content.transaction, len(content.data), self.config.block_size)
        self.header_bytes = self.header.encode()
        self.num_blocks = self.header.num_blocks
        self._last_sent_seq = [0] * self.num_blocks
        #: The data sequence number of each block's first copy in this transaction.
        self._first_sent_seq = [0] * self.num_blocks
        self._last_sent_time = [-1e9] * self.num_blocks
        #: With flow windows: copies sent to fill gaps clients named (``copies.py``).
        self._copies = CopyWatch()
        self._queued = bytearray(self.num_blocks)
        self._repair: deque[int] = deque()
        self._cursor = self.num_blocks
        self._stream_active = False
        self._reset_credit()
        self._emit(
            "transaction",
            session=f"{content.transaction:08x}",
            bytes=len(content.data),
            blocks=self.num_blocks,
            block_size=self.config.block_size,
        )

    def replace_content(self, content: Content, now: float) -> None:
        """The file changed: new header, everyone starts over from block 0."""
        if content.transaction == self.content.transaction:
            raise ValueError("a changed file needs a new transaction id")
        was_streaming = self._stream_active
        self._set_content(content, now)
        for peer in self.peers.values():
            peer.first_gap = 0
            peer.next_probe = now
        if self.peers or was_streaming:  # silent listeners of a stream need the new file too
            self._start_stream(0, now)

    # ------------------------------------------------------------------ input

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        try:
            message = decode_client_datagram(data)
        except MalformedSlam as exc:
            self.stats.malformed += 1
            self._emit("malformed", client=_fmt(addr), reason=str(exc), bytes=len(data))
            return
        if isinstance(message, Disconnect):
            self.stats.disconnects += 1
            if addr in self.peers:
                self._drop(addr, "disconnect", now)
            return
        self.stats.nacks += 1
        self._on_nack(addr, message, now)

    def _on_nack(self, addr: Address, nack: Nack, now: float) -> None:
        peer = self.peers.get(addr)
        if peer is None:
            if len(self.peers) >= self.config.max_clients:
                self._emit("client_refused", client=_fmt(addr), reason="client list full")
                return
            peer = Peer(addr, joined=now, last_heard=now)
            self.peers[addr] = peer
            self._emit("client_joined", client=_fmt(addr))
            returning = self._idle_since is not None and now - self._idle_since < NEW_WAVE_AFTER
            if returning:
                self._gather_armed = False  # the last wave's straggler, not a new wave
            if self._gather_armed and self._gather_deadline is None:
                self._gather_deadline = now + self.config.max_wait
                self._emit("gather_start", min_clients=self.config.min_clients, max_wait=self.config.max_wait)
        # mini-slamd's push_client: the latest NACKer goes to the head of the list.
        self.peers.move_to_end(addr, last=False)
        if self.master is None:
            self._set_master(addr)
        elif peer.nacks == 0:
            self._refresh_pace()
        peer.nacks += 1
        solicited = peer.awaiting
        newly_confirmed = 0
        ranges = nack.clamped(self.num_blocks)
        first_gap = ranges[0][0] if ranges else self.num_blocks
        floor = 0
        if self.config.flow_windows:
            floor = self._floor(first_gap)
            # Lost pings are found by the latest datagram the client provably took: the
            # floor, or, while it walks an old gap and the floor stands still, the copies
            # of blocks it named (``copies.py``).  Confirmations keep to the floor: counted
            # there too, the copies made more named blocks fresh loss and slowed a NIC that
            # drops without queueing (docs/pyslamd.md, "Lost pings").
            taken = max(floor, self._copies.proven(addr, first_gap))
            solicited = self._match_ping(peer, taken, now)
            self._copies.named(addr, ranges, peer.ping_seq, self._last_sent_seq)
        if solicited:
            rtt = now - (peer.answered_ping_at if self.config.flow_windows else peer.last_ping)
            peer.srtt = 0.75 * peer.srtt + 0.25 * rtt
            if addr == self.master:
                newly_confirmed = peer.ping_seq - self._confirmed_seq
                self._confirmed_seq = max(self._confirmed_seq, peer.ping_seq)
                # Queueing delay: a receiver that falls behind answers ever later.
                self._min_rtt = min(self._min_rtt, rtt)
                late = rtt > max(4 * self._min_rtt, self._min_rtt + self.config.queue_delay_limit)
                if late and not self.config.flow_windows:
                    self.pacer.note_congestion()
        peer.ping_sent = None
        peer.awaiting = False
        newest, oldest = peer.pings.newest, peer.pings.oldest
        if newest is not None and oldest is not None:  # more pings out (flow windows)
            peer.awaiting = True
            peer.ping_sent = newest.sent
            peer.awaiting_since = oldest
        peer.last_heard = now
        peer.missed_pings = 0
        peer.first_gap = first_gap
        flow = self.flows.get(addr)
        if flow is not None and solicited:
            self._flow_answered(addr, flow, max(peer.ping_seq, floor), ranges)
        elif flow is not None:
            flow.confirmed = max(flow.confirmed, floor)  # unsolicited, yet it holds what it holds
        if solicited and not self._fresh_loss(ranges, peer, now):
            peer.clean_seq = max(peer.clean_seq, peer.ping_seq)
        if not ranges:
            peer.next_probe = now + self.config.idle_probe_interval
            return
        peer.next_probe = now
        # An iPXE NACK capped at 4 blocks means "the gap goes on": stream from there.  Any
        # other NACK names its whole gap and gets just those blocks.  A fresh iPXE client
        # asks for block 0 only ("20 21 00", it knows nothing yet); it gets block 0 and a
        # ping, and its answer (1, 4) then starts the stream, while a client that lacked
        # only block 0 is simply done.
        gap_goes_on = len(nack.ranges) == 1 and nack.ranges[0][1] >= IPXE_MAX_BLOCKS_PER_NACK
        # A late answer to a ping sent just before the stream ended names blocks still on
        # their way: restarting the stream there would send the file's tail twice.
        confirmed_run = peer.capped_end == first_gap or first_gap == self._stream_stop
        peer.capped_end = first_gap + IPXE_MAX_BLOCKS_PER_NACK if gap_goes_on else None
        may_stream = gap_goes_on and (not self._full_pass_done or confirmed_run)
        if may_stream and not self._stream_active and not self._in_flight(first_gap, peer, solicited, now):
            self._start_stream(first_gap, now)
        new_losses = queued = 0
        for first, count in ranges:
            for block in range(first, first + count):
                if self._stream_active and self._cursor <= block < self._stream_stop:
                    continue  # the stream is about to send it
                if self._in_flight(block, peer, solicited, now):
                    continue
                if not self._queued[block]:
                    self._queued[block] = 1
                    self._repair.append(block)
                    queued += 1
                    fresh = now - self._last_sent_time[block] < LOSS_HORIZON
                    if solicited and self._last_sent_seq[block] > 0 and fresh:
                        new_losses += 1  # lost at the current rate, not an old gap found late
        if solicited and (addr == self.master or self._stream_active):
            # Random loss rarely takes 4 blocks in a row; an overflowing NIC or socket
            # buffer does.  A run that long, all sent before our ping, means "slow down",
            # from the master or from any client of the pace set (``pace_set``).
            for first, count in ranges:
                last = first + count - 1
                if count >= IPXE_MAX_BLOCKS_PER_NACK and 0 < self._last_sent_seq[last] <= peer.ping_seq:
                    if now - self._last_sent_time[last] < LOSS_HORIZON:
                        self.pacer.cut(now, 0.5)
                        self._emit_rate_changes()
        if solicited and addr == self.master:
            # iPXE names at most 4 blocks per NACK: keep asking the master right after its
            # repairs until it reports nothing to repair, so that the loss count is complete
            # and an old gap (a burst lost while the rate was found) is walked at the round
            # trip's pace, not 4 blocks per 64 streamed.
            self._pace(lambda: self.pacer.note_answer(new_losses, confirmed=newly_confirmed))
            self._chase = queued > 0
        elif solicited and self._stream_active:
            self.pacer.note_listener_answer(new_losses, now)
            self._emit_rate_changes()
        self._maybe_jump_ahead()

    def _floor(self, first_gap: int) -> int:
        """The client holds every block before its first gap, so it has taken (or lost) every
        frame up to the first copy of the block just before it: a confirmation that needs no
        ping (in an in-order pass without loss, nearly all it took)."""
        return self._first_sent_seq[first_gap - 1] if first_gap > 0 else 0

    def _match_ping(self, peer: Peer, floor: int, now: float) -> bool:
        """Which ping does this NACK answer?  The oldest one out (``pings.py``) not found lost
        by ``floor`` (what the client holds); its data sequence number becomes
        ``peer.ping_seq``.  False: none out, an unsolicited NACK."""
        ping = peer.pings.answer(now, floor)
        if ping is None:
            return False
        peer.prev_ping_seq = peer.ping_seq
        peer.ping_seq, peer.answered_ping_at = ping.seq, ping.sent
        return True

    def _flow_answered(self, addr: Address, flow: Flow, ping_seq: int, ranges: list[tuple[int, int]]) -> None:
        """A pace-set listener answered: confirm its window up to ``ping_seq``; the blocks it
        names whose last copy went out before that are lost (``Flow.answered`` tells old
        gaps from this window's losses)."""
        # One answer suffices here (unlike for a repair, ``_sent_before``): a window cut for a
        # datagram that was only overtaken costs some speed, a late cut costs an overflow.
        lost = [
            seq
            for first, count in ranges
            for block in range(first, first + count)
            if 0 < (seq := self._last_sent_seq[block]) <= ping_seq
        ]
        before = flow.window
        flow.answered(ping_seq, lost, self._seq)
        if flow.window < before:
            self.stats.window_cuts += 1
            self._emit("window_cut", client=_fmt(addr), window=round(flow.window, 1), was=round(before, 1))

    def _sent_before(self, block: int, peer: Peer) -> bool:
        """Is the last copy of ``block`` surely lost if this answer names it?  Yes if it went
        out before the ping of the client's previous answer too: a datagram sent just before
        a ping may reach the client after it (the host's per-CPU queues), so one answer is
        not proof; two in a row are.  (The real-socket tests lost that order for up to about
        10 datagrams; a window of 4-8 in the lab makes this one more answer, a few ms.)"""
        sent = self._last_sent_seq[block]
        return 0 < sent <= min(peer.ping_seq, peer.prev_ping_seq)

    def _in_flight(self, block: int, peer: Peer, solicited: bool, now: float) -> bool:
        """Sent after the ping this NACK answers (or, unsolicited, very lately): still on its way."""
        if solicited and self.config.flow_windows:
            return self._last_sent_seq[block] > 0 and not self._sent_before(block, peer)
        if solicited:
            return self._last_sent_seq[block] > peer.ping_seq
        return now - self._last_sent_time[block] < self.config.in_flight_holdoff

    # ------------------------------------------------------------------ streaming and pacing

    def _reset_credit(self) -> None:
        """A new wave (or file): its first stream runs to the end, for everyone listening."""
        self._full_pass_done = False
        self._stream_stop = self.num_blocks
        self._credit = FIRST_CREDIT // 2

    def _start_stream(self, first: int, now: float) -> None:
        """After a full pass, a stream is a *repair* of one client's confirmed gap: it
        stops after its credit, and the next probe says whether that gap goes on (then
        the credit doubles) or has ended among blocks the client holds.  Streaming to the
        end instead sent the file again for a client that lost a dozen short bursts
        (a TCG rtl8139 behind a fast master: 2.1 x the file on the group)."""
        if first >= self.num_blocks:
            return
        if not self._full_pass_done:
            stop = self.num_blocks
        else:
            self._credit = self._credit * 2 if first == self._stream_stop else FIRST_CREDIT
            stop = min(self.num_blocks, first + self._credit)
        self._stream_stop = stop
        self._cursor = first
        self._stream_active = True
        self.stats.passes += 1
        self._idle_reported = False
        self._emit("pass_start", block=first)

    def _maybe_jump_ahead(self) -> None:
        """Skip stream blocks every known client already holds (a late joiner's second pass)."""
        if not self._stream_active or not self.peers:
            return
        lowest = min(peer.first_gap for peer in self.peers.values())
        if lowest > self._cursor:
            self._cursor = lowest
            if self._cursor >= self._stream_stop:
                self._end_stream()

    def _end_stream(self) -> None:
        self._stream_active = False
        self._full_pass_done = self._full_pass_done or self._cursor >= self.num_blocks
        self._cursor = self.num_blocks
        self._emit("pass_end", blocks_sent=self.stats.data_sent)

    @property
    def gathering(self) -> bool:
        """The stream is held for more clients of this wave."""
        return self._gather_armed and self._gather_deadline is not None

    def _check_gather(self, now: float) -> None:
        if not self.gathering:
            return
        assert self._gather_deadline is not None
        enough = len(self.peers) >= self.config.min_clients
        if enough or now >= self._gather_deadline:
            waited = self.config.max_wait - (self._gather_deadline - now)
            self._gather_armed = False
            self._gather_deadline = None
            self.pacer.begin(now)
            self._reset_flows()
            self._emit_rate_changes()
            self._emit(
                "gather_end",
                clients=len(self.peers),
                reason="min_clients" if enough else "max_wait",
                seconds=round(waited, 3),
            )

    def _adapt_rate(self, now: float) -> None:
        master = self.peers.get(self.master) if self.master else None
        late = (
            not self.config.flow_windows
            and master is not None
            and self._stream_active
            and master.awaiting
            and now - master.awaiting_since > self.config.queue_delay_limit
        )  # the master is too busy (or dead) to answer
        self._pace(lambda: self.pacer.end_window(now, master is not None, late))
        self._emit_rate_changes()

    def _pace(self, step: Callable[[], None]) -> None:
        """Run a pacer step that may raise the rate only if the whole pace set kept up.

        Why: the stream must go at the pace of its slowest receiver (NORM's "current
        limiting receiver").  A fast master's clean answers ramped the lab's x-slam train
        to 86 000 datagrams/s while the slower NICs of the wave overflowed (their pings
        lost with the data, so they could not say so): growth now waits until every
        listener of the pace set has answered, without fresh loss, a ping sent since
        the rate last grew."""
        self.pacer.growth_allowed = self._pace_set_kept_up()
        before = self.pacer.rate
        step()
        if self.pacer.rate > before:
            self._grown_seq = self._seq

    def _pace_set_kept_up(self) -> bool:
        if self.config.flow_windows:
            return all(
                self.peers[a].clean_seq >= self._grown_seq for a in self._pace_members if a != self.master
            )
        asked = 1
        for peer in self.peers.values():
            if asked >= self.config.pace_set:
                break
            if peer.address == self.master:
                continue
            asked += 1
            if peer.clean_seq < self._grown_seq:
                return False
        return True

    def _fresh_loss(self, ranges: list[tuple[int, int]], peer: Peer, now: float) -> bool:
        """Does this answer name a block sent lately, before its ping (lost at the current rate)?"""
        for first, count in ranges:
            for block in range(first, first + count):
                sent = self._last_sent_seq[block]
                if 0 < sent <= peer.ping_seq and now - self._last_sent_time[block] < LOSS_HORIZON:
                    return True
        return False

    def _emit_rate_changes(self) -> None:
        for change in self.pacer.changes:
            loss = None if change.loss is None else round(change.loss, 4)
            self._emit("rate", rate=round(change.rate, 1), loss=loss)
        self.pacer.changes.clear()

    @property
    def rate(self) -> float:
        return self.pacer.rate

    def _has_data_work(self) -> bool:
        return bool(self._repair) or self._stream_active

    def _window_open(self) -> bool:
        if self.master is None:
            return True
        if self._seq - self._confirmed_seq >= self.config.max_unconfirmed:
            return False
        if self.gathering:
            return True  # the hold's keepalives go out whatever the windows say
        return all(self.flows[a].room(self._seq, self.peers[a].pings.in_ring) for a in self._pace_members)

    def _refresh_pace(self) -> None:
        """The pace set is the master and the earliest-joined other clients (a stable set,
        so that a window is not thrown away each time its client NACKs); each has a flow."""
        if not self.config.flow_windows:
            return
        master = self.master if self.master is not None and self.master in self.peers else None
        members: list[Address] = [master] if master is not None else []
        others = sorted((p for p in self.peers.values() if p.address != self.master), key=lambda p: p.joined)
        members += [p.address for p in others[: max(0, self.config.pace_set - len(members))]]
        for addr in list(self.flows):
            if addr not in members:
                del self.flows[addr]
        for addr in members:
            if addr not in self.flows:
                limit = float(self.config.max_unconfirmed)
                self.flows[addr] = Flow(
                    confirmed=self._seq, cut_before=self._seq + 1, origin=self._seq, max_window=limit
                )
        self._pace_members = members

    def _reset_flows(self) -> None:
        """A held stream starts: nothing the hold sent is waiting in anyone's queue."""
        for flow in self.flows.values():
            flow.confirmed = flow.origin = self._seq
            flow.cut_before = self._seq + 1

    def _ping_flows(self, now: float, blocked_only: bool = False) -> None:
        """Ask each pace-set listener once half its window is out (or again, after a ping
        timed out); ``blocked_only``: only those whose window stops the stream."""
        for addr in self._pace_members:
            flow = self.flows[addr]
            peer = self.peers[addr]
            if blocked_only:
                # The stream waits for this one: ask, or ask again once the last ping has
                # gone unanswered for a ping timeout (lost with an overflowing ring, or late).
                retry = peer.pings.retry_at()
                if (retry is None or now >= retry) and not flow.room(self._seq, peer.pings.in_ring):
                    self._ping(peer, now)
            elif flow.wants_ping(self._seq):
                self._ping(peer, now)

    def _next_block(self) -> int | None:
        while self._repair:
            block = self._repair.popleft()
            self._queued[block] = 0
            if block < self.num_blocks:
                self.stats.repairs += 1
                return block
        if self._stream_active:
            block = self._cursor
            self._cursor += 1
            if self._cursor >= self._stream_stop:
                self._end_stream()
            return block
        return None

    # ------------------------------------------------------------------ pings and client list

    def _set_master(self, addr: Address | None) -> None:
        if addr != self.master:
            self.master = addr
            self._confirmed_seq = self._seq  # a new master gets a fresh window
            if addr is not None and self.master_changes:
                self.pacer.restart()  # ...and the ramp again: its NIC may be slower
            self.master_changes += 1
            self._min_rtt = float("inf")
            self._refresh_pace()
            self._emit("master", client=_fmt(addr) if addr else None)

    def _ping(self, peer: Peer, now: float) -> None:
        peer.ping_sent = now
        peer.last_ping = now
        peer.last_ping_seq = self._seq
        if self.config.flow_windows:
            peer.pings.sent(self._seq, now)  # ``ping_seq`` is set when it is answered
        else:
            peer.ping_seq = self._seq
        if not peer.awaiting:
            peer.awaiting_since = now
        peer.awaiting = True
        flow = self.flows.get(peer.address)
        if flow is not None:
            flow.pinged = self._seq
        self.stats.pings_sent += 1
        self._unicast.append((encode_ping(self.header), peer.address))

    def _ping_pace_set(self, now: float) -> None:
        """With the master, ask the next ``pace_set - 1`` clients of the list how they keep
        up: a stream paced to the first NACKer overran slower NICs of the same wave, each of
        which then needed most of the file again (about 2 x on the group in the lab's x-slam
        train whenever its e1000 asked first)."""
        asked = 1
        for peer in self.peers.values():
            if asked >= self.config.pace_set:
                break
            if peer.address != self.master and peer.ping_sent is None:
                self._ping(peer, now)
                asked += 1

    def _drop(self, addr: Address, reason: str, now: float) -> None:
        peer = self.peers.pop(addr)
        self._copies.forget(addr)
        seconds = round(now - peer.joined, 3)
        self._emit("client_left", client=_fmt(addr), reason=reason, nacks=peer.nacks, seconds=seconds)
        if addr == self.master:
            self._set_master(next(iter(self.peers), None))
        else:
            self._refresh_pace()
        self._maybe_jump_ahead()

    def _stall_at(self, peer: Peer) -> float | None:
        """When a pace-set listener stops gating the stream: ``stall_after`` after the later
        of its oldest unanswered ping and its last answer.  Why the answer too: a listener
        that answers every few milliseconds is running, whatever pings the ledger still holds
        (``pings.py``: lost ones stay there up to ``STALE``).  Ungating such a listener let a
        CI train's rtl8139 master be overrun for a minute (docs/pyslamd.md, "Lost pings")."""
        oldest = peer.pings.oldest
        return None if oldest is None else max(oldest, peer.last_heard) + self.config.stall_after

    def _check_pings(self, now: float) -> None:
        for addr, flow in self.flows.items():
            peer = self.peers[addr]
            stall_at = self._stall_at(peer)
            if stall_at is not None and not flow.stalled and now >= stall_at:
                flow.stalled = True
                self.stats.stalls += 1
                silent = now - (stall_at - self.config.stall_after)
                self._emit("stalled", client=_fmt(addr), seconds=round(silent, 3))
        for peer in list(self.peers.values()):
            if peer.ping_sent is not None and now >= peer.ping_sent + self._ping_timeout(peer):
                peer.ping_sent = None
                peer.missed_pings += 1
                # Two in a row: random loss rarely takes both, a flooded NIC does.
                if self._stream_active and 2 <= peer.missed_pings <= 4 and not self.config.flow_windows:
                    # A flooded NIC drops our pings too; the master's or a listener's of the
                    # pace set (the only listeners pinged while the stream runs).
                    self.pacer.cut(now, 0.7 if peer.address == self.master else LISTENER_CUT)
                    self._emit_rate_changes()
                silent = now - peer.last_heard >= self.config.silence
                # A listener flooded by a stream drops pings too; it is harmless, and found
                # silent by the probes after the stream if it is really gone.
                listener = self._stream_active and peer.address != self.master
                if silent and peer.missed_pings >= self.config.missed_pings_to_drop and not listener:
                    self._drop(peer.address, "silent", now)

    def _ping_timeout(self, peer: Peer) -> float:
        return min(self.config.max_ping_timeout, max(self.config.min_ping_timeout, 3 * peer.srtt))

    def _probe_quiet_clients(self, now: float) -> None:
        """Stream over and nothing to repair: ask a few clients at once what they lack."""
        if self.master is not None and self.master not in self.peers:
            self._set_master(next(iter(self.peers), None))
        asked = 0
        self._probe_wakeup = None
        for peer in self.peers.values():
            if asked >= self.config.probe_parallel:
                break
            if peer.ping_sent is not None:
                asked += 1
            elif now >= peer.next_probe:
                self._ping(peer, now)
                asked += 1
            elif self._probe_wakeup is None or peer.next_probe < self._probe_wakeup:
                self._probe_wakeup = peer.next_probe

    # ------------------------------------------------------------------ sans-I/O interface

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        self._check_pings(now)
        self._check_gather(now)
        self._adapt_rate(now)
        out: list[tuple[bytes, Address]] = []
        self.pacer.refill(now)
        master = self.peers.get(self.master) if self.master else None
        held = self.gathering
        while self._may_send_data(now, held) and self._has_data_work() and self._window_open():
            if held:
                self._next_keepalive = now + self.config.gather_keepalive
            block = self._next_block()
            if block is None:
                break
            if not held:
                self.pacer.spend()
            self._seq += 1
            self._last_sent_seq[block] = self._seq
            if not self._first_sent_seq[block]:
                self._first_sent_seq[block] = self._seq
            self._last_sent_time[block] = now
            if self.config.flow_windows:
                self._copies.sent(block, self._seq)
            offset = block * self.config.block_size
            payload = memoryview(self.content.data)[offset : offset + self.config.block_size]
            out.append((encode_data(self.header_bytes, block, payload), self.group))
            self.stats.data_sent += 1
            self.stats.data_bytes += len(payload)
            due = master is not None and (
                self._seq - master.last_ping_seq >= self.config.ping_every
                or now - master.last_ping >= self.config.master_ping_interval
            )
            chasing = self._chase and not self._repair
            if master is not None and master.ping_sent is None and (due or chasing):
                self._chase = False
                self._ping(master, now)
                if due and not held and not self.config.flow_windows:
                    self._ping_pace_set(now)
            if self.config.flow_windows and not held:
                self._ping_flows(now)
            if self._unicast:
                out.extend(self._unicast)
                self._unicast.clear()
        blocked = self._has_data_work() and not self._window_open()
        master_blocks = self._seq - self._confirmed_seq >= self.config.max_unconfirmed
        if blocked and master is not None and master.ping_sent is None and master_blocks:
            self._ping(master, now)  # the window waits for this answer
        if blocked and self.config.flow_windows:
            self._ping_flows(now, blocked_only=True)
        if not self._has_data_work():
            self._probe_quiet_clients(now)
            if not self.peers and not self._idle_reported:
                self._idle_reported = True
                self._gather_armed = self.config.min_clients > 1  # the next wave waits again
                self._gather_deadline = None
                self._idle_since = now
                self._reset_credit()
                self._emit("idle", **self.stats.as_dict())
        out.extend(self._unicast)
        self._unicast.clear()
        return out

    def _may_send_data(self, now: float, held: bool) -> bool:
        if held:
            return now >= self._next_keepalive
        return self.pacer.may_send()

    def get_timer(self) -> float | None:
        deadlines: list[float] = []
        if self.gathering:
            assert self._gather_deadline is not None
            deadlines.append(self._gather_deadline)
        if self._has_data_work():
            if self._window_open():
                deadlines.append(self._next_keepalive if self.gathering else self.pacer.next_token_at())
        elif self._probe_wakeup is not None:  # probes run only when there is nothing to send
            deadlines.append(self._probe_wakeup)
        deadlines.extend(p.ping_sent + self._ping_timeout(p) for p in self.peers.values() if p.ping_sent)
        for addr, flow in self.flows.items():
            pings = self.peers[addr].pings
            stall_at, retry = self._stall_at(self.peers[addr]), pings.retry_at()
            if stall_at is not None and not flow.stalled:
                deadlines.append(stall_at)
            if retry is not None and self._has_data_work() and not flow.room(self._seq, pings.in_ring):
                deadlines.append(retry)
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        self._check_pings(now)
        self._check_gather(now)

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def _emit(self, name: str, **fields: Any) -> None:
        self._events.append(Event(name, fields))


def _fmt(addr: Address) -> str:
    return f"{addr[0]}:{addr[1]}"
