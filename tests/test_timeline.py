"""Session timeline: data extraction from synthetic events + pcap, then the PNG itself."""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path
from typing import Any

import dpkt  # type: ignore[import-untyped]
import pytest

from lab.report import timeline as tl
from lab.report.timeline import (
    ACK,
    DONE,
    FALLBACK,
    GROUP_DATA,
    JOIN,
    MASTER,
    NACK,
    PROMOTE,
    UNICAST_DATA,
    build_timeline,
    draw_timeline,
    progress_segments,
    timeline_for_artifacts,
)

T0 = 1_800_000_000.0
SERVER = "192.0.2.1"
A, B, C = "192.0.2.11", "192.0.2.12", "192.0.2.13"
GROUP = ("239.255.1.1", 3001)
BLOCKS = 200


def udp_frame(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton(dst)) + udp  # fmt: skip
    return b"\x01\x00\x5e\x00\x00\x01" + b"\x52\x54\x00\x00\x00\x01" + b"\x08\x00" + ip


def tftp_data(block: int) -> bytes:
    return struct.pack("!HH", 3, block & 0xFFFF) + b"x" * 512


def tftp_ack(block: int) -> bytes:
    return struct.pack("!HH", 4, block & 0xFFFF)


def write_pcap(path: Path, frames: list[tuple[float, bytes]]) -> None:
    with open(path, "wb") as fh:
        writer = dpkt.pcap.Writer(fh, snaplen=65535, linktype=dpkt.pcap.DLT_EN10MB)
        for ts, frame in sorted(frames, key=lambda f: f[0]):
            writer.writepkt(frame, ts=ts)


def ev(t: float, name: str, **fields: Any) -> dict[str, Any]:
    return {"ts": T0 + t, "server": "pyatftpd", "event": name, "file": "blob", "session": 1, **fields}


def train_events() -> list[dict[str, Any]]:
    """Three clients: A is master, B joins late and is promoted, C is deaf and falls back."""
    return [
        ev(0.0, "mcast_session_start", group="239.255.1.1:3001", blocks=BLOCKS, bytes=BLOCKS * 512 - 1,
           mode="mtftp"),  # fmt: skip
        ev(0.0, "mcast_master", client=f"{A}:2001", reason="first", from_block=1),
        ev(0.0, "mcast_join", client=f"{A}:2001", master=True, late=False, stream_block=0),
        ev(0.5, "mcast_join", client=f"{B}:2002", master=False, late=True, stream_block=50),
        ev(0.8, "mcast_join", client=f"{C}:2003", master=False, late=True, stream_block=80),
        ev(1.0, "multicast_not_received", client=f"{C}:2003", block=99, reason="deaf"),
        ev(2.0, "done", client=f"{A}:2001", ok=True),
        ev(2.1, "mcast_master", client=f"{B}:2002", reason="promoted", from_block=1),
        ev(2.1, "mcast_promote", client=f"{B}:2002", attempts=0),
        ev(2.6, "done", client=f"{B}:2002", ok=True),
        ev(3.0, "done", client=f"{C}:2003", ok=True),
        ev(3.0, "mcast_session_end", group_ratio=1.25, clients=3, done=3),
        "not json",  # type: ignore[list-item]
    ]


def write_events(path: Path, events: list[Any]) -> Path:
    path.write_text("".join((e if isinstance(e, str) else json.dumps(e)) + "\n" for e in events))
    return path


