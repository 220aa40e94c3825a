"""Deterministic identities for VM slots: MAC, IPv4 address, tap and boot file.

Why slots: dnsmasq gets one static config at start with a fixed address and boot
file per slot, so no reload is needed while VMs come and go; a VM takes a free slot
and its scenario is whatever boot script the lab writes under that slot's file name.
The MAC encodes the lab index (a parallel worker) and the slot, so logs from several
workers never collide.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_SLOTS = 32


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
