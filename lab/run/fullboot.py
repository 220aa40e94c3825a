"""Run the full-boot train: Debian's kernel and the repo's initramfs over multicast to 4 VMs.

Why next to the verifier trains: the verifier proves that bytes arrive; this proves that
what multicast delivers is something machines really boot, which is the 200-node story.
Each VM's verdict and the train's checks are :mod:`lab.judge.fullboot`'s.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from images.fullboot import FullBoot, build_fullboot, fullboot_script
from lab.infra.capture import Capture, CaptureResult
from lab.infra.console import ConsoleClosed
from lab.infra.network import tap_counters
from lab.infra.slam_service import slam_url
from lab.infra.vm import Vm
from lab.judge.diagnosis import refused_fallback
from lab.judge.fullboot import (
    FAILURE_PATTERNS,
    INITRD_NAME,
    KERNEL_NAME,
    ConsoleEnd,
    FullBootVm,
    full_boot_evidence,
    judge_console,
    judge_full_boot,
    session_figures,
    success_pattern,
)
from lab.judge.server_story import server_story
from lab.judge.stale_reopen import stale_reopen_defect
from lab.model.console_text import erase_backspaces, last_lines
from lab.model.errors import LabError
from lab.model.network import BRIDGE, SERVER_IPV4, SLAM_PORT, Slot
from lab.model.results import TrainResult, TrainVm
from lab.model.status import Status
from lab.model.train_plan import TrainPlan
from lab.run.boot import CONSOLE_TAIL_LINES, write_evidence
from lab.run.evidence import count_capture
from lab.run.lab import Lab
from lab.run.services import services_for
from lab.run.train import finish_train
from lab.wire.frames import read_frames
from lab.wire.streams import stream_timeline
from netboot.events import ServerEvent, events_text
from roms.catalog import nic
from roms.romset import RomMismatch, RomMissing, RomSet

#: Seconds each VM gets from QEMU's start to the marker.  Measured here (2026-11-28, 2 cores,
#: nothing else running): the 4-VM kernel pass took 150-190 s and every good VM printed the
#: marker 215-225 s after it started (docs/fullboot.md).
FULLBOOT_TIMEOUT = 420.0


def fullboot_files(lab: Lab) -> FullBoot:
    """Build (or find) the payload and put its two files in the lab's TFTP root."""
    payload = build_fullboot()
    shutil.copyfile(payload.kernel, lab.root / KERNEL_NAME)
    shutil.copyfile(payload.initrd, lab.root / INITRD_NAME)
    return payload


def fullboot_urls(protocol: str) -> tuple[str, str]:
    """The kernel's and the initrd's URL: x-slam names each file's server by its port."""
    if protocol == "x-slam":
        return slam_url(SLAM_PORT), slam_url(SLAM_PORT + 1)
    base = f"{protocol}://{SERVER_IPV4}"
    return f"{base}/{KERNEL_NAME}", f"{base}/{INITRD_NAME}"


def run_fullboot_vms(
    lab: Lab, rom_set: RomSet, nics: tuple[str, ...], gap: float, protocol: str, server: str, directory: Path,
    timeout: float = FULLBOOT_TIMEOUT,
) -> tuple[FullBoot, list[FullBootVm], CaptureResult | None, list[ServerEvent]]:  # fmt: skip
    """Boot ``nics`` ``gap`` s apart into the full boot; return payload, verdicts, capture, events."""
    payload = fullboot_files(lab)
    lab.ensure(services_for(protocol, (KERNEL_NAME, INITRD_NAME), server, train_vms=len(nics)))
    mark = lab.mark()
    script = fullboot_script(*fullboot_urls(protocol))
    slots = [lab.reserve() for _ in nics]
    vms: list[FullBootVm] = []
    machines: list[Vm | None] = []
    try:
        with Capture(
            lab.ns, [BRIDGE, *(s.tap for s in slots)], directory / "wire", method="af_packet"
        ) as cap:
            t0 = time.monotonic()
            for index, (name, slot) in enumerate(zip(nics, slots, strict=True)):
                time.sleep(max(0.0, t0 + index * gap - time.monotonic()))
                vm = FullBootVm(
                    name, slot.ipv4, slot.tap, directory / f"vm{index}-{name}", time.monotonic() - t0
                )
                vms.append(vm)
                machines.append(_start(lab, rom_set, slot, vm, script))
            _watch_all(machines, vms, payload, timeout, protocol)
    finally:
        _stop_all(lab, machines, vms, slots)
    events = lab.tftp_events_since(mark) + lab.stop_slam()
    (directory / "server.events.jsonl").write_text(events_text(events))
    for vm in vms:
        evidence = full_boot_evidence(vm)
        for name, file in (("console", "console.log"), ("console_text", "console.txt"),
                           ("nic_pcap", "nic.pcap")):
            evidence.files[name] = vm.directory / file
        write_evidence(evidence, vm.directory)
    return payload, vms, cap.result, events


