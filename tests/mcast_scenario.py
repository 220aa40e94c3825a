"""Run a multicast download scenario with iPXE-faithful clients; print JSON results.

Runs *inside* a test's namespace (``ns.popen([sys.executable, "-m", "tests.mcast_scenario", ...])``)
so that the test process never touches a network.  Start patterns:

* ``--stagger S``: client i starts at i*S seconds;
* ``--late-at F``: the last client starts when client 0 holds fraction F of the file;
* ``--kill-master-at F``: client 0 vanishes (no packet, no ERROR) at fraction F;
* ``--duplicate-rrq``: every client sends each RRQ twice;
* ``--deaf K`` / ``--loss P``: as ``netboot-fetch``;
* ``--unknown-listener IP``: the late client (``--late-at``) hears the group before its
  RRQ leaves, so the server never learns of it; it sends from ``IP``.

With ``--expect FILE`` each result also says how many blocks differ from the file
and how many of those are all zeros (the MTFTP restart defect's signature).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import time
from typing import Any

from netboot.clients.cli import parse_url
from netboot.clients.ipxe_tftp import IpxeTftpClient
from netboot.clients.runner import ClientDriver, GroupHub


async def _when_progress(core: IpxeTftpClient, fraction: float) -> None:
    while not core.done and core.progress < fraction:
        await asyncio.sleep(0.002)


async def scenario(args: argparse.Namespace) -> dict[str, Any]:
    scheme, host, port, path = parse_url(args.url)
    loop = asyncio.get_running_loop()
    hub = GroupHub(loop)
    cores: list[IpxeTftpClient] = []
    drivers: list[ClientDriver] = []
    for index in range(args.count):
        core = IpxeTftpClient(
            host,
            path,
            scheme=scheme,
            port=port,
            deaf=index >= args.count - args.deaf,  # the last K are deaf; client 0 hears
            loss=args.loss,
            seed=args.seed * 1000 + index,
            duplicate_rrq=args.duplicate_rrq,
            zero_on_reopen=args.zero_on_reopen,
            hears_group_first=bool(args.unknown_listener) and index == args.count - 1 and index > 0,
        )
        cores.append(core)
    first_started = asyncio.Event()

    async def one(index: int) -> None:
        if args.late_at is not None and index == args.count - 1 and index > 0:
            await first_started.wait()
            await _when_progress(cores[0], args.late_at)
        else:
            await asyncio.sleep(index * args.stagger)
        bind = args.unknown_listener if cores[index].hears_group_first else "0.0.0.0"
        driver = ClientDriver(f"c{index:03d}", cores[index], hub, bind=bind)
        drivers.append(driver)
        if index == 0:
            first_started.set()
            if args.kill_master_at is not None:

                async def killer() -> None:
                    await _when_progress(cores[0], args.kill_master_at)
                    driver.kill()

                loop.create_task(killer())
        await driver.run()

    started = loop.time()
    try:
        await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(args.count))), args.timeout)
        timed_out = False
    except TimeoutError:
        timed_out = True
    elapsed = loop.time() - started
    expected = open(args.expect, "rb").read() if args.expect else None
    results = []
    for driver in sorted(drivers, key=lambda d: d.name):
        result = driver.result().as_dict()
        result["deaf"] = driver.core.deaf
        result["finished_after"] = round((driver.core.finished_at or loop.time()) - started, 4)
        if expected is not None and driver.core.ok:
            image = driver.core.image()
            size = driver.core.blksize or 512
            bad = [
                i
                for i in range(0, max(len(image), len(expected)), size)
                if image[i : i + size] != expected[i : i + size]
            ]
            result["bad_blocks"] = len(bad)
            result["bad_zero_blocks"] = sum(1 for i in bad if not any(image[i : i + size]))
            # wrong bytes that are not zeros (0 = every wrong region is zero-filled)
            result["bad_nonzero_bytes"] = sum(
                1
                for i in bad
                for got, want in zip(image[i : i + size], expected[i : i + size], strict=False)
                if got != want and got != 0
            )
            result["expected_sha256"] = hashlib.sha256(expected).hexdigest()
        results.append(result)
    for driver in drivers:
        driver.kill()
    hub.close()
    return {
        "timed_out": timed_out,
        "elapsed": round(elapsed, 4),
        "client_cpu_seconds": round(time.process_time(), 2),
        "group_bytes_seen": hub.group_bytes,
        "group_packets_seen": hub.group_packets,
        "clients": results,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--stagger", type=float, default=0.0)
    parser.add_argument("--late-at", type=float)
    parser.add_argument("--kill-master-at", type=float)
    parser.add_argument("--duplicate-rrq", action="store_true")
    parser.add_argument("--zero-on-reopen", action="store_true")
    parser.add_argument("--deaf", type=int, default=0)
    parser.add_argument("--loss", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--unknown-listener", metavar="IP")
    parser.add_argument("--expect")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(scenario(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
