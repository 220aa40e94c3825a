"""What a train is: several VMs of mixed NICs fetching one payload by multicast, staggered.

Why trains: a single VM proves a protocol works; only several clients joining a running
stream prove what multicast is for (the late ones take blocks they never asked for) and
catch what only happens then (atftpd's MTFTP late joiners printing ``ok`` over
zero-filled images, docs/findings.md).  A full-boot train boots Debian's kernel and the
repo's initramfs instead of the verifier (docs/fullboot.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.model.plan import SLAM_SERVER

#: Four QEMU models with four different iPXE drivers (intel, realtek, virtio-net, vmxnet3):
#: the train that checks the *server* with a mixed crowd.
TRAIN_NICS = ("e1000", "rtl8139", "virtio-net-pci", "vmxnet3")
#: The older PCI models (pcnet32, ns8390 on ne2k_pci, eepro100) behind an e1000: the train
#: that checks how those *drivers* cope with a multicast stream they do not drive
#: (docs/matrix.md, "Trains"; docs/findings.md for what it found).
LEGACY_TRAIN_NICS = ("e1000", "pcnet", "ne2k_pci", "eepro100")
TRAIN_GAP_SECONDS = 0.5
#: Measured here: one stock-ROM client takes MTFTP's 512-byte lock-step blocks at about
#: 120 KB/s under TCG, and four VMs on two cores about half that.  The VMs' requests come
#: up to about 3 s apart (boot-time spread, not the 0.5 s start gap), and everything sent
#: before the last one asked must go out again: with 3 MiB that floor alone reached 1.205 x
#: on a quiet host (the last VM joined at block 1259 of 6145).  6 MiB halves it (about
#: 1.10 x) and keeps tox -e lab within its budget (docs/matrix.md).  --lab-train-size for more.
DEFAULT_TRAIN_SIZE = 6 * 1024 * 1024
#: Protocols of the full-boot trains.  mtftp by default: Debian's ROMs cannot hear RFC 2090
#: groups and have no SLAM, so tftm and x-slam full boots are for ROM sets that can.
FULL_BOOT_PROTOCOLS = ("mtftp",)
FULL_BOOT_CHOICES = ("mtftp", "tftm", "x-slam")
#: How long a held server (pyslamd, or pyatftpd's RFC 2090 sessions) waits for a train's
#: last VM after its first asked.  TCG VMs that start 0.5 s apart ask up to about 10 s
#: apart here (vmxnet3 boots slowest), and a VM that never comes costs the train only
#: this wait: the others are served then.
TRAIN_MAX_WAIT = 45.0


@dataclass(frozen=True)
class TrainPlan:
    protocol: str
    server: str
    rom_set: str
    size: int
    nics: tuple[str, ...] = TRAIN_NICS
    gap: float = TRAIN_GAP_SECONDS
    seed: int = 24
    #: Loss in % each way on the last VM's tap (0: none), on its UDP but DHCP's (lab/run/loss.py).
    loss_percent: int = 0
    #: Names a NIC mix other than TRAIN_NICS in the column ("legacy": LEGACY_TRAIN_NICS).
    label: str = ""
    #: Boot Debian's kernel and the repo's initramfs instead of fetching the verifier and a
    #: payload; ``size`` is then unused.
    full_boot: bool = False

    @property
    def column(self) -> str:
        loss = f"/loss{self.loss_percent}" if self.loss_percent else ""
        label = f"-{self.label}" if self.label else ""
        label += "-fullboot" if self.full_boot else ""
        return f"{self.protocol}/{self.rom_set}/{self.server}/train{len(self.nics)}{label}{loss}"

    @property
    def slug(self) -> str:
        return "train-" + self.column.replace("/", "-")


def train_plans(
    protocols: tuple[str, ...],
    servers: list[str],
    rom_sets: list[str],
    size: int,
    loss_percent: int,
    legacy: bool = False,
    nics: tuple[str, ...] = TRAIN_NICS,
    full_boot: tuple[str, ...] = FULL_BOOT_PROTOCOLS,
) -> list[TrainPlan]:
    """The default trains: each multicast protocol per ROM set and server, one lossy mtftp
    train, (``legacy``) one mtftp train of the older PCI NIC models, and a full boot per
    ``full_boot`` protocol with the first server."""
    plans = []
    for rom_set in rom_sets:
        for protocol in protocols:
            for server in [SLAM_SERVER] if protocol == "x-slam" else servers:
                plans.append(TrainPlan(protocol, server, rom_set, size, nics=nics))
        if loss_percent and "mtftp" in protocols:
            plans.append(TrainPlan("mtftp", servers[0], rom_set, size, nics=nics, loss_percent=loss_percent))
        if legacy and "mtftp" in protocols:
            old = LEGACY_TRAIN_NICS
            plans.append(TrainPlan("mtftp", servers[0], rom_set, size, nics=old, label="legacy"))
        for protocol in full_boot:
            server = SLAM_SERVER if protocol == "x-slam" else servers[0]
            plans.append(TrainPlan(protocol, server, rom_set, size, nics=nics, full_boot=True))
    return plans
