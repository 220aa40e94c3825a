"""Session timeline: data extraction from synthetic events + pcap, then the PNG itself."""

from __future__ import annotations

import json
import os
import socket
import struct
from pathlib import Path
from typing import Any

import dpkt  # type: ignore[import-untyped]
import pytest

from lab.model.results import BootEvidence, IpxeError, StageRecord, TrainResult, TrainVm
from lab.model.status import Status
from lab.model.train_plan import TrainPlan
from lab.report import timeline as tl
from lab.report import timeline_inputs as inputs
from lab.report import timeline_redraw as redraw
from lab.report.timeline import (
    ACK,
    DONE,
    FAILURE,
    FALLBACK,
    GONE,
    GROUP_DATA,
    JOIN,
    MASTER,
    NACK,
    PROMOTE,
    REFUSED,
    UNICAST_DATA,
    Failure,
    build_timeline,
    draw_timeline,
    numbered_notes,
    progress_segments,
    render_timeline,
    repair_window,
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
    assert tl.block_near(line, line.of_kind(PROMOTE)[0]) == 1, "placed at its master event's from_block"


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
    assert width == 15 * 110 and height > 10 * 110, "main, strip, zoom and its strip stacked"
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
    assert line.title == "train.bin: capture r.pcap", "the file its clients asked for on the MTFTP port"
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


# --- names, the server's trouble, the caller's failures -------------------------------------

NAMES = {A: f"e1000 {A}", B: f"rtl8139 {B}", C: f"vmxnet3 (lossy 5 %) {C}"}


def test_clients_are_named_by_the_callers_names(tmp_path: Path) -> None:
    line = build_timeline(write_events(tmp_path / "e.jsonl", train_events()), names=NAMES)
    assert line.name(C) == f"vmxnet3 (lossy 5 %) {C}" and line.name("192.0.2.99") == "192.0.2.99"
    assert [j.label for j in line.of_kind(JOIN)][2] == f"join vmxnet3 (lossy 5 %) {C} (late)"
    assert line.of_kind(FALLBACK)[0].label == f"unicast fallback vmxnet3 (lossy 5 %) {C}"


def test_the_servers_own_trouble_is_drawn_without_the_caller(tmp_path: Path) -> None:
    raw = train_events()[:-1] + [
        ev(1.5, "mcast_skip", client=f"{B}:2002", reason="no answer", attempts=1),
        ev(1.6, "mcast_client_gone", client=f"{B}:2002", reason="no answer to 3 promotions", attempts=3),
        ev(1.7, "mtftp_stale_fallback", client=f"{C}:9", quiet_seconds=0.4, reason="unfinished member"),
        ev(1.8, "error", client=f"{C}:9", code=0, reason="refused"),
        ev(1.9, "error", client=f"{C}:9", reason="foreign TID"),  # no ERROR sent: not drawn
        ev(2.0, "done", client=f"{A}:7", ok=False, reason="timed out"),
        ev(2.0, "mcast_listen", client=f"{B}:2002", stream_block=50),  # the join again: not drawn
    ]
    line = build_timeline(write_events(tmp_path / "e.jsonl", raw), names=NAMES)
    assert [(g.client, g.label.split()[0]) for g in line.of_kind(GONE)] == [(B, "skipped"), (B, "gone")]
    refused = [r.label for r in line.of_kind(REFUSED)]
    assert refused == [
        f"plain-TFTP fallback of vmxnet3 (lossy 5 %) {C} refused (ERROR 0): unfinished member",
        f"ERROR 0 sent to vmxnet3 (lossy 5 %) {C}: refused",
        f"transfer to e1000 {A} failed: timed out",
    ]
    assert len(line.of_kind(JOIN)) == 3


def test_a_failure_is_placed_at_its_time_and_the_clients_block(tmp_path: Path) -> None:
    events = write_events(tmp_path / "e.jsonl", train_events())
    failures = [Failure(B, T0 + 2.356, "FAIL at stage verified: VERIFY FAIL"), Failure(C, None, "MISS")]
    line = build_timeline(events, train_pcap(tmp_path / "p.pcap"), names=NAMES, failures=failures)
    timed, untimed = line.of_kind(FAILURE)
    assert timed.t == pytest.approx(2.356) and timed.client == B and timed.timed
    assert timed.block == 25, "B's last mark by then: its ACK of block 25 of the second pass"
    assert timed.label == f"rtl8139 {B}: FAIL at stage verified: VERIFY FAIL"
    assert not untimed.timed and "time unknown" in untimed.label
    assert untimed.t == pytest.approx(3.0), "at C's last record: its done"


def test_each_failure_goes_to_the_session_it_happened_in() -> None:
    windows = [(100.0, 200.0), (210.0, 230.0)]
    kernel, initrd, panic, before = (Failure(A, 150.0, "k"), Failure(B, 220.0, "i"), Failure(C, 300.0, "p"),
                                     Failure(A, 50.0, "b"))  # fmt: skip
    unknown = Failure(B, None, "?")
    failures = [kernel, initrd, panic, before, unknown]
    assert tl.failures_for_session(failures, windows, 0) == [kernel, before]
    assert tl.failures_for_session(failures, windows, 1) == [initrd, panic, unknown]


# --- what the picture makes of it ---------------------------------------------------------


def one_client_events() -> list[dict[str, Any]]:
    return [
        ev(0.0, "mcast_session_start", group="239.255.1.1:3001", blocks=100, mode="mtftp"),
        ev(0.0, "mcast_join", client=f"{A}:2001", stream_block=0),
        ev(1.1, "done", client=f"{A}:2001"),
    ]


def group_stream(blocks: int, step: float = 0.01) -> list[tuple[float, bytes]]:
    data = [udp_frame(SERVER, GROUP[0], 40000, GROUP[1], tftp_data(b)) for b in range(1, blocks + 1)]
    return [(T0 + step * (i + 1), frame) for i, frame in enumerate(data)]


#: iPXE's retry timer: a quarter second, doubling (it re-sends its ACK of block 0 each time).
IPXE_RETRIES = (0.25, 0.75, 1.75, 3.75, 7.75)


def test_the_repair_window_starts_where_the_first_pass_ends(tmp_path: Path) -> None:
    line = build_timeline(write_events(tmp_path / "e.jsonl", train_events()), train_pcap(tmp_path / "p.pcap"))
    window = repair_window(line)
    assert window.start is not None and window.end is not None
    assert 1.7 < window.start < 2.0, "just before the group first sent block 200 (at 2.0 s)"
    assert window.end >= 3.0, "through B's second pass and the last done"
    assert "51 DATA after the first pass reached block 200" in window.why


def test_no_repair_window_without_repairs_or_when_they_are_the_whole_session(tmp_path: Path) -> None:
    events = write_events(tmp_path / "e.jsonl", one_client_events())
    line = build_timeline(events, write_pcap_return(tmp_path / "p.pcap", group_stream(100)))
    assert repair_window(line) == tl.RepairWindow(None, None, "no repairs after the first pass")
    # atftpd with a deaf tftm client: block 1 to the group at 0 s and again at 13 s, nothing more
    stall = [(T0, udp_frame(SERVER, GROUP[0], 40000, 1758, tftp_data(1))),
             (T0 + 13.0, udp_frame(SERVER, GROUP[0], 40000, 1758, tftp_data(1)))]  # fmt: skip
    window = repair_window(build_timeline(None, write_pcap_return(tmp_path / "s.pcap", stall)))
    assert window.start is None and "fill most of the session" in window.why


def test_notes_are_numbered_in_time_and_repeats_share_a_number(tmp_path: Path) -> None:
    raw = train_events()[:-1] + [ev(1.5 + 0.1 * i, "mcast_skip", client=f"{B}:2002", reason="no answer")
                                 for i in range(4)]  # fmt: skip
    notes = numbered_notes(build_timeline(write_events(tmp_path / "e.jsonl", raw)))
    assert [n.number for n in notes] == list(range(1, len(notes) + 1))
    assert all(a.times[0] <= b.times[0] for a, b in zip(notes, notes[1:], strict=False))
    (skips,) = [n for n in notes if n.kind == GONE]
    assert len(skips.times) == 4 and skips.text().startswith(f"skipped {B}: no answer (4x, 1.50-1.80 s")
    assert not any(n.kind == "session" for n in notes), "session lines are not notes"


def test_a_capture_alone_keeps_only_the_transfers_of_the_multicast_file(tmp_path: Path) -> None:
    """The reference atftpd's tftm cell: boot script and verifier by unicast, then the payload
    asked with the multicast option; the first two must not crowd the payload's picture."""
    script = struct.pack("!H", 1) + b"vm1.ipxe\0octet\0"
    verifier = struct.pack("!H", 1) + b"verifier.elf\0octet\0blksize\x001432\0"
    payload = struct.pack("!H", 1) + b"payload.bin\0octet\0multicast\0\0"
    frames = [(T0, udp_frame(A, SERVER, 3000, 69, script)),
              (T0 + 0.01, udp_frame(SERVER, A, 50000, 3000, tftp_data(1))),
              (T0 + 0.02, udp_frame(A, SERVER, 3000, 50000, tftp_ack(1))),
              (T0 + 0.1, udp_frame(A, SERVER, 3001, 69, verifier))]  # fmt: skip
    for b in range(1, 7):
        frames += [(T0 + 0.1 + 0.01 * b, udp_frame(SERVER, A, 50001, 3001, tftp_data(b))),
                   (T0 + 0.105 + 0.01 * b, udp_frame(A, SERVER, 3001, 50001, tftp_ack(b)))]  # fmt: skip
    frames += [(T0 + 0.5, udp_frame(A, SERVER, 3002, 69, payload)),
               (T0 + 0.51, udp_frame(SERVER, GROUP[0], 50002, 1758, tftp_data(1))),
               (T0 + 13.5, udp_frame(SERVER, GROUP[0], 50002, 1758, tftp_data(1)))]  # fmt: skip
    frames += [(T0 + 0.5 + t, udp_frame(A, SERVER, 3002, 50002, tftp_ack(0))) for t in (0.25, 0.75, 1.75)]
    line = build_timeline(None, write_pcap_return(tmp_path / "c.pcap", frames), names={A: f"e1000 {A}"})
    assert line.count(UNICAST_DATA) == 0, "the boot script's and the verifier's blocks are left out"
    assert line.count(ACK, A) == 3 and line.count(GROUP_DATA) == 2
    assert [j.label for j in line.of_kind(JOIN)] == [f"RRQ e1000 {A}"]
    assert line.origin == pytest.approx(T0 + 0.5), "t = 0 at the payload's request"
    assert line.title == "payload.bin: capture c.pcap"


def test_a_plain_request_for_the_multicast_file_is_told_apart(tmp_path: Path) -> None:
    """atftpd's MTFTP late joiners fall back to plain TFTP for the same file: the zero-filled story."""
    mtftp = struct.pack("!H", 1) + b"blob\0octet\0"
    frames = group_stream(100) + [(T0, udp_frame(A, SERVER, 2001, 1759, mtftp)),
                                  (T0 + 0.3, udp_frame(B, SERVER, 2002, 1759, mtftp)),
                                  (T0 + 1.2, udp_frame(B, SERVER, 2003, 69, mtftp))]  # fmt: skip
    line = build_timeline(None, write_pcap_return(tmp_path / "m.pcap", frames))
    assert [j.label for j in line.of_kind(JOIN)] == [f"RRQ {A}", f"RRQ {B}", f"plain-TFTP RRQ {B}"]


def test_a_later_sessions_stream_stays_out_of_the_earlier_ones_picture(tmp_path: Path) -> None:
    """The initrd's session starts while the kernel's late clients still get their unicast tails."""
    raw = [
        ev(0.0, "mcast_session_start", file="vmlinuz", group="239.255.1.1:3001", blocks=100, mode="mtftp"),
        ev(0.0, "mcast_join", file="vmlinuz", client=f"{A}:2", stream_block=0),
        ev(1.0, "mcast_session_start", file="initrd.gz", group="239.255.1.1:3001", blocks=50, mode="mtftp"),
        ev(1.5, "done", file="vmlinuz", client=f"{B}:5"),
        ev(1.5, "mcast_session_end", file="vmlinuz", group_ratio=1.0),
        ev(1.6, "mcast_session_end", file="initrd.gz", group_ratio=1.0),
    ]
    frames = group_stream(100, step=0.009)
    frames += [(T0 + 1.0 + 0.01 * b, udp_frame(SERVER, GROUP[0], 40001, GROUP[1], tftp_data(b)))
               for b in range(1, 51)]  # fmt: skip
    frames += [(T0 + 1.05 + 0.001 * b, udp_frame(SERVER, B, 40000, 5, tftp_data(b))) for b in range(1, 40)]
    events = write_events(tmp_path / "e.jsonl", raw)
    kernel = build_timeline(events, write_pcap_return(tmp_path / "p.pcap", frames), file="vmlinuz")
    assert kernel.count(GROUP_DATA) == 100, "the initrd's 50 group blocks are left out"
    assert kernel.count(UNICAST_DATA, B) == 39, "the kernel's unicast tail stays"


# --- the picture ----------------------------------------------------------------------------


def crowded_timeline(tmp_path: Path) -> tl.Timeline:
    """Four named clients joining within a second, the server's trouble, two failures, repairs."""
    d = "192.0.2.14"
    raw = train_events()[:-1] + [
        ev(0.9, "mcast_join", client=f"{d}:2004", late=True, stream_block=90),
        ev(1.5, "mcast_skip", client=f"{d}:2004", reason="no answer"),
        ev(2.9, "mcast_client_gone", client=f"{d}:2004", reason="no answer to 3 promotions"),
        ev(3.0, "mcast_session_end", group_ratio=1.25),
    ]
    names = {**NAMES, d: f"e1000e (a long name to crowd the margin) {d}"}
    failures = [
        Failure(d, T0 + 2.95, "FAIL at stage payload: Connection timed out (http://ipxe.org/4c126035)"),
        Failure(B, T0 + 2.61, "FAIL at stage verified: VERIFY FAIL expected=" + "ab" * 32),
    ]
    events = write_events(tmp_path / "e.jsonl", raw)
    return build_timeline(events, train_pcap(tmp_path / "p.pcap"), names=names, failures=failures)


def _texts(fig: Any) -> list[tuple[str, Any]]:
    """Every text the renderer draws, with its box: tick labels only for ticks inside the view."""
    from matplotlib.text import Text

    renderer = fig.canvas.get_renderer()
    ticks, drawn = set(), []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            for tick, loc in zip(axis.get_major_ticks(), axis.get_majorticklocs(), strict=False):
                for label in (tick.label1, tick.label2):
                    ticks.add(id(label))
                    if ax.axison and label.get_visible() and low - 1e-9 <= loc <= high + 1e-9:
                        drawn.append(label)
    drawn += [t for t in fig.findobj(Text) if id(t) not in ticks and t.get_visible()]
    return [(t.get_text(), t.get_window_extent(renderer)) for t in drawn if t.get_text().strip()]


def test_no_text_overlaps_another_or_the_legend(tmp_path: Path) -> None:
    fig = render_timeline(crowded_timeline(tmp_path))
    fig.canvas.draw()
    texts = _texts(fig)
    assert len(texts) > 40, "titles, tick labels, names, note numbers, notes and the legend's words"
    clashes = [(a, b) for i, (a, one) in enumerate(texts) for b, two in texts[i + 1 :] if one.overlaps(two)]
    assert clashes == []
    (legend,) = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    legend_box = legend.get_window_extent(fig.canvas.get_renderer())
    inside = {t.get_text() for t in legend.get_texts()}
    assert [t for t, box in texts if t not in inside and box.overlaps(legend_box)] == []
    page = fig.bbox
    assert all(page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 for _, box in texts)
    plots = [ax for ax in fig.axes if ax.get_label() in ("main", "strip", "zoom", "zstrip")]
    assert not any(legend_box.overlaps(ax.bbox) for ax in plots), "the legend is outside every plot"


def test_acks_are_drawn_apart_from_the_group_dots(tmp_path: Path) -> None:
    fig = render_timeline(crowded_timeline(tmp_path))
    where: dict[str, set[str]] = {}
    for ax in fig.axes:
        for artist in ax.collections:
            if artist.get_gid():
                where.setdefault(artist.get_gid(), set()).add(ax.get_label())
    assert where["acks"] == {"strip", "zstrip"}
    assert where["group_data"] == {"main", "zoom"}
    strip = next(ax for ax in fig.axes if ax.get_label() == "strip")
    assert [t.get_text() for t in strip.get_yticklabels()][:3] == [NAMES[A], NAMES[B], NAMES[C]]


def test_the_zoom_panel_is_there_only_with_repairs(tmp_path: Path) -> None:
    fig = render_timeline(crowded_timeline(tmp_path))
    zoom = next(ax for ax in fig.axes if ax.get_label() == "zoom")
    main = next(ax for ax in fig.axes if ax.get_label() == "main")
    assert zoom.get_xlim()[1] - zoom.get_xlim()[0] < 0.5 * (main.get_xlim()[1] - main.get_xlim()[0])
    single = render_timeline(build_timeline(write_events(tmp_path / "one.jsonl", one_client_events())))
    assert {ax.get_label() for ax in single.axes} == {"main", "strip", "column"}
    assert any("no zoom panel" in t for t, _ in _texts(single))


def test_a_failing_cells_picture_shows_the_failure(tmp_path: Path) -> None:
    """The atftpd tftm cell: 2 group blocks and ACKs of block 0, then iPXE gave up at 16 s."""
    (tmp_path / "wire").mkdir()
    payload = struct.pack("!H", 1) + b"payload.bin\0octet\0multicast\0\0"
    frames = [(T0, udp_frame(A, SERVER, 3002, 69, payload)),
              (T0 + 0.01, udp_frame(SERVER, GROUP[0], 50002, 1758, tftp_data(1))),
              (T0 + 13.0, udp_frame(SERVER, GROUP[0], 50002, 1758, tftp_data(1)))]  # fmt: skip
    frames += [(T0 + t, udp_frame(A, SERVER, 3002, 50002, tftp_ack(0))) for t in IPXE_RETRIES]
    write_pcap(tmp_path / "wire" / "br0.pcap", frames)
    reason = "FAIL at stage payload: failure pattern seen: 'LAB fetch-failed'; Connection timed out"
    failures = [Failure(A, T0 + 16.0, reason)]
    pictures, error = tl.draw_pictures(tmp_path, names={A: f"e1000 {A}"}, failures=failures)
    assert error is None and pictures == [tmp_path / "timeline.png"]
    line = build_timeline(None, tmp_path / "wire" / "br0.pcap", names={A: f"e1000 {A}"}, failures=failures)
    (failure,) = line.of_kind(FAILURE)
    assert failure.t == pytest.approx(16.0) and failure.label == f"e1000 {A}: {reason}"
    fig = render_timeline(line)
    main = next(ax for ax in fig.axes if ax.get_label() == "main")
    assert any(c.get_gid() == "note_failure" for c in main.collections), "the red X on the plot"
    words = [t for t, _ in _texts(fig)]
    assert any("Connection timed out" in t for t in words), "the reason in the notes"
    assert any(t.startswith("FAILED: 1 of the clients") for t in words)


def test_draw_pictures_never_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_events(tmp_path / "tftp.events.jsonl", train_events())

    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("no display")

    monkeypatch.setattr(tl, "draw_timeline", broken)
    assert tl.draw_pictures(tmp_path, names=NAMES) == ([], "timeline not drawn: RuntimeError: no display")


def test_cli_takes_names_and_failures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = write_events(tmp_path / "e.jsonl", train_events())
    out = tmp_path / "t.png"
    failure = f"{C}@{T0 + 2.5}:FAIL: bad"
    argv = [str(events), "--name", f"{C}=vmxnet3 {C}", "--failure", failure, "-o", str(out)]
    assert tl.main(argv) == 0 and out.is_file()
    assert "13 annotations" in capsys.readouterr().out, "12 from the events, the failure"
    assert tl.parse_failure(f"{C}@?:why: this") == Failure(C, None, "why: this")
    assert tl.main([str(events), "--failure", "no-time-here", "-o", str(out)]) == 2


# --- what the run layer passes --------------------------------------------------------------


def failed_boot(stage: str = "payload", at: float = 17.578) -> BootEvidence:
    evidence = BootEvidence(reason=f"FAIL@{stage}: stage '{stage}': failure pattern seen: 'LAB fetch-failed'")
    message = f"stage '{stage}': failure pattern seen: 'LAB fetch-failed'"
    evidence.stages += [
        StageRecord("rom", Status.PASS, 0.378, 0.378),
        StageRecord("dhcp", Status.PASS, 1.1, 1.46),
        StageRecord(stage, Status.FAIL, 16.0, at, message=message),
        StageRecord("verified", Status.MISS, 0.0, 0.0, message="not reached"),
    ]
    evidence.settle()
    return evidence


def test_a_boots_failure_is_timed_from_qemus_start() -> None:
    evidence = failed_boot()
    evidence.ipxe_error = IpxeError("Connection timed out (http://ipxe.org/4c126035)", "4c126035",
                                    "Connection timed out")  # fmt: skip
    failure = inputs.boot_failure(evidence, A, 1000.0, "tap silent for 9 s")
    stage = "FAIL at stage payload: failure pattern seen: 'LAB fetch-failed'"
    ipxe = "iPXE: Connection timed out (http://ipxe.org/4c126035)"
    assert failure == Failure(A, pytest.approx(1017.578), f"{stage}; {ipxe}; tap silent for 9 s")
    # a ROM without the message table prints the code alone: the decoded words follow it
    evidence.ipxe_error = IpxeError("http://ipxe.org/4c126035", "4c126035", "Connection timed out", False)
    decoded = "; iPXE: http://ipxe.org/4c126035 (Connection timed out)"
    assert inputs.boot_failure(evidence, A, 1000.0).reason.endswith(decoded)
    assert inputs.boot_failure(failed_boot(), A, None) == Failure(A, None, stage)
    passed = BootEvidence(stages=[StageRecord("rom", Status.PASS, 0.3, 0.3)])
    passed.settle()
    assert inputs.boot_failure(passed, A, 1000.0) is None
    names, failures = inputs.boot_inputs("e1000", A, failed_boot(), 1000.0)
    assert names == {A: f"e1000 {A}"} and len(failures) == 1


def test_a_trains_vms_are_named_and_their_failures_timed_from_their_folders(tmp_path: Path) -> None:
    vms = []
    for index, nic in enumerate(("e1000", "rtl8139", "vmxnet3")):
        folder = tmp_path / f"vm{index}-{nic}"
        folder.mkdir()
        (folder / "qemu.cmdline").write_text("qemu ...\n")
        os.utime(folder / "qemu.cmdline", (2000.0 + index, 2000.0 + index))
        evidence = failed_boot("verified", 30.0) if index else BootEvidence(status=Status.PASS)
        vms.append(TrainVm(nic, f"192.0.2.{100 + index}", folder, evidence, 0.5 * index))
    vms[1].diagnosis = "failed at stage verified"  # diagnose()'s words when nothing stands out
    vms[2].diagnosis = "sent nothing for the last 9 s of the group stream"
    plan = TrainPlan("mtftp", "pyatftpd", "debian", 1, nics=("e1000", "rtl8139", "vmxnet3"), loss_percent=5)
    train = TrainResult(plan, Status.FAIL, "", tmp_path, vms)
    assert inputs.train_names(train) == {
        "192.0.2.100": "e1000 192.0.2.100",
        "192.0.2.101": "rtl8139 192.0.2.101",
        "192.0.2.102": "vmxnet3 (lossy 5 %) 192.0.2.102",
    }
    one, two = inputs.train_failures(train)
    assert (one.client, one.at) == ("192.0.2.101", pytest.approx(2031.0))
    assert "; " not in one.reason, "the generic diagnosis repeats the stage: left out"
    assert two.at == pytest.approx(2032.0) and two.reason.endswith(f"; {vms[2].diagnosis}")
    assert inputs.train_failures(train, {"192.0.2.101": 3000.0})[0].at == pytest.approx(3030.0)


def test_redraw_finds_a_copied_runs_folders_and_a_boots_address(tmp_path: Path) -> None:
    moved = redraw.rebase(Path("/elsewhere/20261206T0/trains/t1/vm0-e1000"), tmp_path)
    assert moved == tmp_path / "trains" / "t1" / "vm0-e1000"
    assert redraw.rebase(Path("/elsewhere/run/boots/b1"), tmp_path) == tmp_path / "boots" / "b1"
    (tmp_path / "dhcp.log").write_text(
        "dnsmasq-dhcp[8]: 1 DHCPOFFER(br0) 192.0.2.101 52:54:00:1a:00:01\n"
        "dnsmasq-dhcp[8]: 1 DHCPACK(br0) 192.0.2.101 52:54:00:1a:00:01 \n"
    )
    assert redraw.boot_address(tmp_path) == "192.0.2.101"
    assert redraw.boot_address(tmp_path / "nowhere") is None


def test_labels_at_one_spot_are_moved_apart_and_stay_in_their_panel() -> None:
    from lab.report import timeline_draw as draw

    fig, renderer = draw._agg((6.0, 4.0), 110)
    ax = fig.add_axes((0.1, 0.1, 0.8, 0.8))
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 10)
    placer = draw._Placer(renderer)
    assert all(placer.place(ax, (9.9, 9.9), f"{n},{n + 1}", "black") for n in range(0, 12, 2))
    boxes = placer.labels
    assert len(boxes) == 6
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    inside = ax.bbox
    assert all(inside.x0 <= b.x0 and b.x1 <= inside.x1 and b.y1 <= inside.y1 for b in boxes), "in the panel"
    assert draw._compact([3, 4, 5, 9, 11, 12]) == "3-5,9,11,12"


