"""Sans-I/O state machine of one unicast read transfer (RRQ), RFC 1350/2347/7440.

Why it looks the way it does:

* Blocks are counted with an unbounded integer internally and put on the wire
  modulo 65536, so transfers longer than 65535 blocks roll over to block 0
  (what atftpd, tftp-hpa, curl and iPXE all expect).
* Data is (re)sent only when an ACK advances the window or when the timer fires.
  A duplicate ACK never triggers a send, so the Sorcerer's Apprentice stream
  doubling cannot happen (RFC 1123 4.2.3.1 makes that a MUST).
* So a lost DATA costs a whole retransmission timeout, and the timeout comes from
  measured round trips (``rtt``, :mod:`netboot.tftp.rto`: RFC 6298 smoothing, Karn's
  rule, back-off, a 20 ms floor) unless the client asked for one (RFC 2349 ``timeout``)
  or the operator set ``--retry-timeout``: those are used exactly, as atftpd does.  With
  atftpd's fixed 5 s a VM on a 5 % lossy link needed 97 s for 2 MiB (issue 18).
  Round trips are sampled on blocks sent once by the general path, which therefore
  takes one block in ``SAMPLE_EVERY`` from the fast lanes (they read the clock too
  rarely); the first datagram is no sample (its time includes starting the transfer).
  A duplicate ACK is never answered, except that one that arrives while the timer is
  backed off (the client is back after a stall) brings the next retransmission forward
  to one un-backed-off RTO: at most one send per duplicate ACK.  An adaptive transfer
  gives up after ``max_retries * timeout`` seconds without progress.  ``first_retry``
  keeps the former schedule (1 s doubling up to ``timeout``) for comparisons.
* Nothing is retransmitted to a peer that has never answered.  A request's source
  address can be spoofed, and whatever goes to an address that never answers is what
  an attacker aims at a victim (issue 20: six full DATA for one 17-byte RRQ, 184 x;
  atftpd sent one).  So the first datagram (OACK or DATA 1) goes out once; a client
  that lost it asks again (iPXE repeats its RRQ after 0.25 s, RFC 1350 clients after
  their timeout), and the handler answers each repeated RRQ with it once more
  (:attr:`first_datagram`, ``unicast.UnicastHandler``).  A peer that never answers is
  dropped silently after ``timeout`` seconds (no ERROR either).  From its first ACK on,
  the peer is ``proven`` and lost blocks are retransmitted on the timer.
* A datagram from a foreign TID is answered with ERROR 5 and changes nothing.
  Garbage from the peer is dropped (and reported); only a well-formed ERROR from
  the peer ends the transfer.
* The last DATA is always shorter than blksize: a size that is an exact multiple
  of blksize ends with an empty DATA (RFC 2348).  A source of unknown size (netascii,
  converted as it is read) ends at its first short block, and so does a file that
  shrank while served.
* ``receive_datagram`` never raises: one bad datagram must not cost a transfer.
"""

from __future__ import annotations

import struct

from netboot.tftp import events as ev
from netboot.tftp.events import CoreEvent
from netboot.tftp.frames import FrameRing
from netboot.tftp.options import Negotiation
from netboot.tftp.packets import Error as ErrorPacket
from netboot.tftp.packets import ErrorCode, OAck, encode, encode_error
from netboot.tftp.rto import RttEstimator
from netboot.tftp.sources import BlockSource
from netboot.tftp.transfer_base import Address, TransferBase

_DATA_HEADER = struct.Struct("!HH").pack
#: ``last_block`` while a streamed source has not shown its end yet.
_UNKNOWN_END = 1 << 62
#: The fast lanes leave every 64th block to the general path, which samples a round trip.
SAMPLE_EVERY = 64


