"""Known traffic for the capture, wire-count, loss and bridge tests, run inside a lab namespace.

Why a subprocess module: the test process stays outside the namespace (BRIEF.md), so
whatever must send or receive inside it runs as ``python -m tests.netgen ...`` through
``ns.popen``/``ns.run``.

Subcommands:

* ``frames IFACE``: write the fixed scenario of :data:`SCENARIO` as raw Ethernet frames
  (TFTP, RFC 2090 group DATA, MTFTP, SLAM, DHCP, IGMP), then join a group with a real
  socket on ``--join-iface`` so the kernel sends a genuine IGMPv2 report.
* ``burst``: send N datagrams to a group out of one veth end and count what a socket
  joined on the other end receives (loss tests).
* ``groups``: host-side members and group senders for the bridge snooping test.
"""

from __future__ import annotations

import argparse
import socket
import struct
import sys
import time
from collections.abc import Sequence

SERVER_IP = "192.0.2.1"
SERVER_MAC = "02:00:00:00:00:01"
CLIENT_A = ("192.0.2.10", "02:00:00:00:00:0a")
CLIENT_B = ("192.0.2.11", "02:00:00:00:00:0b")
TFTM_GROUP = ("239.255.0.1", 1758)
MTFTP_GROUP = ("239.255.1.1", 3001)
SLAM_GROUP = ("239.255.1.1", 10000)
BLKSIZE = 1432
LAST_BLOCK_BYTES = 100
SLAM_HEADER = bytes.fromhex("a0 65 53 f1 00 45 b5 45 ab")  # tests/slam/test_codec.py: 1461 bytes, bs 1451
KERNEL_JOIN_GROUP = "239.255.7.7"
FRAGMENT_GROUP = ("239.255.0.9", 1758)
FRAGMENT_DATA_BYTES = 1996


def mac_bytes(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.split(":"))


def group_mac(group: str) -> str:
    octets = socket.inet_aton(group)
    return f"01:00:5e:{octets[1] & 0x7F:02x}:{octets[2]:02x}:{octets[3]:02x}"


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def ipv4(src: str, dst: str, proto: int, payload: bytes, options: bytes = b"", frag: int = 0) -> bytes:
    ihl = 5 + len(options) // 4
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x40 | ihl, 0, 4 * ihl + len(payload), 0x4C41, frag, 1, proto, 0,
        socket.inet_aton(src), socket.inet_aton(dst),
    ) + options
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + payload


