"""A sans-I/O TFTP / TFTM (RFC 2090) / MTFTP client that behaves like iPXE's tftp.c.

Why: the servers must be right with real iPXE, but tests and benchmarks cannot boot
hundreds of VMs.  This core reproduces what iPXE does on the wire, quirks included
(docs/multicast.md, "The iPXE-faithful clients", names the iPXE sources it follows), so
a simulated client fails where a ROM would fail:

* the RRQ bytes and option order (``blksize`` 1432, ``tsize``, ``multicast``);
* one timer (:mod:`ipxe_timer`) for RRQ retransmission, ACK retransmission and the
  silence limit (0.25 s doubling, failure after about 15.75 s);
* the TID filter: the first packet from either socket fixes the peer; anything from
  another source is dropped silently, on the group socket too;
* ``SEND_ACK``: set by any unicast packet, cleared by an OACK ``mc=0``; a master ACKs
  the first gap of its block bitmap after every packet; non-masters are silent, even
  when they finish;
* MTFTP recovery: a timer expiry after any packet reopens the socket and re-sends the
  RRQ; four expiries without one fall back to plain TFTP on port 69.  With
  ``reopen_falls_back`` (the default) a reopen goes straight on to the fallback without
  an MTFTP RRQ on the wire, as every reopening VM did in the lab: the reopened socket is
  a *named* socket with no window until its name resolves in a later step, and the
  no-delay timer spends the remaining MTFTP timeouts meanwhile (docs/multicast.md,
  "Never let a listener time out").  ``reopen_falls_back=False`` gives the reading of
  the code alone (RRQ again).

Settings that reproduce field problems:

* ``deaf``: the group socket never receives (the stock-ROM ``tftm://`` bug,
  docs/findings.md#ipxe-tftm-deaf);
* ``loss``: drop that fraction of received datagrams (seeded, so runs repeat);
* ``zero_on_reopen``: the *suspected* MTFTP defect first proposed for the zero-filled
  images (docs/findings.md#ipxe-mtftp-stale-fallback): on a reopen the bitmap survives but
  the data received so far is lost.  Off by default: a real VM run (docs/multicast.md, "VM
  check") points at a defect that the faithful code already has.  When an MTFTP client
  that has received data falls back to plain TFTP, iPXE frees the bitmap but keeps
  ``filesize``; the OACK's tsize is then not larger, so ``tftp_presize`` leaves the bitmap
  empty, and an empty bitmap is "full" after the first DATA.  The image is whatever the
  buffer held: the blocks heard while listening, zeros elsewhere, and ``ok`` on the
  console.
* ``hears_group_first``: a group packet is processed before the first RRQ leaves (iPXE
  may run its network process before its retry process), so the client never sends
  that RRQ and listens unknown to the server; the lab saw it in a full boot and a
  lossy train (docs/multicast.md, "the unknown listener").

The machine around the client (issue 18: on TCG the pass is bound by how fast the
slowest guest takes frames in):

* ``ring``: the NIC's receive ring, in frames (iPXE's drivers: 4 for realtek, 16 for
  intel, 32 for vmxnet3); a frame that finds it full is dropped (``dropped_by_ring``).
  Every frame takes a slot, whatever socket it is for (iPXE's drivers accept all
  multicast);
* ``frame_cost``: seconds the guest spends on each frame, one after the other;
* ``stalls``: ``(start, end)`` spans in which the guest is not scheduled at all: frames
  wait in the ring, timers fire at the end.

With none of them set a datagram is handled the moment it arrives, as before.

The core never touches a socket or a clock.  It asks its runner, through events, to
open the unicast socket (again: iPXE takes a new local port on every reopen) and to
join or leave a group.
"""

from __future__ import annotations

import random
import struct
from collections import deque
from dataclasses import dataclass

from netboot.clients.cstr import inet_aton, strtoul
from netboot.clients.ipxe_timer import RetryTimer

Address = tuple[str, int]

TFTP_PORT = 69
MTFTP_PORT = 1759
MTFTP_GROUP: Address = ("239.255.1.1", 3001)
TFTP_MAX_BLKSIZE = 1432
TFTP_DEFAULT_BLKSIZE = 512
MTFTP_MAX_TIMEOUTS = 3


