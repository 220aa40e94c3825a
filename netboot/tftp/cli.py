"""``pyatftpd``: a drop-in for atftpd 0.8 (same command line), see docs/pyatftpd.md.

Why the argv pre-pass: atftpd's ``-v`` takes an *optional attached* argument
(getopt ``v::``), so ``-v /srv/tftp`` means "more verbose, serve /srv/tftp".
argparse would swallow the directory as the level, so bare ``-v``/``--verbose``
(and its abbreviations) are rewritten to a counting flag before parsing.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence

from netboot.events import EventLog
from netboot.serverlog import reopen_logs, report_failures, setup_logging
from netboot.stopping import held_stop_signals, ignore_stop_signals, release_stop_signals
from netboot.systemd import listen_fds, notify
from netboot.tftp.daemon import daemonize, drop_privileges, remove_pidfile, split_user, write_pidfile
from netboot.tftp.handoff import Handoff, make_inboxes
from netboot.tftp.mcast_cli import multicast_setup
from netboot.tftp.mcast_hold import Hold
from netboot.tftp.mcast_tuning import Tuning
from netboot.tftp.options import OptionPolicy
from netboot.tftp.read_owners import ReadOwners, SharedReads
from netboot.tftp.server import Balancer, ServerConfig, Slots, TftpServer, make_listening_socket
from netboot.tftp.test_faults import FAULT_ENV, active_fault
from netboot.tftp.unicast import UnicastHandler

VERSION = "pyatftpd 0.1.0 (command line of atftp-0.8.0)"
log = logging.getLogger("pyatftpd")

#: One process, like atftpd, when the C lane serves.  Why no longer two per CPU: with it and
#: a thread per transfer, one process served 8 and 32 concurrent curl clients as fast as 2
#: or 4 workers on the 2-core test machine (1.0-1.3 x atftpd each), and every worker adds a
#: Python interpreter (docs/pyatftpd.md, "Memory" and "Measured").  ``--workers N`` spreads
#: transfers over N processes for links faster than one core can feed.
DEFAULT_WORKERS = 1
#: Without the C lane (no compiler at install) each block costs Python time, and 8
#: concurrent clients got 0.6 x atftpd from one process: two workers per CPU, as before.
PYTHON_LANE_WORKERS = min(16, 2 * (os.cpu_count() or 1))

#: Options accepted for compatibility that do nothing yet (logged once at start).
NO_EFFECT = (
    "pcre",
    "mcast_switch_client",
)


#: Internal flag for a bare -v; its name shares no prefix with a real option, so
#: abbreviations such as --verb=7 stay unambiguous.
_VERBOSE_STEP = "--x-increase-verbosity"


def _rewrite_verbose(argv: Sequence[str]) -> list[str]:
    """Bare ``-v``/``--verbose`` count up; followed by a lone digit (``--verbose 7 DIR``,
    as admins write it) they take it as the level, so the directory stays the directory.
    (A directory named like a digit is then written ``./7``.)"""
    out: list[str] = []
    index = 0
    while index < len(argv):
        token = argv[index]
        if token == "--":
            out.extend(argv[index:])
            break
        if token == "-v" or (token.startswith("--verb") and "--verbose".startswith(token)):
            following = argv[index + 1] if index + 1 < len(argv) else ""
            if len(following) == 1 and following.isdigit():
                out.append(f"--verbose={following}")
                index += 2
                continue
            out.append(_VERBOSE_STEP)
        else:
            out.append(token)
        index += 1
    return out


def parse_size(text: str) -> int:
    """Bytes, with an optional K/M/G suffix (powers of 1024)."""
    scale = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    value = text.strip().lower()
    factor = 1
    if value and value[-1] in scale:
        factor = scale[value[-1]]
        value = value[:-1]
    try:
        size = int(float(value) * factor)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad size {text!r}: use bytes, e.g. 64M") from None
    if size < 0:
        raise argparse.ArgumentTypeError("the size must not be negative")
    return size


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pyatftpd",
        description="TFTP server (RFC 1350, 2347-2349, 7440) with atftpd's command line.",
        epilog=(
            "environment: PYATFTPD_NATIVE=0 serves lock-step reads with the Python lane only, "
            "not the C loop built with the package (a package built without a C compiler has "
            "only the Python lane). docs/pyatftpd.md has the details."
        ),
        allow_abbrev=True,
    )
    p.add_argument(
        "-t",
        "--tftpd-timeout",
        type=int,
        default=300,
        metavar="S",
        help="inetd mode: exit after S idle seconds (0: never)",
    )
    p.add_argument(
        "-r",
        "--retry-timeout",
        type=int,
        default=None,
        metavar="S",
        help="seconds before a retransmission, always (as atftpd); default: from measured round trips, "
        "20 ms at least, backing off up to 5 s (a client's timeout option overrides either)",
    )
    p.add_argument(
        "-m",
        "--maxthread",
        type=int,
        default=100,
        metavar="N",
        help="maximum concurrent transfers; more are refused with an ERROR",
    )
    p.add_argument(
        "-v",
        "--verbose",
        type=int,
        metavar="N",
        dest="verbose_level",
        help="log level 0..7 (syslog numbering: -v7, --verbose=7 or --verbose 7); a bare -v adds one",
    )
    p.add_argument(_VERBOSE_STEP, dest="verbose_step", action="count", default=0, help=argparse.SUPPRESS)
    p.add_argument("--trace", action="store_true", help="log every packet; also per-block data/ack events")
    for name in ("timeout", "tsize", "blksize", "windowsize", "multicast"):
        p.add_argument(f"--no-{name}", action="store_true", help=f"do not acknowledge the {name} option")
    p.add_argument("--logfile", metavar="FILE", help="log to FILE ('-' = stdout) instead of syslog")
    p.add_argument("--pidfile", metavar="FILE")
    p.add_argument("--listen-local", action="store_true", help="set SO_BROADCAST on transfer sockets")
    p.add_argument("--daemon", action="store_true", help="standalone server (otherwise inetd mode on fd 0)")
    p.add_argument("--no-fork", action="store_true", help="with --daemon: stay in the foreground")
    p.add_argument("--prevent-sas", action="store_true", help="accepted; pyatftpd always prevents SAS")
    p.add_argument("--user", default="nobody", metavar="USER[.GROUP]")
    p.add_argument("--group", metavar="GROUP")
    p.add_argument("--port", type=int, default=69, help="0 looks up the 'tftp' service")
    p.add_argument("--bind-address", default="0.0.0.0", metavar="IP")
    p.add_argument("--mcast-ttl", "--mcast_ttl", dest="mcast_ttl", type=int, default=1)
    p.add_argument("--mcast-addr", "--mcast_addr", dest="mcast_addr", default="239.255.0.0-255")
    p.add_argument("--mcast-port", "--mcast_port", dest="mcast_port", default="1758")
    p.add_argument("--pcre", metavar="FILE")
    p.add_argument("--pcre-test", metavar="FILE")
    p.add_argument("--mtftp", metavar="FILE")
    p.add_argument("--mtftp-port", type=int, default=75)
    p.add_argument(
        "--no-source-port-checking",
        action="store_true",
        help="accept a transfer's packets from any port of the client's address",
    )
    p.add_argument("--mcast-switch-client", action="store_true")
    p.add_argument("-V", "--version", action="version", version=VERSION)
    # pyatftpd additions
    p.add_argument("--events", metavar="FILE", help="write JSON-lines protocol events (docs/events.md)")
    p.add_argument("--allow-upload", action="store_true", help="accept WRQ (uploads); refused otherwise")
    p.add_argument(
        "--upload-limit",
        type=parse_size,
        default=None,
        metavar="BYTES",
        help="with --allow-upload: refuse an upload larger than BYTES (K, M, G suffixes: powers of "
        "1024) with ERROR 3; default: no limit but the disk's, as atftpd (named so that atftpd's "
        "abbreviation --max still means --maxthread)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help=f"pre-forked worker processes sharing the port (default: {DEFAULT_WORKERS}, one process "
        f"like atftpd; {PYTHON_LANE_WORKERS} here when the C lane is not built: 2 per CPU)",
    )
    p.add_argument(
        "--mcast-min-clients",
        type=int,
        default=1,
        metavar="N",
        help="RFC 2090: hold a session's first stream until N clients asked for the file "
        "(default 1: never hold); nodes that boot seconds apart then share one pass "
        "(as udpcast's and pyslamd's --min-clients)",
    )
    p.add_argument(
        "--mcast-max-wait",
        type=float,
        default=Hold.max_wait,
        metavar="S",
        help="with --mcast-min-clients: start S seconds after the first request at the latest "
        f"(default {Hold.max_wait:g}); waiting clients get an OACK every 2-4 s, so iPXE never times out",
    )
    p.add_argument(
        "--mcast-window",
        type=int,
        default=1,
        metavar="N",
        help="RFC 2090 and MTFTP sessions: up to N blocks in flight ahead of the master, grown from 1 "
        "while nobody is seen to fall behind (default 1: lock-step; docs/multicast.md, "
        "'More than one block in flight': slow listeners can lose a window's surplus)",
    )
    p.add_argument(
        "--mcast-pace-blocks",
        type=int,
        default=Tuning.pace_blocks,
        metavar="N",
        help="RFC 2090 sessions: each client there when the stream began leads N blocks in turn, and "
        "what a new leader lost while it listened sets the least gap between group blocks "
        f"(default {Tuning.pace_blocks}; 0: the first client to answer leads, as fast as it ACKs; "
        "docs/multicast.md, 'Pace')",
    )
    p.add_argument(
        "--mtftp-last-block-first",
        action="store_true",
        help="experimental, MTFTP: send a pass's last block to the group just before its first, so "
        "iPXE learns the size at once instead of growing its buffer by every block (a lone 5 MiB "
        "fetch took 2-5 s instead of 25 s in the lab); off by default: with nodes that ask seconds "
        "apart the short passes failed some of them (docs/multicast.md, 'The last block first')",
    )
    p.add_argument("directory", nargs="?", default="/srv/tftp", help="folder to serve (default /srv/tftp)")
    return p


def _verbosity(args: argparse.Namespace) -> int:
    level = 5 if args.verbose_level is None else args.verbose_level
    return max(0, min(7, int(level) + int(args.verbose_step)))


def _setup_logging(args: argparse.Namespace) -> None:
    level = _verbosity(args)
    py_level = (
        logging.DEBUG
        if level >= 7
        else logging.INFO
        if level >= 5
        else logging.WARNING
        if level == 4
        else logging.ERROR
    )
    try:
        setup_logging("pyatftpd", args.logfile, py_level, syslog=True)
    except OSError as exc:
        raise SystemExit(
            f"pyatftpd: cannot open --logfile {args.logfile}: {exc.strerror}; name a writable file"
        ) from None


def _no_effect_flags(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[str]:
    names = []
    for dest in NO_EFFECT:
        if getattr(args, dest) != parser.get_default(dest):
            names.append("--" + dest.replace("_", "-"))
    if args.mtftp_port != parser.get_default("mtftp_port") and not args.mtftp:
        names.append("--mtftp-port (without --mtftp)")
    if args.prevent_sas:
        names.append("--prevent-sas (always on)")
    return names


def _listening_socket(args: argparse.Namespace) -> socket.socket:
    port = args.port
    if port == 0:
        try:
            port = socket.getservbyname("tftp", "udp")
        except OSError:
            port = 69
    try:
        return make_listening_socket(args.bind_address, port)
    except OSError as exc:
        raise SystemExit(
            f"pyatftpd: cannot bind {args.bind_address}:{port}: {exc.strerror}"
            f"{' (port < 1024 needs root)' if port < 1024 and exc.errno == 13 else ''}"
        ) from None


def _inetd_socket() -> socket.socket:
    if os.isatty(0):
        raise SystemExit("pyatftpd: stdin is a terminal, not an inetd socket; add --daemon to run standalone")
    try:
        sock = socket.socket(fileno=0)
    except OSError as exc:
        raise SystemExit(
            f"pyatftpd: fd 0 is not a socket ({exc.strerror}); add --daemon to run standalone"
        ) from None
    if sock.type != socket.SOCK_DGRAM:
        raise SystemExit("pyatftpd: fd 0 is not a UDP socket; add --daemon to run standalone")
    return sock


def _config(args: argparse.Namespace) -> ServerConfig:
    policy = OptionPolicy(
        blksize=not args.no_blksize,
        timeout=not args.no_timeout,
        tsize=not args.no_tsize,
        windowsize=not args.no_windowsize,
        multicast=not args.no_multicast,
    )
    return ServerConfig(
        root=os.path.abspath(args.directory),
        policy=policy,
        retry_timeout=5.0 if args.retry_timeout is None else float(max(1, args.retry_timeout)),
        adaptive_rto=args.retry_timeout is None,
        first_retry=None,
        max_transfers=max(1, args.maxthread),
        allow_upload=args.allow_upload,
        max_upload_bytes=args.upload_limit,
        trace=args.trace,
        check_port=not args.no_source_port_checking,
        listen_local=args.listen_local,
        idle_exit=None if args.daemon or args.tftpd_timeout <= 0 else float(args.tftpd_timeout),
        threaded=os.environ.get("PYATFTPD_DRIVER", "thread") == "thread",
    )


def _stopper(server: TftpServer, signum: int) -> Callable[[], None]:
    def stop() -> None:
        log.info("%s received: stopping", signal.Signals(signum).name)
        server.stop()

    return stop


def run_server(
    config: ServerConfig,
    sock: socket.socket,
    events: EventLog,
    slots: Slots | None = None,
    session_prefix: str = "",
    balancer: Balancer | None = None,
    setup: Callable[[TftpServer], None] | None = None,
    shared_reads: SharedReads | None = None,
) -> int:
    """Run one server loop on ``sock`` until SIGTERM/SIGINT (``shared_reads``: one of N workers)."""
    server = TftpServer(config, events, slots, balancer, default=UnicastHandler(shared_reads))
    server.set_session_prefix(session_prefix)
    server.add_listener(sock)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        if shared_reads is not None:
            shared_reads.handoff.receive(server)  # requests its siblings hand to this worker
        if setup is not None:
            setup(server)  # multicast (RFC 2090) and MTFTP services: netboot/tftp/mcast_cli.py
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, _stopper(server, signum))
        loop.add_signal_handler(signal.SIGHUP, reopen_logs)  # logrotate: a fresh --logfile
        release_stop_signals()  # held since main()'s first line: netboot/stopping.py
        try:
            await server.serve()
        finally:
            ignore_stop_signals(loop)

    try:
        asyncio.run(main())
    finally:
        ignore_stop_signals()
        events.close()
        report_failures()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    with held_stop_signals():  # until run_server has its handlers, or run_workers takes them
        return _serve(argv)


def _serve(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(_rewrite_verbose(sys.argv[1:] if argv is None else argv))
    if args.pcre_test:
        print(
            "pyatftpd: --pcre/--pcre-test (filename rewriting) is not implemented; nothing to test",
            file=sys.stderr,
        )
        return 2
    if not os.path.isdir(args.directory):
        print(
            f"pyatftpd: {args.directory} is not a directory; name the directory to serve last",
            file=sys.stderr,
        )
        return 1
    _setup_logging(args)
    config = _config(args)
    passed = listen_fds()  # systemd socket activation (pyatftpd.socket)
    if passed:
        sock = passed[0]
        log.info("serving the socket systemd passed (fd %d); --port/--bind-address are the socket unit's",
                 sock.fileno())
    else:
        sock = _listening_socket(args) if args.daemon else _inetd_socket()
    mcast = multicast_setup(args)
    if args.daemon and not args.no_fork and not passed and not os.environ.get("NOTIFY_SOCKET"):
        daemonize()
        _setup_logging(args)
    if args.pidfile:
        write_pidfile(args.pidfile)
    # Everything loaded lazily must be loaded before the privileges go: as nobody the
    # interpreter's own library may be unreadable (a Python under /root).  Loaded before
    # the workers fork, the native lane's choice is logged once.
    from netboot.tftp import native_lane
    from netboot.tftp.workers import SharedSlots, WorkerLoad, run_workers

    lane = native_lane.library()
    if args.workers is None:
        args.workers = DEFAULT_WORKERS if lane is not None else PYTHON_LANE_WORKERS
    try:  # opened by the starting user, like --logfile: workers inherit it
        events = EventLog(args.events, "pyatftpd")
    except OSError as exc:
        print(f"pyatftpd: cannot open --events {args.events}: {exc.strerror}", file=sys.stderr)
        return 1
    if not args.daemon:
        args.workers = 1
    shared = SharedSlots(config.max_transfers) if args.workers > 1 else None
    load = WorkerLoad(args.workers) if args.workers > 1 else None
    owners = ReadOwners() if args.workers > 1 else None
    inboxes = make_inboxes(args.workers) if args.workers > 1 else []
    if os.getuid() == 0 or "--user" in sys.argv or "--group" in sys.argv:
        user, group = split_user(args.user, args.group)
        if os.getuid() == 0:
            log.info(drop_privileges(user, group))
    if active_fault():
        log.warning("%s=%s: broken on purpose for the lab's tests (netboot/tftp/test_faults.py)", FAULT_ENV,
                    active_fault())  # fmt: skip
    if not os.access(config.root, os.R_OK | os.X_OK):
        log.error(
            "cannot read the served directory %s as uid %d: permission denied; every request will be "
            "refused until it is readable by the server user (chmod o+rx, or pick --user)",
            config.root,
            os.geteuid(),
        )
    ignored = _no_effect_flags(args, parser)
    if ignored:
        log.warning("accepted for compatibility, no effect yet: %s", ", ".join(ignored))
    address = sock.getsockname()
    log.info(
        "%s serving %s on %s:%s (%d worker%s)",
        VERSION,
        config.root,
        address[0],
        address[1],
        args.workers,
        "" if args.workers == 1 else "s",
    )
    notify("READY=1\nSTATUS=serving " + config.root)  # systemd Type=notify; nothing otherwise
    try:
        if shared is None or load is None or owners is None:  # one worker; also inetd mode: exits when idle
            return run_server(config, sock, events, setup=lambda server: mcast(server, 0, 1, None))

        def worker(index: int) -> int:
            load.index = index
            handoff = Handoff(inboxes, index)
            return run_server(
                config, sock, events, shared, f"w{index}.", load,
                setup=lambda server: mcast(server, index, args.workers, handoff),
                shared_reads=SharedReads(owners, handoff),
            )

        return run_workers(args.workers, worker)
    finally:
        if args.pidfile and (problem := remove_pidfile(args.pidfile)):
            log.warning("%s", problem)
        notify("STOPPING=1")
        log.info("pyatftpd terminating")  # atftpd's words, for the admins' log watchers


if __name__ == "__main__":
    sys.exit(main())
