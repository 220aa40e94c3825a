"""Per-client and per-group counts from a lab pcap: the wire evidence of a matrix cell.

Why: "multicast delivered" versus "unicast fallback", the retransmissions under loss,
the group bytes of a train and the absence of IGMP from iPXE are all facts about
frames, so they are read from the capture (docs/evidence.md defines every count).

Classification needs no port table for TFTP: transfers use ephemeral server ports, so
a UDP datagram between the server and a client is TFTP when its first two bytes are a
sane opcode.  SLAM is recognised by its ports (10000 by default) and its header Ints.
Byte counts come from the IP/UDP length fields, so frames cut by the capture's snap
length are counted exactly.

CLI: ``python -m lab.wire FILE.pcap [--server 192.0.2.1] [--json]``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import struct
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from lab.model.jsonable import SKIP, to_json
from lab.model.network import SERVER_IPV4, SLAM_PORT
from lab.wire.frames import ETH_ARP, ETH_IPV6, PROTO_IGMP, Frame, Ipv4, ipv4, mac_text, read_frames, udp
from netboot.slam.ints import IntDecodeError, decode_int
from netboot.tftp.packets import MalformedPacket, Opcode, Request, decode

DHCP_SERVER_PORT = 67
DHCP_CLIENT_PORT = 68
DHCP_TYPES = {
    1: "discover", 2: "offer", 3: "request", 4: "decline", 5: "ack", 6: "nak", 7: "release", 8: "inform",
}


@dataclass(frozen=True)
class WireContext:
    """What the parser cannot tell from the frames alone."""

    server_ips: tuple[str, ...] = (SERVER_IPV4,)
    #: Ports on which SLAM servers listen for NACKs and send to the group.
    slam_ports: tuple[int, ...] = (SLAM_PORT,)


@dataclass
class ClientCounts:
    """Everything one client (an IP other than the server's) did or was sent, by unicast."""

    ip: str
    mac: str | None = None
    rrq: int = 0
    rrq_files: list[str] = field(default_factory=list)
    oack: int = 0
    unicast_data_frames: int = 0
    #: TFTP payload bytes (after the 4-byte header) in unicast DATA to this client.
    unicast_data_bytes: int = 0
    #: Distinct (server port, block) pairs: frames minus this is the retransmissions.
    unicast_data_blocks: int = 0
    unicast_data_retransmits: int = 0
    acks: int = 0
    errors_to_client: int = 0
    errors_from_client: int = 0
    slam_nacks: int = 0
    slam_disconnects: int = 0
    slam_pings: int = 0
    #: Datagrams this client sent to a multicast group (not IGMP).
    frames_to_group_from_client: int = 0
    igmp_reports: int = 0
    igmp_leaves: int = 0
    igmp_versions: list[int] = field(default_factory=list)
    igmp_groups: list[str] = field(default_factory=list)
    dhcp: dict[str, int] = field(default_factory=dict)
    other_udp: int = 0
    first_ts: float | None = None
    last_ts: float | None = None
    _seen_blocks: set[tuple[int, int]] = field(default_factory=set, repr=False, metadata=SKIP)

    def touch(self, ts: float) -> None:
        self.first_ts = ts if self.first_ts is None else min(self.first_ts, ts)
        self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)


@dataclass
class GroupCounts:
    """Traffic to one multicast group:port as it crossed the captured interface."""

    group: str
    protocol: str = "other"
    sources: list[str] = field(default_factory=list)
    frames: int = 0
    data_frames: int = 0
    #: Payload bytes after the TFTP header or the SLAM header Ints.
    data_bytes: int = 0
    distinct_blocks: int = 0
    #: Data frames that repeated a block already seen on this group (same transaction).
    repeated_frames: int = 0
    #: From the SLAM header (None for TFTP).
    slam_total_bytes: int | None = None
    slam_block_size: int | None = None
    first_ts: float | None = None
    last_ts: float | None = None
    _seen_blocks: set[tuple[object, int]] = field(default_factory=set, repr=False, metadata=SKIP)
    #: When each distinct block first crossed, and its data bytes (what a late joiner missed).
    _first_sent: list[tuple[float, int]] = field(default_factory=list, repr=False, metadata=SKIP)


