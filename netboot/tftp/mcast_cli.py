"""Command-line wiring of ``--mcast-*`` and ``--mtftp*`` into a running :class:`TftpServer`.

Why a module of its own: the unicast CLI stays as it is; this adds the multicast
services to it with one call, and checks the options before the server daemonizes,
so a typo in ``--mcast-addr`` is reported on the terminal, not in a log.
"""

from __future__ import annotations

import argparse
import logging
import socket
import struct
from collections.abc import Callable

from netboot.tftp.handler import RequestContext
from netboot.tftp.mcast_hold import Hold
from netboot.tftp.mcast_pool import McastPool, PoolSyntaxError, parse_ttl
from netboot.tftp.mcast_service import MulticastService
from netboot.tftp.mcast_tuning import Tuning
from netboot.tftp.mtftp import MtftpConfigError, MtftpEntry, MtftpService, load_mtftp_config
from netboot.tftp.packets import MalformedPacket, Request, decode, encode
from netboot.tftp.server import TftpServer, make_listening_socket

log = logging.getLogger("pyatftpd")

Setup = Callable[[TftpServer, int, int], None]


def multicast_setup(args: argparse.Namespace) -> Setup:
    """Validate the options now; return ``setup(server, worker, workers)`` for each loop.

    With ``--workers N`` the workers share one listening socket, and any of them may
    read a request.  A session needs every request for its file in one process, so
    workers other than 0 forward ``multicast`` requests to worker 0 over a datagram
    socket pair made before the fork; worker 0 runs all sessions and MTFTP.
    """
    try:
        McastPool(args.mcast_addr, args.mcast_port)
        ttl = parse_ttl(args.mcast_ttl)
        hold = Hold(args.mcast_min_clients, args.mcast_max_wait)
        if args.mcast_window < 1:
            raise ValueError(f"--mcast-window {args.mcast_window}: it must be at least 1 (lock-step)")
        tuning = Tuning(window=args.mcast_window)
    except (PoolSyntaxError, ValueError) as exc:
        raise SystemExit(f"pyatftpd: {exc}") from None
    entries: dict[str, MtftpEntry] = {}
    mtftp_sock: socket.socket | None = None
    if args.mtftp and not args.daemon:
        log.warning("--mtftp needs --daemon (as in atftpd): MTFTP is off in inetd mode")
    elif args.mtftp:
        try:
            entries = load_mtftp_config(args.mtftp)
        except MtftpConfigError as exc:
            raise SystemExit(f"pyatftpd: {exc}") from None
        try:  # bound now: the port (75 by default) needs privileges that are dropped later
            mtftp_sock = make_listening_socket(args.bind_address, args.mtftp_port)
        except OSError as exc:
            raise SystemExit(
                f"pyatftpd: cannot bind the MTFTP port {args.mtftp_port}: {exc.strerror}"
            ) from None

    forward_pair = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM) if args.workers > 1 else None

    def setup(server: TftpServer, worker: int = 0, workers: int = 1) -> None:
        forwarding = workers > 1 and forward_pair is not None
        multicast = server.config.policy.multicast
        if multicast and (worker == 0 or not forwarding):
            pool = McastPool(args.mcast_addr, args.mcast_port)
            MulticastService(server, pool, ttl, tuning=tuning, hold=hold).install()
        if mtftp_sock is not None and worker == 0:
            MtftpService(server, entries, ttl, tuning).install(mtftp_sock)
            log.info("MTFTP on port %d for %s", args.mtftp_port, ", ".join(sorted(entries)) or "no file")
        if not forwarding or forward_pair is None:
            return
        if worker == 0:
            RequestForwarding(server, forward_pair[0]).receive()
            return
        sender = RequestForwarding(server, forward_pair[1])
        if multicast:
            sender.forward_option("multicast")
        if mtftp_sock is not None:
            # worker 0 must see plain reads of MTFTP files to refuse iPXE's stale fallback
            sender.forward_plain_reads(frozenset(entries))

    return setup


class RequestForwarding:
    """Hands requests that need worker 0's state to worker 0 (see :func:`multicast_setup`).

    Worker 0 routes a forwarded request through its own router, as if it had read it.
    """

    _HEADER = struct.Struct("!4sH4s")  # client IP, client port, local IP

    def __init__(self, server: TftpServer, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock

    def forward_option(self, name: str) -> None:
        """Requests carrying option ``name`` (``multicast``: sessions live in worker 0)."""
        self.server.router.register_option(name, self._forward)

    def forward_plain_reads(self, filenames: frozenset[str]) -> None:
        """RRQs without ``multicast`` for ``filenames`` (MTFTP files: see :mod:`stale_fallback`)."""

        def forward(ctx: RequestContext) -> bool:
            request = ctx.request
            if request.filename not in filenames or "multicast" in ctx.option_names:
                return False
            return self._forward(ctx)

        self.server.router.register_first(forward)

    def _forward(self, ctx: RequestContext) -> bool:
        if not ctx.request.is_read:
            return False
        if ":" in ctx.client[0] or ":" in ctx.local_ip:
            return False  # IPv6: no multicast and no MTFTP session for it; unicast here
        header = self._HEADER.pack(
            socket.inet_aton(ctx.client[0]), ctx.client[1], socket.inet_aton(ctx.local_ip or "0.0.0.0")
        )
        try:
            self.sock.send(header + encode(ctx.request))
        except OSError as exc:
            log.warning("cannot hand a request to worker 0 (%s): serving it here, by unicast", exc)
            return False
        return True

    def receive(self) -> None:
        self.sock.setblocking(False)
        self.server.loop.add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        while True:
            try:
                message = self.sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                return
            if len(message) < self._HEADER.size or not self.server.listeners:
                continue
            client_ip, client_port, local_ip = self._HEADER.unpack_from(message)
            try:
                request = decode(message[self._HEADER.size :])
            except MalformedPacket:
                continue
            if not isinstance(request, Request):
                continue
            ctx = RequestContext(
                self.server,
                self.server.listeners[0],
                request,
                (socket.inet_ntoa(client_ip), client_port),
                socket.inet_ntoa(local_ip),
                self.server.loop.time(),
                frozenset(name.lower() for name, _ in request.options),
            )
            try:
                self.server.router.route(ctx)
            except Exception:  # a bad request must not take worker 0 down
                log.exception("forwarded request from %s failed", ctx.client_text)