class Flags:
    """iPXE's ``TFTP_FL_*`` (plain ints: this is the per-packet hot path)."""

    RRQ_SIZES = 0x1
    RRQ_MULTICAST = 0x2
    SEND_ACK = 0x4
    MTFTP_RECOVERY = 0x8


# --- events for the runner -------------------------------------------------------------


@dataclass(frozen=True)
class OpenSocket:
    """Close the unicast socket (if any) and open a new one on a new local port."""

    server_port: int


@dataclass(frozen=True)
class OpenGroup:
    group: str
    port: int


@dataclass(frozen=True)
class CloseGroup:
    pass


@dataclass(frozen=True)
class Note:
    """Something worth counting or tracing: master, reopen, fallback, drop..."""

    kind: str
    detail: str = ""


@dataclass(frozen=True)
class Finished:
    ok: bool
    error: str | None


ClientEvent = OpenSocket | OpenGroup | CloseGroup | Note | Finished


class _Bitmap:
    """iPXE's block bitmap: only grows; ``first_gap`` is the count of leading set bits."""

    def __init__(self) -> None:
        self.bits = bytearray()
        self.first_gap = 0

    @property
    def length(self) -> int:
        return len(self.bits)

    def resize(self, length: int) -> None:
        if length > len(self.bits):
            self.bits.extend(bytes(length - len(self.bits)))

    def set(self, index: int) -> None:
        if index >= len(self.bits):
            return
        self.bits[index] = 1
        while self.first_gap < len(self.bits) and self.bits[self.first_gap]:
            self.first_gap += 1

    @property
    def full(self) -> bool:
        return self.first_gap == len(self.bits)


