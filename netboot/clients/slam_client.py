"""An iPXE-faithful SLAM client core (sans-I/O), after iPXE's src/net/udp/slam.c.

Why faithful: pyslamd must be judged against what real ROMs do, including their
quirks: nothing is sent for the first second; the initial NACK is ``20 21 00``
(a fake one-block bitmap); NACKs name at most 4 blocks from the first gap; any
change in the header bytes throws away everything received; a ping with trailing
bytes is ignored; the lone NUL disconnect goes out at the end whether the
transfer worked or not, if a NACK was ever sent.

``variant="etherboot"`` sends Etherboot's full run-length NACK instead (same timers).
The two sockets of iPXE map to two entry points: :meth:`receive_multicast` for the
group socket and :meth:`receive_datagram` for the unicast socket.
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from netboot.clients.slam_timer import TICKS_PER_SEC, RetryTimer
from netboot.slam.ints import IPXE32_MAX_LENGTH, NUL, IntDecodeError, decode_int, encode_int, skip_int
from netboot.slam.packets import MAX_DATAGRAM, encode_nack_range

Address = tuple[str, int]

SLAM_MAX_BLOCKS_PER_NACK = 4
SLAVE_TIMEOUT = 1 * TICKS_PER_SEC
VARIANTS = ("ipxe", "etherboot")


@dataclass(frozen=True)
class ClientEvent:
    name: str  # "reset", "done", "failed"
    fields: dict[str, Any]


@dataclass
class ClientStats:
    nacks_sent: int = 0
    resets: int = 0
    data_received: int = 0
    duplicates: int = 0
    discarded: int = 0
    pings: int = 0


@dataclass
class _Transfer:
    header: bytes = b"\x00"  # iPXE's fake cached header: matches nothing
    total_bytes: int = 0
    block_size: int = 0
    num_blocks: int = 1  # fake one-block bitmap for the initial NACK
    bitmap: bytearray = field(default_factory=lambda: bytearray(1))
    blocks: list[memoryview | None] = field(default_factory=lambda: [None])
    received: int = 0
    first_gap: int = 0


class SlamClient:
    """One download, as one iPXE ROM would do it."""

    def __init__(
        self,
        server: Address,
        now: float,
        variant: str = "ipxe",
        max_value_length: int = IPXE32_MAX_LENGTH,
        complete_empty: bool = False,
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown SLAM client variant {variant!r}; use one of {', '.join(VARIANTS)}")
        self.server = server
        self.variant = variant
        self.max_value_length = max_value_length
        #: Not iPXE: iPXE cannot finish a 0-byte SLAM transfer (no block ever arrives).
        self.complete_empty = complete_empty
        self.started = now
        self.finished_at: float | None = None
        self.outcome: str | None = None  # "ok" or a failure reason
        self.stats = ClientStats()
        self.nack_sent = False
        #: When the first NACK went out: the server cannot know of this client before.
        self.first_nack_at: float | None = None
        self.t = _Transfer()
        self.master_timer = RetryTimer()
        self.slave_timer = RetryTimer()
        self.slave_timer.start_fixed(now, SLAVE_TIMEOUT)
        self._out: list[tuple[bytes, Address]] = []
        self._events: deque[ClientEvent] = deque()

    # ------------------------------------------------------------------ receive paths

    def _pull_header(self, data: bytes, now: float) -> int:
        """Strip the header; a header unlike the cached one resets the transfer."""
        t = self.t
        if data.startswith(t.header):
            return len(t.header)
        offset = skip_int(data, 0)
        total, offset = decode_int(data, offset, self.max_value_length)
        block_size, offset = decode_int(data, offset, self.max_value_length)
        if block_size == 0:
            raise IntDecodeError("zero block size")
        num_blocks = -(-total // block_size)
        self.t = _Transfer(
            header=bytes(data[:offset]),
            total_bytes=total,
            block_size=block_size,
            num_blocks=num_blocks,
            bitmap=bytearray(num_blocks),
            blocks=[None] * num_blocks,
        )
        self.stats.resets += 1
        self._events.append(ClientEvent("reset", {"bytes": total, "block_size": block_size}))
        if total == 0 and self.complete_empty:
            self._finish("ok", now)
        return offset

    def receive_multicast(self, data: bytes, now: float) -> None:
        """A datagram on the group socket (``slam_mc_socket_deliver``)."""
        if self.outcome is not None:
            return
        now_ticks = int(now * TICKS_PER_SEC)
        self.master_timer.stop_at(now_ticks)
        self.slave_timer.restart_fixed_at(now_ticks, SLAVE_TIMEOUT)
        try:
            offset = self._pull_header(data, now)
            if self.outcome is not None:
                return
            packet, offset = decode_int(data, offset, self.max_value_length)
        except IntDecodeError:
            self.stats.discarded += 1
            return
        t = self.t
        length = len(data) - offset
        short = packet != t.num_blocks - 1 and length < t.block_size
        if packet >= t.num_blocks or length > t.block_size or short:
            self.stats.discarded += 1
            return
        if t.bitmap[packet]:
            self.stats.duplicates += 1
            return
        t.blocks[packet] = memoryview(data)[offset:]
        t.bitmap[packet] = 1
        t.received += 1
        self.stats.data_received += 1
        while t.first_gap < t.num_blocks and t.bitmap[t.first_gap]:
            t.first_gap += 1
        if t.received == t.num_blocks:
            self._finish("ok", now)

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        """A datagram on the unicast socket: a ping (``slam_socket_deliver``)."""
        if self.outcome is not None:
            return
        self.master_timer.stop(now)
        self.master_timer.start(now)
        try:
            offset = self._pull_header(data, now)
        except IntDecodeError:
            self.stats.discarded += 1
            return
        if self.outcome is not None:
            return
        if offset != len(data):
            self.stats.discarded += 1  # "trailing garbage": no NACK
            return
        self.stats.pings += 1
        self._tx_nack(now)

    # ------------------------------------------------------------------ transmit

    def _tx_nack(self, now: float) -> None:
        if self.first_nack_at is None:
            self.first_nack_at = now
        self.nack_sent = True
        self.stats.nacks_sent += 1
        if self.variant == "etherboot" and self.t.header != b"\x00":
            self._out.append((self._rle_nack(), self.server))
            return
        t = self.t
        first = t.first_gap
        count = 1
        while count < SLAM_MAX_BLOCKS_PER_NACK:
            if first + count >= t.num_blocks or t.bitmap[first + count]:
                break
            count += 1
        self._out.append((encode_nack_range(first, count), self.server))

    def _rle_nack(self) -> bytes:
        """Etherboot's ``slam_send_nack``: runs over the bitmap plus an inverted trailer bit."""
        t = self.t
        if t.num_blocks == 0:
            return encode_int(0) + encode_int(0) + NUL
        bits = list(t.bitmap) + [0 if t.bitmap[-1] else 1]
        out = bytearray()
        last, length = 1, 0
        for value in bits:
            if value == last:
                length += 1
                continue
            encoded = encode_int(length)
            if len(out) + len(encoded) >= MAX_DATAGRAM - 1:
                break
            out += encoded
            last, length = value, 1
        return bytes(out) + NUL

    def _finish(self, outcome: str, now: float) -> None:
        if self.nack_sent:
            self._out.append((NUL, self.server))
        self.master_timer.running = False
        self.slave_timer.running = False
        self.outcome = outcome
        self.finished_at = now
        fields: dict[str, Any] = {"seconds": round(now - self.started, 3), "nacks": self.stats.nacks_sent}
        if outcome == "ok":
            self._events.append(ClientEvent("done", fields))
        else:
            self._events.append(ClientEvent("failed", {"reason": outcome, **fields}))

    # ------------------------------------------------------------------ sans-I/O interface

    @property
    def has_output(self) -> bool:
        return bool(self._out)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        master, slave = self.master_timer.deadline(), self.slave_timer.deadline()
        if master is None:
            return slave
        return master if slave is None or master < slave else slave

    def handle_timer(self, now: float) -> None:
        if self.outcome is None and self.master_timer.due(now):
            if not self.master_timer.expire():
                self.master_timer.start(now)
                self._tx_nack(now)
            # else: "giving up acting as master client"; only the slave timer can end us
        if self.outcome is None and self.slave_timer.due(now):
            if self.slave_timer.expire():
                self._finish("timeout", now)
            else:
                self.slave_timer.start(now)  # "trying to become master client"
                self._tx_nack(now)

    def next_event(self) -> ClientEvent | None:
        return self._events.popleft() if self._events else None

    # ------------------------------------------------------------------ result

    @property
    def total_bytes(self) -> int:
        return self.t.total_bytes

    def data(self) -> bytes:
        if self.outcome != "ok":
            raise RuntimeError("the transfer did not complete")
        return b"".join(bytes(block) for block in self.t.blocks if block is not None)

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for block in self.t.blocks:
            if block is not None:
                digest.update(block)
        return digest.hexdigest()
