"""Run trains: several VMs of mixed NICs fetching one payload by multicast, staggered.

The train is judged by :mod:`lab.judge.train` from the guests' verdicts, the server's
events and the captures of the bridge and of every VM's tap; this module boots the VMs,
captures, injects loss on one tap when asked, and collects that evidence.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from lab.infra.capture import Capture, CaptureResult
from lab.judge.delivery import classify, wire_figures
from lab.judge.diagnosis import (
    UNKNOWN_LISTENER,
    diagnose,
    known_defect,
    refused_fallback,
    requests_lost_to_injected_loss,
)
from lab.judge.server_story import server_story
from lab.judge.stale_reopen import stale_reopen_defect
from lab.judge.train import judge
from lab.model.jsonable import to_json
from lab.model.network import BRIDGE, MTFTP_PORT, VERIFIER_NAME, Slot
from lab.model.results import BootEvidence, TrainResult, TrainVm
from lab.model.status import Status
from lab.model.train_plan import TrainPlan
from lab.report.timeline import draw_pictures
from lab.report.timeline_inputs import train_failures, train_names
from lab.run.boot import BootRun, launch, write_evidence
from lab.run.evidence import count_capture
from lab.run.lab import Lab
from lab.run.loss import LossAfterDhcp
from lab.run.services import services_for
from lab.wire.counts import WireSummary
from lab.wire.frames import Frame, read_frames
from lab.wire.streams import sent_to_port, stream_timeline, tap_activity
from netboot.events import ServerEvent, events_text
from roms.catalog import nic
from roms.romset import RomSet


def boot_train(
    lab: Lab, rom_set: RomSet, plan: TrainPlan, directory: Path, slots: Sequence[Slot], name: str
) -> tuple[list[BootRun], list[float], list[BootEvidence]]:
    """Start the VMs ``plan.gap`` s apart on ``slots``; wait for every one; (runs, starts, evidence)."""
    runs: list[BootRun] = []
    starts: list[float] = []
    t0 = time.monotonic()
    for index, (nic_name, slot) in enumerate(zip(plan.nics, slots, strict=True)):
        time.sleep(max(0.0, t0 + index * plan.gap - time.monotonic()))
        starts.append(time.monotonic() - t0)
        where = directory / f"vm{index}-{nic_name}"
        runs.append(launch(lab, nic(nic_name), rom_set, plan.size, plan.seed, where, protocol=plan.protocol,
                           capture=False, slot=slot))  # fmt: skip
    evidences: list[BootEvidence] = [run.evidence for run in runs]

    def finish(i: int) -> None:
        evidences[i] = runs[i].finish()

    threads = [threading.Thread(target=finish, args=(i,)) for i in range(len(runs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return runs, starts, evidences


def run_train(lab: Lab, rom_set: RomSet, plan: TrainPlan, directory: Path) -> TrainResult:
    """Boot ``plan.nics`` ``plan.gap`` s apart against ``lab``, capture br0 and every tap, check."""
    directory.mkdir(parents=True, exist_ok=True)
    name, _ = lab.payload(plan.size, plan.seed)
    lab.ensure(services_for(plan.protocol, (name,), plan.server, train_vms=len(plan.nics)))
    mark = lab.mark()
    t0 = time.monotonic()
    slots = [lab.reserve() for _ in plan.nics]
    with ExitStack() as stack:
        cap = stack.enter_context(Capture(lab.ns, [BRIDGE, *(s.tap for s in slots)], directory / "wire",
                                          method="af_packet"))  # fmt: skip
        loss = (
            stack.enter_context(LossAfterDhcp(lab, slots[-1], plan.loss_percent))
            if plan.loss_percent
            else None
        )
        lossy_tap = slots[-1].tap if loss is not None and loss.injected is not None else None
        runs, starts, evidences = boot_train(lab, rom_set, plan, directory, slots, name)
    assert cap.result is not None
    summaries = count_capture(cap.result)
    events = lab.tftp_events_since(mark)
    (directory / "server.events.jsonl").write_text(events_text(events))
    if plan.protocol == "x-slam":
        events = events + lab.slam_events_since(mark)
    train = TrainResult(plan, Status.MISS, "", directory, seconds=time.monotonic() - t0)
    for index, run in enumerate(runs):
        vm = TrainVm(plan.nics[index], slots[index].ipv4, run.directory, evidences[index], starts[index])
        train.vms.append(_observe(vm, plan, run, slots[index], cap, summaries, events, name, lossy_tap))
    if loss is not None and loss.injected is not None:
        train.loss = {**loss.record(), "vm": len(slots) - 1}
    bridge = summaries.get(BRIDGE)
    # The VMs that verified: a failed VM's late fallback is no reason to allow more bytes.
    starts_on_wire = [v.transfer[0] for v in train.vms if v.transfer is not None and v.status is Status.PASS]
    if bridge is not None and starts_on_wire:
        train.missed_by_last = bridge.group_bytes_first_sent_before(max(starts_on_wire))
    judge(train, events, bridge.group_bytes() if bridge is not None else None)
    finish_train(train)
    return train


def _observe(
    vm: TrainVm, plan: TrainPlan, run: BootRun, slot: Slot, cap: Capture, summaries: dict[str, WireSummary],
    events: list[ServerEvent], name: str, lossy_tap: str | None,
) -> TrainVm:  # fmt: skip
    """One VM's part of the train: its delivery from its tap, and what its tap shows if it failed."""
    evidence = vm.evidence
    summary = summaries.get(slot.tap)
    pcap = cap.result.files.get(slot.tap) if cap.result else None
    if summary is not None and cap.result is not None:
        figures = wire_figures(summary, slot.ipv4, run.other_unicast_bytes, cap.result.kernel_drops(slot.tap))
        mine = [e for e in events if e.client_ip == slot.ipv4]
        evidence.delivery = classify(plan.protocol, evidence.status, plan.size, mine, figures,
                                     evidence.said_ok(), evidence.failed_stage)  # fmt: skip
        if pcap is not None:
            evidence.files["train_wire"] = pcap
        write_evidence(evidence, run.directory)
    if pcap is not None and pcap.exists():
        frames = list(read_frames(pcap))  # read once for both readers
        vm.heard_before_asking, vm.transfer = stream_timeline(frames, slot.ipv4, name, VERIFIER_NAME)
        vm.diagnosis = diagnose(evidence, tap_activity(frames, slot.ipv4), vm.transfer is not None)
    if evidence.status is not Status.PASS:
        vm.diagnosis = refused_fallback(events, slot.ipv4) or vm.diagnosis
        vm.server_story = server_story(events, slot.ipv4)
        if plan.protocol == "mtftp" and pcap is not None and pcap.exists():
            lost = requests_lost_to_lab_loss(frames, slot, cap.result, lossy_tap)
            reached = not lost and sent_to_port(frames, slot.ipv4, MTFTP_PORT)
            vm.defect = known_defect(events, slot.ipv4, reached) or stale_reopen_defect(
                events, slot.ipv4, frames
            )
            if lost and vm.defect == UNKNOWN_LISTENER:  # first: a long diagnosis is cut when printed
                vm.diagnosis = (
                    f"its {lost} MTFTP request(s) on its tap never reached {BRIDGE}: the "
                    f"{plan.loss_percent} % loss the lab injects on its tap dropped them; {vm.diagnosis}"
                )
    return vm


def requests_lost_to_lab_loss(
    frames: Sequence[Frame], slot: Slot, result: CaptureResult | None, lossy_tap: str | None
) -> int:
    """The VM's MTFTP requests the lab's own loss dropped, when its captures prove it (else 0)."""
    bridge = result.files.get(BRIDGE) if result is not None else None
    if result is None or slot.tap != lossy_tap or bridge is None or not bridge.exists():
        return 0
    if result.kernel_drops(BRIDGE) or result.kernel_drops(slot.tap):
        return 0  # a capture that dropped frames proves no absence
    return requests_lost_to_injected_loss(frames, list(read_frames(bridge)), slot.ipv4, MTFTP_PORT)


def finish_train(train: TrainResult) -> None:
    """Draw the train's session(s) and write train.json beside its artifacts."""
    pictures, error = draw_pictures(train.directory, names=train_names(train), failures=train_failures(train))
    train.timelines, train.timeline_error = pictures, error or ""
    (train.directory / "train.json").write_text(json.dumps(to_json(train, train.directory), indent=1) + "\n")
