"""Runs one sans-I/O core on a blocking socket in its own thread.

Why next to the asyncio driver: in a lock-step transfer every block waits for one
ACK, so the server's latency per datagram *is* the throughput.  Measured on this
project's 2-core test machine (64 MiB at blksize 1428, curl, loopback), an event
loop wake-up per ACK cost about 15 us of user CPU per block (asyncio; uvloop a
bit less), a thread sleeping in ``recvfrom`` about 4 us.  Blocking calls release
the GIL, so transfers in threads still overlap; pre-forked workers
(``--workers``) spread them over cores.

The loop stays thin: receive, feed the core, send what it returns, forward its
events.  ``SO_RCVTIMEO`` wakes the thread when the core's timer is due (its
retransmission timeout is tens of milliseconds on a fast path, :mod:`netboot.tftp.rto`),
and at least every ``tick`` seconds so a server stop is noticed, without an extra
``poll`` per block: the timeout is set again only when it changes by a fifth or more.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from netboot.tftp import native_lane
from netboot.tftp.driver import INTERNAL_ERROR, Core, EventSink, peers_of, report_core_failure

log = logging.getLogger("pyatftpd")


class ThreadDriver:
    """Owns ``sock`` for the lifetime of ``core``; ``on_close`` runs in the event loop."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        core: Core,
        on_event: EventSink,
        on_close: Callable[[ThreadDriver], None],
        *,
        recv_size: int = 2048,
        tick: float = 0.5,
        peer: tuple[str, int] | None = None,
        on_stray: Callable[[bytes, tuple[str, int]], bytes | None] | None = None,
    ) -> None:
        self.loop = loop
        self.core = core
        self._on_event = on_event
        self._on_close = on_close
        self._recv_size = recv_size
        self._stopping = False
        self._closed = False
        self._peer = peer
        self._catcher: socket.socket | None = None
        self._on_stray = on_stray
        self._native: native_lane.NativeLane | None = None
        if peer is not None:
            sock = self._connect_twin(sock, peer)
        self.sock = sock
        sock.setblocking(True)
        self._tick = tick
        self._armed = 0.0
        self._arm(tick)
        self._thread = threading.Thread(target=self._run, name="tftp-transfer", daemon=True)
        self._thread.start()

    def _connect_twin(self, catcher: socket.socket, peer: tuple[str, int]) -> socket.socket:
        """Serve the transfer from a socket *connected* to the peer, on the TID's port.

        Why: ``send``/``recv`` on a connected socket skip the per-datagram route
        lookup and address conversion (perf showed inet_ntop's printf and argument
        parsing on the hot path).  The kernel still delivers datagrams from any
        other source to ``catcher``, the unconnected socket that owns the port, and
        the event loop answers those with ERROR 5 (foreign TID).
        """
        catcher.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        twin = socket.socket(catcher.family, socket.SOCK_DGRAM)
        try:
            twin.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            twin.bind(catcher.getsockname())
            twin.connect(peer)
        except OSError:
            twin.close()
            raise
        catcher.setblocking(False)
        self._catcher = catcher
        self.loop.add_reader(catcher.fileno(), self._read_strays)
        return twin

    def _read_strays(self) -> None:
        catcher = self._catcher
        if catcher is None:
            return
        for _ in range(16):
            try:
                data, addr = catcher.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            reply = self._on_stray(data, addr) if self._on_stray else None
            if reply is not None:
                try:
                    catcher.sendto(reply, addr)
                except OSError:
                    pass

    def send_aside(self, data: bytes, addr: tuple[str, int]) -> None:
        """Send from the transfer's port outside the core (called from the event loop).

        Goes through the unconnected catcher socket that shares the port when there is
        one; ``sendto`` on a socket the transfer thread also uses is safe.
        """
        sock = self._catcher or self.sock
        if self._closed:
            return
        try:
            sock.sendto(data, addr)
        except OSError as exc:
            log.debug("send to %s failed: %s", addr, exc)

    def _close_catcher(self) -> None:
        if self._catcher is not None:
            try:
                self.loop.remove_reader(self._catcher.fileno())
            except (ValueError, OSError):
                pass
            self._catcher.close()
            self._catcher = None

    def _arm(self, seconds: float) -> None:
        """Set the receive timeout (the thread's timer), unless it is within a fifth of it already."""
        seconds = max(0.001, min(self._tick, seconds))
        armed = self._armed
        if armed and abs(seconds - armed) < armed / 5:
            return
        whole = int(seconds)
        micros = int((seconds - whole) * 1_000_000)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", whole, micros))
        self._armed = seconds

    def _arm_for(self, core: Core, now: float) -> None:
        deadline = core.get_timer()
        self._arm(self._tick if deadline is None else deadline - now)

    @property
    def closed(self) -> bool:
        return self._closed

    def farewell(self, packet: bytes) -> None:
        """Stop, and send ``packet`` (an ERROR) to the peer from the transfer's own port."""
        peers = [] if self._closed else peers_of(self.core)
        self.close()
        self._send_each(packet, peers)

    def _send_each(self, packet: bytes, peers: list[tuple[str, int]]) -> None:
        for addr in peers:
            try:
                if self._peer is not None and addr == self._peer:
                    self.sock.send(packet)
                else:
                    self.sock.sendto(packet, addr)
            except OSError:
                pass

    def close(self) -> None:
        """Ask the thread to stop (it notices within one tick)."""
        self._stopping = True
        if self._native is not None:
            self._native.stop_flag.value = 1

    def _make_native(self, buffer: bytearray) -> native_lane.NativeLane | None:
        """The C loop for this transfer, when the core, the source and the build allow it."""
        core: Any = self.core
        if not getattr(core, "lanes_possible", False):
            return None
        file_fd = core.source_fileno()
        lib = native_lane.library()
        if lib is None or file_fd is None:
            return None
        return native_lane.NativeLane(lib, self.sock.fileno(), file_fd, buffer)

    def _run_native(self, lane: native_lane.NativeLane, now: float) -> tuple[int | None, float]:
        """Let the C loop serve; (length of the datagram it left in the buffer or None, now).

        Raises what ``recv`` would: BlockingIOError on the SO_RCVTIMEO tick, OSError.
        """
        core: Any = self.core
        window = core.native_window()
        if window is None:
            return None, now
        started = time.monotonic()
        count, length = lane.run(*window)
        now = time.monotonic()
        timed_out = length in (-errno.EAGAIN, -errno.EWOULDBLOCK)
        core.advance_native(count, now, started, self._armed if timed_out else 0.0)
        if length >= 0:
            return length, now
        if length in (-errno.EAGAIN, -errno.EWOULDBLOCK):
            raise BlockingIOError(errno.EAGAIN, "tick")
        if length == native_lane.STOPPED:
            raise InterruptedError(errno.EINTR, "stopping")
        if length == native_lane.SHORT_READ:
            # The file shrank.  The ACK the loop could not answer is still in the buffer:
            # the Python core answers it, as it would have without the loop.
            self._native = None
            return 4, now
        raise OSError(-length, os.strerror(-length))

    def _run(self) -> None:
        core = self.core
        sock = self.sock
        peer = self._peer
        connected = peer is not None
        size = self._recv_size
        clock = time.monotonic
        on_event = self._on_event
        # Optional fast lane of the core (ReadTransfer.reply_to_ack); only valid when
        # the kernel already filtered the peer (connected socket).  It reads the ACK
        # from a reused buffer (recv_into: no allocation per block) and returns a frame
        # to send as is.
        fast = getattr(core, "reply_to_ack", None) if connected else None
        buffer = bytearray(size)
        if connected:
            self._native = self._make_native(buffer)
        recv_into = sock.recv_into
        send = sock.send
        now = clock()
        try:
            while True:
                for data, addr in core.datagrams_to_send(now):
                    try:
                        if connected and addr == peer:
                            sock.send(data)
                        elif connected:
                            self._send_stray(data, addr)
                        else:
                            sock.sendto(data, addr)
                    except OSError as exc:
                        log.debug("send to %s failed: %s", addr, exc)
                event = core.next_event()
                while event is not None:
                    on_event(event)
                    event = core.next_event()
                if core.finished or self._stopping:
                    break
                self._arm_for(core, now)
                try:
                    if peer is not None:
                        left: int | None = None
                        if self._native is not None:
                            left, now = self._run_native(self._native, now)
                        length = recv_into(buffer) if left is None else left
                        addr = peer
                        if fast is not None and left is None:
                            # The clock (and a stop request) is looked at every 32 blocks
                            # only: the deadline it feeds is seconds away, so a few
                            # milliseconds of staleness are harmless.
                            now = clock()
                            reply = fast(buffer, length, now)
                            count = 0
                            lane_core: Any = core
                            adaptive = hasattr(lane_core, "rto")
                            while reply is not None:
                                send(reply)
                                length = recv_into(buffer)
                                count += 1
                                if not count & 31:
                                    now = clock()
                                    if self._stopping:
                                        break
                                    reply = fast(buffer, length, now)
                                    if adaptive:  # the lane may just have measured a new RTO
                                        self._arm(float(lane_core.rto))
                                    continue
                                reply = fast(buffer, length, now)
                        data = bytes(buffer[:length])
                    else:
                        data, addr = sock.recvfrom(size)
                except (BlockingIOError, InterruptedError):  # SO_RCVTIMEO tick
                    now = clock()
                    deadline = core.get_timer()
                    if deadline is not None and deadline <= now:
                        core.handle_timer(now)
                    continue
                except OSError as exc:  # e.g. ECONNREFUSED: the client's port is gone
                    log.debug("transfer socket: %s", exc)
                    now = clock()
                    continue
                now = clock()
                core.receive_datagram(data, addr, now)
                deadline = core.get_timer()
                if deadline is not None and deadline <= now:
                    core.handle_timer(now)
        except Exception:  # a bug in the core: its clients get an ERROR, not silence
            report_core_failure(on_event, "its thread")
            self._send_each(INTERNAL_ERROR, peers_of(core))
        finally:
            self._closed = True
            sock.close()
            try:
                self.loop.call_soon_threadsafe(self._finish)
            except RuntimeError:  # loop already closed at shutdown
                pass

    def _send_stray(self, data: bytes, addr: tuple[str, int]) -> int:
        catcher = self._catcher
        return catcher.sendto(data, addr) if catcher is not None else 0

    def _finish(self) -> None:
        self._close_catcher()
        self._on_close(self)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)
