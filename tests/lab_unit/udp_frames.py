"""Ethernet frames of one UDP datagram, for the tests that write a tap's pcap by hand."""

from __future__ import annotations

from pathlib import Path

import dpkt


def udp_frame(src: str, dst: str, payload: bytes, sport: int = 3001, dport: int = 3001) -> bytes:
    udp = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
    udp.ulen = 8 + len(payload)
    ip = dpkt.ip.IP(
        src=bytes(int(p) for p in src.split(".")),
        dst=bytes(int(p) for p in dst.split(".")),
        p=dpkt.ip.IP_PROTO_UDP,
        data=udp,
    )
    ip.len = 20 + len(bytes(udp))
    return bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x01\x00\x5e\x7f\x01\x01", data=ip))


def write_pcap(path: Path, frames: list[tuple[float, bytes]]) -> Path:
    """A pcap of ``(timestamp, frame)`` pairs, as a tap capture would hold them."""
    with open(path, "wb") as fh:
        writer = dpkt.pcap.Writer(fh)
        for ts, frame in frames:
            writer.writepkt(frame, ts=ts)
    return path
