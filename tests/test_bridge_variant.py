"""The bridge variants: what a port without IGMP reports (like iPXE) receives of the group.

The bridge ``br0`` has one port ``vp0``, a veth whose peer ``vp1`` stands in for a VM's
NIC; a capture on ``vp1`` is what such a VM would see.  Three groups are sent from the
bridge's own address: one nobody joined, one only the host joined, and one joined by a
real IGMP report coming in through the port (the positive control).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from lab.infra.capture import Capture
from lab.infra.namespace import Namespace
from lab.infra.network import TopologyMismatch, confirm_topology, make_bridge, read_bridge_state, set_topology
from lab.model.network import Topology
from lab.wire.counts import parse_pcap

REPO = Path(__file__).resolve().parent.parent
NOBODY, HOST_ONLY, PORT_MEMBER = "239.255.3.1", "239.255.3.2", "239.255.3.3"
SENT = 20
PORT_PEER_IP = "192.0.2.50"

#: topology -> frames per group seen on the port: with snooping and an active querier only
#: the group that a report came in for reaches the port; otherwise the bridge floods.
EXPECTED = {
    "flood": {NOBODY: SENT, HOST_ONLY: SENT, PORT_MEMBER: SENT},
    "snoop": {NOBODY: SENT, HOST_ONLY: SENT, PORT_MEMBER: SENT},
    "snoop+querier": {NOBODY: 0, HOST_ONLY: 0, PORT_MEMBER: SENT},
}


def bridge_with_one_port(ns: Namespace) -> None:
    make_bridge(ns)
    # The bridge counts its own querier as present only after one query response
    # interval (10 s by default); 1 s keeps the test short.
    ns.run(["ip", "link", "set", "br0", "type", "bridge", "mcast_query_response_interval", "100"])
    ns.run(["ip", "link", "add", "vp0", "type", "veth", "peer", "name", "vp1"])
    ns.run(["ip", "link", "set", "vp0", "master", "br0"])
    ns.run(["ip", "link", "set", "vp0", "up"])
    # A /32 gives the port member's reports a source of their own without adding a route.
    ns.run(["ip", "addr", "add", f"{PORT_PEER_IP}/32", "dev", "vp1"])
    ns.run(["ip", "link", "set", "vp1", "up"])


@pytest.mark.netns
@pytest.mark.parametrize("variant", list(EXPECTED))
def test_port_without_reports_is_cut_off_only_with_snooping_and_querier(
    netns: Namespace, tmp_path: Path, variant: str
) -> None:
    bridge_with_one_port(netns)
    state = set_topology(netns, Topology.parse(variant))
    assert state.topology.column == variant
    if state.mcast_querier:
        time.sleep(2.0)  # past the 1 s querier delay, with margin for a loaded machine
    with Capture(netns, "vp1", tmp_path) as cap:
        argv = [sys.executable, "-m", "tests.netgen", "groups", "--send-iface", "br0", "-n", str(SENT),
                "--host-join", HOST_ONLY, "--port-join", f"{PORT_MEMBER}@vp1"]
        for group in (NOBODY, HOST_ONLY, PORT_MEMBER):
            argv += ["--send", group]
        netns.run(argv, cwd=str(REPO), timeout=60)
    summary = parse_pcap(cap.stop().files["vp1"])
    seen = {}
    for group in (NOBODY, HOST_ONLY, PORT_MEMBER):
        counts = summary.groups.get(f"{group}:3001")
        seen[group] = counts.frames if counts else 0
    assert seen == EXPECTED[variant]
    # The positive control really sent its report through the port, and only for its group.
    member = summary.clients[PORT_PEER_IP]
    assert (member.igmp_groups, member.igmp_versions) == ([PORT_MEMBER], [2])


@pytest.mark.netns
def test_variant_is_read_back_from_the_kernel(netns: Namespace) -> None:
    make_bridge(netns, snooping=True, querier=True)
    assert read_bridge_state(netns).topology.column == "snoop+querier"
    with pytest.raises(TopologyMismatch, match="snoop\\+querier, not flood"):
        confirm_topology(netns, Topology())
    assert set_topology(netns, Topology()).topology.column == "flood"
    with pytest.raises(ValueError, match="unknown topology"):
        Topology.parse("mesh")