class ReadTransfer(TransferBase):
    """Sends ``source`` to ``peer``; drive it with datagrams and timer ticks."""

    def __init__(
        self,
        peer: Address,
        source: BlockSource,
        negotiation: Negotiation,
        *,
        now: float,
        timeout: float = 5.0,
        max_retries: int = 5,
        trace: bool = False,
        check_port: bool = True,
        first_retry: float | None = None,
        rtt: RttEstimator | None = None,
    ) -> None:
        self.peer = peer
        self.negotiation = negotiation
        self.finished = False
        self.succeeded = False
        self.bytes_sent = 0
        self.retransmits = 0
        #: Blocks the C loop sent (netboot/tftp/native_lane.py); reported in ``done``.
        self.native_blocks = 0
        self._source = source
        self._blksize = negotiation.blksize
        self._window = negotiation.windowsize
        self._timeout = float(negotiation.timeout) if negotiation.timeout is not None else timeout
        #: Adaptive timeouts, unless the client fixed one (``timeout`` option).
        self._rtt = rtt if negotiation.timeout is None else None
        #: The timeout armed after progress (fixed, first step of the former back-off, or RTO).
        self._first_rto = self._timeout
        if first_retry is not None and negotiation.timeout is None:
            self._first_rto = min(self._timeout, first_retry)
        if self._rtt is not None:
            self._first_rto = self._rtt.rto
        #: No progress for this long ends an adaptive transfer.
        self._silence_limit = max_retries * self._timeout
        self._last_progress = now
        #: The round-trip sample in flight: (block, time sent); None once retransmitted.
        self._probe: tuple[int, float] | None = None
        #: The newest block the timer sent again; an ACK beyond it clears the back-off.
        self._resent = 0
        self._backed_off = False
        #: Fast lanes: the clock and the newest block when the clock was last read.
        self._lane_clock = 0.0
        self._lane_sent = 0
        self._max_retries = max_retries
        self._trace = trace
        self._check_port = check_port
        self._started = now
        #: Absolute number of the block that ends the transfer (always shorter than blksize);
        #: for a source of unknown size, learnt from the first short read.
        self.last_block = source.size // self._blksize + 1 if source.size is not None else _UNKNOWN_END
        #: Highest block the client acknowledged; -1 while the OACK awaits its ACK 0.
        self._acked = -1 if negotiation.needs_oack else 0
        self._sent = 0
        self._retries = 0
        self._init_queues()
        #: The peer has sent an ACK: from now on lost blocks are retransmitted.
        self.proven = False
        #: Until proven, the timer only ends the transfer (see the module docstring).
        self._deadline: float | None = now + self._timeout
        self._oack: bytes | None = None
        self._lockstep = self._window == 1 and not trace
        #: Highest block the fast lane may send: the full blocks of a lock-step transfer
        #: (the short last block goes the general way); 0 switches the lane off.
        self._fast_last = self.last_block - 1 if self._lockstep and source.size is not None else 0
        self._ring = FrameRing(source, self._blksize) if self._fast_last > 0 else None
        #: What the lanes may use of ``_fast_last``: nothing until the first round trip was
        #: measured by the general path (the lanes read the clock too rarely to do it).
        self._lane_last = self._fast_last if self._rtt is None else 0
        #: Where a lane run stops: ``_lane_last``, or (adaptive) the block before the next one
        #: the general path samples a round trip on (``_next_probe``, every ``SAMPLE_EVERY``).
        self._lane_stop = self._lane_last
        self._next_probe = 0
        if negotiation.needs_oack:
            self._oack = encode(OAck(tuple(negotiation.acknowledged)))
            self._outbox.append((self._oack, peer))
            self._events.append(CoreEvent(ev.OACK, {"options": dict(negotiation.acknowledged)}))
        else:
            self._send_window(1, now)
        self._probe = None  # includes the transfer's start-up: no sample
        #: What a repeated RRQ of an unproven peer is answered with (immutable bytes).
        self.first_datagram: bytes = bytes(self._outbox[0][0])

    # -- sans-I/O interface ------------------------------------------------------------
    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        if self.finished:
            return
        if addr != self.peer and self._is_foreign(addr):
            return
        if len(data) == 4 and data[1] == 4 and data[0] == 0:  # fast path: ACK
            self._on_ack((data[2] << 8) | data[3], now)
            return
        packet = self._decode_or_drop(data)
        if packet is None:
            return
        if isinstance(packet, ErrorPacket):
            self._finish(False, f"client sent ERROR {packet.code}: {packet.message}", now)
        # DATA, requests, OACK from our own client make no sense here: ignore them.

    def reply_to_ack(self, ack: bytes | bytearray, length: int, now: float) -> memoryview | None:
        """Fast lane for the lock-step steady state; None means "use receive_datagram".

        ``ack[:length]`` is the datagram.  Why: one ACK in, one DATA out is the whole
        cost of a transfer, and the general path (outbox list, event queue, timer
        query, building the datagram) spends several microseconds per block on work
        this case does not need.  The reply is a frame of a :class:`FrameRing`,
        valid until the next call into this core: send it before calling again.
        The caller must already know the datagram came from the peer (a connected
        socket).  Only the in-order ACK of the newest block is handled, and only
        while the next block is a full one; everything else (duplicates, the last
        blocks, errors) falls through, and nothing has changed then.

        In lock-step the newest block sent is always the one after the newest
        acknowledged (``_sent == _acked + 1``), so matching ``_sent`` is matching
        "in order".
        """
        sent = self._sent
        if (
            length != 4
            or sent >= self._lane_stop
            or self._probe is not None
            or ack[3] != sent & 0xFF
            or ack[2] != (sent >> 8) & 0xFF
            or ack[1] != 4
            or ack[0] != 0
        ):
            return None
        block = sent + 1
        ring = self._ring
        assert ring is not None  # built whenever _fast_last > 0
        index = block - ring.first
        if not 0 <= index < ring.loaded:
            if not ring.load(block):
                return None
            index = 0
        self._acked = sent
        self.proven = True
        self._retries = 0
        if now != self._lane_clock:
            self._lane_sample(sent, now)
        if self._backed_off:
            self._clear_backoff()
        self._probe = None
        self._deadline = now + self._first_rto
        self._last_progress = now
        self._sent = block
        self.bytes_sent += self._blksize
        return ring.frames[index]

    def _lane_sample(self, sent: int, now: float) -> None:
        """A fast lane read the clock: the mean round trip since the last read is a sample."""
        blocks = sent - self._lane_sent
        if self._rtt is not None and self._lane_clock > 0.0 and blocks >= 8:
            self._rtt.sample((now - self._lane_clock) / blocks)
            self._first_rto = self._rtt.rto
        self._lane_clock = now
        self._lane_sent = sent

    def _clear_backoff(self) -> None:
        """The newest block acknowledged was sent once: the path keeps up with the plain RTO."""
        self._backed_off = False
        if self._rtt is not None:
            self._rtt.answered_in_time()
            self._first_rto = self._rtt.rto

    @property
    def lanes_possible(self) -> bool:
        """The fast lanes (Python, native) can serve part of this transfer."""
        return self._fast_last > 0

    @property
    def rto(self) -> float:
        """The timeout armed after progress now (drivers size their receive timeout by it)."""
        return self._first_rto

    def source_fileno(self) -> int | None:
        """The file descriptor behind the source, if any (the native lane needs one)."""
        fileno = getattr(self._source, "fileno", None)
        return int(fileno()) if callable(fileno) else None

    def native_window(self) -> tuple[int, int, int] | None:
        """(blksize, newest block sent, last block the C loop may send), or None.

        The C loop (lockstep.c) serves the same steady state as :meth:`reply_to_ack`;
        afterwards :meth:`advance_native` brings the core up to date.
        """
        sent = self._sent
        if self.finished or sent >= self._lane_stop or self._acked < sent - 1 or self._probe is not None:
            return None
        return self._blksize, sent, self._lane_stop

    def advance_native(self, count: int, now: float, started: float | None = None, idle: float = 0.0) -> None:
        """The C loop sent blocks ``_sent+1 .. _sent+count``, each after the ACK of the one before.

        ``started``: when the run began; ``idle``: how long it waited at the end for an ACK
        that did not come (its receive timeout), 0 if it ended on a datagram it does not
        handle.  The run's mean time per block, idle time left out, is a round trip.
        """
        if count <= 0:
            return
        if self._rtt is not None and started is not None and count >= 8:
            self._rtt.sample(max(0.0, now - idle - started) / count)
            self._first_rto = self._rtt.rto
        now -= idle  # the newest block went out about then
        self._lane_clock = 0.0
        self._probe = None
        if self._backed_off:
            self._clear_backoff()
        self._acked = self._sent + count - 1
        self.proven = True
        self._sent += count
        self.bytes_sent += count * self._blksize
        self.native_blocks += count
        self._retries = 0
        self._deadline = now + self._first_rto
        self._last_progress = now

    def handle_timer(self, now: float) -> None:
        deadline = self._deadline
        if deadline is None or now < deadline or self.finished:
            return
        if not self.proven:
            self._finish(
                False,
                f"no ACK within {self._timeout:g} s: nothing is retransmitted to an address that "
                "never answered (it may be spoofed); the client can ask again",
                now,
            )
            return
        self._retries += 1
        rtt = self._rtt
        if rtt is not None:
            silent = now - self._last_progress
            if silent >= self._silence_limit:
                self._give_up(f"no ACK for {silent:.1f} s ({self._retries - 1} retransmissions)", now)
                return
        elif self._retries > self._max_retries:
            self._give_up(f"no ACK after {self._max_retries} retries of {self._timeout:g} s", now)
            return
        self.retransmits += 1
        self._probe = None  # Karn: the answer to a retransmitted block says nothing about the path
        self._lane_clock = 0.0
        if rtt is not None:
            rtt.timed_out()
            self._backed_off = True
            self._first_rto = rtt.rto
            wait = rtt.rto
        else:
            wait = min(self._timeout, self._first_rto * 2**self._retries)
        fields: dict[str, object] = {"attempt": self._retries}
        if rtt is not None:
            fields["rto"] = round(wait, 4)
        if self._acked < 0 and self._oack is not None:
            self._outbox.append((self._oack, self.peer))
            self._events.append(CoreEvent(ev.RETRANSMIT, {"block": 0, **fields}))
        else:
            first = self._acked + 1
            self._events.append(CoreEvent(ev.RETRANSMIT, {"block": first & 0xFFFF, **fields}))
            self._send_window(first, now)
            self._resent = max(self._resent, self._sent)
        self._deadline = now + wait

    def _give_up(self, reason: str, now: float) -> None:
        self._outbox.append((encode_error(ErrorCode.NOT_DEFINED, "timed out waiting for ACK"), self.peer))
        self._finish(False, reason, now)

    # -- internals ---------------------------------------------------------------------
    def _on_ack(self, wire_block: int, now: float) -> None:
        self._lane_clock = 0.0
        if not self.proven:
            self.proven = True
            if self._rtt is not None:
                self._rtt.first_answer(now - self._started)
                self._first_rto = self._rtt.rto
            if self._deadline is not None:
                self._deadline = min(self._deadline, now + self._first_rto)
        acked = self._acked
        block = acked + ((wire_block - acked) & 0xFFFF)
        if self._trace:
            self._events.append(CoreEvent(ev.ACK, {"block": wire_block}))
        if block == acked or block > self._sent:
            # A duplicate or stale ACK is never answered (Sorcerer's Apprentice).  One that
            # comes while the timer is backed off shows the client is back after a stall:
            # the next retransmission comes one plain RTO from now, not a backed-off one.
            rtt = self._rtt
            if rtt is not None and rtt.backoff and self._deadline is not None:
                self._deadline = min(self._deadline, now + rtt.base)
            return
        self._acked = block
        self._retries = 0
        self._last_progress = now
        if self._backed_off and block > self._resent:
            self._clear_backoff()
        probe = self._probe
        if self._rtt is not None and probe is not None and block >= probe[0]:
            self._rtt.sample(now - probe[1])
            self._first_rto = self._rtt.rto
            self._probe = None
            self._lane_last = self._fast_last
            self._next_probe = block + SAMPLE_EVERY
            self._lane_stop = min(self._lane_last, self._next_probe - 1)
        if block >= self.last_block:
            self._finish(True, None, now)
            return
        self._send_window(block + 1, now)
        self._deadline = now + self._first_rto

    def _send_window(self, first: int, now: float) -> None:
        if first > self._sent and self._probe is None and self._rtt is not None and first >= self._next_probe:
            self._probe = (first, now)
        if self._window == 1 and first > self._sent and not self._trace:  # lock-step fast path
            payload = self._source.read((first - 1) * self._blksize, self._blksize)
            self._outbox.append((_DATA_HEADER(3, first & 0xFFFF) + payload, self.peer))
            self._sent = first
            self.bytes_sent += len(payload)
            if len(payload) < self._blksize and first < self.last_block:
                self.last_block = first  # the stream ended here (netascii), or the file shrank
            return
        last = min(first + self._window - 1, self.last_block)
        blksize = self._blksize
        read = self._source.read
        peer = self.peer
        out = self._outbox
        for block in range(first, last + 1):
            payload = read((block - 1) * blksize, blksize)
            out.append((_DATA_HEADER(3, block & 0xFFFF) + payload, peer))
            if block > self._sent:
                self._sent = block
                self.bytes_sent += len(payload)
            if self._trace:
                self._events.append(CoreEvent(ev.DATA, {"block": block & 0xFFFF, "bytes": len(payload)}))
            if len(payload) < blksize:
                self.last_block = min(self.last_block, block)
                break

    def _finish(self, ok: bool, reason: str | None, now: float) -> None:
        self.finished = True
        self._fast_last = self._lane_last = self._lane_stop = 0
        self.succeeded = ok
        self._deadline = None
        fields: dict[str, object] = {
            "ok": ok,
            "bytes": self.bytes_sent,
            "seconds": round(now - self._started, 6),
            "blocks": self._sent,
            "retransmits": self.retransmits,
            "lane": "native" if self.native_blocks else "python",
        }
        if self._rtt is not None and self._rtt.srtt is not None:
            fields["srtt"] = round(self._rtt.srtt, 6)
            fields["rto"] = round(self._rtt.base, 6)
        if reason:
            fields["reason"] = reason
            self._events.append(CoreEvent(ev.ERROR, {"reason": reason}))
        self._events.append(CoreEvent(ev.DONE, fields))
