"""A virtual-time network for the multicast session core and iPXE ``tftm://``/``mtftp://`` clients.

Why: the real-socket scenarios (test_multicast_netns.py, mcast_scenario.py) prove the
transports; this runs the same cores deterministically, so timer behaviour (iPXE's
15.75 s give-up while a session is held) is checked in virtual seconds.  The
listening port's part of :class:`MulticastService` is reduced to what a session sees:
one file, the OACK options iPXE asks for, a new session (and wave) when the last ended.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

from netboot.clients.ipxe_tftp import Finished, IpxeTftpClient, OpenSocket
from netboot.tftp.mcast_hold import Hold, WaveClock
from netboot.tftp.mcast_pool import GroupPort
from netboot.tftp.multicast import MulticastSession, Tuning

Address = tuple[str, int]
SERVER_IP = "192.0.2.1"
LISTEN: Address = (SERVER_IP, 69)
SESSION: Address = (SERVER_IP, 40000)
GROUP = GroupPort("239.255.0.0", 1758)
GROUP_ADDRESS: Address = (GROUP.group, GROUP.port)
MTFTP_GROUP = GroupPort("239.255.1.1", 3001)
MTFTP_LISTEN: Address = (SERVER_IP, 1759)
BLKSIZE = 1432
#: What iPXE sends for ``tftm://192.0.2.1/payload`` and ``mtftp://`` (silent requesters too).
_TFTM_RRQ = b"\0\1payload\0octet\0blksize\x001432\0tsize\x000\0multicast\0\0"
_MTFTP_RRQ = b"\0\1payload\0octet\0"


@dataclass
class SimClient:
    start: float
    #: Default 192.0.2.<10 + index>; give another client's to play that node asking again.
    ip: str | None = None
    #: Share of datagrams lost each way on this client's link (its tap), seeded.
    loss: float = 0.0
    seed: int = 0
    #: iPXE-faithful client settings (netboot.clients.ipxe_tftp.IpxeTftpClient), e.g. deaf.
    options: dict[str, object] = field(default_factory=dict)
    core: IpxeTftpClient | None = None
    address: Address = ("0.0.0.0", 0)
    sockets: int = 0


@dataclass
class TftmSim:
    payload: bytes
    clients: list[SimClient]
    hold: Hold = field(default_factory=Hold)
    #: One way; iPXE under TCG answers a block in about a millisecond.
    latency: float = 0.0005
    #: Start times of silent requesters: one RRQ each (a spoofed source), never a word more.
    silent: list[float] = field(default_factory=list)
    sessions: list[MulticastSession] = field(default_factory=list)
    log: list[tuple[float, str, dict[str, object]]] = field(default_factory=list)
    #: Run until the session has ended, not only until every client is done.
    until_session_ends: bool = False
    #: ``tftm`` (RFC 2090, port 69) or ``mtftp`` (PXE MTFTP, port 1759, 512-byte blocks).
    scheme: str = "tftm"
    tuning: Tuning | None = None
    #: What the session sent to the silent requesters: datagrams and bytes.
    to_silent: list[tuple[float, bytes]] = field(default_factory=list)

    @property
    def group_bytes(self) -> int:
        return sum(session.group_bytes for session in self.sessions)

    def names(self) -> list[str]:
        return [name for _, name, _ in self.log]

    def run(self, limit: float = 120.0) -> None:
        mtftp = self.scheme == "mtftp"
        group = MTFTP_GROUP if mtftp else GROUP
        group_address: Address = (group.group, group.port)
        listen = MTFTP_LISTEN if mtftp else LISTEN
        blksize = 512 if mtftp else BLKSIZE
        waves = WaveClock(self.hold)
        queue: list[tuple[float, int, str, int, bytes, Address]] = []
        seq = 0
        now = 0.0
        by_address: dict[Address, int] = {}
        session: MulticastSession | None = None

        def read(offset: int, length: int) -> bytes:
            return self.payload[offset : offset + length]

        def send(kind: str, index: int, data: bytes, source: Address) -> None:
            nonlocal seq
            seq += 1
            heapq.heappush(queue, (now + self.latency, seq, kind, index, data, source))

        def client_io(index: int) -> None:
            client = self.clients[index]
            core = client.core
            assert core is not None
            while (event := core.next_event()) is not None:
                if isinstance(event, OpenSocket):
                    client.sockets += 1
                    port = 2000 + 100 * index + client.sockets  # unique even for a shared ip
                    client.address = (client.ip or f"192.0.2.{10 + index}", port)
                    by_address[client.address] = index
                elif isinstance(event, Finished):
                    self.log.append((now, "client_finished", {"client": index, "ok": event.ok}))
            for data, destination in core.datagrams_to_send(now):
                if client.loss and uplinks[index].random() < client.loss:
                    continue  # lost on the way to the server
                if destination == LISTEN and mtftp:
                    self.log.append((now, "client_fallback", {"client": index}))  # plain TFTP: a failure
                    continue
                send("listen" if destination == listen else "session", index, data, client.address)

        uplinks = [random.Random(client.seed + 7919) for client in self.clients]
        silent_addresses = {(f"192.0.2.{200 + i % 50}", 6000 + i): i for i in range(len(self.silent))}
        silent_due = sorted(
            (start, address) for address, start in zip(silent_addresses, self.silent, strict=True)
        )

        def live() -> list[MulticastSession]:
            """Sessions still running: the one taking requests, and any that only linger."""
            return [s for s in self.sessions if not s.finished]

        def session_io() -> None:
            for running in self.sessions:  # a session that just ended still has its last events
                one_session_io(running)

        def one_session_io(session: MulticastSession) -> None:
            for data, destination in session.datagrams_to_send(now):
                if destination in silent_addresses:
                    self.to_silent.append((now, data))
                    continue
                if destination == group_address:
                    for index, client in enumerate(self.clients):
                        if client.core is not None and not client.core.done:
                            send("group", index, data, SESSION)
                elif destination in by_address:
                    send("unicast", by_address[destination], data, SESSION)
            while (event := session.next_event()) is not None:
                self.log.append((now, event.name, event.fields))
                if event.name == "mcast_session_end":  # the service tells when it closes the session
                    waves.session_ended("file", now, frozenset(addr[0] for addr in session.members))

        def request(index: int, data: bytes, source: Address) -> None:
            nonlocal session
            assert mtftp or b"multicast\0" in data, "a tftm client asked without the multicast option"
            if session is not None and not session.accepting():
                session = None  # ended, or lingers for a quiet client: a new request opens another
            if session is None:
                hold = None if mtftp else waves.hold_for("file", source[0], now)
                session = MulticastSession(
                    read, len(self.payload), blksize, group, now, mtftp=mtftp, hold=hold, tuning=self.tuning
                )
                self.sessions.append(session)
            options = [] if mtftp else [("blksize", str(BLKSIZE)), ("tsize", str(len(self.payload)))]
            session.add_request(source, options, now)

        while now < limit:
            candidates = [queue[0][0]] if queue else []
            if silent_due:
                candidates.append(silent_due[0][0])
            for running in live():
                if (timer := running.get_timer()) is not None:
                    candidates.append(timer)
            for client in self.clients:
                if client.core is None:
                    candidates.append(client.start)
                elif not client.core.done and (timer := client.core.get_timer()) is not None:
                    candidates.append(timer)
            everyone_done = all(c.core is not None and c.core.done for c in self.clients)
            session_over = not self.until_session_ends or not live()
            if not candidates or (everyone_done and not silent_due and session_over):
                break
            now = max(now, min(candidates))
            while silent_due and silent_due[0][0] <= now:
                _, address = silent_due.pop(0)
                request(-1, _MTFTP_RRQ if mtftp else _TFTM_RRQ, address)
                session_io()
            for index, client in enumerate(self.clients):
                if client.core is None and client.start <= now:
                    client.core = IpxeTftpClient(
                        SERVER_IP, "/payload", scheme=self.scheme, blksize=BLKSIZE, loss=client.loss,
                        seed=client.seed, **client.options,  # type: ignore[arg-type]
                    )
                    client.core.start(now)
                    client_io(index)
            while queue and queue[0][0] <= now:
                _, _, kind, index, data, source = heapq.heappop(queue)
                core = self.clients[index].core
                assert core is not None
                if kind == "listen":
                    request(index, data, source)
                elif kind == "session":
                    owner = next((s for s in live() if source in s.members), session)
                    if owner is not None:
                        owner.receive_datagram(data, source, now)
                elif kind == "group":
                    core.receive_datagram(data, source, now, group=group_address)
                else:
                    core.receive_datagram(data, source, now)
                client_io(index)
            for running in live():
                running.handle_timer(now)
            session_io()
            for index, client in enumerate(self.clients):
                if client.core is not None and not client.core.done:
                    client.core.handle_timer(now)
                    client_io(index)
        self.end = now
        #: When the session that served the silent requesters ended (None: still running).
        self.session_end = next((t for t, name, _ in reversed(self.log) if name == "mcast_session_end"), None)
