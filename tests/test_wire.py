"""Capture in a namespace, then count: the wire evidence must match traffic we made ourselves."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.infra.capture import Capture, CaptureError
from lab.infra.namespace import Namespace, namespace_support_problem
from lab.infra.network import make_veth_segment
from lab.model.jsonable import to_json
from lab.run.evidence import count_capture
from lab.wire.counts import WireContext, parse_pcap, slam_header, write_evidence
from netboot.slam.ints import decode_int as slam_int
from tests import netgen

REPO = Path(__file__).resolve().parent.parent
#: Frames the scenario sends that carry bulk data and so are cut by the snap rule:
#: 6 group + 3 unicast RFC 2090 DATA, 3 MTFTP DATA, SLAM block 0 (block 1 is 62 bytes, kept whole),
#: and the first fragment of the fragmented DATA (1514 bytes; the second, 562 bytes, is kept whole).
CUT_FRAMES = 14


def run_module(ns: Namespace, *args: str) -> str:
    return ns.run([sys.executable, "-m", *args], cwd=str(REPO), timeout=60).stdout


@pytest.fixture(scope="module")
def scenario_pcaps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One capture of the scenario on both veth ends, shared by the tests that only read it."""
    problem = namespace_support_problem()
    if problem:
        pytest.skip(f"no lab namespace: {problem}")
    with Namespace() as ns:
        make_veth_segment(ns)
        with Capture(ns, ["lab0", "lab1"], tmp_path_factory.mktemp("pcap")) as cap:
            sent = run_module(ns, "tests.netgen", "frames", "lab0", "--join-iface", "lab1")
        result = cap.stop()
    assert int(sent.split()[0]) == len(netgen.scenario())
    assert result.method in ("tcpdump", "af_packet")
    if result.method == "af_packet":
        assert result.fallback_reason, "the fallback must say why tcpdump was not used"
        assert result.stats["lab1"]["truncated"] == CUT_FRAMES
        assert result.stats["lab1"]["kernel_drops"] == 0
        assert result.reader == "tpacket_v3"
    return result.files


@pytest.mark.netns
def test_wire_counts_match_the_scenario(scenario_pcaps: dict[str, Path]) -> None:
    summary = parse_pcap(scenario_pcaps["lab1"], WireContext(server_ips=(netgen.SERVER_IP,)))

    a = summary.clients[netgen.CLIENT_A[0]]
    assert a.mac == netgen.CLIENT_A[1]
    assert (a.rrq, a.rrq_files, a.oack, a.acks) == (2, ["boot.img"], 1, 8)
    assert a.unicast_data_frames == 3
    assert a.unicast_data_bytes == 2 * netgen.BLKSIZE + netgen.LAST_BLOCK_BYTES
    assert (a.unicast_data_blocks, a.unicast_data_retransmits) == (2, 1)
    assert (a.igmp_reports, a.igmp_versions, a.igmp_groups) == (1, [2], [netgen.TFTM_GROUP[0]])
    assert a.dhcp == {"discover": 1, "offer": 1}
    assert (a.slam_nacks, a.errors_to_client, a.errors_from_client, a.other_udp) == (0, 0, 0, 0)

    b = summary.clients[netgen.CLIENT_B[0]]
    assert (b.rrq, b.rrq_files, b.acks, b.unicast_data_frames) == (1, ["blob"], 0, 0)
    assert (b.errors_from_client, b.errors_to_client) == (1, 1)
    assert (b.slam_nacks, b.slam_pings, b.slam_disconnects) == (1, 1, 1)
    assert (b.igmp_reports, b.igmp_versions) == (1, [3])
    assert b.igmp_groups == [netgen.MTFTP_GROUP[0], "239.255.1.2"]

    tftm = summary.groups["239.255.0.1:1758"]
    assert (tftm.protocol, tftm.frames, tftm.data_frames) == ("tftp", 6, 6)
    assert (tftm.data_bytes, tftm.distinct_blocks, tftm.repeated_frames) == (6 * netgen.BLKSIZE, 5, 1)
    assert tftm.sources == ["192.0.2.1:40000"]
    mtftp = summary.groups["239.255.1.1:3001"]
    assert (mtftp.protocol, mtftp.data_frames) == ("tftp", 3)
    assert (mtftp.data_bytes, mtftp.distinct_blocks) == (1536, 3)
    slam = summary.groups["239.255.1.1:10000"]
    assert (slam.protocol, slam.data_frames, slam.data_bytes, slam.distinct_blocks) == ("slam", 2, 1461, 2)
    assert (slam.slam_total_bytes, slam.slam_block_size) == (1461, 1451)
    fragmented = summary.groups[f"{netgen.FRAGMENT_GROUP[0]}:{netgen.FRAGMENT_GROUP[1]}"]
    assert (fragmented.frames, fragmented.data_bytes) == (1, netgen.FRAGMENT_DATA_BYTES)
    assert summary.ip_fragments == 1
    assert summary.group_bytes() == 6 * netgen.BLKSIZE + 1536 + 1461 + netgen.FRAGMENT_DATA_BYTES
    # The tftm "payload" is 7 blocks; 5 distinct + 1 repeat went to the group.
    payload = 6 * netgen.BLKSIZE + netgen.LAST_BLOCK_BYTES
    assert summary.group_ratio(payload, "239.255.0.1:1758") == pytest.approx(6 * netgen.BLKSIZE / payload)

    assert summary.igmp_queries == {netgen.SERVER_IP: 1}
    assert summary.truncated_frames == CUT_FRAMES
    assert summary.unclassified == 0

    # The real kernel membership on lab1 (forced to IGMPv2) is seen as such.
    kernel = summary.clients["192.0.2.2"]
    assert kernel.igmp_reports >= 1
    assert kernel.igmp_versions == [2]
    assert netgen.KERNEL_JOIN_GROUP in kernel.igmp_groups