class IpxeTftpClient:
    """One download, as one iPXE ``tftp_request``.  ``scheme``: tftp, tftm or mtftp."""

    def __init__(
        self,
        server: str,
        path: str,
        scheme: str = "tftm",
        port: int | None = None,
        blksize: int = TFTP_MAX_BLKSIZE,
        deaf: bool = False,
        loss: float = 0.0,
        seed: int = 0,
        zero_on_reopen: bool = False,
        mtftp_group: Address = MTFTP_GROUP,
        duplicate_rrq: bool = False,
        reopen_falls_back: bool = True,
        hears_group_first: bool = False,
        ring: int | None = None,
        frame_cost: float = 0.0,
        stalls: tuple[tuple[float, float], ...] = (),
    ) -> None:
        if scheme == "tftp":
            flags, default_port = Flags.RRQ_SIZES, TFTP_PORT
        elif scheme == "tftm":
            flags, default_port = Flags.RRQ_SIZES | Flags.RRQ_MULTICAST, TFTP_PORT
        elif scheme == "mtftp":
            flags, default_port = Flags.MTFTP_RECOVERY, MTFTP_PORT
        else:
            raise ValueError(f"unknown scheme {scheme!r}: use tftp, tftm or mtftp")
        self.server = server
        self.path = path
        self.scheme = scheme
        self.flags = flags
        self.port = port if port is not None else default_port
        self.request_blksize = min(blksize, TFTP_MAX_BLKSIZE)
        self.deaf = deaf
        self.loss = loss
        self.zero_on_reopen = zero_on_reopen
        self._mtftp_group = mtftp_group
        self.duplicate_rrq = duplicate_rrq  # test aid: every RRQ goes out twice, back to back
        self.reopen_falls_back = reopen_falls_back
        self.hears_group_first = hears_group_first
        self._rng = random.Random(seed)
        self.ring = ring
        self.frame_cost = frame_cost
        self.stalls = tuple(stalls)
        #: Frames waiting for the guest (None: no machine model, handled on arrival).
        self._nic: deque[tuple[bytes, Address, Address | None]] | None = None
        if ring is not None or frame_cost > 0 or stalls:
            self._nic = deque()
        #: When the guest is done with the frame at the head of the ring.
        self._busy_until: float | None = None
        self.dropped_by_ring = 0

        self.blksize = TFTP_DEFAULT_BLKSIZE
        self.tsize = 0
        self.filesize = 0
        self.peer: Address | None = None
        self.group: Address | None = None
        self.bitmap = _Bitmap()
        # The image buffer, as the chunks written at each offset, latest write last.  Group
        # packets are shared by every client of a runner, so 200 clients hold one copy.
        self._chunks: dict[int, memoryview] = {}
        self.timer = RetryTimer()
        self.mtftp_timeouts = 0

        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.done = False
        self.ok = False
        self.error: str | None = None
        self.bytes_multicast = 0
        self.bytes_unicast = 0
        self.dropped_by_loss = 0
        self.reopens = 0
        self.fallbacks = 0
        self.last_rx: float | None = None
        self.longest_silence = 0.0

        self._out: list[tuple[bytes, Address]] = []
        self._events: deque[ClientEvent] = deque()

    # --- sans-I/O interface ------------------------------------------------------------

    def start(self, now: float) -> None:
        """``tftp_core_open``: open the socket(s) and fire the timer at once (sends the RRQ)."""
        self.started_at = now
        self.last_rx = now
        self._reopen()
        if self.flags & Flags.MTFTP_RECOVERY:
            self._reopen_mc(self._mtftp_group)
        if self.hears_group_first:
            # iPXE's first step ran the network process before the retry process: a group
            # packet that arrives now sets the TID filter, and the RRQ is never sent.
            self.timer.start(now)
        else:
            self.timer.start_nodelay(now)

    def get_timer(self) -> float | None:
        if self.done:
            return None
        deadline = self.timer.deadline
        if deadline is not None:
            deadline = self._awake(deadline)
        busy = self._busy_until
        if busy is not None and (deadline is None or busy < deadline):
            return busy
        return deadline

    def handle_timer(self, now: float) -> None:
        nic = self._nic
        while nic is not None and self._busy_until is not None and self._busy_until <= now and not self.done:
            at = self._busy_until
            data, addr, group = nic.popleft()
            self._busy_until = self._awake(at) + self.frame_cost if nic else None
            self._process(data, addr, at, group)
        if self.done:
            return
        deadline = self.timer.deadline
        if deadline is None or now < self._awake(deadline):
            return
        fail = self.timer.expire()
        self._timer_expired(now, fail)

    def _awake(self, when: float) -> float:
        """``when``, or the end of the stall it falls in (the guest runs nothing meanwhile)."""
        for start, end in self.stalls:
            if start <= when < end:
                return end
        return when

    def receive_datagram(self, data: bytes, addr: Address, now: float, group: Address | None = None) -> None:
        """A datagram from the unicast socket (``group`` None) or from a group socket."""
        if self.done:
            return
        nic = self._nic
        if nic is None and group is not None and (self.deaf or group != self.group):
            return  # (the order of the checks keeps seeded loss sequences as they were)
        if self.loss and self._rng.random() < self.loss:
            self.dropped_by_loss += 1
            return
        if nic is None:
            self._process(data, addr, now, group)
            return
        if self.ring is not None and len(nic) >= self.ring:
            self.dropped_by_ring += 1
            return
        nic.append((data, addr, group))
        if self._busy_until is None:
            self._busy_until = self._awake(now) + self.frame_cost

    def _process(self, data: bytes, addr: Address, now: float, group: Address | None) -> None:
        """The guest handles one received frame (iPXE's network process)."""
        if group is not None and (self.deaf or group != self.group):
            return  # no iPXE socket listens there (or the stock-ROM bug: none ever matches)
        if self.last_rx is not None and now - self.last_rx > self.longest_silence:
            self.longest_silence = now - self.last_rx
        self.last_rx = now
        if group is None:
            if not self.flags & Flags.SEND_ACK:
                self._note("unicast", "a unicast packet makes this client send ACKs")
            self.flags |= Flags.SEND_ACK  # tftp_socket_deliver
        self._rx(data, addr, now, via_group=group is not None)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        out, self._out = self._out, []
        return out

    @property
    def has_output(self) -> bool:
        """Datagrams or events are waiting, or a frame waits for the guest (its timer moved)."""
        return bool(self._out or self._events or self._nic)

    def next_event(self) -> ClientEvent | None:
        return self._events.popleft() if self._events else None

    def abort(self, now: float) -> None:
        """``tftp_close``: the consumer gave up (sends ERROR 0 'TFTP Aborted' to the peer)."""
        if self.done:
            return
        if self.peer is not None:
            self._out.append((struct.pack("!HH", 5, 0) + b"TFTP Aborted\0", self.peer))
        self._done(now, "aborted")

    @property
    def progress(self) -> float:
        """Fraction of the blocks received (0 until the size is known)."""
        length = self.bitmap.length
        return sum(self.bitmap.bits) / length if length else 0.0

    def image(self) -> bytes:
        """The downloaded bytes (the image buffer up to the file size; never written = zeros)."""
        buffer = bytearray(self.filesize)
        for offset, chunk in self._chunks.items():
            buffer[offset : offset + len(chunk)] = chunk
        return bytes(buffer[: self.filesize])

    # --- iPXE internals ------------------------------------------------------------------

    def _note(self, kind: str, detail: str = "") -> None:
        self._events.append(Note(kind, detail))

    def _done(self, now: float, error: str | None) -> None:
        if self.done:
            return
        self.done = True
        self.ok = error is None
        self.error = error
        self.finished_at = now
        self.timer.running = False
        if self.group is not None:
            self._events.append(CloseGroup())
        self._events.append(Finished(self.ok, error))

    def _reopen(self) -> None:
        self.flags &= ~Flags.SEND_ACK
        self.peer = None
        self._events.append(OpenSocket(self.port))

    def _reopen_mc(self, group: Address) -> None:
        self.group = group
        self._events.append(OpenGroup(*group))

    def _timer_expired(self, now: float, fail: bool) -> None:
        if self.flags & Flags.MTFTP_RECOVERY:
            if self.peer is not None:
                self.reopens += 1
                self._note("reopen", f"no packet for {self.timer.timeout / 2:.2f} s; RRQ again")
                if self.zero_on_reopen and self.bitmap.first_gap < self.bitmap.length:
                    # The suspected defect (off by default): bitmap kept, data lost.
                    self._chunks.clear()
                self._reopen()
                if self.reopen_falls_back:
                    self.mtftp_timeouts = MTFTP_MAX_TIMEOUTS + 1
                    self._fall_back(now, "reopened: the MTFTP timeouts ran out before the socket could send")
            else:
                self.mtftp_timeouts += 1
                if self.mtftp_timeouts > MTFTP_MAX_TIMEOUTS:
                    self._fall_back(now, "no MTFTP answer")
        elif fail:
            self._done(now, f"Connection timed out (no packet for {now - (self.last_rx or now):.2f} s)")
            return
        self._send_packet(now)

    def _fall_back(self, now: float, why: str) -> None:
        self.fallbacks += 1
        self._note("fallback", f"{why}; plain TFTP on port 69")
        self.flags = Flags.RRQ_SIZES
        if self.group is not None:
            self.group = None
            self._events.append(CloseGroup())
        self.timer.start_nodelay(now)
        self.bitmap = _Bitmap()
        self.port = TFTP_PORT
        self._reopen()

    def _send_packet(self, now: float) -> None:
        timer = self.timer
        timer.stop(now)
        timer.start(now)
        if self.peer is None:
            self._out.append((self._rrq(), (self.server, self.port)))
            if self.duplicate_rrq:
                self._out.append((self._rrq(), (self.server, self.port)))
        elif self.flags & Flags.SEND_ACK:
            block = self.bitmap.first_gap & 0xFFFF
            self._out.append((struct.pack("!HH", 4, block), self.peer))

    def _rrq(self) -> bytes:
        body = self.path.encode() + b"\0octet\0"
        if self.flags & Flags.RRQ_SIZES:
            body += b"blksize\0%d\0tsize\0" % self.request_blksize + b"0\0"
        if self.flags & Flags.RRQ_MULTICAST:
            body += b"multicast\0\0"
        return struct.pack("!H", 1) + body

    def _rx(self, data: bytes, addr: Address, now: float, via_group: bool) -> None:
        if len(data) < 2:
            return
        if self.peer is None:
            self.peer = addr
        elif addr != self.peer:
            self._note("tid_drop", f"from {addr[0]}:{addr[1]}, peer is {self.peer[0]}:{self.peer[1]}")
            return
        opcode = (data[0] << 8) | data[1]
        if opcode == 6:
            self._rx_oack(data, now)
        elif opcode == 3:
            if len(data) < 4:
                self._done(now, "underlength DATA (EINVAL)")
                return
            self._rx_data(data, now, via_group)
        elif opcode == 5 and len(data) >= 4:
            (code,) = struct.unpack_from("!H", data, 2)
            message = data[4:].split(b"\0", 1)[0].decode("ascii", "replace")
            self._done(now, f"server ERROR {code}: {message}")

    def _rx_oack(self, data: bytes, now: float) -> None:
        body = data[2:]
        pos = 0
        while pos < len(body):
            name_end = body.find(b"\0", pos)
            if name_end < 0:
                break
            value_start = name_end + 1
            if value_start >= len(body):
                break
            value_end = body.find(b"\0", value_start)
            if value_end < 0:
                break
            name = body[pos:name_end].decode("latin-1").lower()
            value = body[value_start:value_end].decode("latin-1")
            pos = value_end + 1
            error = self._process_option(name, value)
            if error:
                self._done(now, error)
                return
        if self.tsize:
            self._presize(self.tsize)
        self._send_packet(now)

    def _process_option(self, name: str, value: str) -> str | None:
        if name == "blksize":
            number, rest = strtoul(value, 10)
            if rest:
                return f"invalid blksize {value!r}"
            self.blksize = number
        elif name == "tsize":
            number, rest = strtoul(value, 10)
            if rest:
                return f"invalid tsize {value!r}"
            self.tsize = number
        elif name == "multicast":
            return self._process_multicast(value)
        return None

    def _process_multicast(self, value: str) -> str | None:
        addr, comma, rest = value.partition(",")
        if not comma:
            return f"multicast {value!r} missing port,mc (EINVAL_MC_NO_PORT)"
        port, comma, mc = rest.partition(",")
        if not comma:
            return f"multicast {value!r} missing mc (EINVAL_MC_NO_MC)"
        flag, junk = strtoul(mc, 0)
        if flag == 0:
            if self.flags & Flags.SEND_ACK:
                self._note("not_master")
            self.flags &= ~Flags.SEND_ACK
        if junk:
            return f"multicast {value!r} invalid mc (EINVAL_MC_INVALID_MC)"
        if self.flags & Flags.SEND_ACK:
            self._note("master")
        if addr and port:
            group = inet_aton(addr)
            if group is None:
                return f"multicast {value!r} invalid IP address (EINVAL_MC_INVALID_IP)"
            number, junk = strtoul(port, 0)
            if junk:
                return f"multicast {value!r} invalid port (EINVAL_MC_INVALID_PORT)"
            self._reopen_mc((group, number & 0xFFFF))
        return None

    def _presize(self, filesize: int) -> None:
        if filesize <= self.filesize:
            return
        self.filesize = filesize
        if self.blksize:
            self.bitmap.resize(filesize // self.blksize + 1)

    def _rx_data(self, data: bytes, now: float, via_group: bool) -> None:
        bitmap = self.bitmap
        wire_block = (data[2] << 8) | data[3]
        base = (bitmap.first_gap + 1) & ~0xFFFF
        if wire_block == 0 and base == 0:
            self._done(now, "received data block 0 (EINVAL)")
            return
        index = base + wire_block - 1
        length = len(data) - 4
        blksize = self.blksize
        if length > blksize:
            self._done(now, f"overlength DATA: {length} bytes > blksize {blksize} (EINVAL)")
            return
        offset = index * blksize
        chunks = self._chunks
        if offset in chunks:
            del chunks[offset]  # re-insert: a later write must stay later
        chunks[offset] = memoryview(data)[4:]
        if via_group:
            self.bytes_multicast += length
        else:
            self.bytes_unicast += length
        if offset + length > self.filesize:
            self._presize(offset + length)
        bitmap.set(index)
        self._send_packet(now)
        if bitmap.full:
            self._done(now, None)
