"""The lab's L2 segment: bridge br0, its addresses, and one tap per VM.

Why IPv6 on the bridge: Debian's 2019 iPXE ROMs wait about 13 s for IPv6 routers
unless a router advertisement arrives; with 2001:db8::1/64 on br0, dnsmasq answers
router solicitations and a boot takes seconds instead (lab-findings.md).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from lab.netns import Namespace, make_bridge

BRIDGE = "br0"
SERVER_IPV4 = "192.0.2.1"
SERVER_IPV6 = "2001:db8::1"


@dataclass(frozen=True)
class Topology:
    """Bridge multicast settings, a matrix column for the multicast issue.

    iPXE sends no IGMP reports, so ``snooping`` with ``querier`` cuts iPXE off the group.
    """

    snooping: bool = False
    querier: bool = False

    @property
    def name(self) -> str:
        return f"snoop-{'on' if self.snooping else 'off'}+querier-{'on' if self.querier else 'off'}"

    @classmethod
    def parse(cls, text: str) -> Topology:
        """``flood`` (the default), ``snoop``, or ``snoop+querier``."""
        known = {
            "flood": cls(),
            "snoop": cls(snooping=True),
            "snoop+querier": cls(snooping=True, querier=True),
        }
        try:
            return known[text]
        except KeyError:
            raise ValueError(f"unknown topology {text!r}; choose one of {', '.join(known)}") from None


def build_network(ns: Namespace, topology: Topology) -> None:
    """br0 with 192.0.2.1/24, the 224/4 route, and 2001:db8::1/64 (no DAD wait)."""
    make_bridge(ns, BRIDGE, f"{SERVER_IPV4}/24", snooping=topology.snooping, querier=topology.querier)
    ns.run(["ip", "-6", "addr", "add", f"{SERVER_IPV6}/64", "dev", BRIDGE, "nodad"])
    if topology.querier:
        # The bridge counts its own querier only one query response interval after it is
        # enabled (10 s by default) and floods until then (docs/evidence.md): 1 s, then wait.
        ns.run(["ip", "link", "set", BRIDGE, "type", "bridge", "mcast_query_response_interval", "100"])
        ns.run(["ip", "link", "set", BRIDGE, "type", "bridge", "mcast_querier", "0"])
        ns.run(["ip", "link", "set", BRIDGE, "type", "bridge", "mcast_querier", "1"])
        time.sleep(2.0)


def add_tap(ns: Namespace, name: str) -> None:
    """A tap enslaved to br0 and up; QEMU opens it by name (script=no)."""
    ns.run(["ip", "tuntap", "add", name, "mode", "tap"])
    ns.run(["ip", "link", "set", name, "master", BRIDGE])
    ns.run(["ip", "link", "set", name, "up"])


def tap_counters(ns: Namespace, name: str) -> dict[str, int]:
    """The host side of a VM's tap: frames handed to QEMU (``tx_packets``) and frames the
    kernel dropped because QEMU had not read them (``tx_dropped``: the tap's queue was full).

    Why: a frame on the tap's capture may still never reach the guest.  These counters
    tell "the emulated NIC did not take it" (QEMU stopped reading: its ring was full, the
    guest did not drain it) from "it never came"; empty if ``ip`` cannot say.
    """
    result = ns.run(["ip", "-s", "-j", "link", "show", "dev", name], check=False)
    try:
        (link,) = json.loads(result.stdout or "[]")
        tx = link["stats64"]["tx"]
        return {"tx_packets": int(tx["packets"]), "tx_dropped": int(tx["dropped"])}
    except (ValueError, KeyError, TypeError):
        return {}


def remove_tap(ns: Namespace, name: str) -> None:
    ns.run(["ip", "link", "del", name], check=False)