@dataclass
class WireSummary:
    """The counts for one pcap; its JSON is what the matrix stores beside the pcap."""

    JSON_PROPERTIES: ClassVar[tuple[str, ...]] = ("group_bytes",)

    pcap: str
    context: WireContext
    frames: int = 0
    #: Frames stored shorter than they were on the wire (the snap rule).
    truncated_frames: int = 0
    first_ts: float | None = None
    last_ts: float | None = None
    clients: dict[str, ClientCounts] = field(default_factory=dict)
    groups: dict[str, GroupCounts] = field(default_factory=dict)
    #: IGMP queries by source IP: the evidence that a querier is active.
    igmp_queries: dict[str, int] = field(default_factory=dict)
    #: DHCP message types by client MAC (chaddr), before the client has an address.
    dhcp_by_mac: dict[str, dict[str, int]] = field(default_factory=dict)
    ipv6_frames: int = 0
    arp_frames: int = 0
    #: Non-first IPv4 fragments (the first fragment is classified and carries the UDP length).
    ip_fragments: int = 0
    unclassified: int = 0

    def client(self, ip: str) -> ClientCounts:
        if ip not in self.clients:
            self.clients[ip] = ClientCounts(ip=ip)
        return self.clients[ip]

    def group_bytes(self, group: str | None = None) -> int:
        """Data bytes sent to every group (or to ``group``, "addr:port"): the train's numerator."""
        if group is not None:
            return self.groups[group].data_bytes if group in self.groups else 0
        return sum(g.data_bytes for g in self.groups.values())

    def group_bytes_first_sent_before(self, ts: float) -> int:
        """Data bytes of the distinct blocks that first went to any group before ``ts``: what
        a client that began listening at ``ts`` missed, which must go out again for it."""
        return sum(size for g in self.groups.values() for sent, size in g._first_sent if sent < ts)

    def group_ratio(self, payload_size: int, group: str | None = None) -> float:
        """Group bytes divided by the payload size: 1.0 means every byte went to the group once."""
        if payload_size <= 0:
            raise ValueError("payload size must be positive")
        return self.group_bytes(group) / payload_size


def slam_header(payload: bytes, count: int) -> tuple[list[int], int]:
    """The first ``count`` Ints of a SLAM packet and the header length; ValueError if absent."""
    values = []
    pos = 0
    for _ in range(count):
        value, pos = decode_int(payload, pos)
        values.append(value)
    return values, pos


