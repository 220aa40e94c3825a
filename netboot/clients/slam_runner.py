"""Run many iPXE-faithful SLAM clients in one asyncio loop.

Why one shared group socket: 200 clients cannot each own the group port cheaply,
and the kernel would copy every datagram 200 times.  One socket joins the group and
fans each datagram out to every client core.  Before a client's unicast socket is
read, the group socket is drained, so a ping is never seen before group data that
reached the host earlier (one NIC queue keeps that order for a real iPXE).

Timers are checked on a 10 ms tick rather than one asyncio timer per client: the
slave timer restarts on every data datagram, and re-arming 200 asyncio timers per
datagram costs more than the protocol work.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from dataclasses import dataclass, field

from netboot.clients.slam_client import SlamClient

Address = tuple[str, int]
TICK = 0.01
GROUP_RCVBUF = 32 << 20
DRAIN_BATCH = 64


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
        sock.setblocking(False)
        slot.sock = sock
        slot.core = SlamClient(
            self.server, self._loop.time(), variant=slot.spec.variant, complete_empty=slot.spec.complete_empty
        )
        self.active.append(slot)
        self._loop.add_reader(sock.fileno(), self._on_unicast, slot)

    def _drain_group(self, batch: int | None = DRAIN_BATCH) -> None:
        """Hand queued group datagrams to every client, ``batch`` at most (None: all)."""
        assert self._loop is not None and self._group_sock is not None
        now = self._loop.time()
        count = 0
        while batch is None or count < batch:
            count += 1
            try:
                data = self._group_sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            for slot in self.active:
                if slot.spec.deaf or (slot.spec.loss and slot.rng.random() < slot.spec.loss):
                    continue
                assert slot.core is not None
                slot.core.receive_multicast(data, now)
                if slot.core.has_output or slot.core.outcome is not None:
                    self._service(slot, now)

    def _on_unicast(self, slot: _Slot) -> None:
        assert self._loop is not None
        # All of it: one NIC queue keeps order, so a ping never overtakes earlier data
        # (with a batch limit a busy process answered pings with "gaps" still queued).
        self._drain_group(batch=None)
        if slot.core is None or slot.sock is None or slot.result is not None:
            return
        now = self._loop.time()
        while True:
            try:
                data, addr = slot.sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                break
            if slot.spec.loss and slot.rng.random() < slot.spec.loss:
                continue
            slot.core.receive_datagram(data, addr, now)
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
