"""``netboot-fetch``: fetch a file the way iPXE would, with one or many simulated clients.

Examples::

    netboot-fetch tftm://192.0.2.1/boot.img
    netboot-fetch mtftp://192.0.2.1/boot.img              # iPXE: port 1759, group 239.255.1.1:3001
    netboot-fetch -n 20 --stagger 0.5 --deaf 3 --loss 0.05 --json tftm://192.0.2.1/boot.img

Each client prints the sha256 of what it got, the payload bytes it received by
multicast and by unicast, and the seconds it took.  Exit status 0 only if every client
succeeded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from urllib.parse import urlsplit

from netboot.clients.ipxe_tftp import MTFTP_GROUP, IpxeTftpClient
from netboot.clients.runner import ClientDriver, ClientResult, GroupHub

VERSION = "0.1.0"


def parse_url(url: str) -> tuple[str, str, int | None, str]:
    """Return (scheme, host, port, RRQ path).  iPXE sends ``uri->path + 1``."""
    parts = urlsplit(url)
    if parts.scheme not in ("tftp", "tftm", "mtftp"):
        raise ValueError(f"{url!r}: use a tftp://, tftm:// or mtftp:// URL")
    if not parts.hostname or not parts.path or parts.path == "/":
        raise ValueError(f"{url!r}: a URL needs a server and a file, e.g. tftm://192.0.2.1/boot.img")
    return parts.scheme, parts.hostname, parts.port, parts.path[1:]


async def fetch_many(
    url: str,
    count: int = 1,
    stagger: float = 0.0,
    deaf: int = 0,
    loss: float = 0.0,
    seed: int = 1,
    bind: str = "0.0.0.0",
    zero_on_reopen: bool = False,
    mtftp_group: tuple[str, int] = MTFTP_GROUP,
    kill: dict[int, float] | None = None,
    timeout: float = 600.0,
    keep_first: bool = False,
) -> list[ClientResult]:
    """Run ``count`` clients in this loop; ``kill`` maps client index -> seconds after its start."""
    scheme, host, port, path = parse_url(url)
    loop = asyncio.get_running_loop()
    hub = GroupHub(loop)
    drivers: list[ClientDriver] = []

    async def one(index: int) -> ClientResult:
        await asyncio.sleep(index * stagger)
        core = IpxeTftpClient(
            host,
            path,
            scheme=scheme,
            port=port,
            deaf=index < deaf,
            loss=loss,
            seed=seed * 100003 + index,
            zero_on_reopen=zero_on_reopen,
            mtftp_group=mtftp_group,
        )
        driver = ClientDriver(f"c{index:03d}", core, hub, bind=bind, keep_data=keep_first and index == 0)
        drivers.append(driver)
        if kill and index in kill:
            loop.call_later(kill[index], driver.kill)
        return await driver.run()

    try:
        return list(await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(count))), timeout))
    finally:
        for driver in drivers:
            driver.kill()
        hub.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netboot-fetch", description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="tftp://, tftm:// or mtftp:// URL (iPXE syntax)")
    parser.add_argument("-n", "--count", type=int, default=1, help="number of simulated clients (one loop)")
    parser.add_argument("--stagger", type=float, default=0.0, help="seconds between client starts")
    parser.add_argument("--deaf", type=int, default=0, help="this many clients never hear the group")
    parser.add_argument("--loss", type=float, default=0.0, help="fraction of received datagrams dropped")
    parser.add_argument("--seed", type=int, default=1, help="seed for --loss")
    parser.add_argument(
        "--bind",
        "--local-address",
        dest="bind",
        default="0.0.0.0",
        help="local address of the clients' sockets (--local-address: the same, as netboot-slam-fetch)",
    )
    parser.add_argument("-o", "--output", metavar="FILE", help="write the first client's bytes here")
    parser.add_argument(
        "--zero-on-reopen",
        action="store_true",
        help="mtftp: model the suspected restart defect (bitmap kept, data lost); see docs/multicast.md",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="give up on the whole run after this")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("-V", "--version", action="version", version=f"netboot-fetch {VERSION}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        parse_url(args.url)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        results = asyncio.run(
            fetch_many(
                args.url,
                count=args.count,
                stagger=args.stagger,
                deaf=args.deaf,
                loss=args.loss,
                seed=args.seed,
                bind=args.bind,
                zero_on_reopen=args.zero_on_reopen,
                timeout=args.timeout,
                keep_first=bool(args.output),
            )
        )
    except TimeoutError:
        print(f"netboot-fetch: not finished after {args.timeout} s", file=sys.stderr)
        return 2
    if args.output and results and results[0].data is not None:
        with open(args.output, "wb") as handle:
            handle.write(results[0].data)
    if args.json:
        print(json.dumps({"clients": [r.as_dict() for r in results]}))
    else:
        for r in results:
            status = r.sha256 if r.ok else f"FAILED: {r.error}"
            print(
                f"{r.name} {status} size={r.size} multicast={r.bytes_multicast} "
                f"unicast={r.bytes_unicast} seconds={r.seconds:.3f}"
            )
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
