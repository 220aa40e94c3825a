"""A packet capture written in Python, for when tcpdump cannot run in the lab namespace.

Why it exists: Debian's tcpdump always drops privileges to the ``tcpdump`` user after
opening the interface, and in a rootless user namespace (``unshare --map-root-user``)
``setgroups`` is denied and that user is not mapped, so tcpdump exits with
"Couldn't change to 'tcpdump' uid=...: Operation not permitted".  An ``AF_PACKET``
socket needs only CAP_NET_RAW in the namespace, which the lab has.

Why a TPACKET_V3 ring: a plain socket's queue is capped by ``net.core.rmem_max``
(4 MiB here, not raisable from a user namespace), which is a few thousand full frames;
a 24 MiB train arrives faster than Python reads and the kernel drops the rest.  The
ring is memory of its own (32 MiB per interface by default), and a classic BPF filter
cuts bulk frames before they are copied into it, so it holds ~200 000 frames.  If the
ring cannot be set up, plain ``recvmsg`` is used and the statistics say so.

One process serves several interfaces (one pcap each): the lab captures the bridge
and every tap of a train, and one reader is cheaper than five on two cores.

Snap rule (see docs/evidence.md): frames that carry bulk data (a TFTP DATA header, or
any frame longer than ``--keep-whole`` bytes) are cut to ``--snaplen`` bytes, which
keeps every header we classify; every other frame (RRQ, OACK, ACK, ERROR, SLAM NACK,
DHCP, IGMP) is kept whole.  The pcap records each frame's original length.

Protocol with the parent (lab.capture): one line ``listening on IF1,IF2`` on stderr once
the sockets are bound, and after SIGINT/SIGTERM one JSON line of statistics on stdout.
Kernel drops are reported, never hidden.

Run inside the namespace: ``python -m lab.packet_capture --out DIR -i br0 -i tap0``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import mmap
import os
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType
from typing import BinaryIO

ETH_P_ALL = 0x0003
SOL_PACKET = 263
SO_ATTACH_FILTER = 26
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_AUXDATA = 8
PACKET_VERSION = 10
TPACKET_V3 = 2
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
PACKET_OUTGOING = 4
ARPHRD_LOOPBACK = 772
#: struct sockaddr_ll follows the 48-byte tpacket3_hdr; sll_pkttype is its byte 10.
SLL_PKTTYPE_OFFSET = 48 + 10
SO_TIMESTAMPNS = 35
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
LINKTYPE_ETHERNET = 1
PCAP_MAGIC_USEC = 0xA1B2C3D4
RCVBUF_BYTES = 32 * 1024 * 1024
RING_BLOCK_SIZE = 1 << 20
RING_BLOCKS = 32
RING_FRAME_SIZE = 2048
#: A ring block is handed to us at the latest this many ms after its first frame.
RING_BLOCK_TIMEOUT_MS = 50
#: Frames up to this length are control traffic and kept whole, unless they are TFTP DATA.
DEFAULT_KEEP_WHOLE = 600
#: Enough for Ethernet + IPv4 with options + UDP + the longest SLAM header (21 bytes) or TFTP header.
DEFAULT_SNAPLEN = 96


def snap_filter(snaplen: int, keep_whole: int) -> list[tuple[int, int, int, int]]:
    """The snap rule as classic BPF: the value returned is how many bytes the kernel keeps.

    ``ld len; jgt keep_whole -> cut; IPv4? UDP? at least 2 payload bytes? opcode 3 -> cut; else whole``.
    """
    return [
        (0x80, 0, 0, 0),  # 0: A = frame length
        (0x25, 11, 0, keep_whole),  # 1: A > keep_whole -> 13 (cut)
        (0x28, 0, 0, 12),  # 2: A = ethertype
        (0x15, 0, 8, 0x0800),  # 3: not IPv4 -> 12 (whole)
        (0x30, 0, 0, 23),  # 4: A = IP protocol
        (0x15, 0, 6, 17),  # 5: not UDP -> 12
        (0xB1, 0, 0, 14),  # 6: X = IP header length
        (0x80, 0, 0, 0),  # 7: A = frame length
        (0x1C, 0, 0, 0),  # 8: A -= X
        (0x35, 0, 2, 24),  # 9: less than 14 + 8 + 2 bytes after the IP header -> 12
        (0x48, 0, 0, 22),  # 10: A = first 16 bits of the UDP payload
        (0x15, 1, 0, 3),  # 11: TFTP DATA -> 13
        (0x06, 0, 0, 0xFFFF),  # 12: whole
        (0x06, 0, 0, snaplen),  # 13: cut
    ]


def attach_filter(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    """SO_ATTACH_FILTER needs a struct sock_fprog holding a pointer, hence ctypes."""
    insns = b"".join(struct.pack("HBBI", *insn) for insn in program)
    buf = ctypes.create_string_buffer(insns)
    fprog = struct.pack("HL", len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def pcap_header(snaplen: int) -> bytes:
    return struct.pack("<IHHiIII", PCAP_MAGIC_USEC, 2, 4, 0, 0, snaplen, LINKTYPE_ETHERNET)


def pcap_record(out: BinaryIO, sec: int, nsec: int, data: bytes | memoryview, wire_len: int) -> None:
    out.write(struct.pack("<IIII", sec, nsec // 1000, len(data), wire_len))
    out.write(data)


@dataclass
class InterfaceCapture:
    """One bound socket (with or without a ring) and the pcap it writes."""

    name: str
    sock: socket.socket
    out: BinaryIO
    ring: mmap.mmap | None = None
    block: int = 0
    packets: int = 0
    truncated: int = 0
    kernel_drops: int = 0
    #: Why reading stopped early (the device went away, e.g. a VM's tap when QEMU exits).
    gone: str | None = None
    #: On loopback every frame is seen leaving and arriving; like libpcap, keep the arrival only.
    loopback: bool = False

    def drain(self) -> int:
        return self._drain_ring() if self.ring is not None else self._drain_socket()

    def _drain_ring(self) -> int:
        ring = self.ring
        assert ring is not None
        n = 0
        while True:
            base = self.block * RING_BLOCK_SIZE
            status, num_pkts, offset = struct.unpack_from("III", ring, base + 8)
            if not status & TP_STATUS_USER:
                return n
            for _ in range(num_pkts):
                pkt = base + offset
                offset += struct.unpack_from("I", ring, pkt)[0]
                if self.loopback and ring[pkt + SLL_PKTTYPE_OFFSET] == PACKET_OUTGOING:
                    continue
                _next, sec, nsec, snaplen, wire_len, _st, mac = struct.unpack_from("IIIIIIH", ring, pkt)
                pcap_record(self.out, sec, nsec, ring[pkt + mac : pkt + mac + snaplen], wire_len)
                self.truncated += snaplen < wire_len
                self.packets += 1
                n += 1
            struct.pack_into("I", ring, base + 8, TP_STATUS_KERNEL)
            self.block = (self.block + 1) % RING_BLOCKS

    def _drain_socket(self) -> int:
        n = 0
        cmsg_space = socket.CMSG_SPACE(16) + socket.CMSG_SPACE(20)
        while True:
            try:
                frame, ancdata, _flags, addr = self.sock.recvmsg(65536, cmsg_space)
            except BlockingIOError:
                return n
            except OSError as exc:
                self.gone = os.strerror(exc.errno or 0)
                return n
            if self.loopback and addr[2] == PACKET_OUTGOING:
                continue
            sec, nsec = _timestamp(ancdata)
            wire_len = _original_length(ancdata, len(frame))
            pcap_record(self.out, sec, nsec, frame, wire_len)
            self.truncated += len(frame) < wire_len
            self.packets += 1
            n += 1

    def check_error(self) -> bool:
        """True when the socket reports an error (the device is gone); it then stops being polled."""
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self.gone = os.strerror(err)
        return self.gone is not None

    def read_drops(self) -> None:
        """Frames the kernel dropped because we read too slowly (reading resets the counter)."""
        size = 12 if self.ring is not None else 8
        raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, size)
        self.kernel_drops += struct.unpack_from("II", raw)[1]

    def close(self) -> None:
        self.out.close()
        if self.ring is not None:
            self.ring.close()
        self.sock.close()


def _timestamp(ancdata: list[tuple[int, int, bytes]]) -> tuple[int, int]:
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = struct.unpack("qq", data[:16])
            return int(sec), int(nsec)
    now = time.time_ns()
    return now // 1_000_000_000, now % 1_000_000_000


def _original_length(ancdata: list[tuple[int, int, bytes]], default: int) -> int:
    """struct tpacket_auxdata.tp_len: the length before the snap filter cut the frame."""
    for level, kind, data in ancdata:
        if level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= 8:
            return int(struct.unpack_from("II", data)[1])
    return default


def _setup_ring(sock: socket.socket) -> mmap.mmap:
    sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
    frames = RING_BLOCKS * (RING_BLOCK_SIZE // RING_FRAME_SIZE)
    req = struct.pack(
        "7I", RING_BLOCK_SIZE, RING_BLOCKS, RING_FRAME_SIZE, frames, RING_BLOCK_TIMEOUT_MS, 0, 0
    )
    sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
    size = RING_BLOCK_SIZE * RING_BLOCKS
    return mmap.mmap(sock.fileno(), size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)


def open_interface(
    name: str, out: BinaryIO, snaplen: int, keep_whole: int, use_ring: bool
) -> InterfaceCapture:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    # The filter is attached before binding, so no frame escapes the snap rule.
    attach_filter(sock, snap_filter(snaplen, keep_whole))
    ring = None
    if use_ring:
        try:
            ring = _setup_ring(sock)
        except OSError as exc:
            print(f"no TPACKET_V3 ring on {name} ({exc}); reading with recvmsg", file=sys.stderr, flush=True)
            sock.close()
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            attach_filter(sock, snap_filter(snaplen, keep_whole))
    if ring is None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    sock.bind((name, ETH_P_ALL))
    mreq = struct.pack("iHH8s", socket.if_nametoindex(name), PACKET_MR_PROMISC, 0, b"")
    sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
    sock.setblocking(False)
    out.write(pcap_header(snaplen))
    out.flush()
    # getsockname() of a bound packet socket is (ifname, proto, pkttype, hatype, addr).
    loopback = sock.getsockname()[3] == ARPHRD_LOOPBACK
    return InterfaceCapture(name=name, sock=sock, out=out, ring=ring, loopback=loopback)


def run(
    out_dir: str, interfaces: Sequence[str], snaplen: int, keep_whole: int, use_ring: bool = True
) -> dict[str, object]:
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
    caps = [
        open_interface(name, open(f"{out_dir}/{name}.pcap", "wb"), snaplen, keep_whole, use_ring)
        for name in interfaces
    ]
    by_fd = {cap.sock.fileno(): cap for cap in caps}
    print(f"listening on {','.join(interfaces)}", file=sys.stderr, flush=True)
    while not stopping:
        ready, _, _ = select.select([*by_fd, wake_r], [], [], 0.2)
        for fd in ready:
            if fd in by_fd:
                cap = by_fd[fd]
                cap.drain()
                if cap.check_error():
                    print(f"{cap.name}: {cap.gone}; its pcap ends here", file=sys.stderr, flush=True)
                    del by_fd[fd]
        if not ready:  # idle: make what we have visible to readers (tcpdump -U)
            for cap in caps:
                cap.out.flush()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # A ring block is handed over when full or RING_BLOCK_TIMEOUT_MS after its first frame.
    time.sleep(2 * RING_BLOCK_TIMEOUT_MS / 1000)
    for cap in caps:
        cap.drain()
        cap.read_drops()
        cap.close()
    return {
        "method": "af_packet",
        "reader": "tpacket_v3" if all(cap.ring is not None for cap in caps) else "recvmsg",
        "snaplen": snaplen,
        "keep_whole": keep_whole,
        "interfaces": {
            cap.name: {
                "packets": cap.packets,
                "truncated": cap.truncated,
                "kernel_drops": cap.kernel_drops,
                **({"gone": cap.gone} if cap.gone else {}),
            }
            for cap in caps
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="AF_PACKET capture to one pcap per interface")
    parser.add_argument("--out", required=True, help="directory for IFNAME.pcap files")
    parser.add_argument("-i", "--interface", action="append", required=True)
    parser.add_argument("--snaplen", type=int, default=DEFAULT_SNAPLEN)
    parser.add_argument("--keep-whole", type=int, default=DEFAULT_KEEP_WHOLE)
    parser.add_argument("--no-ring", action="store_true", help="read with recvmsg, not a TPACKET_V3 ring")
    args = parser.parse_args(argv)
    try:
        stats = run(args.out, args.interface, args.snaplen, args.keep_whole, use_ring=not args.no_ring)
    except OSError as exc:
        print(f"capture failed: {exc}", file=sys.stderr, flush=True)
        return 2
    print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