@pytest.mark.netns
def test_both_ends_of_the_veth_count_the_same(scenario_pcaps: dict[str, Path]) -> None:
    """What left lab0 is what reached lab1: the counts do not depend on the capture side."""

    def counts(path: Path) -> dict[str, object]:
        data = to_json(parse_pcap(path))
        for section in ("clients", "groups"):
            for row in data[section].values():
                row.pop("first_ts")
                row.pop("last_ts")
        return {k: data[k] for k in ("clients", "groups", "igmp_queries", "dhcp_by_mac", "group_bytes")}

    assert counts(scenario_pcaps["lab0"]) == counts(scenario_pcaps["lab1"])


@pytest.mark.netns
def test_evidence_files_are_written_beside_the_pcap(scenario_pcaps: dict[str, Path], tmp_path: Path) -> None:
    pcap = tmp_path / "br0.pcap"
    pcap.write_bytes(scenario_pcaps["lab1"].read_bytes())
    summary = write_evidence(pcap)
    assert json.loads((tmp_path / "br0.wire.json").read_text()) == json.loads(json.dumps(to_json(summary)))
    assert "239.255.1.1:10000" in (tmp_path / "br0.wire.txt").read_text()


@pytest.mark.netns
def test_cli_prints_table_and_json(scenario_pcaps: dict[str, Path]) -> None:
    pcap = str(scenario_pcaps["lab1"])
    table = subprocess.run([sys.executable, "-m", "lab.wire", pcap], capture_output=True, text=True, cwd=REPO)
    assert table.returncode == 0, table.stderr
    assert "192.0.2.10" in table.stdout and "239.255.0.1:1758" in table.stdout
    as_json = subprocess.run(
        [sys.executable, "-m", "lab.wire", "--json", pcap], capture_output=True, text=True, cwd=REPO
    )
    assert json.loads(as_json.stdout)["clients"]["192.0.2.10"]["acks"] == 8


