"""pyatftpd RFC 2090 sessions with iPXE-faithful clients, in a namespace the test makes.

Each test: a fresh namespace with a veth segment (lab0 192.0.2.1 carries the 224/4
route; group traffic loops back to the clients), pyatftpd on port 69, and one
scenario process with 1, 3 or 20 simulated iPXE clients in one event loop.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from lab.infra.namespace import Namespace
from tests.mcast_lab import Served, make_file, run_scenario, segment, session_totals, wait_for_event

pytestmark = pytest.mark.netns

SIZE = 1 << 20
SILENCE_LIMIT = 15.75

PATTERNS: dict[str, list[str]] = {
    "together": [],
    "staggered": ["--stagger", "0.5"],
    "late_joiner": ["--late-at", "0.5"],
    "master_killed": ["--kill-master-at", "0.5"],
    "duplicate_rrq": ["--duplicate-rrq"],
    "loss5": ["--loss", "0.05"],
    "deaf_mix": [],
}
CASES = [
    (count, pattern)
    for count in (1, 3, 20)
    for pattern in PATTERNS
    if not (count == 1 and pattern in ("late_joiner", "master_killed", "staggered"))
]


def deaf_count(count: int) -> int:
    return 1 if count == 1 else count // 3


@pytest.fixture
def veth_lab(netns: Namespace, tmp_path: Path) -> tuple[Namespace, Path]:
    segment(netns)
    return netns, tmp_path


@pytest.mark.parametrize(("count", "pattern"), CASES, ids=[f"{c}-{p}" for c, p in CASES])
def test_every_ipxe_client_gets_the_exact_bytes(
    veth_lab: tuple[Namespace, Path], count: int, pattern: str
) -> None:
    ns, work = veth_lab
    root = work / "root"
    data = make_file(root, "boot.img", SIZE)
    want = hashlib.sha256(data).hexdigest()
    server = Served(ns, "pyatftpd", root, [], work)
    try:
        args = [*PATTERNS[pattern], "--count", str(count), "--seed", str(count)]
        deaf = deaf_count(count) if pattern == "deaf_mix" else 0
        if deaf:
            args += ["--deaf", str(deaf)]
        result = run_scenario(ns, "tftm://192.0.2.1/boot.img", *args)
        events = wait_for_event(server, "mcast_session_end")
    finally:
        server.stop()
    assert not result["timed_out"], result
    clients = result["clients"]
    assert len(clients) == count
    survivors = clients[1:] if pattern == "master_killed" else clients
    for client in survivors:
        assert client["ok"], client
        assert client["sha256"] == want, client
        assert client["longest_silence"] < SILENCE_LIMIT, client
    joins = [e for e in events if e["event"] == "mcast_join"]
    assert len(joins) == count, "one join per client, retransmitted RRQs included"
    if pattern == "duplicate_rrq":
        assert any(e["event"] == "mcast_rrq_retransmit" for e in events)
        first = next(e for e in events if e["event"] == "mcast_master")
        assert first["reason"] == "first"
        # A retransmitted RRQ never demotes the master.  Until the stream's leader has the
        # whole file, the lead changes only when it rotates (mcast_pacing.py, "turn") and the
        # first master is never skipped.  After that the silent listeners are probed, and one
        # that answers in time leads for its last ACK ("probe"): that is not a demotion.
        stream_done = next(i for i, e in enumerate(events) if e["event"] == "done")
        while_streaming = events[:stream_done]
        assert [e for e in while_streaming if e["event"] == "mcast_master"
                and e["client"] != first["client"] and e["reason"] != "turn"] == []
        assert not [e for e in while_streaming if e["event"] in ("mcast_skip", "mcast_client_gone")
                    and e.get("client") == first["client"]]
        assert [e for e in events if e["event"] == "mcast_master" and e["client"] == first["client"]
                and e["reason"] != "turn"] == [first], "made master again by its RRQ"
    if pattern == "deaf_mix":
        deaf_clients = [c for c in clients if c["deaf"]]
        assert len(deaf_clients) == deaf
        for client in deaf_clients:
            assert client["bytes_multicast"] == 0 and client["bytes_unicast"] >= SIZE
        evidence = {
            int(e["client"].split(":")[1]): e for e in events if e["event"] == "multicast_not_received"
        }
        for client in deaf_clients:
            (port,) = client["ports"]
            assert port in evidence, "each deaf client is named by a multicast_not_received event"
            assert evidence[port]["blocks_repaired_in_a_row"] >= 3
    if pattern == "master_killed":
        assert any(e["event"] in ("mcast_skip", "mcast_client_gone") for e in events)
    if pattern == "late_joiner":
        late = clients[-1]
        assert late["bytes_multicast"] + late["bytes_unicast"] < 2 * SIZE
    totals = session_totals(events)
    assert totals["sessions"] >= 1
    if pattern in ("together", "duplicate_rrq") and count > 1:
        # the counted figure: one pass on the group serves everyone
        assert totals["group_bytes"] <= 1.05 * SIZE, totals


def test_pool_exhausted_serves_unicast_without_the_multicast_option(veth_lab: tuple[Namespace, Path]) -> None:
    """With one group:port, a second file's session cannot start: it is served by unicast, not silence."""
    ns, work = veth_lab
    root = work / "root"
    make_file(root, "a.img", 300_000)
    data_b = make_file(root, "b.img", 300_000, seed=8)
    server = Served(ns, "pyatftpd", root, ["--mcast-addr", "239.1.1.1", "--mcast-port", "1758"], work)
    try:
        # a.img's master vanishes half-way: its session waits 2 s, then retries it, holding the pool
        first = run_scenario(ns, "tftm://192.0.2.1/a.img", "--count", "1", "--kill-master-at", "0.5")
        second = run_scenario(ns, "tftm://192.0.2.1/b.img", "--count", "1")
        events = wait_for_event(server, "mcast_session_end")
    finally:
        server.stop()
    assert first["clients"][0]["error"] == "killed by the test"
    (b,) = second["clients"]
    assert b["sha256"] == hashlib.sha256(data_b).hexdigest()
    assert b["bytes_multicast"] == 0 and b["bytes_unicast"] == len(data_b)
    declined = [e for e in events if e["event"] == "mcast_declined"]
    assert declined and "in use" in declined[0]["reason"]
    skipped = [e["event"] for e in events if e.get("file") == "a.img"]
    assert "mcast_skip" in skipped and "mcast_client_gone" in skipped, "vanished master: retried, given up"


