"""One VM boot: start it, walk its console up the ladder, gather and judge its evidence.

Why a boot is its own object: a test or a train starts several boots and finishes them
later (``launch`` returns at once, ``finish`` blocks); between the two the boot holds its
slot, its capture and the marks where its share of the servers' logs begins.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from images.bootscript import ipxe_script, payload_url
from lab.infra.capture import Capture, CaptureError
from lab.infra.network import tap_counters
from lab.infra.vm import Vm
from lab.judge.delivery import classify, wire_figures
from lab.judge.ipxe_error import ipxe_error
from lab.judge.ladder import PROTOCOL_FEATURE
from lab.model.console_text import erase_backspaces, last_lines
from lab.model.errors import LabError
from lab.model.jsonable import to_json
from lab.model.network import BRIDGE, SERVER_IPV4, VERIFIER_NAME, Slot
from lab.model.results import BootEvidence, PayloadCheck, StageRecord
from lab.model.status import Status
from lab.report.timeline import draw_pictures
from lab.report.timeline_inputs import boot_inputs, wall_clock
from lab.run.evidence import count_capture
from lab.run.lab import EventMark, Lab
from lab.run.ladder import run_ladder
from lab.run.loss import LossAfterDhcp
from lab.run.services import services_for
from lab.run.stall import StallWatch
from lab.wire.counts import WireSummary
from lab.wire.streams import fetch_on_wire
from netboot.events import ServerEvent, events_text
from roms.catalog import NicModel
from roms.romset import RomMismatch, RomMissing, RomSet

#: How many console lines evidence.json and JUnit quote.
CONSOLE_TAIL_LINES = 20
#: Evidence name -> the file every boot leaves in its folder.
BOOT_FILES = {
    "console": "console.log",
    "console_text": "console.txt",
    "console_answers": "answers.log",
    "pcap": "nic.pcap",
    "qemu_cmdline": "qemu.cmdline",
    "qemu_stderr": "qemu.stderr",
    "boot_script": "boot.ipxe",
}


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
        #: The payload's file name in the server's root (its requests name it on the wire).
        self.payload_name = ""
        self.evidence = BootEvidence(payloads=[self.payload])
        self._done = False
        self.dhcp_mark = 0
        self.mark = EventMark()
        self.capture: Capture | None = None
        self.summaries: dict[str, WireSummary] = {}
        #: Unicast TFTP bytes that are not the payload (boot script + verifier), for the wire figures.
        self.other_unicast_bytes = 0
        #: Server events for this VM, set by finish().
        self.events: list[ServerEvent] = []
        #: Loss on this VM's tap (``launch(loss=...)``), ended before the tap leaves the bridge.
        self.loss: LossAfterDhcp | None = None

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
                with StallWatch(self.lab.ns, self.slot.tap, self.vm.console, self.protocol):
                    run_ladder(
                        self.vm.console, self.vm.proc, self.payload, self.evidence, self.vm.started,
                        timeout_scale=self.lab.config.timeout_scale,
                        required_feature=PROTOCOL_FEATURE.get(self.protocol),
                    )  # fmt: skip
            finally:
                self.vm.stop()
                text = self.vm.console.text
                self.evidence.console_tail = last_lines(erase_backspaces(text), CONSOLE_TAIL_LINES)
                self.evidence.ipxe_error = ipxe_error(text)
                self._stop_capture()
                self.evidence.tap = tap_counters(self.lab.ns, self.slot.tap)
                self.end_loss()
                self.lab.release(self.slot)
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
        write_evidence(self.evidence, self.directory)
        return self.evidence

    def start_loss(self, percent: int) -> None:
        """``percent`` % loss each way on this VM's tap, DHCP spared (lab/run/loss.py)."""
        assert self.slot is not None
        self.loss = LossAfterDhcp(self.lab, self.slot, percent).__enter__()

    def end_loss(self) -> None:
        if self.loss is not None:
            self.loss.__exit__()
            self.evidence.loss = self.loss.record()

    def _draw_timeline(self) -> None:
        """The multicast session as a picture beside the evidence (docs/timeline.md)."""
        ip = self.slot.ipv4 if self.slot is not None else "?"
        names, failures = boot_inputs(self.model.name, ip, self.evidence, self.evidence.started_unix)
        pictures, error = draw_pictures(self.directory, names=names, failures=failures)
        if error is not None:
            self.evidence.notes["timeline"] = error
        for index, path in enumerate(pictures):
            self.evidence.files["timeline" if index == 0 else f"timeline_{index + 1}"] = path

    def _stop_capture(self) -> None:
        if self.capture is None:
            return
        try:
            result = self.capture.stop()
            self.summaries = count_capture(result, self.directory / "wire" / "capture.json")
        except Exception as exc:  # noqa: BLE001 - missing wire evidence must not hide the boot's verdict
            self.evidence.notes["wire"] = f"capture stop failed: {exc}"
            return
        for name, path in result.files.items():
            self.evidence.files[f"pcap_{name}"] = path
            self.evidence.files[f"wire_{name}"] = path.with_suffix(".wire.json")

    def _classify(self) -> None:
        if self.slot is None:
            return
        wire = None
        result = self.capture.result if self.capture is not None else None
        summary = self.summaries.get(self.slot.tap)
        if result is not None and summary is not None:
            wire = wire_figures(
                summary, self.slot.ipv4, self.other_unicast_bytes, result.kernel_drops(self.slot.tap)
            )
            if BRIDGE in self.summaries:
                wire.bridge_group_data_bytes = self.summaries[BRIDGE].group_bytes()
        evidence = self.evidence
        tap_pcap = result.files.get(self.slot.tap) if result is not None else None
        if evidence.said_ok() and tap_pcap is not None and tap_pcap.exists():
            evidence.wire_fetch_seconds = fetch_on_wire(tap_pcap, self.slot.ipv4, self.payload_name)
        evidence.delivery = classify(
            self.protocol, evidence.status, self.payload.size, self.events, wire, evidence.said_ok(),
            evidence.failed_stage,
        )  # fmt: skip

    def _collect(self, slot: Slot) -> None:
        files = self.evidence.files
        for name, file in BOOT_FILES.items():
            files[name] = self.directory / file
        if self.lab.dhcp is not None:
            dhcp_log = self.directory / "dhcp.log"
            dhcp_log.write_text("\n".join(self.lab.dhcp.log_for(slot.mac)[self.dhcp_mark :]) + "\n")
            files["dhcp_log"] = dhcp_log
        if self.lab.tftp is not None:
            # Session events without a client (start/end) belong to this boot: one VM per lab at a time.
            mine = [e for e in self.lab.tftp_events_since(self.mark) if e.client_ip in (slot.ipv4, None)]
            self.events = mine
            events = self.directory / "tftp.events.jsonl"
            events.write_text(events_text(mine))
            files["tftp_events"] = events
            self.evidence.server = self.lab.tftp.kind
        if self.protocol == "x-slam" and self.lab.slam:
            slam_events = self.lab.slam_events_since(self.mark)
            events = self.directory / "slam.events.jsonl"
            events.write_text(events_text(slam_events))
            files["slam_events"] = events
            self.events += slam_events