def train_pcap(path: Path) -> Path:
    frames: list[tuple[float, bytes]] = []
    for block in range(1, BLOCKS + 1):  # first pass, A acks every block
        t = T0 + 0.01 * block
        frames.append((t, udp_frame(SERVER, GROUP[0], 40000, GROUP[1], tftp_data(block))))
        frames.append((t + 0.001, udp_frame(A, SERVER, 2001, 40000, tftp_ack(block))))
    for block in range(1, 51):  # second pass for B
        t = T0 + 2.1 + 0.01 * block
        frames.append((t, udp_frame(SERVER, GROUP[0], 40000, GROUP[1], tftp_data(block))))
        frames.append((t + 0.001, udp_frame(B, SERVER, 2002, 40000, tftp_ack(block))))
    for block in range(99, BLOCKS + 1):  # C by unicast after the fallback
        t = T0 + 1.0 + 0.01 * (block - 99)
        frames.append((t, udp_frame(SERVER, C, 40000, 2003, tftp_data(block))))
    write_pcap(path, frames)
    return path


def test_extraction_from_events_and_pcap(tmp_path: Path) -> None:
    events = write_events(tmp_path / "tftp.events.jsonl", train_events())
    line = build_timeline(events, train_pcap(tmp_path / "br0.pcap"))
    assert line.sources == ["events", "pcap"]
    assert line.origin == pytest.approx(T0)
    assert line.count(GROUP_DATA) == BLOCKS + 50
    assert line.count(ACK, A) == BLOCKS and line.count(ACK, B) == 50 and line.count(ACK, C) == 0
    assert line.count(UNICAST_DATA, C) == BLOCKS - 98 and line.count(UNICAST_DATA, A) == 0
    assert line.clients[:3] == [A, B, C]
    assert line.blocks == BLOCKS
    assert "mtftp" in line.title and "239.255.1.1:3001" in line.title
    joins = line.of_kind(JOIN)
    assert [(j.client, j.block) for j in joins] == [(A, None), (B, 50), (C, 80)]
    assert joins[1].label == f"join {B} (late)" and joins[1].t == pytest.approx(0.5)
    (fallback,) = line.of_kind(FALLBACK)
    assert fallback.client == C and fallback.block == 99 and "unicast fallback" in fallback.label
    assert [m.label for m in line.of_kind(MASTER)] == [f"master {A} (first)", f"master {B} (promoted)"]
    assert [p.client for p in line.of_kind(PROMOTE)] == [B]
    assert [d.client for d in line.of_kind(DONE)] == [A, B, C]
    group_times = [m.t for m in line.marks if m.kind == GROUP_DATA]
    assert min(group_times) == pytest.approx(0.01, abs=1e-6), "pcap and events share the clock"
    assert progress_segments(line) == {}, "every client has per-block marks"
    assert tl._block_near(line, line.of_kind(PROMOTE)[0]) == 1, "placed at its master event's from_block"


