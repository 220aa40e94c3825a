"""Thin asyncio TFTP server: listening sockets, per-transfer sockets, limits, events.

Why this shape:

* Listening sockets are read with ``recvmsg`` and IP_PKTINFO, so every reply
  (the per-transfer socket, or an ERROR) leaves from the address the request
  arrived on, as clients on multi-homed hosts require.
* Each transfer gets its own socket bound to that address and an ephemeral port
  (its TID) and is driven by a :class:`~netboot.tftp.driver.CoreDriver`.
* Every request goes through a :class:`~netboot.tftp.router.RequestRouter`; the
  multicast and MTFTP code plug in there (``router.register_option``,
  ``add_listener``), and reuse ``open_transfer_socket``/``attach``/``emit``.
* Limits (``--maxthread``) are answered with an ERROR, never with silence.
  The limit is a :class:`Slots` object so pre-forked workers can share one count.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import struct
from collections.abc import Callable
from typing import Any, Protocol

from netboot.events import EventLog
from netboot.tftp.config import ServerConfig
from netboot.tftp.driver import Core, CoreDriver
from netboot.tftp.events import CoreEvent
from netboot.tftp.handler import Handler, Listener, Slots
from netboot.tftp.packets import ErrorCode, encode_error
from netboot.tftp.router import RequestRouter
from netboot.tftp.thread_driver import ThreadDriver

__all__ = [
    "Balancer", "Listener", "LocalSlots", "ServerConfig", "Slots", "TftpServer", "make_listening_socket",
]

Address = tuple[str, int]
log = logging.getLogger("pyatftpd")

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
_PKTINFO = struct.Struct("@i4s4s")
_CMSG_SPACE = socket.CMSG_SPACE(_PKTINFO.size)
UNKNOWN_TID_ERROR = encode_error(
    ErrorCode.UNKNOWN_TID, "unknown transfer ID: this port serves another client"
)
#: What a client in mid-transfer hears when the server stops (atftpd sends ERROR 0 too).
SHUTDOWN_ERROR = encode_error(ErrorCode.NOT_DEFINED, "server shutting down: try again later")
#: How long a stop waits for transfer threads to close their files.
STOP_GRACE = 1.0


class Balancer(Protocol):
    """Shares this worker's load with its siblings (``--workers``)."""

    def publish(self, active: int) -> None: ...

    def should_take(self) -> bool: ...


class LocalSlots:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0

    def acquire(self) -> bool:
        if self._used >= self.limit:
            return False
        self._used += 1
        return True

    def release(self) -> None:
        self._used = max(0, self._used - 1)

    def in_use(self) -> int:
        return self._used