def write_evidence(evidence: BootEvidence, directory: Path) -> None:
    """``evidence.json`` beside the boot's files, its paths relative to that folder."""
    (directory / "evidence.json").write_text(json.dumps(to_json(evidence, directory), indent=2) + "\n")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def launch(
    lab: Lab, model: NicModel, rom_set: RomSet, size: int, seed: int, directory: Path, check_rom: bool = True,
    protocol: str = "tftp", capture: bool | None = None, slot: Slot | None = None, server: str | None = None,
    loss: int = 0,
) -> BootRun:  # fmt: skip
    """Start one VM that fetches and verifies one payload; ``finish()`` collects the verdict.

    ``slot``: a slot the caller reserved (a train captures every tap from the start and
    has made sure its servers run); without one the boot takes a free slot and asks the
    lab for the servers its protocol needs, from ``server`` (default: the running one).
    """
    directory.mkdir(parents=True, exist_ok=True)
    run = BootRun(lab, directory, model, size, protocol)
    try:
        rom = rom_set.checked_rom(model) if check_rom else rom_set.rom_path(model)
    except RomMissing as exc:
        run.preflight(Status.SKIP, f"no ROM in this set: {exc}")
        return run
    except RomMismatch as exc:
        run.preflight(Status.ERROR, f"ROM mismatch (a lab setup error, not a driver failure): {exc}")
        return run
    # The file's name, not its path: a report must not carry the paths of the machine that ran it.
    run.evidence.rom.update({"set": rom_set.name, "file": rom.name, "sha256": _sha256(rom)})
    name, digest = lab.payload(size, seed)
    run.payload.expect_sha256 = digest
    run.payload_name = name
    if slot is None:
        running = lab.tftp.kind if lab.tftp is not None else lab.config.server
        lab.ensure(services_for(protocol, (name,), server or running))
        slot = lab.reserve()
    run.slot = slot
    # Slots are reused: this boot's evidence is what the services log from now on.
    run.dhcp_mark = len(lab.dhcp.log_for(slot.mac)) if lab.dhcp else 0
    run.mark = lab.mark()
    # The verifier always comes by tftp: the payload is what the protocol under test carries.
    scheme = "slam" if protocol == "x-slam" else protocol
    script = ipxe_script(
        payload_url("tftp", SERVER_IPV4, VERIFIER_NAME), payload_url(scheme, SERVER_IPV4, name), digest, size
    )
    (lab.root / slot.boot_file).write_text(script)
    (directory / "boot.ipxe").write_text(script)
    run.other_unicast_bytes = len(script) + (lab.root / VERIFIER_NAME).stat().st_size
    if lab.config.capture if capture is None else capture:
        try:
            run.capture = Capture(lab.ns, [BRIDGE, slot.tap], directory / "wire", method="af_packet")
            run.capture.start()
        except CaptureError as exc:
            run.preflight(Status.ERROR, f"wire capture failed: {exc}")
            lab.release(slot)
            return run
    if loss:
        run.start_loss(loss)
    try:
        run.vm = lab.start_vm(model, rom, slot, directory)
        run.evidence.started_unix = wall_clock(run.vm.started)
    except LabError as exc:
        run.preflight(Status.ERROR, str(exc))
        run.end_loss()
        lab.release(slot)
    return run