class _Parser:
    def __init__(self, summary: WireSummary) -> None:
        self.s = summary
        self.ctx = summary.context
        self.servers = set(self.ctx.server_ips)

    def frame(self, f: Frame) -> None:
        s = self.s
        s.frames += 1
        s.first_ts = f.ts if s.first_ts is None else min(s.first_ts, f.ts)
        s.last_ts = f.ts if s.last_ts is None else max(s.last_ts, f.ts)
        if f.ethertype == ETH_IPV6:
            s.ipv6_frames += 1
            return
        if f.ethertype == ETH_ARP:
            s.arp_frames += 1
            return
        packet = ipv4(f)
        if packet is None:
            s.unclassified += 1
            return
        if packet.truncated:
            s.truncated_frames += 1
        if packet.later_fragment:
            # A later fragment has no UDP header; its bytes are counted from the first
            # fragment's UDP length, so it only needs to be recognised.
            s.ip_fragments += 1
            return
        if packet.src not in self.servers and packet.src != "0.0.0.0":
            client = s.client(packet.src)
            client.mac = client.mac or f.src_mac
        datagram = udp(packet)
        if packet.proto == PROTO_IGMP:
            self.igmp(packet)
        elif datagram is not None:
            self.udp(datagram.ts, datagram.src, datagram.dst, datagram.to_group, datagram.sport,
                     datagram.dport, datagram.length, datagram.payload)  # fmt: skip
        else:
            s.unclassified += 1

    def igmp(self, packet: Ipv4) -> None:
        src, body = packet.src, packet.body
        if not body:
            self.s.unclassified += 1
            return
        kind = body[0]
        if kind == 0x11:
            self.s.igmp_queries[src] = self.s.igmp_queries.get(src, 0) + 1
            return
        groups: list[str] = []
        version = 0
        if kind in (0x12, 0x16, 0x17) and len(body) >= 8:
            version = {0x12: 1, 0x16: 2, 0x17: 2}[kind]
            groups = [str(ipaddress.IPv4Address(body[4:8]))]
        elif kind == 0x22 and len(body) >= 8:
            version = 3
            records, = struct.unpack_from("!H", body, 6)
            pos = 8
            for _ in range(records):
                if pos + 8 > len(body):
                    break
                aux, nsrc = body[pos + 1], struct.unpack_from("!H", body, pos + 2)[0]
                groups.append(str(ipaddress.IPv4Address(body[pos + 4 : pos + 8])))
                pos += 8 + 4 * nsrc + 4 * aux
        else:
            self.s.unclassified += 1
            return
        client = self.s.client(src)
        client.touch(packet.ts)
        if kind == 0x17:
            client.igmp_leaves += 1
        else:
            client.igmp_reports += 1
        if version not in client.igmp_versions:
            client.igmp_versions.append(version)
        for group in groups:
            if group not in client.igmp_groups:
                client.igmp_groups.append(group)

    def udp(
        self,
        ts: float,
        src: str,
        dst: str,
        is_group: bool,
        sport: int,
        dport: int,
        length: int,
        payload: bytes,
    ) -> None:
        if sport in (DHCP_SERVER_PORT, DHCP_CLIENT_PORT) and dport in (DHCP_SERVER_PORT, DHCP_CLIENT_PORT):
            self.dhcp(payload)
            return
        if is_group:
            if src in self.servers:
                self.group(ts, src, sport, dst, dport, length, payload)
            else:
                client = self.s.client(src)
                client.touch(ts)
                client.frames_to_group_from_client += 1
            return
        if dst == "255.255.255.255":
            self.s.unclassified += 1
        elif src in self.servers and dst not in self.servers:
            self.from_server(ts, self.s.client(dst), sport, length, payload)
        elif dst in self.servers and src not in self.servers:
            self.to_server(ts, self.s.client(src), dport, payload)
        else:
            self.s.unclassified += 1

    def from_server(self, ts: float, client: ClientCounts, sport: int, length: int, payload: bytes) -> None:
        client.touch(ts)
        if sport in self.ctx.slam_ports:
            client.slam_pings += 1
            return
        opcode = struct.unpack_from("!H", payload, 0)[0] if len(payload) >= 2 else 0
        if opcode == Opcode.DATA and length >= 4 and len(payload) >= 4:
            block = struct.unpack_from("!H", payload, 2)[0]
            client.unicast_data_frames += 1
            client.unicast_data_bytes += length - 4
            key = (sport, block)
            if key in client._seen_blocks:
                client.unicast_data_retransmits += 1
            else:
                client._seen_blocks.add(key)
                client.unicast_data_blocks += 1
        elif opcode == Opcode.OACK:
            client.oack += 1
        elif opcode == Opcode.ERROR:
            client.errors_to_client += 1
        else:
            client.other_udp += 1

    def to_server(self, ts: float, client: ClientCounts, dport: int, payload: bytes) -> None:
        client.touch(ts)
        if dport in self.ctx.slam_ports:
            if payload == b"\x00":
                client.slam_disconnects += 1
            else:
                client.slam_nacks += 1
            return
        opcode = struct.unpack_from("!H", payload, 0)[0] if len(payload) >= 2 else 0
        if opcode == Opcode.RRQ:
            client.rrq += 1
            try:
                packet = decode(payload)
            except MalformedPacket:
                return
            if isinstance(packet, Request) and packet.filename not in client.rrq_files:
                client.rrq_files.append(packet.filename)
        elif opcode == Opcode.ACK:
            client.acks += 1
        elif opcode == Opcode.ERROR:
            client.errors_from_client += 1
        else:
            client.other_udp += 1

    def group(
        self, ts: float, src: str, sport: int, dst: str, dport: int, length: int, payload: bytes
    ) -> None:
        key = f"{dst}:{dport}"
        group = self.s.groups.get(key)
        if group is None:
            group = self.s.groups[key] = GroupCounts(group=key)
        group.frames += 1
        group.first_ts = ts if group.first_ts is None else min(group.first_ts, ts)
        group.last_ts = ts if group.last_ts is None else max(group.last_ts, ts)
        source = f"{src}:{sport}"
        if source not in group.sources:
            group.sources.append(source)
        block_key: tuple[object, int] | None = None
        before = group.data_bytes
        if payload[:2] == b"\x00\x03" and length >= 4 and len(payload) >= 4:
            group.protocol = "tftp"
            group.data_frames += 1
            group.data_bytes += length - 4
            block_key = (sport, struct.unpack_from("!H", payload, 2)[0])
        elif payload[:1] != b"\x00" and (sport in self.ctx.slam_ports or dport in self.ctx.slam_ports):
            try:
                (transaction, total, block_size, packet), header_len = slam_header(payload, 4)
            except IntDecodeError:
                return
            group.protocol = "slam"
            group.data_frames += 1
            group.data_bytes += length - header_len
            group.slam_total_bytes, group.slam_block_size = total, block_size
            block_key = (transaction, packet)
        if block_key is not None:
            if block_key in group._seen_blocks:
                group.repeated_frames += 1
            else:
                group._seen_blocks.add(block_key)
                group.distinct_blocks += 1
                group._first_sent.append((ts, group.data_bytes - before))

    def dhcp(self, payload: bytes) -> None:
        if len(payload) < 34:
            self.s.unclassified += 1
            return
        mac = mac_text(payload[28:34])
        kind = "unknown"
        pos = 240
        if payload[236:240] == b"\x63\x82\x53\x63":
            while pos + 1 < len(payload) and payload[pos] != 255:
                if payload[pos] == 0:
                    pos += 1
                    continue
                if payload[pos] == 53 and pos + 2 < len(payload):
                    kind = DHCP_TYPES.get(payload[pos + 2], str(payload[pos + 2]))
                    break
                pos += 2 + payload[pos + 1]
        counts = self.s.dhcp_by_mac.setdefault(mac, {})
        counts[kind] = counts.get(kind, 0) + 1


