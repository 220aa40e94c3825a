from pathlib import Path

import dpkt

from lab.wire.counts import parse_pcap


def _udp_frame(payload: bytes, sport: int = 40000, dport: int = 2070) -> bytes:
    udp = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
    udp.ulen = 8 + len(payload)
    ip = dpkt.ip.IP(src=bytes([192, 0, 2, 1]), dst=bytes([192, 0, 2, 100]), p=dpkt.ip.IP_PROTO_UDP, data=udp)
    ip.len = 20 + len(bytes(udp))
    eth = dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x52\x54\x00\x1a\x00\x00", data=ip)
    return bytes(eth)


def test_counts_only_tftp_data_payload_bytes(tmp_path: Path) -> None:
    path = tmp_path / "nic.pcap"
    with open(path, "wb") as handle:
        writer = dpkt.pcap.Writer(handle)
        writer.writepkt(_udp_frame(b"\x00\x03\x00\x01" + b"x" * 1432), ts=1.0)
        writer.writepkt(_udp_frame(b"\x00\x03\x00\x02" + b"y" * 7), ts=1.1)
        writer.writepkt(_udp_frame(b"\x00\x04\x00\x02", sport=2070, dport=40000), ts=1.2)  # ACK
        writer.writepkt(_udp_frame(b"\x00\x06blksize\x001432\x00"), ts=1.3)  # OACK
    counts = parse_pcap(path)
    client = counts.clients["192.0.2.100"]
    assert (counts.frames, client.unicast_data_frames, client.unicast_data_bytes) == (4, 2, 1439)
