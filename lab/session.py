"""A running lab: namespace, bridge, dnsmasq, TFTP server, and VM boots against them.

One ``Lab`` per parallel worker: each has its own namespace, so addresses, ports and
taps never collide between workers, and each dies with its holder process.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from images.bootscript import payload_url
from images.payload import write_payload
from images.verifier import build_verifier
from lab.addressing import Slot, slots
from lab.bootscript import boot_script, url
from lab.capture import Capture, CaptureError
from lab.delivery import classify, wire_figures
from lab.dhcp import Dnsmasq
from lab.errors import LabError, LabUnavailable
from lab.evidence import BootEvidence, PayloadCheck, StageRecord
from lab.netns import Namespace, namespace_support_problem
from lab.qemu import QemuSpec
from lab.slam import LAB_SLAM_PORTS, SlamServer
from lab.stages import PROTOCOL_FEATURE, run_ladder
from lab.status import Status
from lab.tftp import TftpServer
from lab.topology import BRIDGE, SERVER_IPV4, Topology, add_tap, build_network, remove_tap, tap_counters
from lab.vm import Vm
from lab.wire import WireContext
from roms.catalog import NicModel
from roms.romset import RomMismatch, RomMissing, RomSet

VERIFIER_NAME = "verifier.elf"
WIRE_CONTEXT = WireContext(slam_ports=LAB_SLAM_PORTS)


def vm_support_problem() -> str | None:
    """Why VMs cannot run here (a skip reason with the fix), or None."""
    problem = namespace_support_problem()
    if problem:
        return problem
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing; load the tun module (modprobe tun) or pass --device /dev/net/tun"
    for tool, package in (("qemu-system-x86_64", "qemu-system-x86"), ("dnsmasq", "dnsmasq-base")):
        if shutil.which(tool) is None:
            return f"'{tool}' is missing; apt-get install {package}"
    return None


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


class Lab:
    def __init__(self, config: LabConfig) -> None:
        self.config = config
        self.directory = config.directory
        self.ns = Namespace()
        self.dhcp: Dnsmasq | None = None
        self.tftp: TftpServer | None = None
        self.slam: SlamServer | None = None
        self.root = self.directory / "tftproot"
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
        services = self.directory / "services"
        services.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(build_verifier(), self.root / VERIFIER_NAME)
        self.ns.start()
        build_network(self.ns, self.config.topology)
        lab_slots = slots(self.config.index, self.config.slot_count)
        for slot in lab_slots:
            self._free.put(slot)
        self.dhcp = Dnsmasq(self.ns, lab_slots, services)
        self.start_tftp(self.config.server)

    def start_tftp(
        self, kind: str, mtftp_file: str | tuple[str, ...] | None = None, mcast_min_clients: int = 1
    ) -> TftpServer:
        """(Re)start the TFTP server; a lab switches servers between boots, never during one."""
        if self.tftp is not None:
            self.tftp.stop()
        services = self.directory / "services"
        self.tftp = TftpServer(self.ns, kind, self.root, services, mtftp_file, mcast_min_clients)
        return self.tftp

    def prepare(self, protocol: str, payload_name: str, train_vms: int | None = None) -> None:
        """Make the servers serve ``payload_name`` by ``protocol``.

        iPXE's ``mtftp://`` always listens on 239.255.1.1:3001, so the MTFTP config names
        one file and the TFTP server restarts when a boot wants another; ``x-slam://``
        names no file, so pyslamd restarts for another payload.  ``train_vms``: the
        multicast server holds its first stream for that many VMs (pyslamd's
        ``--min-clients``, pyatftpd's ``--mcast-min-clients`` for ``tftm://``) and is
        started afresh: a held server tells a new wave from a straggler of the last by
        the time since the file's last session, and the previous train's VMs must not be
        taken for this train's.  None keeps the running server and its hold, so that a
        train's boots do not undo what the train set up.
        """
        kind = self.tftp.kind if self.tftp is not None else self.config.server
        if protocol == "mtftp" and (self.tftp is None or self.tftp.mtftp_file != payload_name):
            self.start_tftp(kind, payload_name)
        if protocol == "tftm" and train_vms is not None and kind == "pyatftpd":
            self.start_tftp(kind, self.tftp.mtftp_file if self.tftp else None, train_vms)
        if protocol != "x-slam":
            return
        running = self.slam is not None and self.slam.file == payload_name
        if running and train_vms is None:
            return
        if self.slam is not None:
            self.slam.stop()
        self.slam = SlamServer(
            self.ns, self.root / payload_name, self.directory / "services", min_clients=train_vms or 1
        )

    def close(self) -> None:
        for service in (self.slam, self.tftp, self.dhcp):
            if service is not None:
                service.stop()
        self.ns.close()

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
            return f"the TFTP server ({self.config.server}) died (see services/)"
        return None

    def launch(
        self, model: NicModel, rom_set: RomSet, size: int, seed: int, directory: Path, check_rom: bool = True,
        protocol: str = "tftp", capture: bool | None = None, slot: Slot | None = None,
    ) -> BootRun:  # fmt: skip
        """Start one VM that fetches and verifies one payload; ``finish()`` collects the verdict."""
        directory.mkdir(parents=True, exist_ok=True)
        run = BootRun(self, directory, model, size, protocol)
        try:
            rom = rom_set.checked_rom(model) if check_rom else rom_set.rom_path(model)
        except RomMissing as exc:
            run.preflight(Status.SKIP, f"no ROM in this set: {exc}")
            return run
        except RomMismatch as exc:
            run.preflight(Status.ERROR, f"ROM mismatch (a lab setup error, not a driver failure): {exc}")
            return run
        run.evidence.rom.update({"set": rom_set.name, "path": str(rom), "sha256": _sha256(rom)})
        name, digest = self.payload(size, seed)
        run.payload.expect_sha256 = digest
        self.prepare(protocol, name)
        tap_ready = slot is not None
        slot = slot if slot is not None else self._free.get(timeout=600)
        run.slot = slot
        # Slots are reused: this boot's evidence is what the services log from now on.
        run.dhcp_mark = len(self.dhcp.log_for(slot.mac)) if self.dhcp else 0
        run.tftp_mark = len(self.tftp.events()) if self.tftp else 0
        run.slam_mark = len(self.slam.events()) if self.slam else 0
        # The verifier always comes by tftp: the payload is what the protocol under test carries.
        scheme = "slam" if protocol == "x-slam" else protocol
        script = boot_script(url("tftp", VERIFIER_NAME), payload_url(scheme, SERVER_IPV4, name), digest, size)
        (self.root / slot.boot_file).write_text(script)
        (directory / "boot.ipxe").write_text(script)
        run.other_unicast_bytes = len(script) + (self.root / VERIFIER_NAME).stat().st_size
        if not tap_ready:
            add_tap(self.ns, slot.tap)
        if self.config.capture if capture is None else capture:
            try:
                run.capture = Capture(
                    self.ns, [BRIDGE, slot.tap], directory / "wire", method="af_packet", context=WIRE_CONTEXT
                )
                run.capture.start()
            except CaptureError as exc:
                run.preflight(Status.ERROR, f"wire capture failed: {exc}")
                self._release(slot)
                return run
        assert model.qemu_device is not None
        spec = QemuSpec(
            model.qemu_device, slot.mac, rom, slot.tap, accel=self.config.accel, pcap=directory / "nic.pcap"
        )
        try:
            run.vm = Vm(self.ns, spec, directory)
        except LabError as exc:
            run.preflight(Status.ERROR, str(exc))
            self._release(slot)
        return run

    def reserve(self) -> Slot:
        """A slot with its tap already on the bridge (a train captures every tap from the start)."""
        slot = self._free.get(timeout=600)
        add_tap(self.ns, slot.tap)
        return slot

    def release(self, slot: Slot) -> None:
        """Give back a slot from :meth:`reserve` (its tap leaves the bridge)."""
        self._release(slot)

    def _release(self, slot: Slot) -> None:
        remove_tap(self.ns, slot.tap)
        self._free.put(slot)


class BootRun:
    """A VM boot in progress and the evidence it is accumulating."""

    def __init__(self, lab: Lab, directory: Path, model: NicModel, size: int, protocol: str = "tftp") -> None:
        self.lab = lab
        self.protocol = protocol
        self.directory = directory
        self.model = model
        self.slot: Slot | None = None
        self.vm: Vm | None = None
        self.payload = PayloadCheck(size, "")
        self.evidence = BootEvidence(payloads=[self.payload])
        self._done = False
        self.dhcp_mark = 0
        self.tftp_mark = 0
        self.slam_mark = 0
        self.capture: Capture | None = None
        #: Unicast TFTP bytes that are not the payload (boot script + verifier), for the wire figures.
        self.other_unicast_bytes = 0
        #: Server events for this VM, set by finish().
        self.events: list[dict[str, Any]] = []

    def preflight(self, status: Status, reason: str) -> None:
        self.evidence.stages.append(StageRecord("preflight", status, 0.0, 0.0, message=reason))
        self.evidence.reason = f"{status.value}@preflight: {reason}"
        self.evidence.payloads = []
        self._done = True

    def finish(self) -> BootEvidence:
        """Walk the boot ladder, stop the VM, gather server evidence, write evidence.json."""
        if not self._done and self.vm is not None and self.slot is not None:
            t0 = time.monotonic()
            try:
                run_ladder(
                    self.vm.console, self.vm.proc, self.payload, self.evidence, self.vm.started,
                    timeout_scale=self.lab.config.timeout_scale,
                    required_feature=PROTOCOL_FEATURE.get(self.protocol),
                )  # fmt: skip
            finally:
                self.vm.stop()
                self._stop_capture()
                self.evidence.tap = tap_counters(self.lab.ns, self.slot.tap)
                self.lab._release(self.slot)
            self.evidence.seconds = time.monotonic() - t0
            self._collect(self.slot)
            self._done = True
        self.evidence.settle()
        self._classify()
        if self.protocol != "tftp":
            self._draw_timeline()
        problem = self.lab.health_problem()
        if problem and self.evidence.status is Status.FAIL:
            # Never blame the driver for a lab that broke under it.
            self.evidence.status = Status.ERROR
            self.evidence.reason = f"ERROR@lab: {problem} (driver verdict withheld: {self.evidence.reason})"
        self.evidence.write(self.directory / "evidence.json")
        return self.evidence

    def _draw_timeline(self) -> None:
        """The multicast session as a picture beside the evidence (docs/timeline.md)."""
        from lab.timeline import draw_pictures

        pictures, error = draw_pictures(self.directory)
        if error is not None:
            self.evidence.files["timeline_error"] = error
            return
        for index, path in enumerate(pictures):
            self.evidence.files["timeline" if index == 0 else f"timeline_{index + 1}"] = str(path)

    def _stop_capture(self) -> None:
        if self.capture is None:
            return
        try:
            result = self.capture.stop()
        except Exception as exc:  # noqa: BLE001 - missing wire evidence must not hide the boot's verdict
            self.evidence.files["wire_error"] = f"capture stop failed: {exc}"
            return
        (self.directory / "wire" / "capture.json").write_text(json.dumps(result.to_json(), indent=1) + "\n")
        for name, path in result.files.items():
            self.evidence.files[f"pcap_{name}"] = str(path)
            self.evidence.files[f"wire_{name}"] = str(path.with_suffix(".wire.json"))

    def _classify(self) -> None:
        if self.slot is None:
            return
        wire = None
        result = self.capture.result if self.capture is not None else None
        if result is not None and self.slot.tap in result.summaries:
            drops = int(result.stats.get(self.slot.tap, {}).get("kernel_drops", 0) or 0)
            summary = result.summaries[self.slot.tap]
            wire = wire_figures(summary, self.slot.ipv4, self.other_unicast_bytes, drops)
            if BRIDGE in result.summaries:
                wire.bridge_group_data_bytes = result.summaries[BRIDGE].group_bytes()
        said_ok = any(s.name == "payload" and s.status is Status.PASS for s in self.evidence.stages)
        delivery = classify(
            self.protocol, self.evidence.status, self.payload.size, self.events, wire, said_ok,
            self.evidence.failed_stage,
        )  # fmt: skip
        self.evidence.delivery = delivery.to_json()

    def _collect(self, slot: Slot) -> None:
        files = self.evidence.files
        files["console"] = str(self.directory / "console.log")
        files["console_answers"] = str(self.directory / "answers.log")
        files["pcap"] = str(self.directory / "nic.pcap")
        files["qemu_cmdline"] = str(self.directory / "qemu.cmdline")
        files["qemu_stderr"] = str(self.directory / "qemu.stderr")
        files["boot_script"] = str(self.directory / "boot.ipxe")
        if self.lab.dhcp is not None:
            dhcp_log = self.directory / "dhcp.log"
            dhcp_log.write_text("\n".join(self.lab.dhcp.log_for(slot.mac)[self.dhcp_mark :]) + "\n")
            files["dhcp_log"] = str(dhcp_log)
        if self.lab.tftp is not None:
            since = self.lab.tftp.events()[self.tftp_mark :]
            # Session events without a client (start/end) belong to this boot: one VM per lab at a time.
            mine = [e for e in since if _client_ip(e) in (slot.ipv4, "")]
            self.events = mine
            events = self.directory / "tftp.events.jsonl"
            events.write_text("".join(json.dumps(e) + "\n" for e in mine))
            files["tftp_events"] = str(events)
            files["tftp_server"] = self.lab.tftp.kind
        if self.protocol == "x-slam" and self.lab.slam is not None:
            slam_events = self.lab.slam.events()[self.slam_mark :]
            events = self.directory / "slam.events.jsonl"
            events.write_text("".join(json.dumps(e) + "\n" for e in slam_events))
            files["slam_events"] = str(events)
            self.events += slam_events


def _client_ip(event: dict[str, Any]) -> str:
    return str(event.get("client", "")).rsplit(":", 1)[0]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