class TftpServer:
    def __init__(
        self,
        config: ServerConfig,
        events: EventLog | None = None,
        slots: Slots | None = None,
        balancer: Balancer | None = None,
        *,
        default: Handler,
    ) -> None:
        """``default`` serves what no other handler takes (the CLI passes a ``unicast.UnicastHandler``)."""
        self.config = config
        self.events = events or EventLog(None, "pyatftpd")
        self.slots: Slots = slots or LocalSlots(config.max_transfers)
        self.balancer = balancer
        self._deferred: set[int] = set()
        self.router = RequestRouter(default)
        self.listeners: list[Listener] = []
        self.drivers: set[CoreDriver | ThreadDriver] = set()
        self._session_ids = itertools.count(1)
        self._session_prefix = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._stop_requested = False  # a stop() that came before serve() (a SIGTERM held at start)
        self._last_activity = 0.0

    # -- setup ---------------------------------------------------------------------------
    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def add_listener(
        self, sock: socket.socket, router: RequestRouter | None = None, name: str = "tftp"
    ) -> Listener:
        """Serve requests arriving on ``sock`` (bound UDP) through ``router`` (default: ours)."""
        sock.setblocking(False)
        if sock.family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        listener = Listener(sock, router or self.router, name)
        self.listeners.append(listener)
        if self._loop is not None:
            self._loop.add_reader(sock.fileno(), self._on_request, listener)
        return listener

    def set_session_prefix(self, prefix: str) -> None:
        self._session_prefix = prefix

    def new_session_id(self) -> str:
        return f"{self._session_prefix}{next(self._session_ids)}"

    # -- running ---------------------------------------------------------------------------
    async def serve(self) -> None:
        """Serve until :meth:`stop` is called (or the idle limit passes)."""
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        if self._stop_requested:
            self._stopped.set()
        self._last_activity = self._loop.time()
        for listener in self.listeners:
            self._loop.add_reader(listener.sock.fileno(), self._on_request, listener)
        if self.config.idle_exit:
            self._loop.call_later(self.config.idle_exit, self._check_idle)
        try:
            await self._stopped.wait()
        finally:
            for listener in self.listeners:
                self._loop.remove_reader(listener.sock.fileno())
            self._stop_transfers()

    def _stop_transfers(self) -> None:
        """Tell every client in mid-transfer (ERROR 0), then let the threads close their files."""
        drivers = list(self.drivers)
        for driver in drivers:
            driver.farewell(SHUTDOWN_ERROR)
        deadline = self.loop.time() + STOP_GRACE
        for driver in drivers:
            if isinstance(driver, ThreadDriver):
                driver.join(max(0.0, deadline - self.loop.time()))

    def stop(self) -> None:
        self._stop_requested = True
        if self._stopped is not None:
            self._stopped.set()

    def _check_idle(self) -> None:
        assert self._loop is not None and self.config.idle_exit
        idle_for = self._loop.time() - self._last_activity
        if not self.drivers and idle_for >= self.config.idle_exit:
            log.info("no request for %.0f s: exiting (--tftpd-timeout)", idle_for)
            self.stop()
            return
        self._loop.call_later(max(1.0, self.config.idle_exit - idle_for), self._check_idle)

    #: How long a busier worker leaves a waiting request to its siblings.
    DEFER_SECONDS = 0.003

    def _on_request(self, listener: Listener) -> None:
        sock = listener.sock
        if self.balancer is not None and not self.balancer.should_take():
            fd = sock.fileno()
            if fd not in self._deferred:
                self._deferred.add(fd)
                self.loop.remove_reader(fd)
                self.loop.call_later(self.DEFER_SECONDS, self._resume_listener, listener)
                return
        now = self.loop.time()
        self._last_activity = now
        for _ in range(16):
            try:
                data, ancdata, flags, client = sock.recvmsg(4096, _CMSG_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("listening socket: %s", exc)
                continue
            local_ip = self._local_address(sock, ancdata)
            try:
                listener.router.dispatch(
                    self, listener, data, client[:2], local_ip, now, truncated=bool(flags & socket.MSG_TRUNC)
                )
            except Exception:  # never let one request take the server down
                log.exception("failed to handle a request from %s", client)

    def _resume_listener(self, listener: Listener) -> None:
        """After deferring: read the request ourselves if no sibling took it."""
        fd = listener.sock.fileno()
        self._deferred.discard(fd)
        if self._stopped is not None and self._stopped.is_set():
            return
        self._deferred.add(fd)  # take it now whatever the balance says
        try:
            self._on_request(listener)
        finally:
            self._deferred.discard(fd)
            self.loop.add_reader(fd, self._on_request, listener)

    def _publish_load(self) -> None:
        if self.balancer is not None:
            self.balancer.publish(len(self.drivers))

    @staticmethod
    def _local_address(sock: socket.socket, ancdata: list[tuple[int, int, bytes]]) -> str:
        for level, kind, payload in ancdata:
            if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(payload) >= _PKTINFO.size:
                _ifindex, spec_dst, _dst = _PKTINFO.unpack_from(payload)
                return socket.inet_ntoa(spec_dst)
        return str(sock.getsockname()[0])

    # -- services for handlers ---------------------------------------------------------------
    def emit(self, event: str, **fields: Any) -> None:
        self.events.emit(event, **fields)

    def send_error(
        self,
        listener: Listener,
        client: Address,
        local_ip: str,
        code: ErrorCode | int,
        message: str,
        **fields: Any,
    ) -> None:
        """Send ERROR ``code`` to ``client`` from ``local_ip`` through the listening socket.

        ``reason`` in ``fields`` is the text for the log and the event when the wire
        carries a shorter ``message`` (``router.terse``).
        """
        reason = str(fields.pop("reason", message))
        packet = encode_error(code, message)
        sock = listener.sock
        try:
            if sock.family == socket.AF_INET and local_ip not in ("0.0.0.0", ""):
                pktinfo = _PKTINFO.pack(0, socket.inet_aton(local_ip), b"\0\0\0\0")
                sock.sendmsg([packet], [(socket.IPPROTO_IP, IP_PKTINFO, pktinfo)], 0, client)
            else:
                sock.sendto(packet, client)
        except OSError as exc:
            log.warning("cannot send ERROR to %s:%s: %s", client[0], client[1], exc)
        log.info("refused %s:%s: ERROR %d %s", client[0], client[1], int(code), reason)
        self.emit("error", client=f"{client[0]}:{client[1]}", code=int(code), reason=reason, **fields)

    def open_transfer_socket(self, local_ip: str) -> socket.socket:
        """A fresh UDP socket bound to ``local_ip`` and an ephemeral port: the transfer's TID."""
        family = socket.AF_INET6 if ":" in local_ip else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if self.config.listen_local:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sock.bind((local_ip, 0))
        except OSError:
            sock.close()
            raise
        return sock

    def attach(
        self,
        core: Core,
        sock: socket.socket,
        labels: dict[str, Any],
        *,
        recv_size: int = 2048,
        on_done: Callable[[], None] | None = None,
        threaded: bool = False,
        connect_to: Address | None = None,
    ) -> CoreDriver | ThreadDriver:
        """Drive ``core`` on ``sock``; its events are logged with ``labels`` added.

        ``threaded`` runs it in a thread of its own (lowest latency per datagram);
        ``connect_to`` (threaded only) serves a single peer from a connected socket
        and answers every other source with ERROR 5 from the event loop.
        """
        emit = self.events.emit
        enabled = self.events.enabled

        trace = self.config.trace

        def on_event(event: CoreEvent) -> None:
            if trace and event.name in ("data", "ack"):
                log.debug("%s %s: %s %s", labels.get("client"), labels.get("file"), event.name, event.fields)
            elif event.name == "done":
                log.info(
                    "%s %s: %s",
                    labels.get("client"),
                    labels.get("file"),
                    "done" if event.fields.get("ok") else f"failed: {event.fields.get('reason')}",
                )
            if enabled:
                emit(event.name, **labels, **event.fields)

        def on_close(driver: CoreDriver | ThreadDriver) -> None:
            self.drivers.discard(driver)
            self._publish_load()
            if self._loop is not None:
                self._last_activity = self._loop.time()
            if on_done is not None:
                on_done()

        driver: CoreDriver | ThreadDriver
        if threaded:

            def on_stray(data: bytes, addr: Address) -> bytes | None:
                if data[:2] == b"\0\5":
                    return None  # never answer an ERROR
                if enabled:
                    emit("error", **labels, code=5, reason="foreign TID", to=f"{addr[0]}:{addr[1]}")
                return UNKNOWN_TID_ERROR

            driver = ThreadDriver(
                self.loop,
                sock,
                core,
                on_event,
                on_close,
                recv_size=recv_size,
                peer=connect_to,
                on_stray=on_stray,
            )
        else:
            driver = CoreDriver(self.loop, sock, core, on_event, on_close, recv_size=recv_size)
        if not driver.closed:
            self.drivers.add(driver)
            self._publish_load()
        return driver


def make_listening_socket(address: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """Bind the request socket (``--bind-address``/``--port``); IPv4 or IPv6 literal."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((address, port))
    sock.set_inheritable(True)
    os.set_blocking(sock.fileno(), False)
    return sock
