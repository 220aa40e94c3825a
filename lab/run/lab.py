"""A running lab: namespace, bridge, dnsmasq, the servers, and VM slots to boot in.

One ``Lab`` per parallel worker: each has its own namespace, so addresses, ports and
taps never collide between workers, and each dies with its holder process.  The lab
holds resources; what a boot does with them is :mod:`lab.run.boot`'s, and which
servers must run is said through :meth:`Lab.ensure` (:mod:`lab.run.services`).
"""

from __future__ import annotations

import queue
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from images.payload import write_payload
from images.verifier import build_verifier
from lab.infra.dnsmasq import Dnsmasq
from lab.infra.host import vm_support_problem
from lab.infra.namespace import Namespace
from lab.infra.network import add_tap, build_network, pin_neighbours, remove_tap
from lab.infra.qemu import QemuSpec
from lab.infra.slam_service import SlamService
from lab.infra.tftp_service import TftpService
from lab.infra.vm import Vm
from lab.model.errors import LabUnavailable
from lab.model.network import VERIFIER_NAME, Slot, Topology, slots
from lab.run.services import Services
from netboot.events import ServerEvent
from roms.catalog import NicModel


@dataclass
class LabConfig:
    directory: Path
    index: int = 0
    topology: Topology = field(default_factory=Topology)
    server: str = "pyatftpd"
    accel: str = "tcg"
    slot_count: int = 8
    timeout_scale: float = 1.0
    #: Capture br0 and the VM's tap for every boot (docs/evidence.md); trains capture their own.
    capture: bool = True
    #: More pyatftpd options (``--lab-pyatftpd-arg``), e.g. ("--mcast-window", "8").
    pyatftpd_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class EventMark:
    """How many events each server had logged at a moment: a boot's evidence starts there."""

    tftp: int = 0
    slam: dict[int, int] = field(default_factory=dict)


class Lab:
    def __init__(self, config: LabConfig) -> None:
        self.config = config
        self.directory = config.directory
        self.ns = Namespace()
        self.dhcp: Dnsmasq | None = None
        self.tftp: TftpService | None = None
        #: pyslamd per port (one file each).
        self.slam: dict[int, SlamService] = {}
        self.root = self.directory / "tftproot"
        self.services_dir = self.directory / "services"
        self._free: queue.Queue[Slot] = queue.Queue()

    def __enter__(self) -> Lab:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        problem = vm_support_problem()
        if problem:
            raise LabUnavailable(problem)
        self.services_dir.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(build_verifier(), self.root / VERIFIER_NAME)
        self.ns.start()
        build_network(self.ns, self.config.topology)
        lab_slots = slots(self.config.index, self.config.slot_count)
        if self.config.topology.snooping:
            pin_neighbours(self.ns, lab_slots)
        for slot in lab_slots:
            self._free.put(slot)
        self.dhcp = Dnsmasq(self.ns, lab_slots, self.services_dir)
        self.tftp = TftpService(
            self.ns, self.config.server, self.root, self.services_dir, extra_args=self.config.pyatftpd_args
        )

    def close(self) -> None:
        for service in [*self.slam.values(), self.tftp, self.dhcp]:
            if service is not None:
                service.stop()
        self.slam = {}
        self.ns.close()

    def ensure(self, wanted: Services) -> TftpService:
        """Make the running servers what ``wanted`` says; a lab switches servers between
        boots, never during one.  Returns the TFTP server."""
        tftp, running = wanted.tftp, self.tftp
        matches = running is not None and (
            running.kind == tftp.kind
            and running.mcast_min_clients == tftp.mcast_min_clients
            and (tftp.mtftp_files is None or running.mtftp_files == tftp.mtftp_files)
        )
        if not matches or wanted.fresh:
            files = (
                tftp.mtftp_files if tftp.mtftp_files is not None else (running.mtftp_files if running else ())
            )
            if running is not None:
                running.stop()
            self.tftp = None
            self.tftp = TftpService(
                self.ns, tftp.kind, self.root, self.services_dir, files, tftp.mcast_min_clients,
                self.config.pyatftpd_args,
            )  # fmt: skip
        for want in wanted.slam:
            current = self.slam.get(want.port)
            if current is not None and not wanted.fresh and (current.file, current.min_clients) == (
                want.file, want.min_clients
            ):  # fmt: skip
                continue
            if current is not None:
                current.stop()
                del self.slam[want.port]
            self.slam[want.port] = SlamService(
                self.ns, self.root / want.file, self.services_dir, want.port, want.min_clients
            )
        assert self.tftp is not None
        return self.tftp

    def stop_slam(self) -> list[ServerEvent]:
        """Stop every pyslamd and return their events."""
        events = [e for service in self.slam.values() for e in service.events()]
        for service in self.slam.values():
            service.stop()
        self.slam = {}
        return events

    def mark(self) -> EventMark:
        return EventMark(
            len(self.tftp.events()) if self.tftp else 0,
            {port: len(service.events()) for port, service in self.slam.items()},
        )

    def tftp_events_since(self, mark: EventMark) -> list[ServerEvent]:
        return self.tftp.events()[mark.tftp :] if self.tftp else []

    def slam_events_since(self, mark: EventMark) -> list[ServerEvent]:
        return [e for port, s in self.slam.items() for e in s.events()[mark.slam.get(port, 0) :]]

    def payload(self, size: int, seed: int) -> tuple[str, str]:
        """The payload's file name in the TFTP root and its SHA-256 (written once)."""
        name = f"payload-{size}-{seed}.bin"
        digest_file = self.root / (name + ".sha256")
        if not digest_file.exists():
            digest_file.write_text(write_payload(self.root / name, size, seed))
        return name, digest_file.read_text()

    def health_problem(self) -> str | None:
        if self.dhcp is None or not self.dhcp.alive():
            return "dnsmasq is not running (see services/dnsmasq.stderr)"
        if self.tftp is None or not self.tftp.alive():
            kind = self.tftp.kind if self.tftp else self.config.server
            return f"the TFTP server ({kind}) died (see services/)"
        return None

    def reserve(self) -> Slot:
        """A free slot with its tap on the bridge (waits while every slot is busy)."""
        slot = self._free.get(timeout=600)
        add_tap(self.ns, slot.tap)
        return slot

    def release(self, slot: Slot) -> None:
        """Give back a slot from :meth:`reserve` (its tap leaves the bridge)."""
        remove_tap(self.ns, slot.tap)
        self._free.put(slot)

    def start_vm(self, model: NicModel, rom: Path, slot: Slot, directory: Path, pcap: bool = True) -> Vm:
        """QEMU with ``model`` running ``rom`` on ``slot``'s tap; LabError if it cannot start."""
        assert model.qemu_device is not None
        spec = QemuSpec(
            model.qemu_device, slot.mac, rom, slot.tap, accel=self.config.accel,
            pcap=directory / "nic.pcap" if pcap else None,
        )  # fmt: skip
        return Vm(self.ns, spec, directory)
