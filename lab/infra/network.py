"""The lab's L2 segment: bridge br0 with its addresses and multicast settings, and the taps.

Why the bridge's state is read back: the topology is a matrix column, and its cells are
only worth something if the bridge really was in that state, so it is read from ``ip -d
link show`` and confirmed, never assumed from the command that set it.  iPXE sends no
IGMP reports, so a snooping bridge with an active querier stops forwarding the group to
its taps (docs/evidence.md).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

from lab.infra.namespace import Namespace
from lab.model.network import BRIDGE, BRIDGE_MAC, SERVER_IPV4, SERVER_IPV6, SERVER_IPV6_PREFIX, Slot, Topology


class TopologyMismatch(RuntimeError):
    """The bridge is not in the topology the lab asked for."""


@dataclass(frozen=True)
class BridgeState:
    """The multicast settings the kernel reports for the bridge."""

    bridge: str
    mcast_snooping: int
    mcast_querier: int
    #: In centiseconds, as ip reports it.
    mcast_query_interval: int | None
    mcast_igmp_version: int | None

    @property
    def topology(self) -> Topology:
        return Topology(snooping=bool(self.mcast_snooping), querier=bool(self.mcast_querier))


def make_bridge(
    ns: Namespace,
    name: str = BRIDGE,
    address: str = f"{SERVER_IPV4}/24",
    snooping: bool = False,
    querier: bool = False,
) -> None:
    """Create the lab bridge with explicit multicast settings and a 224/4 route.

    Snooping and querier are always set explicitly: iPXE sends no IGMP reports, so a
    snooping bridge with a querier cuts it off from the group.
    """
    ns.run(
        [
            "ip", "link", "add", name, "address", BRIDGE_MAC, "type", "bridge",
            "mcast_snooping", "1" if snooping else "0",
            "mcast_querier", "1" if querier else "0",
        ]
    )
    ns.run(["ip", "addr", "add", address, "dev", name])
    ns.run(["ip", "link", "set", name, "up"])
    ns.run(["ip", "route", "add", "224.0.0.0/4", "dev", name])


def make_veth_segment(
    ns: Namespace, address: str = f"{SERVER_IPV4}/24", peer_address: str = "192.0.2.2/24"
) -> None:
    """A carrier-up segment for tests without VMs (this kernel has no dummy links).

    ``lab0`` carries the server address and the 224/4 route; multicast sent on it is
    looped back to local group listeners (IP_MULTICAST_LOOP), which is how simulated
    clients in the same namespace hear the group.
    """
    ns.run(["ip", "link", "add", "lab0", "type", "veth", "peer", "name", "lab1"])
    ns.run(["ip", "addr", "add", address, "dev", "lab0"])
    ns.run(["ip", "addr", "add", peer_address, "dev", "lab1"])
    ns.run(["ip", "link", "set", "lab0", "up"])
    ns.run(["ip", "link", "set", "lab1", "up"])
    ns.run(["ip", "route", "add", "224.0.0.0/4", "dev", "lab0"])


def build_network(ns: Namespace, topology: Topology) -> BridgeState:
    """br0 with 192.0.2.1/24, the 224/4 route, and 2001:db8::1/64 (no DAD wait), in
    ``topology``; returns the bridge state read back from the kernel."""
    make_bridge(ns, BRIDGE, f"{SERVER_IPV4}/24", snooping=topology.snooping, querier=topology.querier)
    ns.run(["ip", "-6", "addr", "add", f"{SERVER_IPV6}/{SERVER_IPV6_PREFIX}", "dev", BRIDGE, "nodad"])
    if topology.querier:
        # The bridge counts its own querier only one query response interval after it is
        # enabled (10 s by default) and floods until then (docs/evidence.md): 1 s, then wait.
        ns.run(["ip", "link", "set", BRIDGE, "type", "bridge", "mcast_query_response_interval", "100"])
        ns.run(["ip", "link", "set", BRIDGE, "type", "bridge", "mcast_querier", "0"])
        ns.run(["ip", "link", "set", BRIDGE, "type", "bridge", "mcast_querier", "1"])
        time.sleep(2.0)
    return confirm_topology(ns, topology)


def pin_neighbours(ns: Namespace, guests: Sequence[Slot]) -> None:
    """Permanent IPv6 neighbour entries on br0 for every guest the lab may boot.

    Why: iPXE sends no MLD reports (as it sends no IGMP), so a snooping bridge never
    forwards the host's neighbour solicitations (to the guest's solicited-node group) to
    the guest; the answers to its router solicitation and DHCPv6 request then never go
    out, and the Debian ROMs waited 16-30 s in DHCP in every snoop+querier cell.  Pinned
    entries take neighbour discovery out of the way; the group under test (IPv4) is not
    touched.
    """
    for guest in guests:
        for address in guest.ipv6_addresses:
            ns.run(["ip", "-6", "neigh", "replace", address, "lladdr", guest.mac, "dev", BRIDGE,
                    "nud", "permanent"])  # fmt: skip


def add_tap(ns: Namespace, name: str) -> None:
    """A tap enslaved to br0 and up; QEMU opens it by name (script=no)."""
    ns.run(["ip", "tuntap", "add", name, "mode", "tap"])
    ns.run(["ip", "link", "set", name, "master", BRIDGE])
    ns.run(["ip", "link", "set", name, "up"])


def tap_counters(ns: Namespace, name: str) -> dict[str, int]:
    """The host side of a VM's tap: frames handed to QEMU (``tx_packets``), frames the
    kernel dropped because QEMU had not read them (``tx_dropped``: the tap's queue was
    full), and frames the guest sent (``rx_packets``).

    Why: a frame on the tap's capture may still never reach the guest.  These counters
    tell "the emulated NIC did not take it" (QEMU stopped reading: its ring was full, the
    guest did not drain it) from "it never came"; empty if ``ip`` cannot say.
    """
    result = ns.run(["ip", "-s", "-j", "link", "show", "dev", name], check=False)
    try:
        (link,) = json.loads(result.stdout or "[]")
        tx, rx = link["stats64"]["tx"], link["stats64"]["rx"]
        return {
            "tx_packets": int(tx["packets"]),
            "tx_dropped": int(tx["dropped"]),
            "rx_packets": int(rx["packets"]),
        }
    except (ValueError, KeyError, TypeError):
        return {}


def remove_tap(ns: Namespace, name: str) -> None:
    ns.run(["ip", "link", "del", name], check=False)


def read_bridge_state(ns: Namespace, bridge: str = BRIDGE) -> BridgeState:
    """Read the multicast settings the kernel reports for ``bridge`` (``ip -d -j link show``)."""
    result = ns.run(["ip", "-d", "-j", "link", "show", "dev", bridge])
    links = json.loads(result.stdout)
    info = links[0].get("linkinfo", {}) if links else {}
    if info.get("info_kind") != "bridge":
        raise TopologyMismatch(f"{bridge} is not a bridge (ip -d link show says {info.get('info_kind')!r})")
    data = info.get("info_data", {})
    return BridgeState(
        bridge=bridge,
        mcast_snooping=int(data["mcast_snooping"]),
        mcast_querier=int(data["mcast_querier"]),
        mcast_query_interval=data.get("mcast_query_intvl"),
        mcast_igmp_version=data.get("mcast_igmp_version"),
    )


def set_topology(ns: Namespace, topology: Topology, bridge: str = BRIDGE) -> BridgeState:
    """Put ``bridge`` into ``topology`` and return the state read back (raises if it did not take)."""
    ns.run(
        [
            "ip", "link", "set", bridge, "type", "bridge",
            "mcast_snooping", str(int(topology.snooping)), "mcast_querier", str(int(topology.querier)),
        ]
    )  # fmt: skip
    return confirm_topology(ns, topology, bridge)


def confirm_topology(ns: Namespace, topology: Topology, bridge: str = BRIDGE) -> BridgeState:
    """The bridge's state, after checking it matches ``topology``."""
    state = read_bridge_state(ns, bridge)
    if state.topology != topology:
        raise TopologyMismatch(f"{bridge} is in topology {state.topology.column}, not {topology.column}")
    return state