def test_cli_rejects_a_file_that_is_not_a_pcap(tmp_path: Path) -> None:
    bogus = tmp_path / "x.pcap"
    bogus.write_bytes(b"not a pcap at all")
    argv = [sys.executable, "-m", "lab.wire", str(bogus)]
    result = subprocess.run(argv, capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2
    assert "cannot read" in result.stderr


@pytest.mark.netns
def test_full_capture_keeps_whole_frames(netns: Namespace, tmp_path: Path) -> None:
    make_veth_segment(netns)
    with Capture(netns, "lab1", tmp_path, full=True) as cap:
        run_module(netns, "tests.netgen", "frames", "lab0")
    assert parse_pcap(cap.stop().files["lab1"]).truncated_frames == 0


@pytest.mark.netns
def test_capture_on_a_missing_interface_says_so(netns: Namespace, tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="nosuch0"):
        Capture(netns, "nosuch0", tmp_path, method="af_packet").start()


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(0, "20"), (31, "3f"), (32, "4020"), (1451, "45ab"), (8192, "602000"), (100000, "6186a0"),
     (2**29, "a020000000"), (1700000000, "a06553f100")],
)
def test_slam_int_decodes_the_worked_examples(value: int, encoded: str) -> None:
    raw = bytes.fromhex(encoded) + b"\xff"
    assert slam_int(raw, 0) == (value, len(encoded) // 2)


def test_slam_header_rejects_the_nul_terminator() -> None:
    assert slam_header(netgen.SLAM_HEADER + b"\x21", 4) == ([1700000000, 1461, 1451, 1], 10)
    with pytest.raises(ValueError):
        slam_header(b"\x00", 1)


@pytest.mark.netns
def test_recvmsg_reader_counts_like_the_ring(netns: Namespace, tmp_path: Path) -> None:
    """The fallback reader (no TPACKET_V3 ring) keeps original lengths through the snap filter."""
    make_veth_segment(netns)
    with Capture(netns, "lab1", tmp_path, ring=False, method="af_packet") as cap:
        run_module(netns, "tests.netgen", "frames", "lab0")
    result = cap.stop()
    assert result.reader == "recvmsg"
    assert result.stats["lab1"]["truncated"] == CUT_FRAMES
    summary = parse_pcap(result.files["lab1"])
    assert summary.truncated_frames == CUT_FRAMES
    assert summary.groups["239.255.0.1:1758"].data_bytes == 6 * netgen.BLKSIZE
    unicast = summary.clients[netgen.CLIENT_A[0]].unicast_data_bytes
    assert unicast == 2 * netgen.BLKSIZE + netgen.LAST_BLOCK_BYTES


@pytest.mark.netns
def test_capture_survives_its_interface_going_away(netns: Namespace, tmp_path: Path) -> None:
    """A VM's tap vanishes when QEMU exits: the capture keeps what it had and says so."""
    make_veth_segment(netns)
    with Capture(netns, ["lab0", "lab1"], tmp_path) as cap:
        run_module(netns, "tests.netgen", "frames", "lab0")
        netns.run(["ip", "link", "del", "lab1"])  # takes lab0 with it
        time.sleep(0.5)
    result = cap.stop()
    assert result.stats["lab1"]["gone"]
    summary = count_capture(result, context=WireContext())["lab1"]
    assert summary.clients[netgen.CLIENT_A[0]].acks == 8
    assert (tmp_path / "lab1.wire.json").exists() and (tmp_path / "lab1.wire.txt").exists()


def test_the_lab_context_counts_the_full_boots_initrd_group_as_slam() -> None:
    """The full boot serves its initrd on SLAM port 10001; without it in the context its
    group bytes counted as "other", and a full boot reported 0.920 x for 1.080 x."""
    from lab.run.evidence import WIRE_CONTEXT
    from lab.wire.counts import parse_frames
    from lab.wire.frames import Frame

    data = netgen.SLAM_HEADER + b"\x20" + b"S" * 1451
    packet = netgen.udp(netgen.SERVER_IP, 10001, "239.255.1.1", 10001, data)
    frame = Frame(0.0, netgen.SERVER_MAC, 0x0800, packet)

    lab = parse_frames([frame], WIRE_CONTEXT).groups["239.255.1.1:10001"]
    assert (lab.protocol, lab.data_bytes) == ("slam", 1451)
    plain = parse_frames([frame], WireContext()).groups["239.255.1.1:10001"]
    assert (plain.protocol, plain.data_bytes) == ("other", 0)
