"""Run many iPXE-faithful SLAM clients in one asyncio loop.

Why one shared group socket: 200 clients cannot each own the group port cheaply,
and the kernel would copy every datagram 200 times.  One socket joins the group and
fans each datagram out to every client core.

Why arrival timestamps: a real iPXE takes group data and pings from one NIC queue, in
the order they arrived, and pyslamd relies on that order (an answer to a ping vouches
for every datagram sent before the ping, and for none sent after it).  Separate sockets
do not keep it, so every datagram is read with the kernel's receive time
(``SO_TIMESTAMPNS``) into one list, which is handed over in that order once a datagram
is ``HOLD`` old: on a busy 2-core host a datagram stamped earlier still reached its
socket up to about 60 us after one stamped later (the kernel stamps before its per-CPU
queues).  Reading the group queue to the end before every ping, as the runner once did,
let a busy process answer pings with data sent after them, and handing group data over
as it was read let it answer them before data sent before them: the server then took
answered pings for lost, or data for lost.

Timers are checked on a 10 ms tick rather than one asyncio timer per client: the
slave timer restarts on every data datagram, and re-arming 200 asyncio timers per
datagram costs more than the protocol work.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import time
from dataclasses import dataclass, field

from netboot.clients.slam_client import SlamClient

Address = tuple[str, int]
TICK = 0.01
GROUP_RCVBUF = 32 << 20
DRAIN_BATCH = 64
#: A datagram is handed over this long (seconds) after the kernel stamped it, so that any
#: datagram stamped before it has reached its socket.
HOLD = 0.001
#: Linux's SO_TIMESTAMPNS (= SCM_TIMESTAMPNS); Python's socket module lacks the name.
SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("@ll")
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size)


def enable_timestamps(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)


def recv_stamped(sock: socket.socket) -> tuple[bytes, Address, float]:
    """One datagram, its sender and the kernel's receive time (seconds, 0.0 if none)."""
    data, ancillary, _flags, addr = sock.recvmsg(65536, _ANCILLARY)
    stamp = 0.0
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(payload)
            stamp = seconds + nanoseconds / 1e9
    return data, (addr[0], addr[1]), stamp


@dataclass
class ClientSpec:
    start_delay: float = 0.0
    loss: float = 0.0  # probability that a received datagram is dropped
    deaf: bool = False  # hears no group data at all (a NIC that cannot receive multicast)
    variant: str = "ipxe"
    complete_empty: bool = False


@dataclass
class ClientResult:
    index: int
    outcome: str
    sha256: str | None
    size: int
    seconds: float
    started: float
    finished: float
    nacks_sent: int
    resets: int
    duplicates: int
    local_port: int
    data: bytes | None = field(default=None, repr=False)
    #: Seconds from the runner's start to the client's first NACK (None: it sent none).
    first_nack: float | None = None

    def as_json(self) -> dict[str, object]:
        out = dict(self.__dict__)
        out.pop("data")
        return out


@dataclass
class _Slot:
    index: int
    spec: ClientSpec
    rng: random.Random
    core: SlamClient | None = None
    sock: socket.socket | None = None
    result: ClientResult | None = None


