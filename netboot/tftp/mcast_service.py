"""Asyncio glue for multicast sessions: the ``multicast`` option handler and session sockets.

Why separate from :mod:`multicast`: the session core decides, this module owns
sockets.  A session socket is bound to the address the request arrived on, sends
to the group through that interface (IP_MULTICAST_IF), with ``--mcast-ttl`` and
loopback on (local listeners, e.g. simulated clients, hear the group too).
"""

from __future__ import annotations

import logging
import os
import socket
import struct
from dataclasses import dataclass
from typing import Any

from netboot.tftp.driver import CoreDriver
from netboot.tftp.events import CoreEvent
from netboot.tftp.handler import RequestContext
from netboot.tftp.mcast_hold import Hold, WaveClock
from netboot.tftp.mcast_pool import GroupPort, McastPool
from netboot.tftp.mcast_state import MAX_MULTICAST_BLOCKS
from netboot.tftp.mcast_tuning import Tuning
from netboot.tftp.multicast import MulticastSession
from netboot.tftp.packets import ErrorCode
from netboot.tftp.paths import PathRefused, resolve
from netboot.tftp.server import TftpServer
from netboot.tftp.test_faults import with_fault
from netboot.tftp.unicast import negotiate_or_refuse, open_file

log = logging.getLogger("pyatftpd")


class SessionDriver(CoreDriver):
    """A :class:`CoreDriver` that can be woken when a request joins its session."""

    def kick(self) -> None:
        self._flush(self.loop.time())

    def _flush(self, now: float) -> None:
        # The base driver re-arms lazily; a session's repair deadline (0.15 s) must not
        # wait for a later housekeeping tick, so pull the timer forward when needed.
        super()._flush(now)
        if self.closed or self._timer is None:
            return
        deadline = self.core.get_timer()
        if deadline is not None and deadline < self._timer.when():
            self._timer.cancel()
            self._timer = self.loop.call_at(deadline, self._on_timer)


@dataclass
class SessionHandle:
    key: tuple[Any, ...]
    core: MulticastSession
    driver: SessionDriver


def configure_multicast_socket(sock: socket.socket, local_ip: str, ttl: int) -> None:
    """Group DATA leaves through the interface of ``local_ip``, ``ttl`` hops, loopback on."""
    if local_ip not in ("", "0.0.0.0"):
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(local_ip))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, struct.pack("b", ttl) if ttl < 128 else ttl)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)


class SessionRegistry:
    """Sessions by key, each on its own socket, with their events logged."""

    def __init__(self, server: TftpServer, ttl: int, tuning: Tuning | None) -> None:
        self.server = server
        self.ttl = ttl
        self.tuning = tuning
        self.sessions: dict[tuple[Any, ...], SessionHandle] = {}

    def find(self, key: tuple[Any, ...]) -> SessionHandle | None:
        handle = self.sessions.get(key)
        if handle is not None and handle.core.accepting() and not handle.driver.closed:
            return handle
        return None

    def start(
        self,
        ctx: RequestContext,
        key: tuple[Any, ...],
        core_factory: Any,
        group: GroupPort,
        on_end: Any = None,
    ) -> SessionHandle | None:
        server = self.server
        try:
            sock = server.open_transfer_socket(ctx.local_ip)
            configure_multicast_socket(sock, ctx.local_ip, self.ttl)
        except OSError as exc:
            ctx.refuse(ErrorCode.NOT_DEFINED, f"cannot open a multicast session socket: {exc.strerror}")
            return None
        core: MulticastSession = core_factory()
        session_id = server.new_session_id()
        labels = {"file": ctx.request.filename, "session": session_id, "group": f"{group.group}:{group.port}"}
        emit = server.events.emit

        def on_event(event: CoreEvent) -> None:
            fields = {**labels, **event.fields}
            if event.name in ("mcast_session_start", "mcast_session_end", "multicast_not_received"):
                log.info("%s %s", event.name, " ".join(f"{k}={v}" for k, v in fields.items()))
            emit(event.name, **fields)

        def on_close(driver: CoreDriver) -> None:
            server.drivers.discard(driver)
            if self.sessions.get(key) is handle:
                del self.sessions[key]
            if on_end is not None:
                on_end()

        driver = SessionDriver(server.loop, sock, with_fault(core), on_event, on_close, recv_size=2048)
        handle = SessionHandle(key, core, driver)
        server.drivers.add(driver)
        self.sessions[key] = handle
        return handle


