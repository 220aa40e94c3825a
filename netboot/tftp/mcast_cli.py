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

from netboot.tftp.mcast_pool import McastPool, PoolSyntaxError, parse_ttl
from netboot.tftp.mcast_service import MulticastService
from netboot.tftp.mtftp import MtftpConfigError, MtftpEntry, MtftpService, load_mtftp_config
from netboot.tftp.server import TftpServer, make_listening_socket

log = logging.getLogger("pyatftpd")

Setup = Callable[[TftpServer, int, int], None]


def multicast_setup(args: argparse.Namespace) -> Setup:
    """Validate the options now; return ``setup(server, worker, workers)`` for each loop.

    With ``--workers N`` each worker gets every N-th pool entry (two workers must never
    hand out the same group:port) and only worker 0 serves MTFTP.
    """
    try:
        pool_template = McastPool(args.mcast_addr, args.mcast_port)
        ttl = parse_ttl(args.mcast_ttl)
    except PoolSyntaxError as exc:
        raise SystemExit(f"pyatftpd: {exc}") from None
    entries: dict[str, MtftpEntry] = {}
    mtftp_sock: socket.socket | None = None
    if args.mtftp:
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

    def setup(server: TftpServer, worker: int = 0, workers: int = 1) -> None:
        pool = McastPool(args.mcast_addr, args.mcast_port)
        if workers > 1:
            pool.entries = pool_template.entries[worker::workers]
        if server.config.policy.multicast:
            MulticastService(server, pool, ttl).install()
        if mtftp_sock is not None and worker == 0:
            MtftpService(server, entries, ttl).install(mtftp_sock)
            log.info("MTFTP on port %d for %s", args.mtftp_port, ", ".join(sorted(entries)) or "no file")

    return setup
