"""A virtual-time lossy link between pyatftpd's unicast read core and an iPXE ``tftp://`` client.

Why: how fast a lossy fetch recovers is a matter of timers (the server's retransmission
timeout against iPXE's 0.25 s retry), and virtual time gives exact, repeatable figures.
The request port's part of ``unicast.UnicastHandler`` is reduced to what the transfer
sees: the first RRQ starts the read, a repeated one gets its first datagram again while
the client has not answered.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from netboot.clients.ipxe_tftp import Finished, IpxeTftpClient, OpenSocket
from netboot.tftp.options import OptionPolicy, negotiate
from netboot.tftp.packets import Request, decode
from netboot.tftp.read_transfer import ReadTransfer
from netboot.tftp.sources import BytesSource

Address = tuple[str, int]
SERVER_IP = "192.0.2.1"
LISTEN: Address = (SERVER_IP, 69)
TID: Address = (SERVER_IP, 40001)

#: Builds the server's core for a request: ``(peer, source, negotiation, now) -> ReadTransfer``.
CoreFactory = Callable[..., ReadTransfer]


@dataclass
class Link:
    #: One way.  A TCG guest answers a block in about a millisecond (issue 18).
    latency: float = 0.0005
    #: Share of datagrams dropped, each way, drawn from one seeded generator per direction.
    loss: float = 0.0
    seed: int = 1


@dataclass
class UnicastSim:
    payload: bytes
    factory: CoreFactory
    link: Link = field(default_factory=Link)
    client_options: dict[str, object] = field(default_factory=dict)
    #: Datagrams the server sent (DATA, OACK, ERROR), counted as sent, before any loss.
    server_datagrams: int = 0
    core: ReadTransfer | None = None
    client: IpxeTftpClient | None = None

    def run(self, limit: float = 600.0) -> float | None:
        """Fetch once; the client's fetch time in seconds, or None if it failed or ran past ``limit``."""
        to_client = random.Random(self.link.seed)
        to_server = random.Random(self.link.seed + 1000)
        queue: list[tuple[float, int, str, bytes, Address]] = []
        seq = 0
        client = IpxeTftpClient(SERVER_IP, "/payload", scheme="tftp", **self.client_options)  # type: ignore[arg-type]
        self.client = client
        address: Address = ("192.0.2.10", 2000)
        now = 0.0

        def deliver(kind: str, data: bytes, source: Address, lossy: random.Random) -> None:
            nonlocal seq
            if self.link.loss and lossy.random() < self.link.loss:
                return
            seq += 1
            heapq.heappush(queue, (now + self.link.latency, seq, kind, data, source))

        def client_io() -> None:
            nonlocal address
            while (event := client.next_event()) is not None:
                if isinstance(event, OpenSocket):
                    address = ("192.0.2.10", address[1] + 1)
                elif isinstance(event, Finished):
                    pass
            for data, destination in client.datagrams_to_send(now):
                deliver("request" if destination == LISTEN else "transfer", data, address, to_server)

        def server_io() -> None:
            core = self.core
            if core is None:
                return
            for data, _ in core.datagrams_to_send(now):
                self.server_datagrams += 1
                deliver("client", data, TID, to_client)
            while core.next_event() is not None:
                pass

        def request(data: bytes, source: Address) -> None:
            core = self.core
            if core is not None and not core.finished:
                if not core.proven:  # a repeated RRQ: the first datagram again (UnicastHandler)
                    self.server_datagrams += 1
                    deliver("client", core.first_datagram, TID, to_client)
                return
            packet = decode(data)
            assert isinstance(packet, Request)
            negotiation = negotiate(packet.options, len(self.payload), OptionPolicy())
            self.core = self.factory(source, BytesSource(self.payload), negotiation, now)
            server_io()

        client.start(now)
        client.handle_timer(now)
        client_io()
        while now < limit and not client.done:
            candidates = [queue[0][0]] if queue else []
            if (timer := client.get_timer()) is not None:
                candidates.append(timer)
            if self.core is not None and (timer := self.core.get_timer()) is not None:
                candidates.append(timer)
            if not candidates:
                break
            now = max(now, min(candidates))
            while queue and queue[0][0] <= now:
                _, _, kind, data, source = heapq.heappop(queue)
                if kind == "request":
                    request(data, source)
                elif kind == "transfer":
                    if self.core is not None:
                        self.core.receive_datagram(data, source, now)
                        server_io()
                else:
                    client.receive_datagram(data, source, now)
                    client_io()
            if self.core is not None:
                self.core.handle_timer(now)
                server_io()
            client.handle_timer(now)
            client_io()
        if not client.ok or client.image() != self.payload:
            return None
        assert client.finished_at is not None and client.started_at is not None
        return client.finished_at - client.started_at