class MulticastService:
    """Serves RRQs carrying ``multicast`` (RFC 2090); registered on the server's router."""

    def __init__(
        self,
        server: TftpServer,
        pool: McastPool,
        ttl: int = 1,
        tuning: Tuning | None = None,
        hold: Hold | None = None,
    ) -> None:
        self.server = server
        self.pool = pool
        self.registry = SessionRegistry(server, ttl, tuning)
        self.tuning = tuning
        self.waves = WaveClock(hold or Hold())

    def install(self) -> None:
        self.server.router.register_option("multicast", self.handle)

    def _decline(self, ctx: RequestContext, reason: str) -> bool:
        """Serve by unicast: the default handler leaves ``multicast`` out of the OACK."""
        self.server.emit("mcast_declined", client=ctx.client_text, file=ctx.request.filename, reason=reason)
        log.info("multicast declined for %s %r: %s", ctx.client_text, ctx.request.filename, reason)
        return False

    def handle(self, ctx: RequestContext) -> bool:
        request = ctx.request
        config = self.server.config
        if not config.policy.multicast:
            return False
        if not request.is_read:
            return False
        if request.mode != "octet":
            return self._decline(ctx, f"mode {request.mode} is never multicast")
        if ":" in ctx.local_ip or ":" in ctx.client[0]:
            # The pool's groups are IPv4 (atftpd's too): an IPv6 client is served by unicast.
            return self._decline(ctx, "RFC 2090 groups are IPv4; an IPv6 request is served by unicast")
        try:
            path = os.path.realpath(resolve(config.root, request.filename))
        except PathRefused:
            return False  # the unicast handler explains the refusal
        source = open_file(ctx)
        if source is None:
            return True
        negotiation = negotiate_or_refuse(ctx, source.size)
        if negotiation is None:
            source.close()
            return True
        blocks = source.size // negotiation.blksize + 1
        if blocks > MAX_MULTICAST_BLOCKS:
            source.close()
            return self._decline(
                ctx, f"{blocks} blocks of {negotiation.blksize} bytes exceed {MAX_MULTICAST_BLOCKS}"
            )
        key = ("rfc2090", path, negotiation.blksize, ctx.local_ip)
        handle = self.registry.find(key)
        if handle is not None:
            source.close()
        else:
            group = self.pool.allocate()
            if group is None:
                source.close()
                return self._decline(ctx, f"all {len(self.pool)} group:port pairs are in use")
            if not self.server.slots.acquire():
                self.pool.release(group)
                source.close()
                ctx.refuse(ErrorCode.NOT_DEFINED, "server busy (--maxthread); try again later")
                return True

            def on_end(group: GroupPort = group, source: Any = source) -> None:
                self.pool.release(group)
                self.server.slots.release()
                source.close()
                clients = frozenset(addr[0] for addr in handle.core.members) if handle else frozenset()
                self.waves.session_ended(key, self.server.loop.time(), clients)

            def factory(group: GroupPort = group, source: Any = source) -> MulticastSession:
                return MulticastSession(
                    source.read,
                    source.size,
                    negotiation.blksize,
                    group,
                    ctx.now,
                    tuning=self.tuning,
                    hold=self.waves.hold_for(key, ctx.client[0], ctx.now),
                )

            handle = self.registry.start(ctx, key, factory, group, on_end)
            if handle is None:
                on_end()
                return True
        # A session is lock-step for everyone: windowsize is not acknowledged (it means 1).
        acknowledged = [(n, v) for n, v in negotiation.acknowledged if n.lower() != "windowsize"]
        admitted = handle.core.add_request(ctx.client, acknowledged, ctx.now)
        handle.driver.kick()
        if not admitted:
            return self._decline(ctx, f"the session already has {handle.core.tuning.max_members} members")
        return True
