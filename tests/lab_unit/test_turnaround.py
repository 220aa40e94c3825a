"""lab.wire.turnaround: a client's time from DATA n on its tap to its ACK n, per block range."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from lab.wire.turnaround import by_range, main, turnarounds
from tests.lab_unit.udp_frames import udp_frame, write_pcap

SERVER, CLIENT, GROUP = "192.0.2.1", "192.0.2.101", "239.255.1.1"


def _growing(tmp_path: Path) -> Path:
    """Blocks 1-20 by the group, each ACKed after 1 ms + 0.1 ms per block (a buffer that grows)."""
    frames, now = [], 1.0
    for block in range(1, 21):
        frames.append((now, udp_frame(SERVER, GROUP, struct.pack("!HH", 3, block) + b"x" * 512)))
        now += 0.001 + 0.0001 * block
        frames.append((now, udp_frame(CLIENT, SERVER, struct.pack("!HH", 4, block))))
        frames.append((now + 0.0001, udp_frame(CLIENT, SERVER, struct.pack("!HH", 4, block))))  # a repeat
        now += 0.0002
    return write_pcap(tmp_path / "tap.pcap", frames)


def test_the_turnaround_of_each_block_and_its_growth_by_range(tmp_path: Path) -> None:
    times = turnarounds(_growing(tmp_path), CLIENT)
    assert times[1] == pytest.approx(0.0011) and times[20] == pytest.approx(0.003)
    ranges = by_range(times, 10)
    assert [(start, count) for start, count, _ in ranges] == [(0, 9), (10, 10), (20, 1)]
    assert ranges[0][2] < ranges[1][2] < ranges[2][2]


def test_the_command_prints_one_line_per_range_and_says_when_it_found_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pcap = _growing(tmp_path)
    assert main([str(pcap), CLIENT, "--width", "10"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1 + 3
    assert main([str(pcap), "192.0.2.199"]) == 1
    assert "no block of 192.0.2.199" in capsys.readouterr().err


def test_counting_stops_where_the_block_number_wraps(tmp_path: Path) -> None:
    frames = []
    for i, block in enumerate([65534, 65535, 0, 1]):
        frames.append((1.0 + i, udp_frame(SERVER, CLIENT, struct.pack("!HH", 3, block) + b"x")))
        frames.append((1.5 + i, udp_frame(CLIENT, SERVER, struct.pack("!HH", 4, block))))
    times = turnarounds(write_pcap(tmp_path / "wrap.pcap", frames), CLIENT)
    assert sorted(times) == [65534, 65535]  # block 1 after the wrap is not taken for the first block 1
