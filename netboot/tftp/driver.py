"""Runs one sans-I/O core on one UDP socket inside an asyncio loop.

Why raw sockets with ``loop.add_reader`` rather than a ``DatagramProtocol``: a
lock-step TFTP transfer is one ACK in and one DATA out per block, so the
per-datagram overhead is the whole cost.  Reading the socket directly (draining it
until EAGAIN) and sending with a plain ``sendto`` saves the transport layer's
buffering and callbacks.  The timer is lazy: one ``call_at`` per core, re-armed
only when it fires, so an ACK that pushes the deadline forward costs nothing.

Any core with the shape ``receive_datagram / datagrams_to_send / get_timer /
handle_timer / next_event`` plus a ``finished`` flag can be driven (unicast reads,
uploads, and the multicast sessions built on top).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Protocol

from netboot.tftp.events import CoreEvent
from netboot.tftp.packets import ErrorCode, encode_error

Address = tuple[str, int]
log = logging.getLogger("pyatftpd")


class Core(Protocol):
    finished: bool

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None: ...

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]: ...

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...

    def next_event(self) -> CoreEvent | None: ...


EventSink = Callable[[CoreEvent], None]


def peers_of(core: object) -> list[Address]:
    """Who is still in ``core``'s transfer: its peer, or a session's unfinished members.

    Why: at a server stop each of them gets an ERROR (atftpd sends ERROR 0), so a
    client learns at once that the transfer is over instead of timing out.
    """
    if getattr(core, "finished", False):
        return []
    peer = getattr(core, "peer", None)
    if peer is not None:
        return [peer]
    members = getattr(core, "members", None)
    if isinstance(members, dict):
        return [addr for addr, member in members.items() if getattr(member, "state", "") in _IN_TRANSFER]
    return []


_IN_TRANSFER = ("waiting", "master", "unicast")

#: What every client still in a transfer gets when its core raised (a bug).
INTERNAL_ERROR = encode_error(ErrorCode.NOT_DEFINED, "pyatftpd internal error; fetch the file again")


def report_core_failure(on_event: EventSink, during: str) -> None:
    """Log a core's exception with its traceback and emit ``internal_error``.

    Why the transfer ends after it (both drivers): the core's state is unknown after an
    exception, and a client left waiting on a transfer that will never move times out after
    many seconds with no word; the driver's ERROR lets iPXE report it at once and a script
    retry.  Call it from an ``except`` block.
    """
    log.exception("internal error in a transfer while handling %s; ending it", during)
    on_event(CoreEvent("internal_error", {"during": during}))


class CoreDriver:
    """Owns ``sock`` for the lifetime of ``core``; closes it and calls ``on_close`` at the end."""

    #: Datagrams read per wake-up before yielding to other transfers.
    BATCH = 32

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        core: Core,
        on_event: EventSink,
        on_close: Callable[[CoreDriver], None],
        *,
        recv_size: int = 2048,
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.core = core
        self._on_event = on_event
        self._on_close = on_close
        self._recv_size = recv_size
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        sock.setblocking(False)
        loop.add_reader(sock.fileno(), self._on_readable)
        self._flush(loop.time())

    def _on_readable(self) -> None:
        sock = self.sock
        core = self.core
        now = self.loop.time()
        recv = sock.recvfrom
        size = self._recv_size
        for _ in range(self.BATCH):
            try:
                data, addr = recv(size)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # e.g. an ICMP error reported on the socket
                log.debug("transfer socket: %s", exc)
                continue
            try:
                core.receive_datagram(data, addr, now)
            except Exception:  # a bug in one transfer's core must not leave its clients in silence
                self._core_failed("a datagram")
                return
        self._flush(now)

    def _core_failed(self, during: str) -> None:
        """The core raised: log it, tell every peer, and end the transfer (report_core_failure)."""
        report_core_failure(self._on_event, during)
        self.farewell(INTERNAL_ERROR)

    def _flush(self, now: float) -> None:
        core = self.core
        out = core.datagrams_to_send(now)
        if out:
            send = self.sock.sendto
            for data, addr in out:
                try:
                    send(data, addr)
                except (BlockingIOError, InterruptedError):
                    break  # socket buffer full: the retransmission timer recovers
                except OSError as exc:
                    log.debug("send to %s failed: %s", addr, exc)
        event = core.next_event()
        while event is not None:
            self._on_event(event)
            event = core.next_event()
        if core.finished:
            self.close()
        elif self._timer is None:
            deadline = core.get_timer()
            if deadline is not None:
                self._timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._closed:
            return
        now = self.loop.time()
        deadline = self.core.get_timer()
        if deadline is not None and deadline <= now:
            try:
                self.core.handle_timer(now)
            except Exception:
                self._core_failed("its timer")
                return
        self._flush(now)

    def farewell(self, packet: bytes) -> None:
        """Send ``packet`` (an ERROR) to everyone still in the transfer, then close."""
        if not self._closed:
            peers = peers_of(self.core)
            cancel = getattr(self.core, "cancel", None)
            if cancel is not None and peers:
                cancel("server shutting down", self.loop.time())  # e.g. an upload drops its temporary file
                while (event := self.core.next_event()) is not None:
                    self._on_event(event)
            for addr in peers:
                try:
                    self.sock.sendto(packet, addr)
                except OSError:
                    pass
        self.close()

    def send_aside(self, data: bytes, addr: Address) -> None:
        """Send from the transfer's socket without going through the core."""
        if self._closed:
            return
        try:
            self.sock.sendto(data, addr)
        except OSError as exc:
            log.debug("send to %s failed: %s", addr, exc)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            self.loop.remove_reader(self.sock.fileno())
        except (ValueError, OSError):
            pass
        self.sock.close()
        self._on_close(self)

    @property
    def closed(self) -> bool:
        return self._closed
