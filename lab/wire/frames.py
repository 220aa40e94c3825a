"""The one pcap reader: Ethernet frames, their IPv4 packets and UDP datagrams.

Why one: the counts, the train's stream facts, the diagnosis of a failed VM and the
timelines all walk the same headers.  Four hand-written walkers disagreed in small ways
(fragments, frames cut by the snap length), so every reader of a lab pcap goes through
here.  A frame cut by the capture's snap length keeps its true sizes: byte counts come
from the IPv4 total length and the UDP length field, never from what was stored.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import dpkt  # type: ignore[import-untyped]  # dpkt ships no type hints

from lab.model.network import is_group

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_ARP = 0x0806
ETH_VLAN = 0x8100
PROTO_IGMP = 2
PROTO_UDP = 17


@dataclass
class Frame:
    ts: float
    src_mac: str
    ethertype: int
    l3: bytes


@dataclass(frozen=True)
class Ipv4:
    """One IPv4 packet as far as it was captured."""

    ts: float
    src_mac: str
    proto: int
    src: str
    dst: str
    #: The payload after the IP header, at most ``total_length`` bytes of what was stored.
    body: bytes
    total_length: int
    header_length: int
    #: Stored shorter than it was on the wire (the snap rule).
    truncated: bool
    #: A fragment after the first: no UDP header of its own.
    later_fragment: bool

    @property
    def to_group(self) -> bool:
        return is_group(self.dst)


@dataclass(frozen=True)
class Datagram:
    """One UDP datagram; ``length`` is the UDP payload's true size, ``payload`` what was kept."""

    ts: float
    src: str
    dst: str
    sport: int
    dport: int
    length: int
    payload: bytes

    @property
    def to_group(self) -> bool:
        return is_group(self.dst)


def mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def read_frames(path: Path) -> Iterator[Frame]:
    """Ethernet frames of a pcap or pcapng file (VLAN tags removed)."""
    with open(path, "rb") as fh:
        try:
            reader = dpkt.pcap.UniversalReader(fh)
        except (dpkt.UnpackError, ValueError) as exc:
            raise ValueError(f"{path} is not a pcap or pcapng file ({exc})") from None
        if reader.datalink() != dpkt.pcap.DLT_EN10MB:
            raise ValueError(
                f"{path}: link type {reader.datalink()} is not Ethernet; capture on a bridge or tap"
            )
        for ts, buf in reader:
            if len(buf) < 14:
                continue
            ethertype = struct.unpack_from("!H", buf, 12)[0]
            offset = 14
            while ethertype == ETH_VLAN and len(buf) >= offset + 4:
                ethertype = struct.unpack_from("!H", buf, offset + 2)[0]
                offset += 4
            yield Frame(float(ts), mac_text(buf[6:12]), ethertype, bytes(buf[offset:]))


def frames_of(source: Path | Sequence[Frame]) -> Iterable[Frame]:
    """The frames of a pcap path, or the frames already read (one read serves several readers)."""
    return read_frames(source) if isinstance(source, Path) else source


def ipv4(frame: Frame) -> Ipv4 | None:
    """The frame's IPv4 packet, or None for other ethertypes and runts."""
    l3 = frame.l3
    if frame.ethertype != ETH_IPV4 or len(l3) < 20:
        return None
    ihl = (l3[0] & 0x0F) * 4
    total_length = struct.unpack_from("!H", l3, 2)[0]
    return Ipv4(
        ts=frame.ts,
        src_mac=frame.src_mac,
        proto=l3[9],
        src=socket.inet_ntoa(l3[12:16]),
        dst=socket.inet_ntoa(l3[16:20]),
        body=l3[ihl:total_length],
        total_length=total_length,
        header_length=ihl,
        truncated=total_length > len(l3),
        later_fragment=bool(struct.unpack_from("!H", l3, 6)[0] & 0x1FFF),
    )


def udp(packet: Ipv4) -> Datagram | None:
    """The packet's UDP datagram (first fragments only), or None."""
    body = packet.body
    if packet.proto != PROTO_UDP or packet.later_fragment or len(body) < 8:
        return None
    if packet.total_length < packet.header_length + 8:
        return None
    sport, dport, udp_length = struct.unpack_from("!HHH", body, 0)
    payload = body[8:udp_length] if udp_length >= 8 else b""
    return Datagram(packet.ts, packet.src, packet.dst, sport, dport, max(udp_length - 8, 0), payload)


def datagrams(source: Path | Sequence[Frame]) -> Iterator[Datagram]:
    """Every IPv4 UDP datagram of a capture, in order."""
    for frame in frames_of(source):
        packet = ipv4(frame)
        if packet is None:
            continue
        datagram = udp(packet)
        if datagram is not None:
            yield datagram
