"""The lab segment inside a namespace: bridge settings per topology, addresses, taps (no VMs)."""

from __future__ import annotations

import ipaddress
import json

import pytest

from lab.infra.namespace import Namespace
from lab.infra.network import add_tap, build_network, pin_neighbours, remove_tap
from lab.model.network import Topology, slots

pytestmark = pytest.mark.netns


def _bridge(ns: Namespace) -> dict[str, object]:
    data = json.loads(ns.run(["ip", "-d", "-j", "link", "show", "br0"]).stdout)[0]
    info: dict[str, object] = data["linkinfo"]["info_data"]
    return info


@pytest.mark.parametrize("topology", ["flood", "snoop", "snoop+querier"])
def test_bridge_multicast_settings_follow_the_topology(netns: Namespace, topology: str) -> None:
    wanted = Topology.parse(topology)
    build_network(netns, wanted)
    info = _bridge(netns)
    assert info["mcast_snooping"] == int(wanted.snooping)
    assert info["mcast_querier"] == int(wanted.querier)


def test_bridge_carries_server_addresses_and_the_group_route(netns: Namespace) -> None:
    build_network(netns, Topology())
    addrs = netns.run(["ip", "-j", "addr", "show", "br0"]).stdout
    assert "192.0.2.1" in addrs and "2001:db8::1" in addrs
    assert "224.0.0.0/4 dev br0" in netns.run(["ip", "route"]).stdout


def test_taps_are_enslaved_up_and_removable(netns: Namespace) -> None:
    build_network(netns, Topology())
    add_tap(netns, "tap5")
    link = json.loads(netns.run(["ip", "-j", "link", "show", "tap5"]).stdout)[0]
    assert link["master"] == "br0"
    assert "UP" in link["flags"]
    remove_tap(netns, "tap5")
    assert netns.run(["ip", "link", "show", "tap5"], check=False).returncode != 0


def test_pinned_guest_neighbours_survive_taps_joining_the_bridge(netns: Namespace) -> None:
    """A snooping bridge never forwards the host's neighbour solicitations to iPXE (no MLD);
    the pinned entries must outlive the bridge's first port, which used to change its MAC
    and flush them (the Debian ROMs then waited 16-30 s in DHCP)."""
    build_network(netns, Topology.parse("snoop+querier"))
    guests = slots(0, 2)
    pin_neighbours(netns, guests)
    add_tap(netns, "tap0")
    add_tap(netns, "tap1")
    table = netns.run(["ip", "-6", "neigh", "show", "dev", "br0"]).stdout
    for guest in guests:
        for address in guest.ipv6_addresses:
            assert f"{ipaddress.ip_address(address)} lladdr {guest.mac} PERMANENT" in table, table


def test_unknown_topology_names_the_choices() -> None:
    with pytest.raises(ValueError, match="snoop\\+querier"):
        Topology.parse("igmp")