def parse_frames(frames: Iterable[Frame], context: WireContext, name: str = "") -> WireSummary:
    summary = WireSummary(pcap=name, context=context)
    parser = _Parser(summary)
    for frame in frames:
        parser.frame(frame)
    for client in summary.clients.values():
        if client.mac in summary.dhcp_by_mac:
            client.dhcp = dict(summary.dhcp_by_mac[client.mac])
    return summary


def parse_pcap(path: str | Path, context: WireContext | None = None) -> WireSummary:
    """Count what a pcap shows; see docs/evidence.md for the definitions."""
    path = Path(path)
    return parse_frames(read_frames(path), context or WireContext(), str(path))


def write_evidence(pcap: str | Path, context: WireContext | None = None) -> WireSummary:
    """Parse ``pcap`` and keep the counts beside it (``X.wire.json``, ``X.wire.txt``) for reports to link."""
    pcap = Path(pcap)
    summary = parse_pcap(pcap, context)
    pcap.with_suffix(".wire.json").write_text(json.dumps(to_json(summary), indent=2) + "\n")
    pcap.with_suffix(".wire.txt").write_text(format_table(summary) + "\n")
    return summary


def _ts(value: float | None, origin: float | None) -> str:
    return "-" if value is None or origin is None else f"{value - origin:.3f}"


def format_table(summary: WireSummary) -> str:
    """A plain-text report: one row per client, one per group."""
    t0 = summary.first_ts
    lines = [
        f"{summary.pcap}: {summary.frames} frames ({summary.truncated_frames} cut by snap length), "
        f"{_ts(summary.last_ts, t0)} s",
        "",
        f"{'client':<15} {'mac':<17} {'rrq':>4} {'oack':>4} {'udata':>7} {'ubytes':>10} {'uretx':>6} "
        f"{'acks':>6} {'nacks':>6} {'err>':>4} {'<err':>4} {'igmp':>4} {'dhcp':<20} first..last",
    ]
    for ip, c in sorted(summary.clients.items()):
        dhcp = ",".join(f"{k}:{v}" for k, v in sorted(c.dhcp.items())) or "-"
        igmp = f"{c.igmp_reports}" + (f"v{'/'.join(map(str, c.igmp_versions))}" if c.igmp_versions else "")
        lines.append(
            f"{ip:<15} {c.mac or '-':<17} {c.rrq:>4} {c.oack:>4} {c.unicast_data_frames:>7} "
            f"{c.unicast_data_bytes:>10} {c.unicast_data_retransmits:>6} {c.acks:>6} {c.slam_nacks:>6} "
            f"{c.errors_to_client:>4} {c.errors_from_client:>4} {igmp:>4} {dhcp:<20} "
            f"{_ts(c.first_ts, t0)}..{_ts(c.last_ts, t0)}"
        )
    lines += [
        "",
        f"{'group':<21} {'proto':<5} {'frames':>7} {'data':>7} {'bytes':>10} {'blocks':>7} {'repeats':>7} "
        "sources / first..last",
    ]
    for key, g in sorted(summary.groups.items()):
        lines.append(
            f"{key:<21} {g.protocol:<5} {g.frames:>7} {g.data_frames:>7} {g.data_bytes:>10} "
            f"{g.distinct_blocks:>7} {g.repeated_frames:>7} {','.join(g.sources)} "
            f"{_ts(g.first_ts, t0)}..{_ts(g.last_ts, t0)}"
        )
    lines.append("")
    lines.append(
        f"group bytes {summary.group_bytes()}; IGMP queries {summary.igmp_queries or 'none'}; "
        f"DHCP by MAC {summary.dhcp_by_mac or 'none'}; ARP {summary.arp_frames}, IPv6 {summary.ipv6_frames}, "
        f"unclassified {summary.unclassified}"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Per-client TFTP/SLAM/IGMP/DHCP counts from a lab pcap")
    parser.add_argument("pcap", type=Path)
    parser.add_argument("--server", action="append", help=f"server IP (repeatable; default {SERVER_IPV4})")
    parser.add_argument("--slam-port", type=int, action="append",
                        help=f"SLAM port (repeatable; default {SLAM_PORT})")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    context = WireContext(
        server_ips=tuple(args.server or (SERVER_IPV4,)),
        slam_ports=tuple(args.slam_port or (SLAM_PORT,)),
    )
    try:
        summary = parse_pcap(args.pcap, context)
    except (OSError, ValueError) as exc:
        print(f"lab.wire: cannot read {args.pcap}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(to_json(summary), indent=2) if args.json else format_table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
