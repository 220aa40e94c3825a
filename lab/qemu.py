"""The QEMU command line for one lab VM, built by a pure function (golden-tested).

Why these options: ``-nodefaults`` keeps the only NIC the one under test, the NIC's
``romfile=`` is the ROM under test and ``bootindex=1`` makes SeaBIOS run it first;
``isa-debug-exit`` lets the in-guest verifier end QEMU with a verdict as its exit
status; ``-no-reboot`` turns a guest reset into an exit instead of a silent loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

ACCELS = ("tcg", "kvm")

#: isa-debug-exit: QEMU exits with (value << 1) | 1.
DEBUG_EXIT_IOBASE = 0xF4


@dataclass(frozen=True)
class QemuSpec:
    qemu_device: str
    mac: str
    romfile: Path
    tap: str
    accel: str = "tcg"
    memory_mib: int = 256
    binary: str = "qemu-system-x86_64"
    #: QEMU's own capture of everything the NIC sends and receives (no privileges needed).
    pcap: Path | None = None
    extra: tuple[str, ...] = field(default=())


def qemu_argv(spec: QemuSpec) -> list[str]:
    if spec.accel not in ACCELS:
        raise ValueError(f"accel must be one of {', '.join(ACCELS)} (KVM hangs guests on this host: use tcg)")
    return [
        spec.binary,
        "-nodefaults",
        "-nographic",
        "-no-reboot",
        "-accel", spec.accel,
        "-m", str(spec.memory_mib),
        "-serial", "stdio",
        "-monitor", "none",
        "-netdev", f"tap,id=n0,ifname={spec.tap},script=no,downscript=no",
        "-device", f"{spec.qemu_device},netdev=n0,mac={spec.mac},romfile={spec.romfile},bootindex=1",
        "-device", f"isa-debug-exit,iobase={DEBUG_EXIT_IOBASE:#x},iosize=4",
        *(["-object", f"filter-dump,id=dump0,netdev=n0,file={spec.pcap}"] if spec.pcap else []),
        *spec.extra,
    ]  # fmt: skip