def test_one_vms_share_of_a_trains_events_is_still_its_sessions_picture(tmp_path: Path) -> None:
    """A train VM's folder holds its own events: its join, but not the session's start."""
    raw = [
        ev(0.0, "done", client=f"{C}:1", file="vm3.ipxe", blocks=1),
        ev(0.1, "done", client=f"{C}:2", file="verifier.elf", blocks=6),
        ev(0.2, "mcast_join", client=f"{C}:3", late=True, stream_block=430),
        ev(150.0, "done", client=f"{C}:3"),
        ev(150.0, "mcast_session_end", group_ratio=1.1),
    ]
    line = build_timeline(write_events(tmp_path / "e.jsonl", raw), names=NAMES)
    dones = [d.t for d in line.of_kind(DONE)]
    assert dones == [pytest.approx(149.8)], "the boot script's and the verifier's are left out"
    assert line.of_kind(JOIN)[0].block == 430
    main = next(ax for ax in render_timeline(line).axes if ax.get_label() == "main")
    assert main.get_ylim()[1] > 430, "the join's block is on the plot"


def test_the_slow_listener_events_are_told_on_the_picture() -> None:
    """pyatftpd's patience with a guest that was not scheduled shows as what it is: a quiet
    listener, the session lingering for it, and the client coming back."""
    from lab.report.timeline_model import annotations_from_events
    from netboot.events import ServerEvent

    client = "192.0.2.102:2001"
    events = [
        ServerEvent({"ts": 1.0, "event": "mcast_client_quiet", "client": client, "reason": "no ACK for 2 s"}),
        ServerEvent({"ts": 2.0, "event": "mcast_linger", "seconds": 16, "clients": 1}),
        ServerEvent({"ts": 3.0, "event": "mcast_client_back", "client": client, "first_gap": 4100}),
        ServerEvent({"ts": 4.0, "event": "mcast_full", "client": "192.0.2.103:2001", "members": 512}),
    ]
    labels = [a.label for a in annotations_from_events(events, 0.0, {"192.0.2.102": "pcnet 192.0.2.102"})]
    assert labels[0] == "quiet pcnet 192.0.2.102: no ACK for 2 s"
    assert labels[1] == "lingers 16 s for 1"
    assert labels[2] == "back pcnet 192.0.2.102 from 4100"
    assert labels[3].startswith("mcast_full 192.0.2.103")
