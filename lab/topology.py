"""The lab's L2 segment: bridge br0, its addresses, and one tap per VM.

Why IPv6 on the bridge: Debian's 2019 iPXE ROMs wait about 13 s for IPv6 routers
unless a router advertisement arrives; with 2001:db8::1/64 on br0, dnsmasq answers
router solicitations and a boot takes seconds instead (lab-findings.md).
"""

from __future__ import annotations

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


def add_tap(ns: Namespace, name: str) -> None:
    """A tap enslaved to br0 and up; QEMU opens it by name (script=no)."""
    ns.run(["ip", "tuntap", "add", name, "mode", "tap"])
    ns.run(["ip", "link", "set", name, "master", BRIDGE])
    ns.run(["ip", "link", "set", name, "up"])


def remove_tap(ns: Namespace, name: str) -> None:
    ns.run(["ip", "link", "del", name], check=False)
