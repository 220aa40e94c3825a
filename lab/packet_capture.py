"""A packet capture written in Python, for when tcpdump cannot run in the lab namespace.

Why it exists: Debian's tcpdump always drops privileges to the ``tcpdump`` user after
opening the interface, and in a rootless user namespace (``unshare --map-root-user``)
``setgroups`` is denied and that user is not mapped, so tcpdump exits with
"Couldn't change to 'tcpdump' uid=...: Operation not permitted".  An ``AF_PACKET``
socket needs only CAP_NET_RAW in the namespace, which the lab has.

One process serves several interfaces (one pcap each): the lab captures the bridge
and every tap of a train, and one reader is cheaper than five on two cores.

Snap rule (see docs/evidence.md): frames that carry bulk data (a TFTP DATA header, or
any frame longer than ``--keep-whole`` bytes) are cut to ``--snaplen`` bytes, which
keeps every header we classify; every other frame (RRQ, OACK, ACK, ERROR, SLAM NACK,
DHCP, IGMP) is kept whole.  The pcap records each frame's original length.

Protocol with the parent (lab.capture): one line ``listening on IF1,IF2`` on stderr once
the sockets are bound, and after SIGINT/SIGTERM one JSON line of statistics on stdout.

Run inside the namespace: ``python -m lab.packet_capture --out DIR -i br0 -i tap0``.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import BinaryIO

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_STATISTICS = 6
SO_TIMESTAMPNS = 35
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
LINKTYPE_ETHERNET = 1
PCAP_MAGIC_USEC = 0xA1B2C3D4
#: The most the kernel grants without CAP_NET_ADMIN in the initial namespace is rmem_max (4 MiB here).
RCVBUF_BYTES = 32 * 1024 * 1024
#: Frames up to this length are control traffic and kept whole, unless they are TFTP DATA.
DEFAULT_KEEP_WHOLE = 600
#: Enough for Ethernet + IPv4 with options + UDP + the longest SLAM header (21 bytes) or TFTP header.
DEFAULT_SNAPLEN = 96


@dataclass
class InterfaceCapture:
    """One bound socket and the pcap it writes."""

    name: str
    sock: socket.socket
    out: BinaryIO
    packets: int = 0
    truncated: int = 0
    kernel_drops: int = 0
    extra: dict[str, int] = field(default_factory=dict)


def pcap_header(snaplen: int) -> bytes:
    return struct.pack("<IHHiIII", PCAP_MAGIC_USEC, 2, 4, 0, 0, snaplen, LINKTYPE_ETHERNET)


def cut_length(frame: bytes, snaplen: int, keep_whole: int) -> int:
    """How many bytes of ``frame`` to store, by the snap rule in the module docstring."""
    if len(frame) <= snaplen:
        return len(frame)
    if len(frame) > keep_whole:
        return snaplen
    # IPv4 UDP whose payload starts with TFTP opcode 3 (DATA): bulk, cut it.
    if len(frame) >= 34 and frame[12:14] == b"\x08\x00" and frame[23] == 17:
        ihl = (frame[14] & 0x0F) * 4
        udp_payload = 14 + ihl + 8
        if frame[udp_payload : udp_payload + 2] == b"\x00\x03":
            return snaplen
    return len(frame)


def _timestamp(ancdata: list[tuple[int, int, bytes]]) -> float:
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = struct.unpack("qq", data[:16])
            return float(sec + nsec / 1e9)
    return time.time()


def open_interface(name: str, out: BinaryIO, snaplen: int) -> InterfaceCapture:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((name, ETH_P_ALL))
    ifindex = socket.if_nametoindex(name)
    mreq = struct.pack("iHH8s", ifindex, PACKET_MR_PROMISC, 0, b"")
    sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.setblocking(False)
    out.write(pcap_header(snaplen))
    out.flush()
    return InterfaceCapture(name=name, sock=sock, out=out)


def drain(cap: InterfaceCapture, snaplen: int, keep_whole: int) -> int:
    """Write every frame queued on the socket; returns how many."""
    n = 0
    cmsg_space = socket.CMSG_SPACE(16)
    while True:
        try:
            frame, ancdata, _flags, _addr = cap.sock.recvmsg(65536, cmsg_space)
        except BlockingIOError:
            return n
        ts = _timestamp(ancdata)
        keep = cut_length(frame, snaplen, keep_whole)
        if keep < len(frame):
            cap.truncated += 1
        sec = int(ts)
        usec = int(round((ts - sec) * 1e6))
        if usec >= 1_000_000:
            sec, usec = sec + 1, usec - 1_000_000
        cap.out.write(struct.pack("<IIII", sec, usec, keep, len(frame)))
        cap.out.write(frame[:keep])
        cap.packets += 1
        n += 1


def kernel_drops(sock: socket.socket) -> int:
    """Frames the kernel dropped because we read too slowly (reading resets the counter)."""
    raw = sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
    _packets, drops = struct.unpack("II", raw)
    return int(drops)


def run(out_dir: str, interfaces: Sequence[str], snaplen: int, keep_whole: int) -> dict[str, object]:
    stopping = False

    def stop(_sig: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    # The handler only sets a flag (raising could cut a pcap record in half); the
    # wake-up pipe makes select() return at once.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    caps = [open_interface(name, open(f"{out_dir}/{name}.pcap", "wb"), snaplen) for name in interfaces]
    by_fd = {cap.sock.fileno(): cap for cap in caps}
    print(f"listening on {','.join(interfaces)}", file=sys.stderr, flush=True)
    while not stopping:
        ready, _, _ = select.select([*by_fd, wake_r], [], [], 0.2)
        for fd in ready:
            if fd in by_fd:
                drain(by_fd[fd], snaplen, keep_whole)
        if not ready:  # idle: make what we have visible to readers (tcpdump -U)
            for cap in caps:
                cap.out.flush()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for cap in caps:
        drain(cap, snaplen, keep_whole)
        cap.kernel_drops += kernel_drops(cap.sock)
        cap.out.close()
        cap.sock.close()
    return {
        "method": "af_packet",
        "snaplen": snaplen,
        "keep_whole": keep_whole,
        "interfaces": {
            cap.name: {"packets": cap.packets, "truncated": cap.truncated, "kernel_drops": cap.kernel_drops}
            for cap in caps
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="AF_PACKET capture to one pcap per interface")
    parser.add_argument("--out", required=True, help="directory for IFNAME.pcap files")
    parser.add_argument("-i", "--interface", action="append", required=True)
    parser.add_argument("--snaplen", type=int, default=DEFAULT_SNAPLEN)
    parser.add_argument("--keep-whole", type=int, default=DEFAULT_KEEP_WHOLE)
    args = parser.parse_args(argv)
    try:
        stats = run(args.out, args.interface, args.snaplen, args.keep_whole)
    except OSError as exc:
        print(f"capture failed: {exc}", file=sys.stderr, flush=True)
        return 2
    print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
