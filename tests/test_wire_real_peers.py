"""The counts on frames from the real reference peers: Debian's atftpd, curl and atftp.

The raw-frame scenario (test_wire.py) fixes the exact formats. This test checks that
the classification also holds on traffic that real implementations put on the wire:
ephemeral server ports, OACKs, ACK 0, and atftpd's RFC 2090 group DATA.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.infra.capture import Capture
from lab.infra.namespace import Namespace, kill_group
from lab.infra.network import make_veth_segment
from lab.run.evidence import count_capture
from lab.wire.counts import WireContext

SIZE = 300_000
SERVER, CLIENT = "192.0.2.1", "192.0.2.2"


@pytest.fixture
def atftpd(netns: Namespace, tmp_path: Path) -> Iterator[Path]:
    missing = [tool for tool in ("atftpd", "atftp", "curl") if shutil.which(tool) is None]
    if missing:
        fix = "python -m lab.infra.provision (apt-get install -y atftpd atftp curl)"
        pytest.skip(f"missing {', '.join(missing)}: run {fix}")
    root = tmp_path / "root"
    root.mkdir()
    (root / "f.bin").write_bytes(os.urandom(SIZE))
    make_veth_segment(netns)
    server = netns.popen(
        ["atftpd", "--daemon", "--no-fork", "--user", "root.root", "--bind-address", SERVER,
         "--mcast-addr", "239.255.0.0-255", "--mcast-port", "1758", "--mcast-ttl", "1",
         "--logfile", str(tmp_path / "atftpd.log"), str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while ":69 " not in netns.run(["ss", "-uln"]).stdout:
        assert server.poll() is None, "atftpd exited at start"
        assert time.monotonic() < deadline, "atftpd did not bind port 69 within 10 s"
        time.sleep(0.05)
    try:
        yield root / "f.bin"
    finally:
        kill_group(server)


@pytest.mark.netns
def test_counts_on_real_unicast_and_rfc2090_transfers(netns: Namespace, atftpd: Path, tmp_path: Path) -> None:
    got_unicast, got_multicast = tmp_path / "unicast.bin", tmp_path / "multicast.bin"
    with Capture(netns, ["lo", "lab1"], tmp_path / "pcap") as cap:
        # curl from its own address: unicast between two local addresses goes through lo.
        netns.run(["curl", "-sS", "--interface", CLIENT, f"tftp://{SERVER}/f.bin", "-o", str(got_unicast)],
                  timeout=60)
        # atftp joins the group on lab0; the group DATA crosses the veth to lab1.
        netns.run(["atftp", "--get", "-r", "f.bin", "-l", str(got_multicast), "--option", "multicast",
                   "--option", "blksize 1428", SERVER], timeout=60)
    assert got_unicast.read_bytes() == atftpd.read_bytes() == got_multicast.read_bytes()
    summaries = count_capture(cap.stop(), context=WireContext(server_ips=(SERVER,)))

    blocks_512 = SIZE // 512 + 1
    curl = summaries["lo"].clients[CLIENT]
    assert (curl.rrq, curl.rrq_files) == (1, ["f.bin"])
    assert curl.unicast_data_blocks == blocks_512
    assert SIZE <= curl.unicast_data_bytes <= SIZE + 512 * curl.unicast_data_retransmits
    assert curl.acks >= blocks_512
    assert curl.errors_to_client == curl.errors_from_client == 0

    group = summaries["lab1"].groups["239.255.0.0:1758"]
    assert group.protocol == "tftp"
    assert group.distinct_blocks == SIZE // 1428 + 1
    assert SIZE <= group.data_bytes <= SIZE + 1428 * group.repeated_frames
    assert summaries["lab1"].group_ratio(SIZE, "239.255.0.0:1758") >= 1.0