def open_group_socket(group: Address, interface_address: str | None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Large (the kernel caps it at net.core.rmem_max): one socket stands for 200 NICs,
    # and the process needs slack when the host is busy.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, GROUP_RCVBUF)
    sock.bind(group)
    mreq = struct.pack("4s4s", socket.inet_aton(group[0]), socket.inet_aton(interface_address or "0.0.0.0"))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    enable_timestamps(sock)
    sock.setblocking(False)
    return sock


class SlamSwarm:
    """Clients sharing one group socket; :meth:`run` returns one result per spec."""

    def __init__(
        self,
        server: Address,
        group: Address,
        specs: list[ClientSpec],
        local_address: str = "0.0.0.0",
        interface_address: str | None = None,
        seed: int = 0,
        keep_data: bool = False,
    ) -> None:
        self.server = server
        self.group = group
        self.local_address = local_address
        self.interface_address = interface_address
        self.keep_data = keep_data
        self.slots = [_Slot(i, spec, random.Random(seed * 100003 + i)) for i, spec in enumerate(specs)]
        self.active: list[_Slot] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._group_sock: socket.socket | None = None
        #: Datagrams read this turn of the loop: (receive time, read order, slot for a
        #: unicast datagram or None for the group, data, sender).
        self._inbox: list[tuple[float, int, _Slot | None, bytes, Address]] = []
        self._reads = 0
        self._flush_due = False
        self._flush_timer: asyncio.TimerHandle | None = None
        self._done = asyncio.Event()
        self.t0 = 0.0

    async def run(self, timeout: float = 120.0) -> list[ClientResult]:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._group_sock = open_group_socket(self.group, self.interface_address)
        loop.add_reader(self._group_sock.fileno(), self._drain_group)
        self.t0 = loop.time()
        for slot in self.slots:
            loop.call_at(self.t0 + slot.spec.start_delay, self._start, slot)
        self._ticker = loop.call_later(TICK, self._tick)
        try:
            await asyncio.wait_for(self._done.wait(), timeout)
        except TimeoutError:
            now = loop.time()
            for slot in list(self.active):
                self._record(slot, now, "runner timeout")
            for slot in self.slots:
                if slot.result is None:
                    slot.result = ClientResult(slot.index, "never started", None, 0, 0, 0, 0, 0, 0, 0, 0)
        finally:
            self._ticker.cancel()
            if self._flush_timer is not None:
                self._flush_timer.cancel()
            loop.remove_reader(self._group_sock.fileno())
            self._group_sock.close()
            for slot in self.slots:
                if slot.sock is not None:
                    loop.remove_reader(slot.sock.fileno())
                    slot.sock.close()
        return [slot.result for slot in self.slots if slot.result is not None]

    def _start(self, slot: _Slot) -> None:
        assert self._loop is not None
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((self.local_address, 0))
        enable_timestamps(sock)
        sock.setblocking(False)
        slot.sock = sock
        slot.core = SlamClient(
            self.server, self._loop.time(), variant=slot.spec.variant, complete_empty=slot.spec.complete_empty
        )
        self.active.append(slot)
        self._loop.add_reader(sock.fileno(), self._on_unicast, slot)

    def _read(self, sock: socket.socket, slot: _Slot | None, batch: int | None) -> None:
        """Read up to ``batch`` queued datagrams (None: all) into the inbox."""
        assert self._loop is not None
        count = 0
        while batch is None or count < batch:
            count += 1
            try:
                data, addr, stamp = recv_stamped(sock)
            except (BlockingIOError, InterruptedError):
                break
            self._reads += 1
            self._inbox.append((stamp or time.time(), self._reads, slot, data, addr))
        if self._inbox and not self._flush_due:
            self._flush_due = True
            self._loop.call_soon(self._flush)  # after every reader of this turn

    def _drain_group(self) -> None:
        assert self._group_sock is not None
        self._read(self._group_sock, None, DRAIN_BATCH)

    def _on_unicast(self, slot: _Slot) -> None:
        if slot.sock is not None and slot.result is None:
            self._read(slot.sock, slot, None)

    def _flush(self) -> None:
        """Hand datagrams over in the order they arrived, once ``HOLD`` old (the docstring)."""
        assert self._loop is not None and self._group_sock is not None
        self._flush_due = False
        self._flush_timer = None
        self._read(self._group_sock, None, None)
        self._flush_due = False
        self._inbox.sort(key=lambda d: (d[0], d[1]))
        ripe = time.time() - HOLD
        count = next((i for i, d in enumerate(self._inbox) if d[0] > ripe), len(self._inbox))
        inbox, self._inbox = self._inbox[:count], self._inbox[count:]
        if self._inbox and self._flush_timer is None:
            self._flush_timer = self._loop.call_later(max(0.0, self._inbox[0][0] - ripe), self._flush)
        now = self._loop.time()
        for _stamp, _order, slot, data, addr in inbox:
            if slot is None:
                self._deliver_group(data, now)
            elif slot.core is not None and slot.result is None:
                if slot.spec.loss and slot.rng.random() < slot.spec.loss:
                    continue
                slot.core.receive_datagram(data, addr, now)
                self._service(slot, now)

    def _deliver_group(self, data: bytes, now: float) -> None:
        for slot in self.active:
            if slot.spec.deaf or (slot.spec.loss and slot.rng.random() < slot.spec.loss):
                continue
            assert slot.core is not None
            slot.core.receive_multicast(data, now)
            if slot.core.has_output or slot.core.outcome is not None:
                self._service(slot, now)

    def _tick(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        for slot in list(self.active):
            core = slot.core
            assert core is not None
            deadline = core.get_timer()
            if deadline is not None and deadline <= now:
                core.handle_timer(now)
                self._service(slot, now)
        self._ticker = self._loop.call_later(TICK, self._tick)

    def _service(self, slot: _Slot, now: float) -> None:
        core, sock = slot.core, slot.sock
        assert core is not None and sock is not None
        for data, addr in core.datagrams_to_send(now):
            try:
                sock.sendto(data, addr)
            except OSError:
                pass  # a lost NACK: iPXE's timers retry
        while core.next_event() is not None:
            pass
        if core.outcome is not None and slot.result is None:
            self._record(slot, now, core.outcome)

    def _record(self, slot: _Slot, now: float, outcome: str) -> None:
        core = slot.core
        assert core is not None and slot.sock is not None and self._loop is not None
        ok = outcome == "ok"
        slot.result = ClientResult(
            index=slot.index,
            outcome=outcome,
            sha256=core.sha256() if ok else None,
            size=core.total_bytes if ok else 0,
            seconds=round(now - core.started, 4),
            started=round(core.started - self.t0, 4),
            finished=round(now - self.t0, 4),
            nacks_sent=core.stats.nacks_sent,
            resets=core.stats.resets,
            duplicates=core.stats.duplicates,
            local_port=slot.sock.getsockname()[1],
            data=core.data() if ok and self.keep_data else None,
            first_nack=None if core.first_nack_at is None else round(core.first_nack_at - self.t0, 4),
        )
        self._loop.remove_reader(slot.sock.fileno())
        if slot in self.active:
            self.active.remove(slot)
        if all(s.result is not None for s in self.slots):
            self._done.set()
