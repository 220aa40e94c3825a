"""The lab network's fixed facts: addresses, ports, VM slots and bridge topologies.

Why one module: the server address, the bridge's name and the protocols' well-known
ports were typed again in seven places; a wire parser, a boot script and a server
wrapper must agree on them, so they are defined here once.

Slots are deterministic identities for VMs (MAC, IPv4 address, tap, boot file): dnsmasq
gets one static config at start with a fixed address and boot file per slot, so no
reload is needed while VMs come and go; a VM takes a free slot and its scenario is
whatever boot script the lab writes under that slot's file name.  The MAC encodes the
lab index (a parallel worker) and the slot, so logs from several workers never collide.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The lab's bridge and the server's addresses on it (192.0.2.0/24 is TEST-NET-1).
BRIDGE = "br0"
#: br0's own MAC, fixed (locally administered): a bridge that takes its MAC from its lowest
#: port changes it when a tap joins, and the kernel then flushes every neighbour entry on
#: it, the pinned ones of :func:`lab.infra.network.pin_neighbours` included.
BRIDGE_MAC = "02:00:00:00:02:01"
SERVER_IPV4 = "192.0.2.1"
SERVER_IPV6 = "2001:db8::1"
#: IPv6 on the bridge lets dnsmasq answer router solicitations: Debian's 2019 iPXE ROMs
#: wait about 13 s for IPv6 routers otherwise (docs/lab.md).
SERVER_IPV6_PREFIX = 64

#: pyslamd's default NACK and group port; a full boot serves its initrd on the next one.
#: The wire parser must know every SLAM port, or the initrd's group bytes count as "other".
SLAM_PORT = 10000
LAB_SLAM_PORTS = (SLAM_PORT, SLAM_PORT + 1)

#: iPXE's ``mtftp://`` asks port 1759 and listens on 239.255.1.1:3001 (docs/multicast.md).
MTFTP_PORT = 1759
MTFTP_GROUP = ("239.255.1.1", 3001)

MAX_SLOTS = 32

#: The name the lab serves the in-guest verifier under; every boot fetches it by tftp first.
VERIFIER_NAME = "verifier.elf"


@dataclass(frozen=True)
class Slot:
    lab_index: int
    index: int

    @property
    def mac(self) -> str:
        return f"52:54:00:1a:{self.lab_index:02x}:{self.index:02x}"

    @property
    def ipv4(self) -> str:
        return f"192.0.2.{100 + self.index}"

    @property
    def ipv6_addresses(self) -> tuple[str, str]:
        """The guest's link-local and SLAAC addresses (EUI-64 of :attr:`mac`, as iPXE forms them)."""
        suffix = f"5054:ff:fe1a:{self.lab_index:02x}{self.index:02x}"
        return f"fe80::{suffix}", f"2001:db8::{suffix}"

    @property
    def tap(self) -> str:
        return f"tap{self.index}"

    @property
    def tag(self) -> str:
        return f"vm{self.index}"

    @property
    def boot_file(self) -> str:
        return f"vm{self.index}.ipxe"


def slots(lab_index: int, count: int = MAX_SLOTS) -> list[Slot]:
    if not 0 <= lab_index < 256:
        raise ValueError("lab_index must fit in one MAC byte (0..255)")
    if not 0 < count <= MAX_SLOTS:
        raise ValueError(f"between 1 and {MAX_SLOTS} slots per lab")
    return [Slot(lab_index, i) for i in range(count)]


def is_group(ipv4: str) -> bool:
    """An IPv4 multicast address (224.0.0.0/4)."""
    first = ipv4.split(".", 1)[0]
    return first.isdigit() and 224 <= int(first) <= 239


@dataclass(frozen=True)
class Topology:
    """Bridge multicast settings, a matrix column.

    iPXE sends no IGMP reports, so ``snooping`` with ``querier`` cuts iPXE off the group.
    """

    snooping: bool = False
    querier: bool = False

    #: Names on the matrix's columns, in the order ``parse`` accepts them.
    NAMES = ("flood", "snoop", "snoop+querier")

    @property
    def name(self) -> str:
        return f"snoop-{'on' if self.snooping else 'off'}+querier-{'on' if self.querier else 'off'}"

    @property
    def column(self) -> str:
        """The short name the matrix and the CLI use (one of NAMES)."""
        return "snoop+querier" if self.querier else "snoop" if self.snooping else "flood"

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