def test_one_session_whichever_worker_reads_the_requests(veth_lab: tuple[Namespace, Path]) -> None:
    """With --workers the listening socket is shared; requests must still meet in one session."""
    ns, work = veth_lab
    root = work / "root"
    data = make_file(root, "boot.img", SIZE)
    server = Served(ns, "pyatftpd", root, ["--workers", "3"], work)
    try:
        result = run_scenario(ns, "tftm://192.0.2.1/boot.img", "--count", "6")
        events = wait_for_event(server, "mcast_session_end")
    finally:
        server.stop()
    assert all(c["sha256"] == hashlib.sha256(data).hexdigest() for c in result["clients"])
    assert sum(1 for e in events if e["event"] == "mcast_session_start") == 1
    assert sum(1 for e in events if e["event"] == "mcast_join") == 6
    assert session_totals(events)["group_bytes"] <= 1.05 * SIZE


def test_netboot_fetch_cli_prints_sha256_bytes_by_path_and_seconds(veth_lab: tuple[Namespace, Path]) -> None:
    ns, work = veth_lab
    root = work / "root"
    data = make_file(root, "boot.img", 300_000)
    want = hashlib.sha256(data).hexdigest()
    server = Served(ns, "pyatftpd", root, [], work)
    try:
        text = ns.run([sys.executable, "-m", "netboot.clients.cli", "-n", "2", "tftm://192.0.2.1/boot.img"],
                      timeout=60)
        as_json = ns.run([sys.executable, "-m", "netboot.clients.cli", "--json", "--deaf", "1",
                          "tftm://192.0.2.1/boot.img"], timeout=60)
        missing = ns.run([sys.executable, "-m", "netboot.clients.cli", "tftm://192.0.2.1/nope.img"],
                         check=False, timeout=60)
    finally:
        server.stop()
    lines = text.stdout.strip().splitlines()
    assert len(lines) == 2
    for line in lines:
        assert want in line and "multicast=" in line and "unicast=" in line and "seconds=" in line
    (client,) = json.loads(as_json.stdout)["clients"]
    assert client["sha256"] == want
    assert client["bytes_unicast"] == len(data) and client["bytes_multicast"] == 0, "deaf: all by unicast"
    assert missing.returncode == 1 and "FAILED" in missing.stdout and "ERROR 1" in missing.stdout


def test_held_session_shares_one_pass_between_clients_seconds_apart(veth_lab: tuple[Namespace, Path]) -> None:
    """``--mcast-min-clients 3``: three real-socket clients 2 s apart (each done in well under 2 s
    alone) share one pass; the hold ends when the third asks."""
    ns, work = veth_lab
    root = work / "root"
    data = make_file(root, "boot.img", SIZE)
    server = Served(ns, "pyatftpd", root, ["--mcast-min-clients", "3", "--mcast-max-wait", "20"], work)
    try:
        result = run_scenario(ns, "tftm://192.0.2.1/boot.img", "--count", "3", "--stagger", "2")
        events = wait_for_event(server, "mcast_session_end")
    finally:
        server.stop()
    assert all(c["sha256"] == hashlib.sha256(data).hexdigest() for c in result["clients"])
    (end,) = [e for e in events if e["event"] == "gather_end"]
    assert end["reason"] == "min_clients" and end["clients"] == 3 and 3.5 <= end["seconds"] <= 6
    assert sum(1 for e in events if e["event"] == "mcast_session_start") == 1
    assert session_totals(events)["group_bytes"] <= 1.05 * SIZE
