"""Read a VM's NIC capture (QEMU filter-dump pcap) into a TFTP DATA count.

Why: the console and the server can both claim a transfer happened; the capture shows
what crossed the NIC.  This first reader only counts TFTP DATA; the multicast matrix
adds per-client group, unicast, ACK and IGMP counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dpkt  # type: ignore[import-untyped]  # dpkt ships no type hints

TFTP_DATA = 3


@dataclass(frozen=True)
class WireCounts:
    frames: int
    tftp_data_frames: int
    tftp_data_bytes: int  # DATA payload bytes (block contents), every transfer of the boot


def count_tftp(path: Path) -> WireCounts:
    """Count the TFTP DATA the NIC saw, by opcode (any port: TFTP answers from ephemeral ports)."""
    frames = data_frames = data_bytes = 0
    with open(path, "rb") as handle:
        for _, buf in dpkt.pcap.Reader(handle):
            frames += 1
            eth = dpkt.ethernet.Ethernet(buf)
            ip = eth.data
            if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.udp.UDP):
                continue
            payload = bytes(ip.data.data)
            if len(payload) >= 4 and int.from_bytes(payload[:2], "big") == TFTP_DATA:
                data_frames += 1
                data_bytes += len(payload) - 4
    return WireCounts(frames, data_frames, data_bytes)
