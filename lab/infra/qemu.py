"""The QEMU command line, built by one pure function for every caller (golden-tested).

Why these options: ``-nodefaults`` keeps the only NIC the one under test, the NIC's
``romfile=`` is the ROM under test and ``bootindex=1`` makes SeaBIOS run it first;
``isa-debug-exit`` lets the in-guest verifier end QEMU with a verdict as its exit
status; ``-no-reboot`` turns a guest reset (or a kernel's power-off) into an exit
instead of a silent loop.  A lab VM boots from its NIC (:class:`QemuSpec`); the payload
self-tests boot a kernel straight from QEMU's loader (:class:`DirectSpec`).  Both share
the machine part, so a fix to it (a flag, a device) reaches every VM.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from images.verifier import ISA_DEBUG_EXIT

ACCELS = ("tcg", "kvm")
QEMU = "qemu-system-x86_64"

#: isa-debug-exit at the port the verifier writes its verdict to: QEMU exits with (value << 1) | 1.
DEBUG_EXIT = ISA_DEBUG_EXIT


@dataclass(frozen=True)
class QemuSpec:
    """A lab VM: one NIC on a tap, running the ROM under test."""

    qemu_device: str
    mac: str
    romfile: Path
    tap: str
    accel: str = "tcg"
    memory_mib: int = 256
    binary: str = QEMU
    #: QEMU's own capture of everything the NIC sends and receives (no privileges needed).
    pcap: Path | None = None
    extra: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class DirectSpec:
    """A kernel booted by QEMU's own loader (``-kernel``/``-initrd``), no network."""

    kernel: Path
    modules: tuple[Path, ...] = ()
    append: str = ""
    accel: str = "tcg"
    memory_mib: int = 128
    binary: str = QEMU
    #: The verifier ends QEMU through isa-debug-exit; a Linux kernel powers off instead.
    debug_exit: bool = True
    extra: tuple[str, ...] = field(default=())


def machine_argv(binary: str, accel: str, memory_mib: int) -> list[str]:
    """The part every lab QEMU shares: no default devices, serial console on stdio."""
    if accel not in ACCELS:
        raise ValueError(f"accel must be one of {', '.join(ACCELS)} (KVM hangs guests on this host: use tcg)")
    return [binary, "-nodefaults", "-nographic", "-no-reboot", "-accel", accel, "-m", str(memory_mib),
            "-serial", "stdio", "-monitor", "none"]  # fmt: skip


def qemu_argv(spec: QemuSpec) -> list[str]:
    """The VM's command line.  ``vnet_hdr=off``: with the tap's virtio-net header on, QEMU's
    filter-dump wrote every frame of virtio-net-pci and vmxnet3 behind that 10-byte header,
    and their ``nic.pcap`` could not be read (0 datagrams from 12 888 frames)."""
    return [
        *machine_argv(spec.binary, spec.accel, spec.memory_mib),
        "-netdev", f"tap,id=n0,ifname={spec.tap},script=no,downscript=no,vnet_hdr=off",
        "-device", f"{spec.qemu_device},netdev=n0,mac={spec.mac},romfile={spec.romfile},bootindex=1",
        *DEBUG_EXIT,
        *(["-object", f"filter-dump,id=dump0,netdev=n0,file={spec.pcap}"] if spec.pcap else []),
        *spec.extra,
    ]  # fmt: skip


def direct_argv(spec: DirectSpec) -> list[str]:
    for module in spec.modules:
        if "," in str(module):
            raise ValueError(f"QEMU's -initrd list cannot hold a path with a comma: {module}")
    return [
        *machine_argv(spec.binary, spec.accel, spec.memory_mib),
        "-kernel", str(spec.kernel),
        *(DEBUG_EXIT if spec.debug_exit else ()),
        *(["-append", spec.append] if spec.append else []),
        *(["-initrd", ",".join(str(m) for m in spec.modules)] if spec.modules else []),
        *spec.extra,
    ]  # fmt: skip

