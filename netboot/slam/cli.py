"""``pyslamd FILE``: a drop-in for mini-slamd that keeps the group fed.

One server serves one file on one port and group; run several for several files
(docs/pyslamd.md shows how that maps to ``x-slam://`` URIs).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import signal
import sys
from typing import Literal

from netboot.events import EventLog
from netboot.serverlog import reopen_logs, report_failures, setup_logging
from netboot.slam.packets import DEFAULT_BLOCK_SIZE
from netboot.slam.server import DEFAULT_RATE, MAX_BLOCK_SIZE, MAX_OVERHEAD, ServerConfig
from netboot.slam.transport import SocketOptions, serve
from netboot.stopping import held_stop_signals, ignore_stop_signals, release_stop_signals
from netboot.systemd import notify

VERSION = "pyslamd 0.1.0 (command line of Etherboot's mini-slamd, plus pacing options)"


def parse_rate(text: str) -> float:
    """Bytes per second, with an optional K/M/G suffix (powers of 1000)."""
    scale = {"k": 1e3, "m": 1e6, "g": 1e9}
    value = text.strip().lower()
    factor = 1.0
    if value and value[-1] in scale:
        factor = scale[value[-1]]
        value = value[:-1]
    try:
        rate = float(value) * factor
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad rate {text!r}: use bytes per second, e.g. 12.5M") from None
    if rate <= 0:
        raise argparse.ArgumentTypeError("the rate must be positive")
    return rate


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pyslamd", description="SLAM (x-slam://) multicast file server.")
    p.add_argument("file", help="the one file to serve")
    p.add_argument("--port", type=int, default=10000, help="UDP port for NACKs (default 10000)")
    p.add_argument("--mcast-addr", default="239.255.1.1", help="group address (default 239.255.1.1)")
    p.add_argument("--mcast-port", type=int, default=10000, help="group port (default 10000)")
    p.add_argument("--ttl", type=int, default=1, help="multicast TTL (default 1)")
    p.add_argument("--no-loop", action="store_true", help="do not loop group data back to this host")
    p.add_argument("--interface", help="egress interface for the group (IP_MULTICAST_IF by index)")
    p.add_argument("--bind-address", help="local address to bind and to send the group from")
    p.add_argument(
        "--block-size",
        type=int,
        default=DEFAULT_BLOCK_SIZE,
        help=f"data bytes per datagram (default {DEFAULT_BLOCK_SIZE}; capped at {MAX_BLOCK_SIZE})",
    )
    p.add_argument(
        "--rate",
        type=parse_rate,
        default=DEFAULT_RATE,
        help="pacing ceiling in bytes/s (default 125M = 1 Gbit/s; streams start near 2.9M "
        "and ramp up while the master client keeps up)",
    )
    p.add_argument(
        "--start-rate",
        type=parse_rate,
        help="bytes/s a stream starts at (default 2000 datagrams/s, 2.9M at 1451-byte blocks; "
        "at most half of --rate)",
    )
    p.add_argument(
        "--ramp",
        type=float,
        default=ServerConfig.slow_start,
        help=f"multiply the rate by this on each clean answer of the master until its first loss "
        f"(default {ServerConfig.slow_start}; 1 = grow only by 15%% per clean 0.1 s)",
    )
    p.add_argument(
        "--pacing",
        choices=("window", "rate"),
        default="window",
        help="window (default): no listener of the pace set gets more unconfirmed datagrams "
        "than its flow window, so a receiver that stops taking frames stops the stream instead "
        "of losing it; rate: the rate rules alone (the behaviour before 2026-12-06)",
    )
    p.add_argument(
        "--min-clients",
        type=int,
        default=1,
        help="hold a wave's first stream until this many clients have asked (default 1: never "
        "hold); nodes that power on seconds apart then share one pass (as udpcast's --min-clients)",
    )
    p.add_argument(
        "--max-wait",
        type=float,
        default=ServerConfig.max_wait,
        help=f"with --min-clients: start this many seconds after the wave's first client at the latest "
        f"(default {ServerConfig.max_wait:g}); waiting clients get a datagram every "
        f"{ServerConfig.gather_keepalive:g} s, so iPXE's 15 s timeout never fires",
    )
    p.add_argument("--events", help="append JSON-lines events to this file ('-' = stdout)")
    p.add_argument("--logfile", help="write the log here instead of stderr")
    p.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    p.add_argument("-V", "--version", action="version", version=VERSION)
    return p


def main(argv: list[str] | None = None) -> int:
    with held_stop_signals():  # until _run has its handlers
        return _serve(argv)


def _serve(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        setup_logging("pyslamd", args.logfile, logging.DEBUG if args.verbose else logging.INFO)
    except OSError as exc:
        print(f"pyslamd: cannot open --logfile {args.logfile}: {exc.strerror}; name a writable file",
              file=sys.stderr)
        return 1
    log = logging.getLogger("pyslamd")
    try:
        group = ipaddress.IPv4Address(args.mcast_addr)
    except ValueError:
        print(f"pyslamd: --mcast-addr {args.mcast_addr!r} is not an IPv4 address", file=sys.stderr)
        return 2
    if not group.is_multicast:
        print(f"pyslamd: --mcast-addr {group} is not a multicast (224.0.0.0/4) address", file=sys.stderr)
        return 2
    block_size = args.block_size
    if block_size < 1:
        print("pyslamd: --block-size must be at least 1", file=sys.stderr)
        return 2
    if block_size > MAX_BLOCK_SIZE:
        log.warning("block size %d capped to %d (header and packet number take up to %d of 1472 bytes)",
                    block_size, MAX_BLOCK_SIZE, MAX_OVERHEAD)
        block_size = MAX_BLOCK_SIZE
    if args.ramp < 1.0:
        print("pyslamd: --ramp must be at least 1 (1 = no ramp)", file=sys.stderr)
        return 2
    if args.min_clients < 1:
        print("pyslamd: --min-clients must be at least 1", file=sys.stderr)
        return 2
    if args.max_wait < 0:
        print("pyslamd: --max-wait must not be negative", file=sys.stderr)
        return 2
    packets_per_second = max(1.0, args.rate / block_size)
    config = ServerConfig(
        block_size=block_size,
        max_rate=packets_per_second,
        slow_start=args.ramp,
        min_clients=args.min_clients,
        max_wait=args.max_wait,
        flow_windows=args.pacing == "window",
    )
    if args.start_rate is not None:
        config.start_rate = max(1.0, args.start_rate / block_size)
    opts = SocketOptions(
        port=args.port,
        group=str(group),
        group_port=args.mcast_port,
        ttl=args.ttl,
        loop=not args.no_loop,
        bind_address=args.bind_address,
        interface=args.interface,
    )
    events = EventLog(args.events, "pyslamd")
    try:
        asyncio.run(_run(args.file, opts, config, events))
    except OSError as exc:
        print(f"pyslamd: {exc}", file=sys.stderr)
        if getattr(exc, "errno", None) == 98:
            print("pyslamd: the port is taken; pick another --port, or --bind-address when local "
                  "clients hold the group port", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"pyslamd: {exc}", file=sys.stderr)
        return 1
    finally:
        log.info("pyslamd terminating")
        events.close()
        report_failures()
    return 0


async def _run(path: str, opts: SocketOptions, config: ServerConfig, events: EventLog) -> None:
    ready = asyncio.Event()
    task = asyncio.ensure_future(serve(path, opts, config, events, ready))
    loop = asyncio.get_running_loop()
    ready_task = asyncio.ensure_future(ready.wait())

    def on_ready(waited: asyncio.Task[Literal[True]]) -> None:
        if not waited.cancelled():
            notify(f"READY=1\nSTATUS=serving {path}")  # systemd Type=notify; nothing otherwise

    ready_task.add_done_callback(on_ready)

    def stop(signum: int) -> None:
        logging.getLogger("pyslamd").info("%s received: stopping", signal.Signals(signum).name)
        task.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop, sig)
    loop.add_signal_handler(signal.SIGHUP, reopen_logs)  # logrotate: a fresh --logfile
    release_stop_signals()  # held since main()'s first line: netboot/stopping.py
    try:
        await task
    except asyncio.CancelledError:
        notify("STOPPING=1")
    finally:
        ignore_stop_signals(loop)
        ready_task.cancel()


if __name__ == "__main__":
    sys.exit(main())
