"""Runs one sans-I/O core on a blocking socket in its own thread.

Why next to the asyncio driver: in a lock-step transfer every block waits for one
ACK, so the server's latency per datagram *is* the throughput.  Measured on this
project's 2-core test machine (64 MiB at blksize 1428, curl, loopback), an event
loop wake-up per ACK cost about 15 us of user CPU per block (asyncio; uvloop a
bit less), a thread sleeping in ``recvfrom`` about 4 us.  Blocking calls release
the GIL, so transfers in threads still overlap; pre-forked workers
(``--workers``) spread them over cores.

The loop stays thin: receive, feed the core, send what it returns, forward its
events.  ``SO_RCVTIMEO`` wakes the thread at least every ``tick`` seconds so the
core's timer and a server stop are noticed without an extra ``poll`` per block.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable

from netboot.tftp.driver import Core, EventSink

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
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.core = core
        self._on_event = on_event
        self._on_close = on_close
        self._recv_size = recv_size
        self._stop = threading.Event()
        self._closed = False
        sock.setblocking(True)
        seconds = int(tick)
        micros = int((tick - seconds) * 1_000_000)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", seconds, micros))
        self._thread = threading.Thread(target=self._run, name="tftp-transfer", daemon=True)
        self._thread.start()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Ask the thread to stop (it notices within one tick)."""
        self._stop.set()

    def _run(self) -> None:
        core = self.core
        sock = self.sock
        recv = sock.recvfrom
        send = sock.sendto
        size = self._recv_size
        clock = time.monotonic
        on_event = self._on_event
        stop = self._stop
        try:
            while True:
                now = clock()
                for data, addr in core.datagrams_to_send(now):
                    try:
                        send(data, addr)
                    except OSError as exc:
                        log.debug("send to %s failed: %s", addr, exc)
                event = core.next_event()
                while event is not None:
                    on_event(event)
                    event = core.next_event()
                if core.finished or stop.is_set():
                    break
                try:
                    data, addr = recv(size)
                except (BlockingIOError, InterruptedError):  # SO_RCVTIMEO tick
                    now = clock()
                    deadline = core.get_timer()
                    if deadline is not None and deadline <= now:
                        core.handle_timer(now)
                    continue
                except OSError as exc:
                    log.debug("transfer socket: %s", exc)
                    continue
                now = clock()
                core.receive_datagram(data, addr, now)
                deadline = core.get_timer()
                if deadline is not None and deadline <= now:
                    core.handle_timer(now)
        except Exception:
            log.exception("transfer thread failed")
        finally:
            self._closed = True
            sock.close()
            try:
                self.loop.call_soon_threadsafe(self._on_close, self)
            except RuntimeError:  # loop already closed at shutdown
                pass

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)