def test_events_alone_still_tell_the_story(tmp_path: Path) -> None:
    events = write_events(tmp_path / "e.jsonl", train_events())
    line = build_timeline(events, tmp_path / "missing.pcap")
    assert line.sources == ["events", "no pcap"]
    assert line.marks == []
    segments = progress_segments(line)
    assert segments[B] == ((pytest.approx(0.5), 50), (pytest.approx(2.6), BLOCKS))
    assert segments[A] == ((pytest.approx(0.0), 0), (pytest.approx(2.0), BLOCKS))
    out = draw_timeline(line, tmp_path / "events-only.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unicast_core_block_events_become_marks(tmp_path: Path) -> None:
    raw = [ev(0.01 * i, "data", client=f"{A}:2001", block=i & 0xFFFF) for i in range(65530, 65540)]
    raw += [ev(0.01 * i + 0.005, "ack", client=f"{A}:2001", block=i & 0xFFFF) for i in range(65530, 65540)]
    line = build_timeline(write_events(tmp_path / "e.jsonl", raw))
    data = sorted(m.block for m in line.marks if m.kind == UNICAST_DATA)
    assert data == list(range(65530, 65540)), "16-bit block numbers are unwrapped"
    assert line.count(ACK, A) == 10


def slam_int(value: int) -> bytes:
    length = 1
    while value >= 1 << (5 + 8 * (length - 1)):
        length += 1
    raw = value.to_bytes(length, "big")
    return bytes([raw[0] | (length << 5)]) + raw[1:]


def test_slam_group_data_and_nacks(tmp_path: Path) -> None:
    frames = []
    for packet in (0, 1, 2, 300):
        header = b"".join(slam_int(v) for v in (0x1234, 1_000_000, 1024, packet))
        frame = udp_frame(SERVER, "239.255.1.1", 10000, 10000, header + b"d" * 64)
        frames.append((T0 + packet / 1000, frame))
    frames.append((T0 + 0.5, udp_frame(A, SERVER, 2001, 10000, slam_int(3) + slam_int(10))))
    frames.append((T0 + 0.6, udp_frame(A, SERVER, 2001, 10000, b"\x00")))  # disconnect: not a NACK
    line = build_timeline(None, write_pcap_return(tmp_path / "s.pcap", frames))
    assert sorted(m.block for m in line.marks if m.kind == GROUP_DATA) == [0, 1, 2, 300]
    assert [(m.client, m.block) for m in line.marks if m.kind == NACK] == [(A, 3)]


def write_pcap_return(path: Path, frames: list[tuple[float, bytes]]) -> Path:
    write_pcap(path, frames)
    return path


def test_png_is_written_for_artifacts_folder(tmp_path: Path) -> None:
    write_events(tmp_path / "tftp.events.jsonl", train_events())
    (tmp_path / "pcap").mkdir()
    train_pcap(tmp_path / "pcap" / "br0.pcap")
    (out,) = timeline_for_artifacts(tmp_path)
    assert out == tmp_path / "timeline.png"
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack("!II", data[16:24])
    assert (width, height) == (13 * 110, 7 * 110)
    assert len(data) > 30_000, "a plot with hundreds of marks is not a blank image"


def test_unicast_only_artifacts_get_no_picture(tmp_path: Path) -> None:
    write_events(tmp_path / "tftp.events.jsonl", [ev(0, "done", client=f"{A}:1")])
    assert timeline_for_artifacts(tmp_path) == []
    assert not (tmp_path / "timeline.png").exists()


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = write_events(tmp_path / "e.jsonl", train_events())
    out = tmp_path / "t.png"
    assert tl.main([str(events), "--pcap", str(train_pcap(tmp_path / "p.pcap")), "-o", str(out)]) == 0
    assert out.is_file()
    assert "group_data 250" in capsys.readouterr().out
    assert tl.main([str(tmp_path / "nope.jsonl")]) == 2


def test_later_ip_fragments_are_not_read_as_packets(tmp_path: Path) -> None:
    first = udp_frame(SERVER, GROUP[0], 40000, GROUP[1], tftp_data(7))
    later = bytearray(udp_frame(SERVER, GROUP[0], 40000, GROUP[1], tftp_data(9)))
    struct.pack_into("!H", later, 14 + 6, 185)  # fragment offset 185 * 8 bytes: no UDP header here
    pcap = write_pcap_return(tmp_path / "f.pcap", [(T0, first), (T0 + 0.001, bytes(later))])
    line = build_timeline(None, pcap)
    assert [m.block for m in line.marks] == [7]


def test_pcap_alone_takes_joins_from_read_requests(tmp_path: Path) -> None:
    """The reference atftpd writes no events: each client's RRQ on the wire becomes its join."""
    rrq = struct.pack("!H", 1) + b"train.bin\0octet\0"
    group = [udp_frame(SERVER, GROUP[0], 40000, GROUP[1], tftp_data(b)) for b in range(1, 101)]
    frames = [(T0 + 0.01 * (b + 1), frame) for b, frame in enumerate(group)]
    frames += [(T0 + 0.0, udp_frame(A, SERVER, 2001, 1759, rrq)),
               (T0 + 0.505, udp_frame(B, SERVER, 2002, 1759, rrq)),
               (T0 + 0.6, udp_frame(B, SERVER, 2002, 1759, rrq))]  # fmt: skip
    line = build_timeline(None, write_pcap_return(tmp_path / "r.pcap", frames))
    joins = line.of_kind(JOIN)
    assert [(j.client, j.block) for j in joins] == [(A, None), (B, 50)], "one join per burst of requests"
    assert joins[1].label == f"RRQ {B}"
    assert line.title == "capture r.pcap"
    assert all(m.kind != "rrq" for m in line.marks)


def test_one_picture_per_session_and_no_boot_script_noise(tmp_path: Path) -> None:
    """A full boot fetches a kernel then an initrd on the same MTFTP group: two pictures."""
    raw = [
        ev(0.0, "done", client=f"{A}:1", file="boot.ipxe", blocks=1),  # the unicast boot script
        ev(0.1, "mcast_session_start", file="vmlinuz", group="239.255.1.1:3001", blocks=100, mode="mtftp"),
        ev(0.1, "mcast_join", file="vmlinuz", client=f"{A}:2", late=False, stream_block=0),
        ev(1.2, "done", file="vmlinuz", client=f"{A}:2"),
        ev(1.2, "mcast_session_end", file="vmlinuz", group_ratio=1.0),
        ev(3.0, "mcast_session_start", file="initrd.gz", group="239.255.1.1:3001", blocks=20, mode="mtftp"),
        ev(3.0, "mcast_join", file="initrd.gz", client=f"{A}:3", late=False, stream_block=0),
        ev(3.3, "done", file="initrd.gz", client=f"{A}:3"),
        ev(3.3, "mcast_session_end", file="initrd.gz", group_ratio=1.0),
    ]
    events = write_events(tmp_path / "tftp.events.jsonl", raw)
    def stream(start: float, port: int, blocks: int) -> list[tuple[float, bytes]]:
        data = [udp_frame(SERVER, GROUP[0], port, GROUP[1], tftp_data(b)) for b in range(1, blocks + 1)]
        return [(T0 + start + 0.01 * (i + 1), frame) for i, frame in enumerate(data)]

    # the kernel's session is still repeating blocks on the same group when the initrd's starts
    frames = stream(0.1, 40000, 100) + stream(3.0, 40001, 20) + stream(3.05, 40000, 10)
    (tmp_path / "pcap").mkdir()
    write_pcap(tmp_path / "pcap" / "br0.pcap", frames)
    whole = build_timeline(events)
    assert [a.label for a in whole.of_kind(DONE)] == [f"done {A}", f"done {A}"], "boot.ipxe is not a session"
    initrd = build_timeline(events, tmp_path / "pcap" / "br0.pcap", file="initrd.gz")
    assert initrd.count(GROUP_DATA) == 20 and initrd.blocks == 20 and "initrd.gz" in initrd.title
    assert {m.port for m in initrd.marks} == {40001}, "the older session's port is left out"
    assert initrd.origin == pytest.approx(T0 + 3.0)
    with pytest.raises(ValueError, match="no multicast session"):
        build_timeline(events, file="boot.ipxe")
    paths = timeline_for_artifacts(tmp_path)
    assert [p.name for p in paths] == ["timeline-vmlinuz.png", "timeline-initrd.gz.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)


def test_a_server_without_events_gets_its_picture_from_the_capture(tmp_path: Path) -> None:
    (tmp_path / "wire").mkdir()
    train_pcap(tmp_path / "wire" / "br0.pcap")  # Debian's atftpd writes no JSON events
    (out,) = timeline_for_artifacts(tmp_path)
    assert out == tmp_path / "timeline.png" and out.read_bytes()[:4] == b"\x89PNG"


def test_a_unicast_capture_without_events_gets_no_picture(tmp_path: Path) -> None:
    frames = [(T0 + b / 100, udp_frame(SERVER, A, 40000, 2001, tftp_data(b))) for b in range(1, 20)]
    write_pcap(tmp_path / "nic.pcap", frames)
    assert timeline_for_artifacts(tmp_path) == []
