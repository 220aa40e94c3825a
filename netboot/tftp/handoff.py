"""Handing a request to a sibling worker (``--workers N``), which routes it as if it had read it.

Why: the workers share one listening socket and whichever is free reads a request, but
some requests need the state of one particular worker: RFC 2090 and MTFTP requests that
of worker 0, which runs every session (mcast_cli.py), and a repeated RRQ that of the
worker serving the read it repeats (read_owners.py).  Each worker has an inbox, the
receiving end of a datagram socket pair made before the fork; any worker can write to
any inbox, and the request keeps its client and local address.
"""

from __future__ import annotations

import logging
import socket
import struct

from netboot.tftp.handler import RequestContext
from netboot.tftp.packets import MalformedPacket, Request, decode, encode
from netboot.tftp.server import TftpServer

log = logging.getLogger("pyatftpd")

Inbox = tuple[socket.socket, socket.socket]  # (the owner reads, the others write)

#: Address family, client IP, client port, local IP (IPv4 in the first 4 bytes of 16).
_HEADER = struct.Struct("!B16sH16s")


def make_inboxes(workers: int) -> list[Inbox]:
    """One inbox per worker; made before the fork, so every worker holds every inbox."""
    return [socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM) for _ in range(workers)]


class Handoff:
    """This worker's inbox and the way into its siblings' inboxes."""

    def __init__(self, inboxes: list[Inbox], index: int) -> None:
        self.inboxes = inboxes
        self.index = index

    def send(self, worker: int, ctx: RequestContext) -> bool:
        """Hand ``ctx``'s request to ``worker``; False when it cannot be (serve it here, then)."""
        family = socket.AF_INET6 if ":" in ctx.client[0] else socket.AF_INET
        local = ctx.local_ip or ("::" if family == socket.AF_INET6 else "0.0.0.0")
        try:
            client = socket.inet_pton(family, ctx.client[0])
            header = _HEADER.pack(family, client, ctx.client[1], socket.inet_pton(family, local))
            self.inboxes[worker][1].send(header + encode(ctx.request))
        except OSError as exc:  # an address inet_pton refuses (a scope id) is one too
            log.warning("cannot hand a request to worker %d (%s): serving it here", worker, exc)
            return False
        return True

    def receive(self, server: TftpServer) -> None:
        """Route what siblings hand to this worker through ``server``'s router."""
        sock = self.inboxes[self.index][0]
        sock.setblocking(False)
        server.loop.add_reader(sock.fileno(), self._readable, server, sock)

    def _readable(self, server: TftpServer, sock: socket.socket) -> None:
        while True:
            try:
                message = sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                return
            if len(message) < _HEADER.size or not server.listeners:
                continue
            family, client_ip, client_port, local_ip = _HEADER.unpack_from(message)
            try:
                request = decode(message[_HEADER.size :])
            except MalformedPacket:
                continue
            if not isinstance(request, Request):
                continue
            width = 4 if family == socket.AF_INET else 16
            ctx = RequestContext(
                server,
                server.listeners[0],
                request,
                (socket.inet_ntop(family, client_ip[:width]), client_port),
                socket.inet_ntop(family, local_ip[:width]),
                server.loop.time(),
                frozenset(name.lower() for name, _ in request.options),
            )
            try:
                server.router.route(ctx)
            except Exception:  # a bad request must not take the worker down
                log.exception("handed request from %s failed", ctx.client_text)