def udp(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
    segment = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    return ipv4(src, dst, 17, segment)


def ether(src_mac: str, dst_mac: str, packet: bytes) -> bytes:
    return mac_bytes(dst_mac) + mac_bytes(src_mac) + b"\x08\x00" + packet


def tftp_data(block: int, size: int) -> bytes:
    return struct.pack("!HH", 3, block) + bytes([block & 0xFF]) * size


def igmp(kind: int, group: str, max_resp: int = 0) -> bytes:
    body = struct.pack("!BBH4s", kind, max_resp, 0, socket.inet_aton(group))
    return body[:2] + struct.pack("!H", checksum(body)) + body[4:]


def igmpv3_report(groups: Sequence[str]) -> bytes:
    records = b"".join(struct.pack("!BBH4s", 4, 0, 0, socket.inet_aton(g)) for g in groups)
    body = struct.pack("!BBHHH", 0x22, 0, 0, 0, len(groups)) + records
    return body[:2] + struct.pack("!H", checksum(body)) + body[4:]


def dhcp(op: int, kind: int, mac: str) -> bytes:
    fixed = struct.pack("!BBBBIHH4s4s4s4s16s", op, 1, 6, 0, 0x1234, 0, 0x8000,
                        bytes(4), bytes(4), bytes(4), bytes(4), mac_bytes(mac) + bytes(10))
    return fixed + bytes(64 + 128) + b"\x63\x82\x53\x63" + bytes([53, 1, kind, 255]) + bytes(40)


def scenario() -> list[bytes]:
    """The fixed frame list; tests/test_wire.py asserts the counts it must produce."""
    a_ip, a_mac = CLIENT_A
    b_ip, b_mac = CLIENT_B
    router_alert = b"\x94\x04\x00\x00"
    frames: list[bytes] = []

    def server_to(ip: str, mac: str, sport: int, dport: int, payload: bytes) -> None:
        frames.append(ether(SERVER_MAC, mac, udp(SERVER_IP, sport, ip, dport, payload)))

    def client_to_server(ip: str, mac: str, sport: int, dport: int, payload: bytes) -> None:
        frames.append(ether(mac, SERVER_MAC, udp(ip, sport, SERVER_IP, dport, payload)))

    def to_group(group: tuple[str, int], sport: int, payload: bytes) -> None:
        packet = udp(SERVER_IP, sport, group[0], group[1], payload)
        frames.append(ether(SERVER_MAC, group_mac(group[0]), packet))

    def igmp_frame(src_mac: str, src: str, dst: str, message: bytes) -> None:
        frames.append(ether(src_mac, group_mac(dst), ipv4(src, dst, 2, message, router_alert)))

    # DHCP for A (before it has an address).
    broadcast = ("ff:ff:ff:ff:ff:ff", "255.255.255.255")
    frames.append(ether(a_mac, broadcast[0], udp("0.0.0.0", 68, broadcast[1], 67, dhcp(1, 1, a_mac))))
    frames.append(ether(SERVER_MAC, broadcast[0], udp(SERVER_IP, 67, broadcast[1], 68, dhcp(2, 2, a_mac))))
    # A: tftm:// RRQ exactly as iPXE sends it (netboot/clients/ipxe_tftp.py), retransmitted once.
    rrq = b"\x00\x01boot.img\x00octet\x00blksize\x001432\x00tsize\x000\x00multicast\x00\x00"
    client_to_server(a_ip, a_mac, 2001, 69, rrq)
    client_to_server(a_ip, a_mac, 2001, 69, rrq)
    server_to(a_ip, a_mac, 40000, 2001,
              b"\x00\x06tsize\x00" + str(7 * BLKSIZE).encode() + b"\x00blksize\x001432\x00multicast\x00"
              b"239.255.0.1,1758,1\x00")
    client_to_server(a_ip, a_mac, 2001, 40000, struct.pack("!HH", 4, 0))
    for block in (1, 2, 3, 3, 4, 5):  # block 3 twice: one repeat on the group
        to_group(TFTM_GROUP, 40000, tftp_data(block, BLKSIZE))
    for block, size in ((6, BLKSIZE), (6, BLKSIZE), (7, LAST_BLOCK_BYTES)):  # unicast, 6 retransmitted
        server_to(a_ip, a_mac, 40000, 2001, tftp_data(block, size))
    for block in range(1, 8):
        client_to_server(a_ip, a_mac, 2001, 40000, struct.pack("!HH", 4, block))
    # A's IGMP: a v2 report (with the router alert option) for its group.
    igmp_frame(a_mac, a_ip, TFTM_GROUP[0], igmp(0x16, TFTM_GROUP[0]))
    # B: mtftp:// RRQ (no options), three 512-byte blocks on the MTFTP group, then B aborts.
    client_to_server(b_ip, b_mac, 2002, 1759, b"\x00\x01blob\x00octet\x00")
    for block in (1, 2, 3):
        to_group(MTFTP_GROUP, 40001, tftp_data(block, 512))
    client_to_server(b_ip, b_mac, 2002, 40001, b"\x00\x05\x00\x00TFTP Aborted\x00")
    server_to(b_ip, b_mac, 40001, 2002, b"\x00\x05\x00\x05Unknown transfer ID\x00")
    # B: SLAM round (netboot/slam/packets.py): NACK, ping, two blocks to the group, disconnect.
    client_to_server(b_ip, b_mac, 2003, 10000, bytes.fromhex("20 21 00"))
    server_to(b_ip, b_mac, 10000, 2003, SLAM_HEADER)
    to_group(SLAM_GROUP, 10000, SLAM_HEADER + b"\x20" + b"S" * 1451)
    to_group(SLAM_GROUP, 10000, SLAM_HEADER + b"\x21" + b"0123456789")
    client_to_server(b_ip, b_mac, 2003, 10000, b"\x00")
    # B's IGMPv3 report for two groups, and an IGMP general query from the server.
    igmp_frame(b_mac, b_ip, "224.0.0.22", igmpv3_report([MTFTP_GROUP[0], "239.255.1.2"]))
    igmp_frame(SERVER_MAC, SERVER_IP, "224.0.0.1", igmp(0x11, "0.0.0.0", max_resp=100))
    # One 2000-byte TFTP DATA to FRAGMENT_GROUP, in two IP fragments (more-fragments flag, then offset 185).
    datagram = udp(SERVER_IP, 40002, FRAGMENT_GROUP[0], FRAGMENT_GROUP[1], tftp_data(9, FRAGMENT_DATA_BYTES))
    body = datagram[20:]  # the UDP header and payload, split across the fragments
    for frag, part in ((0x2000, body[:1480]), (1480 // 8, body[1480:])):
        packet = ipv4(SERVER_IP, FRAGMENT_GROUP[0], 17, part, frag=frag)
        frames.append(ether(SERVER_MAC, group_mac(FRAGMENT_GROUP[0]), packet))
    return frames


def send_frames(iface: str) -> int:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((iface, 0))
    frames = scenario()
    for frame in frames:
        sock.send(frame)
    return len(frames)


def join(sock: socket.socket, group: str, iface: str) -> None:
    """IP_ADD_MEMBERSHIP on one interface (struct ip_mreqn), so the report leaves by ``iface``."""
    mreqn = socket.inet_aton(group) + bytes(4) + struct.pack("@i", socket.if_nametoindex(iface))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)


def kernel_join(iface: str, group: str, hold: float) -> None:
    """A real membership: the kernel sends IGMPv2 reports (forced version) out of ``iface``."""
    with open(f"/proc/sys/net/ipv4/conf/{iface}/force_igmp_version", "w") as fh:
        fh.write("2")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    join(sock, group, iface)
    time.sleep(hold)
    sock.close()


def set_sysctl(path: str, value: str) -> None:
    with open(f"/proc/sys/net/ipv4/conf/{path}", "w") as fh:
        fh.write(value)


def burst(send_iface: str, recv_iface: str, count: int, group: str, port: int) -> int:
    """Send ``count`` datagrams to ``group`` out of ``send_iface``; return how many ``recv_iface`` got.

    Both veth ends are in one namespace, so the receiver must accept frames whose source
    is a local address (accept_local) and loopback of the sender's own copy is off.
    """
    for name in ("all", send_iface, recv_iface):
        set_sysctl(f"{name}/accept_local", "1")
        set_sysctl(f"{name}/rp_filter", "0")
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, recv_iface.encode())
    receiver.bind((group, port))
    join(receiver, group, recv_iface)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, send_iface.encode())
    sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(_address(send_iface)))
    sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
    for i in range(count):
        sender.sendto(struct.pack("!I", i) + bytes(60), (group, port))
        if i % 50 == 49:
            time.sleep(0.002)  # stay far below the veth backlog and the receive buffer
    received = set()
    receiver.settimeout(1.0)  # quiet this long = done; generous for a loaded machine
    try:
        while True:
            received.add(struct.unpack("!I", receiver.recv(2048)[:4])[0])
    except TimeoutError:
        pass
    return len(received)


