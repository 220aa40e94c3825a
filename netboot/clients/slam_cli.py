"""``netboot-slam-fetch x-slam://server[:port]/[group[:port]]``: iPXE-faithful SLAM downloads.

Runs one or many simulated iPXE clients in one process and prints, per client, the
sha256 of what it received, the seconds it took and the NACKs it sent (``--json``
for machines).  ``--loss``/``--deaf`` model bad NICs; ``--variant etherboot`` sends
full run-length NACKs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import urllib.parse

from netboot.clients.slam_client import VARIANTS
from netboot.clients.slam_runner import ClientSpec, SlamSwarm

DEFAULT_PORT = 10000
DEFAULT_GROUP = ("239.255.1.1", 10000)


def parse_slam_uri(uri: str) -> tuple[tuple[str, int], tuple[str, int], str | None]:
    """Return (server, group, warning).  Parses the group correctly (as Etherboot did);
    the warning says when current iPXE would refuse the same URI (sock_aton bug)."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme != "x-slam" or not parts.hostname:
        raise ValueError(f"not an x-slam://server[:port]/[group[:port]] URI: {uri!r}")
    server = (parts.hostname, parts.port or DEFAULT_PORT)
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    group_addr, group_port = DEFAULT_GROUP
    warning = None
    if path:
        host, _, port = path.partition(":")
        if port:
            group_port = int(port, 0)
        if host:
            group_addr = host
            warning = (
                "current iPXE refuses a group address in the x-slam path (inverted sock_aton check); "
                "real ROMs need the default group 239.255.1.1 (x-slam://server or x-slam://server/:port)"
            )
    return server, (group_addr, group_port), warning


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="netboot-slam-fetch", description=__doc__.splitlines()[0])
    p.add_argument("uri", help="x-slam://server[:port]/[group[:port]]")
    p.add_argument("-n", "--count", type=int, default=1, help="number of clients in this process (default 1)")
    p.add_argument("--stagger", type=float, default=0.0, help="seconds between client starts")
    p.add_argument("--delay", type=float, default=0.0, help="seconds before the first client starts")
    p.add_argument("--start-at", type=float, help="wall-clock time (Unix seconds) the first client starts at")
    p.add_argument("--loss", type=float, default=0.0, help="drop this fraction of received datagrams")
    p.add_argument("--deaf", type=int, default=0, metavar="N", help="the first N clients hear no group data")
    p.add_argument("--variant", choices=VARIANTS, default="ipxe", help="NACK style (default ipxe)")
    p.add_argument("--complete-empty", action="store_true",
                   help="finish when the header says 0 bytes (iPXE itself never finishes a 0-byte file)")
    p.add_argument("--interface-address", help="local address whose interface joins the group")
    p.add_argument(
        "--bind",
        "--local-address",
        dest="local_address",
        default="0.0.0.0",
        help="local address of the clients' (NACK) sockets (--local-address: the older spelling)",
    )
    p.add_argument("-o", "--output", metavar="FILE", help="write the first client's bytes here")
    p.add_argument("--timeout", type=float, default=120.0, help="give up on the whole run after this")
    p.add_argument("--seed", type=int, default=0, help="seed for --loss")
    p.add_argument("--json", action="store_true", help="print one JSON object with every result")
    p.add_argument("-V", "--version", action="version", version="netboot-slam-fetch 0.1.0")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        server, group, warning = parse_slam_uri(args.uri)
    except ValueError as exc:
        print(f"netboot-slam-fetch: {exc}", file=sys.stderr)
        return 2
    if warning:
        print(f"netboot-slam-fetch: note: {warning}", file=sys.stderr)
    delay = args.delay
    if args.start_at is not None:
        delay += max(0.0, args.start_at - time.time())
    specs = [
        ClientSpec(
            start_delay=delay + i * args.stagger,
            loss=args.loss,
            deaf=i < args.deaf,
            variant=args.variant,
            complete_empty=args.complete_empty,
        )
        for i in range(args.count)
    ]
    swarm = SlamSwarm(
        server,
        group,
        specs,
        local_address=args.local_address,
        interface_address=args.interface_address,
        seed=args.seed,
        keep_data=bool(args.output),
    )
    results = asyncio.run(swarm.run(timeout=args.timeout))
    if args.output and results and results[0].data is not None:
        with open(args.output, "wb") as handle:
            handle.write(results[0].data)
    failed = [r for r in results if r.outcome != "ok"]
    if args.json:
        print(json.dumps({"results": [r.as_json() for r in results]}))
    else:
        for r in results:
            print(f"client {r.index}: {r.outcome} sha256={r.sha256} bytes={r.size} "
                  f"seconds={r.seconds:.3f} nacks={r.nacks_sent}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
