"""Silent requesters and a real client against a TFTP server; prints JSON figures.

Runs *inside* a namespace the test made (``ns.popen([sys.executable, "-m",
"tests.tftp.robustness_probe", ...])``), so nothing here touches the host network.

Why "silent": a request's source address can be spoofed, so whatever a server sends
to a requester that never answers is what an attacker can aim at a victim.  Each row
sends its requests once and then only listens, counting what comes back:

* ``rrq``: one plain RRQ (no options);
* ``junk``: one 1-byte datagram to the request port;
* ``mcast``: N iPXE-style ``tftm://`` RRQs for one file, each from its own port;
* ``mtftp``: N MTFTP RRQs (no options, the MTFTP port), each from its own port.

``amplification`` is (bytes of UDP payload the server sent because of the row) /
(bytes of UDP payload the row sent).  Group traffic counts too (a listener on the
group sees it), since it loads the same network.  ``delay`` measures what a real
iPXE-faithful ``tftm://`` client needs while N silent requesters wait in the same
session (and alone, before them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import struct
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from netboot.clients.ipxe_tftp import IpxeTftpClient
from netboot.clients.runner import ClientDriver, GroupHub

OPCODES = {1: "RRQ", 2: "WRQ", 3: "DATA", 4: "ACK", 5: "ERROR", 6: "OACK"}


def tftm_rrq(path: str) -> bytes:
    """The request iPXE sends for ``tftm://server/path`` (option order blksize, tsize, multicast)."""
    return b"\0\1" + path.encode() + b"\0octet\0blksize\x001432\0tsize\x000\0multicast\0\0"


def plain_rrq(path: str) -> bytes:
    return b"\0\1" + path.encode() + b"\0octet\0"


@dataclass
class Row:
    name: str
    sent: int = 0
    received: int = 0
    packets: Counter[str] = field(default_factory=Counter)
    first: float | None = None
    last: float | None = None
    sockets: list[socket.socket] = field(default_factory=list)

    def note(self, data: bytes, now: float) -> None:
        self.received += len(data)
        self.packets[OPCODES.get(int.from_bytes(data[:2], "big"), "other")] += 1
        if self.first is None:
            self.first = now
        self.last = now

    def figures(self, started: float) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "received": self.received,
            "amplification": round(self.received / self.sent, 2) if self.sent else None,
            "packets": dict(self.packets),
            "last_packet_after": round(self.last - started, 2) if self.last is not None else None,
        }


def _udp(bind: str = "0.0.0.0") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((bind, 0))
    sock.setblocking(False)
    return sock


def _group_socket(group: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((group, port))
    mreq = struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton("0.0.0.0"))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    sock.setblocking(False)
    return sock


def _send_requests(row: Row, count: int, datagram: bytes, to: tuple[str, int]) -> None:
    for _ in range(count):
        sock = _udp()
        sock.sendto(datagram, to)
        row.sent += len(datagram)
        row.sockets.append(sock)


async def listen(rows: list[Row], seconds: float, started: float) -> None:
    loop = asyncio.get_running_loop()

    def readable(row: Row, sock: socket.socket) -> None:
        while True:
            try:
                data = sock.recv(70000)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            row.note(data, time.monotonic())

    for row in rows:
        for sock in row.sockets:
            loop.add_reader(sock.fileno(), readable, row, sock)
    await asyncio.sleep(max(0.0, started + seconds - time.monotonic()))
    for row in rows:
        for sock in row.sockets:
            loop.remove_reader(sock.fileno())
            sock.close()


async def amplification(args: argparse.Namespace) -> dict[str, Any]:
    server = (args.server, 69)
    rows: list[Row] = []
    groups = Row("groups")
    for group, port in ((args.rfc2090_group, 1758), ("239.255.1.1", 3001)):
        groups.sockets.append(_group_socket(group, port))
    started = time.monotonic()
    if "rrq" in args.rows:
        row = Row("rrq")
        _send_requests(row, 1, plain_rrq(args.rrq_file), server)
        rows.append(row)
    if "junk" in args.rows:
        row = Row("junk")
        _send_requests(row, 1, b"x", server)
        rows.append(row)
    if "mcast" in args.rows:
        row = Row("mcast")
        _send_requests(row, args.mcast_requesters, tftm_rrq(args.file), server)
        rows.append(row)
    if "mtftp" in args.rows:
        row = Row("mtftp")
        _send_requests(row, args.mtftp_requesters, plain_rrq(args.mtftp_file), (args.server, 1759))
        rows.append(row)
    await listen([*rows, groups], args.seconds, started)
    result = {row.name: row.figures(started) for row in rows}
    result["groups"] = groups.figures(started)
    return result


async def fetch_tftm(url_server: str, path: str, hub: GroupHub, name: str) -> dict[str, Any]:
    core = IpxeTftpClient(url_server, path, scheme="tftm")
    driver = ClientDriver(name, core, hub)
    result = (await driver.run()).as_dict()
    return {"ok": result["ok"], "error": result["error"], "seconds": result["seconds"]}


async def delay(args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    hub = GroupHub(loop)
    alone = await fetch_tftm(args.server, args.file, hub, "alone")
    await asyncio.sleep(args.pause)
    row = Row("silent")
    _send_requests(row, args.mcast_requesters, tftm_rrq(args.file), (args.server, 69))
    listening = loop.create_task(listen([row], args.seconds, time.monotonic()))
    await asyncio.sleep(0.5)
    crowded = await fetch_tftm(args.server, args.file, hub, "crowded")
    listening.cancel()
    for sock in row.sockets:
        loop.remove_reader(sock.fileno())
        sock.close()
    hub.close()
    return {"alone": alone, "with_silent": crowded, "silent_requesters": args.mcast_requesters}


async def downloads(args: argparse.Namespace) -> dict[str, Any]:
    """``--count`` iPXE-faithful ``tftp://`` clients at once; the caller samples the server's RSS."""
    loop = asyncio.get_running_loop()
    hub = GroupHub(loop)
    drivers = [
        ClientDriver(f"d{i:03d}", IpxeTftpClient(args.server, args.file, scheme="tftp"), hub)
        for i in range(args.count)
    ]
    started = time.monotonic()
    results = await asyncio.gather(*(driver.run() for driver in drivers))
    hub.close()
    return {
        "clients": args.count,
        "ok": sum(1 for r in results if r.ok),
        "seconds": round(time.monotonic() - started, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("amplification", "delay", "downloads"))
    parser.add_argument("--server", default="192.0.2.1")
    parser.add_argument("--file", default="boot.img")
    parser.add_argument("--mtftp-file", default="boot.img")
    #: Not an --mtftp file: a plain RRQ for one is refused as iPXE's stale MTFTP fallback.
    parser.add_argument("--rrq-file", default="plain.img")
    parser.add_argument("--rows", default="rrq,junk,mcast,mtftp")
    parser.add_argument("--seconds", type=float, default=50.0)
    parser.add_argument("--mcast-requesters", type=int, default=30)
    parser.add_argument("--mtftp-requesters", type=int, default=500)
    parser.add_argument("--rfc2090-group", default="239.255.0.0")
    parser.add_argument("--pause", type=float, default=1.0)
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args()
    args.rows = args.rows.split(",")
    runner = {"amplification": amplification, "delay": delay, "downloads": downloads}[args.mode]
    print(json.dumps(asyncio.run(runner(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
