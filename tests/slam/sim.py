"""A virtual-time network for the sans-I/O cores: one pyslamd core, many client cores.

Why: the real-socket scenarios (test_sessions.py) prove the transports; this one
runs the same cores deterministically and fast, so timer behaviour (iPXE's 15 s
abort, a silent master) is checked in virtual seconds, not wall-clock ones.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from netboot.clients.slam_client import SlamClient
from netboot.slam.server import Content, ServerConfig, SlamServer
from tests.slam.guest import Guest

Frame = tuple[str, bytes]

SERVER = ("192.0.2.1", 10000)
GROUP = ("239.255.1.1", 10000)


@dataclass
class SimClient:
    start: float = 0.0
    loss: float = 0.0
    deaf: bool = False
    variant: str = "ipxe"
    complete_empty: bool = False
    dies_at: float | None = None  # kill -9: stops hearing and sending
    #: A slow NIC: at most this many datagrams per second, with a receive ring of ``ring``;
    #: anything beyond is dropped, as an overflowing ring does.
    capacity: float | None = None
    ring: int = 32
    _tokens: float = 32.0
    _last: float = 0.0
    dropped: int = 0

    def accepts(self, now: float) -> bool:
        if self.capacity is None:
            return True
        self._tokens = min(float(self.ring), self._tokens + (now - self._last) * self.capacity)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        self.dropped += 1
        return False
    #: A TCG guest behind an emulated NIC (tests/slam/guest.py): frames queue, cost time and
    #: are lost while it is descheduled.  Exclusive with ``capacity``.
    guest: Guest[Frame] | None = None
    #: Drops chosen deliveries to this client: ``drop(now, kind, data)`` ("mc" or "uc").
    drop: Callable[[float, str, bytes], bool] | None = None
    core: SlamClient | None = None
    address: tuple[str, int] = ("0.0.0.0", 0)

    def timer(self) -> float | None:
        assert self.core is not None
        at = self.core.get_timer()
        return at if at is None or self.guest is None else self.guest.running_from(at)

    def running(self, now: float) -> bool:
        return self.guest is None or self.guest.running_from(now) == now


@dataclass
class Sim:
    content: Content
    clients: list[SimClient]
    config: ServerConfig = field(default_factory=ServerConfig)
    latency: float = 0.0002
    seed: int = 1
    changes: list[tuple[float, Content]] = field(default_factory=list)
    injections: list[tuple[float, bytes, tuple[str, int]]] = field(default_factory=list)

    def run(self, limit: float = 60.0) -> SlamServer:
        rng = random.Random(self.seed)
        server = SlamServer(self.content, GROUP, self.config, now=0.0)
        self.server = server
        self.log: list[tuple[float, str, dict[str, object]]] = []
        queue: list[tuple[float, int, str, object, bytes, tuple[str, int]]] = []
        seq = 0
        by_addr: dict[tuple[str, int], SimClient] = {}
        for i, c in enumerate(self.clients):
            c.address = ("192.0.2.2", 40000 + i)
            by_addr[c.address] = c
        changes = sorted(self.changes, key=lambda x: x[0])
        for when, data, addr in self.injections:
            seq += 1
            heapq.heappush(queue, (when, seq, "server", None, data, addr))
        now = 0.0

        def alive(c: SimClient) -> bool:
            return c.core is not None and c.core.outcome is None and (c.dies_at is None or now < c.dies_at)

        def flush() -> None:
            nonlocal seq
            for data, addr in server.datagrams_to_send(now):
                targets = [c for c in self.clients if alive(c)] if addr == GROUP else [by_addr.get(addr)]
                for c in targets:
                    if c is None or (addr == GROUP and c.deaf) or rng.random() < c.loss:
                        continue
                    kind = "mc" if addr == GROUP else "uc"
                    if c.drop is not None and c.drop(now, kind, data):
                        continue
                    seq += 1
                    heapq.heappush(queue, (now + self.latency, seq, kind, c, data, SERVER))
            for c in self.clients:
                if c.core is not None and c.core.has_output and (c.dies_at is None or now < c.dies_at):
                    for data, _ in c.core.datagrams_to_send(now):
                        seq += 1
                        heapq.heappush(queue, (now + self.latency, seq, "server", None, data, c.address))

        def deliver(c: SimClient, kind: str, data: bytes) -> None:
            assert c.core is not None
            if kind == "mc":
                c.core.receive_multicast(data, now)
            else:
                c.core.receive_datagram(data, SERVER, now)

        stuck = 0
        while now < limit:
            candidates = [queue[0][0]] if queue else []
            timer = server.get_timer()
            if timer is not None:
                candidates.append(timer)
            for c in self.clients:
                if c.core is None:
                    candidates.append(c.start)
                elif alive(c) and (t := c.timer()) is not None:
                    candidates.append(t)
                if c.guest is not None and c.guest.done_at is not None:
                    candidates.append(c.guest.done_at)
            if changes:
                candidates.append(changes[0][0])
            if all(c.core is not None and not alive(c) for c in self.clients) and not queue:
                break
            if not candidates:
                break
            step = max(now, min(candidates))
            stuck = stuck + 1 if step == now else 0
            if stuck > 100000:
                raise RuntimeError(f"simulation stuck at t={now}: a core keeps asking for the past")
            now = step
            while changes and changes[0][0] <= now:
                server.replace_content(changes.pop(0)[1], now)
            for c in self.clients:
                if c.core is None and c.start <= now:
                    c.core = SlamClient(SERVER, now, variant=c.variant, complete_empty=c.complete_empty)
            while queue and queue[0][0] <= now:
                _, _, kind, target, data, src = heapq.heappop(queue)
                if kind == "server":
                    server.receive_datagram(data, src, now)
                else:
                    assert isinstance(target, SimClient)
                    if target.guest is not None:
                        if alive(target):
                            target.guest.arrive((kind, data), now)
                    elif alive(target) and target.accepts(now):
                        deliver(target, kind, data)
            for c in self.clients:
                while c.guest is not None and c.guest.done_at is not None and c.guest.done_at <= now:
                    kind, data = c.guest.take(now)
                    if alive(c):
                        deliver(c, kind, data)
            server.handle_timer(now)
            for c in self.clients:
                if alive(c) and c.running(now):
                    assert c.core is not None
                    c.core.handle_timer(now)
            flush()
            while (event := server.next_event()) is not None:
                self.log.append((now, event.name, event.fields))
        self.end = now
        return server

    def events(self) -> list[tuple[str, dict[str, object]]]:
        return [(name, fields) for _, name, fields in self.log]
