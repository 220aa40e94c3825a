"""asyncio transport for :class:`SlamServer`: one UDP socket, timers, file polling, events.

Why one socket: as with mini-slamd, NACKs arrive at the server port and both the
pings and the group data leave from it, so every server datagram has the same
source.  The socket never receives group traffic (``IP_MULTICAST_ALL`` off), which
matters when simulated clients on the same host hold the group port.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from dataclasses import dataclass
from typing import cast

from netboot.events import EventLog
from netboot.slam.server import Address, ServerConfig, SlamServer
from netboot.slam.source import FileSource

log = logging.getLogger("pyslamd")

IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)

#: How often the file is checked for changes.
POLL_INTERVAL = 0.2


@dataclass
class SocketOptions:
    port: int = 10000
    group: str = "239.255.1.1"
    group_port: int = 10000
    ttl: int = 1
    loop: bool = True
    bind_address: str | None = None
    interface: str | None = None


def open_server_socket(opts: SocketOptions) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, opts.ttl)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1 if opts.loop else 0)
        try:
            sock.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
        except OSError:  # pragma: no cover - not Linux
            pass
        if opts.interface:
            index = socket.if_nametoindex(opts.interface)
            mreqn = struct.pack("4s4si", bytes(4), bytes(4), index)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)
        elif opts.bind_address:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(opts.bind_address))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        sock.bind((opts.bind_address or "0.0.0.0", opts.port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class SlamServerProtocol(asyncio.DatagramProtocol):
    def __init__(self, core: SlamServer, source: FileSource, events: EventLog) -> None:
        self.core = core
        self.source = source
        self.events = events
        self.transport: asyncio.DatagramTransport | None = None
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._poller = self._loop.call_later(POLL_INTERVAL, self._poll_file)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.flush()

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.core.receive_datagram(data, (addr[0], addr[1]), self._loop.time())
        self.flush()

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a client that has gone: its pings just time out.
        log.debug("socket error (ignored): %s", exc)

    def _poll_file(self) -> None:
        self._poller = self._loop.call_later(POLL_INTERVAL, self._poll_file)
        if not self.source.changed():
            return
        try:
            content = self.source.load(self.core.content.transaction)
            self.core.replace_content(content, self._loop.time())
        except (OSError, ValueError) as exc:
            self.events.emit("file_error", file=self.source.path, reason=str(exc))
            log.error("keeping the previous snapshot of %s: %s", self.source.path, exc)
        self.flush()

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.core.handle_timer(self._loop.time())
        self.flush()

    def flush(self) -> None:
        now = self._loop.time()
        if self.transport is not None:
            for data, addr in self.core.datagrams_to_send(now):
                self.transport.sendto(data, addr)
        while (event := self.core.next_event()) is not None:
            self.events.emit(event.name, file=self.source.path, **event.fields)
            log.debug("%s %s", event.name, event.fields)
        at = self.core.get_timer()
        if at != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(at, self._on_timer) if at is not None else None
            self._timer_at = at

    def close(self) -> None:
        self._poller.cancel()
        if self._timer is not None:
            self._timer.cancel()
        if self.transport is not None:
            self.transport.close()


async def serve(
    path: str, opts: SocketOptions, config: ServerConfig, events: EventLog, ready: asyncio.Event | None = None
) -> None:
    """Serve ``path`` until cancelled; emits ``listening`` and, at the end, ``stats``."""
    loop = asyncio.get_running_loop()
    source = FileSource(path)
    content = source.load()
    core = SlamServer(content, (opts.group, opts.group_port), config, now=loop.time())
    sock = open_server_socket(opts)
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: SlamServerProtocol(core, source, events), sock=sock
    )
    events.emit(
        "listening",
        file=path,
        port=opts.port,
        group=f"{opts.group}:{opts.group_port}",
        bytes=len(content.data),
        block_size=config.block_size,
    )
    log.info("serving %s (%d bytes) on port %d to %s:%d", path, len(content.data), opts.port, opts.group,
             opts.group_port)
    if ready is not None:
        ready.set()
    try:
        await asyncio.Event().wait()
    finally:
        events.emit("stats", file=path, **core.stats.as_dict())
        protocol.close()