def _start(lab: Lab, rom_set: RomSet, slot: Slot, vm: FullBootVm, script: str) -> Vm | None:
    vm.directory.mkdir(parents=True, exist_ok=True)
    (lab.root / slot.boot_file).write_text(script)
    (vm.directory / "boot.ipxe").write_text(script)
    model = nic(vm.nic)
    try:
        return lab.start_vm(model, rom_set.checked_rom(model), slot, vm.directory)
    except (RomMissing, RomMismatch) as exc:
        vm.status, vm.outcome, vm.detail = (
            Status.ERROR,
            "error",
            f"ROM problem (the lab's, not the driver's): {exc}",
        )
    except LabError as exc:
        vm.status, vm.outcome, vm.detail = Status.ERROR, "error", str(exc)
    return None


def _watch_all(
    machines: Sequence[Vm | None], vms: Sequence[FullBootVm], payload: FullBoot, timeout: float, protocol: str
) -> None:
    threads = [
        threading.Thread(target=_watch, args=(m, v, payload, timeout, protocol))
        for m, v in zip(machines, vms, strict=True)
        if m is not None
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _stop_all(
    lab: Lab, machines: Sequence[Vm | None], vms: Sequence[FullBootVm], slots: Sequence[Slot]
) -> None:
    for machine in machines:
        if machine is not None:
            machine.stop()
    for vm in vms:
        vm.tap_counters = tap_counters(lab.ns, vm.tap)
    for slot in slots:
        lab.release(slot)


def _watch(machine: Vm, vm: FullBootVm, payload: FullBoot, timeout: float, protocol: str) -> None:
    """Wait for the marker or a failure on ``machine``'s console; the judge reads the verdict."""
    try:
        match = machine.console.expect(success_pattern(payload.marker), list(FAILURE_PATTERNS), timeout,
                                       consume=False)  # fmt: skip
        end = ConsoleEnd(match.text, match.failed, match.pattern)
    except (TimeoutError, ConsoleClosed):
        end = ConsoleEnd(None)
    vm.seconds = time.monotonic() - machine.started
    vm.console_tail = last_lines(erase_backspaces(machine.console.text), CONSOLE_TAIL_LINES)
    judge_console(vm, machine.console.text, end, payload.carried_sha256, protocol, timeout)


def run_fullboot_train(lab: Lab, rom_set: RomSet, plan: TrainPlan, directory: Path) -> TrainResult:
    """One full-boot train (a :class:`TrainPlan` with ``full_boot``)."""
    directory.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    payload, boots, capture, events = run_fullboot_vms(
        lab, rom_set, plan.nics, plan.gap, plan.protocol, plan.server, directory
    )
    summaries = count_capture(capture) if capture is not None else {}
    total = payload.kernel.stat().st_size + payload.initrd.stat().st_size
    train = TrainResult(plan, Status.MISS, "", directory, seconds=time.monotonic() - t0)
    for boot in boots:
        vm = TrainVm(boot.nic, boot.ip, boot.directory, full_boot_evidence(boot), boot.started_at)
        pcap = capture.files.get(boot.tap) if capture else None
        frames = list(read_frames(pcap)) if pcap is not None and pcap.exists() else None  # read once
        if boot.status is not Status.PASS:
            refused = refused_fallback(events, boot.ip)
            vm.diagnosis = f"{boot.detail}; {refused}" if refused else boot.detail
            vm.server_story = server_story(events, boot.ip)
            if plan.protocol == "mtftp" and frames is not None:
                vm.defect = stale_reopen_defect(events, boot.ip, frames)
        if frames is not None:
            vm.heard_before_asking, vm.transfer = stream_timeline(frames, boot.ip, KERNEL_NAME, ".ipxe")
        train.vms.append(vm)
    bridge = summaries.get(BRIDGE)
    if bridge is not None:
        train.group_bytes = bridge.group_bytes()
        train.group_ratio = train.group_bytes / total if total else None
    judge_full_boot(train, boots, events, total)
    train.full_boot = {
        "kernel_package": payload.kernel_package,
        "payload_bytes": total,
        "sessions": session_figures(events),
    }
    finish_train(train)
    return train