def _address(iface: str) -> str:
    import fcntl

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    raw = fcntl.ioctl(sock.fileno(), 0x8915, struct.pack("256s", iface.encode()))  # SIOCGIFADDR
    return socket.inet_ntoa(raw[20:24])


def groups(send_iface: str, host_groups: Sequence[str], port_joins: Sequence[str], send: Sequence[str],
           count: int, settle: float) -> None:
    """Join ``host_groups`` on the bridge itself and ``port_joins`` (GROUP@IFACE) from a port's peer,
    then send ``count`` datagrams to each group of ``send`` out of ``send_iface``."""
    members = []
    for group in host_groups:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        join(sock, group, send_iface)
        members.append(sock)
    for spec in port_joins:
        group, iface = spec.split("@")
        set_sysctl(f"{iface}/force_igmp_version", "2")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        join(sock, group, iface)
        members.append(sock)
    time.sleep(settle)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, send_iface.encode())
    for group in send:
        for block in range(1, count + 1):
            sender.sendto(tftp_data(block, 64), (group, 3001))
    time.sleep(0.2)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("frames")
    p.add_argument("iface")
    p.add_argument("--join-iface")
    p = sub.add_parser("burst")
    p.add_argument("--send", required=True)
    p.add_argument("--recv", required=True)
    p.add_argument("-n", "--count", type=int, default=400)
    p.add_argument("--group", default="239.255.9.9")
    p.add_argument("--port", type=int, default=5000)
    p = sub.add_parser("groups")
    p.add_argument("--send-iface", required=True)
    p.add_argument("--host-join", action="append", default=[])
    p.add_argument("--port-join", action="append", default=[], help="GROUP@IFACE")
    p.add_argument("--send", action="append", default=[])
    p.add_argument("-n", "--count", type=int, default=20)
    p.add_argument("--settle", type=float, default=0.5)
    args = parser.parse_args(argv)
    if args.cmd == "frames":
        print(send_frames(args.iface))
        if args.join_iface:
            kernel_join(args.join_iface, KERNEL_JOIN_GROUP, hold=0.3)
    elif args.cmd == "burst":
        print(burst(args.send, args.recv, args.count, args.group, args.port))
    else:
        groups(args.send_iface, args.host_join, args.port_join, args.send, args.count, args.settle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
