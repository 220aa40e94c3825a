"""Command-line wiring of ``--mcast-*`` and ``--mtftp*`` into a running :class:`TftpServer`.

Why a module of its own: the unicast CLI stays as it is; this adds the multicast
services to it with one call, and checks the options before the server daemonizes,
so a typo in ``--mcast-addr`` is reported on the terminal, not in a log.
"""

from __future__ import annotations

import argparse
import logging
import socket
from collections.abc import Callable

from netboot.tftp.handler import RequestContext
from netboot.tftp.handoff import Handoff
from netboot.tftp.mcast_hold import Hold
from netboot.tftp.mcast_pool import McastPool, PoolSyntaxError, parse_ttl
from netboot.tftp.mcast_service import MulticastService
from netboot.tftp.mcast_tuning import Tuning
from netboot.tftp.mtftp import MtftpConfigError, MtftpEntry, MtftpService, load_mtftp_config
from netboot.tftp.server import TftpServer, make_listening_socket

log = logging.getLogger("pyatftpd")

Setup = Callable[[TftpServer, int, int, Handoff | None], None]


def multicast_setup(args: argparse.Namespace) -> Setup:
    """Validate the options now; return ``setup(server, worker, workers)`` for each loop.

    With ``--workers N`` the workers share one listening socket, and any of them may
    read a request.  A session needs every request for its file in one process, so
    workers other than 0 hand ``multicast`` requests to worker 0 (handoff.py); worker 0
    runs all sessions and MTFTP.
    """
    try:
        McastPool(args.mcast_addr, args.mcast_port)
        ttl = parse_ttl(args.mcast_ttl)
        hold = Hold(args.mcast_min_clients, args.mcast_max_wait)
        if args.mcast_window < 1:
            raise ValueError(f"--mcast-window {args.mcast_window}: it must be at least 1 (lock-step)")
        if args.mcast_pace_blocks < 0:
            raise ValueError(f"--mcast-pace-blocks {args.mcast_pace_blocks}: it must be 0 (off) or more")
        tuning = Tuning(
            window=args.mcast_window,
            pace_blocks=args.mcast_pace_blocks,
            last_block_first=args.mtftp_last_block_first,
        )
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

    def setup(server: TftpServer, worker: int = 0, workers: int = 1, handoff: Handoff | None = None) -> None:
        forwarding = workers > 1 and handoff is not None
        multicast = server.config.policy.multicast
        if multicast and (worker == 0 or not forwarding):
            pool = McastPool(args.mcast_addr, args.mcast_port)
            MulticastService(server, pool, ttl, tuning=tuning, hold=hold).install()
        if mtftp_sock is not None and worker == 0:
            MtftpService(server, entries, ttl, tuning).install(mtftp_sock)
            log.info("MTFTP on port %d for %s", args.mtftp_port, ", ".join(sorted(entries)) or "no file")
        if handoff is None or not forwarding or worker == 0:
            return
        sender = RequestForwarding(server, handoff)
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

    def __init__(self, server: TftpServer, handoff: Handoff) -> None:
        self.server = server
        self.handoff = handoff

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
        return self.handoff.send(0, ctx)
