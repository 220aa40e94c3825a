"""Asyncio runner for many :class:`IpxeTftpClient` cores in one event loop.

Why one loop: the benchmark runs 200 clients, and 200 processes would measure the
scheduler.  Each client has its own unicast socket (iPXE takes a new local port on
every reopen); group traffic is read once per group:port from a shared socket bound
with SO_REUSEADDR (so other listeners in the namespace can share the port) and handed
to every subscribed core, whose TID filter decides, as in iPXE.  Deaf clients never
subscribe.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import struct
from dataclasses import asdict, dataclass, field
from typing import Any

from netboot.clients.ipxe_tftp import (
    Address,
    CloseGroup,
    Finished,
    IpxeTftpClient,
    Note,
    OpenGroup,
    OpenSocket,
)

RECV_SIZE = 65536


@dataclass
class ClientResult:
    name: str
    ok: bool
    error: str | None
    sha256: str
    size: int
    bytes_multicast: int
    bytes_unicast: int
    seconds: float
    started: float
    reopens: int = 0
    fallbacks: int = 0
    longest_silence: float = 0.0
    dropped_by_loss: int = 0
    was_master: bool = False
    notes: dict[str, int] = field(default_factory=dict)
    #: local ports of the unicast socket, one per (re)open: how a server's events name this client
    ports: list[int] = field(default_factory=list)
    #: The bytes received, kept only when asked (``--output``); never in :meth:`as_dict`.
    data: bytes | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        fields = asdict(self)
        del fields["data"]
        return fields


class GroupHub:
    """One socket per group:port, shared by all clients of this loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interface: str = "0.0.0.0") -> None:
        self._loop = loop
        self._interface = interface
        self._sockets: dict[Address, socket.socket] = {}
        self._members: dict[Address, set[ClientDriver]] = {}
        #: DATA payload bytes and datagrams seen on the groups, each counted once (not per client)
        self.group_bytes = 0
        self.group_packets = 0

    def join(self, group: Address, driver: ClientDriver) -> None:
        if group not in self._sockets:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sock.bind(group)
            mreq = struct.pack("4s4s", socket.inet_aton(group[0]), socket.inet_aton(self._interface))
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
            sock.setblocking(False)
            self._sockets[group] = sock
            self._members[group] = set()
            self._loop.add_reader(sock.fileno(), self._readable, group)
        self._members[group].add(driver)

    def leave(self, group: Address, driver: ClientDriver) -> None:
        members = self._members.get(group)
        if members is None:
            return
        members.discard(driver)
        if not members:
            sock = self._sockets.pop(group)
            del self._members[group]
            self._loop.remove_reader(sock.fileno())
            sock.close()

    def _readable(self, group: Address) -> None:
        sock = self._sockets.get(group)
        while sock is not None:
            try:
                data, addr = sock.recvfrom(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            if data[:2] == b"\0\3":
                self.group_bytes += len(data) - 4
                self.group_packets += 1
            now = self._loop.time()
            for driver in list(self._members.get(group, ())):
                driver.deliver_group(data, addr, group, now)
            sock = self._sockets.get(group)

    def close(self) -> None:
        for group in list(self._sockets):
            sock = self._sockets.pop(group)
            self._loop.remove_reader(sock.fileno())
            sock.close()
        self._members.clear()


class ClientDriver:
    """Runs one core: its unicast socket, its timer, its group subscription."""

    def __init__(
        self, name: str, core: IpxeTftpClient, hub: GroupHub, bind: str = "0.0.0.0", keep_data: bool = False
    ) -> None:
        self.name = name
        self.keep_data = keep_data
        self.core = core
        self._hub = hub
        self._bind = bind
        self._loop = asyncio.get_running_loop()
        self._sock: socket.socket | None = None
        self._group: Address | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._finished: asyncio.Future[None] = self._loop.create_future()
        self.notes: dict[str, int] = {}
        self.ports: list[int] = []
        self.killed = False

    async def run(self) -> ClientResult:
        now = self._loop.time()
        self.core.start(now)
        # iPXE's first step may run the retry process (RRQ) or the network process (one
        # received packet) first.  We send the RRQ first; the other order makes a late
        # MTFTP joiner a silent listener that no server hears of (docs/multicast.md).
        self.core.handle_timer(now)
        self._pump()
        await self._finished
        return self.result()

    def result(self) -> ClientResult:
        core = self.core
        image = core.image() if core.ok else b""
        started = core.started_at or 0.0
        return ClientResult(
            name=self.name,
            ok=core.ok and not self.killed,
            error="killed by the test" if self.killed else core.error,
            sha256=hashlib.sha256(image).hexdigest() if core.ok else "",
            size=len(image),
            bytes_multicast=core.bytes_multicast,
            bytes_unicast=core.bytes_unicast,
            seconds=round((core.finished_at or self._loop.time()) - started, 4),
            started=started,
            reopens=core.reopens,
            fallbacks=core.fallbacks,
            longest_silence=round(core.longest_silence, 4),
            dropped_by_loss=core.dropped_by_loss,
            was_master=self.notes.get("master", 0) > 0 or self.notes.get("unicast", 0) > 0,
            notes=dict(self.notes),
            ports=list(self.ports),
            data=image if self.keep_data and core.ok else None,
        )

    def kill(self) -> None:
        """Vanish without a word, like a VM that is switched off."""
        if self._finished.done():
            return
        self.killed = True
        self.core.done = True
        self.core.finished_at = self._loop.time()
        self._close()
        self._finished.set_result(None)

    def deliver_group(self, data: bytes, addr: Address, group: Address, now: float) -> None:
        """Hot path (one call per client per group packet): pump only if the core has output."""
        core = self.core
        core.receive_datagram(data, addr, now, group)
        if core.done or core.has_output:
            self._pump()

    def deliver(self, data: bytes, addr: Address, group: Address | None) -> None:
        self.core.receive_datagram(data, addr, self._loop.time(), group)
        self._pump()

    def _readable(self) -> None:
        sock = self._sock
        while sock is not None and sock is self._sock:
            try:
                data, addr = sock.recvfrom(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # ICMP errors surface here on some kernels; iPXE ignores them too
            self.deliver(data, addr, None)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.core.handle_timer(self._loop.time())
        self._pump()

    def _pump(self) -> None:
        core = self.core
        while (event := core.next_event()) is not None:
            if isinstance(event, OpenSocket):
                self._open_socket()
            elif isinstance(event, OpenGroup):
                if (event.group, event.port) == self._group:
                    continue  # iPXE reopens the same local port: queued packets still reach it
                self._leave_group()
                if not core.deaf:
                    self._group = (event.group, event.port)
                    self._hub.join(self._group, self)
            elif isinstance(event, CloseGroup):
                self._leave_group()
            elif isinstance(event, Note):
                self.notes[event.kind] = self.notes.get(event.kind, 0) + 1
            elif isinstance(event, Finished):
                pass
        now = self._loop.time()
        for data, addr in core.datagrams_to_send(now):
            if self._sock is not None:
                try:
                    self._sock.sendto(data, addr)
                except OSError:
                    pass  # iPXE does not retry a failed send either; its timer will
        if core.done:
            self._close()
            if not self._finished.done():
                self._finished.set_result(None)
            return
        deadline = core.get_timer()
        if deadline is None:
            return
        # Lazy timer: only re-arm when the deadline moved earlier; a later deadline is
        # picked up when the handle fires (saves one TimerHandle per received packet).
        if self._timer_at is None or deadline < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _open_socket(self) -> None:
        if self._sock is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((self._bind, 0))
        sock.setblocking(False)
        self.ports.append(sock.getsockname()[1])
        self._sock = sock
        self._loop.add_reader(sock.fileno(), self._readable)

    def _leave_group(self) -> None:
        if self._group is not None:
            self._hub.leave(self._group, self)
            self._group = None

    def _close(self) -> None:
        self._leave_group()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._sock is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
