"""The full-boot train: Debian's kernel and the repo's initramfs over multicast to 4 VMs.

Why next to the verifier trains: the verifier proves that bytes arrive; this proves that
what multicast delivers is something machines really boot, which is the 200-node story
(issue 7).  It also catches what only two files on one group show: iPXE fetches every
``mtftp://`` file on 239.255.1.1:3001, and a VM that opens the initrd while the kernel
still streams can take kernel blocks for initrd blocks and print ``ok`` (docs/multicast.md,
"One group for every file").  The verdict comes from each guest: the initramfs prints the
SHA-256 of a file it carries (docs/fullboot.md); a corrupt kernel or initrd does not.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from images.fullboot import FullBoot, build_fullboot, fullboot_script, parse_marker
from lab.capture import Capture
from lab.console import ConsoleClosed
from lab.errors import LabError
from lab.evidence import BootEvidence, StageRecord
from lab.qemu import QemuSpec
from lab.session import WIRE_CONTEXT, Lab
from lab.slam import SLAM_PORT, SlamServer
from lab.stages import BOOT_LADDER, PROTOCOL_FEATURE
from lab.status import Status
from lab.topology import BRIDGE, SERVER_IPV4, tap_counters
from lab.train_diagnosis import refused_fallback
from lab.vm import Vm
from roms.catalog import nic
from roms.romset import RomMismatch, RomMissing, RomSet

KERNEL_NAME = "vmlinuz"
INITRD_NAME = "initrd.gz"
#: Seconds each VM gets from QEMU's start to the marker.  Measured here (2026-11-28, 2 cores,
#: nothing else running): the 4-VM kernel pass took 150-190 s and every good VM printed the
#: marker 215-225 s after it started (docs/fullboot.md).
FULLBOOT_TIMEOUT = 420.0
#: Console text after which the marker will never come.
FAILURE_PATTERNS = {
    r"Initramfs unpacking failed[^\n]*": "the kernel could not unpack the initrd iPXE called ok",
    r"Kernel panic[^\n]*": "the kernel panicked",
    r"LAB fetch-failed": "iPXE could not fetch the kernel or the initrd",
    r"No bootable device": "iPXE ended (no more boot devices)",
}
GROUP_RATIO_LIMIT = 1.2


@dataclass
class FullBootVm:
    nic: str
    ip: str
    tap: str
    directory: Path
    started_at: float
    status: Status = Status.MISS
    outcome: str = ""
    detail: str = ""
    seconds: float = 0.0
    fetched_ok: bool = False  # iPXE printed "LAB fetched": it called both files ok
    tap_counters: dict[str, int] = field(default_factory=dict)  # lab.topology.tap_counters


def fullboot_files(lab: Lab) -> FullBoot:
    """Build (or find) the payload and put its two files in the lab's TFTP root."""
    payload = build_fullboot()
    shutil.copyfile(payload.kernel, lab.root / KERNEL_NAME)
    shutil.copyfile(payload.initrd, lab.root / INITRD_NAME)
    return payload


def run_fullboot_vms(
    lab: Lab, rom_set: RomSet, nics: tuple[str, ...], gap: float, protocol: str, directory: Path,
    timeout: float = FULLBOOT_TIMEOUT,
) -> tuple[FullBoot, list[FullBootVm], Any, list[dict[str, Any]]]:  # fmt: skip
    """Boot ``nics`` ``gap`` s apart into the full boot; return payload, verdicts, capture, events."""
    payload = fullboot_files(lab)
    server = lab.tftp.kind if lab.tftp is not None else "pyatftpd"
    # A tftm full boot's sessions (pyatftpd) wait for every VM, as pyslamd does below.
    lab.start_tftp(server, (KERNEL_NAME, INITRD_NAME), len(nics) if protocol == "tftm" else 1)
    assert lab.tftp is not None
    events_mark = len(lab.tftp.events())
    slam: list[SlamServer] = []
    if protocol == "x-slam":
        # A SLAM URL names no file: one pyslamd per file, each on its own NACK and group port.
        if lab.slam is not None:
            lab.slam.stop()
            lab.slam = None
        slam = [
            SlamServer(lab.ns, lab.root / KERNEL_NAME, directory, SLAM_PORT, len(nics)),
            SlamServer(lab.ns, lab.root / INITRD_NAME, directory, SLAM_PORT + 1, len(nics)),
        ]
        script = fullboot_script(slam[0].url, slam[1].url)
    else:
        base = f"{protocol}://{SERVER_IPV4}"
        script = fullboot_script(f"{base}/{KERNEL_NAME}", f"{base}/{INITRD_NAME}")
    slots = [lab.reserve() for _ in nics]
    vms: list[FullBootVm] = []
    machines: list[Vm | None] = []
    try:
        with Capture(
            lab.ns, [BRIDGE, *(s.tap for s in slots)], directory / "wire", method="af_packet",
            context=WIRE_CONTEXT,
        ) as cap:  # fmt: skip
            t0 = time.monotonic()
            for index, (name, slot) in enumerate(zip(nics, slots, strict=True)):
                time.sleep(max(0.0, t0 + index * gap - time.monotonic()))
                vm_dir = directory / f"vm{index}-{name}"
                vm_dir.mkdir(parents=True, exist_ok=True)
                (lab.root / slot.boot_file).write_text(script)
                (vm_dir / "boot.ipxe").write_text(script)
                vm = FullBootVm(name, slot.ipv4, slot.tap, vm_dir, time.monotonic() - t0)
                vms.append(vm)
                machines.append(_start(lab, rom_set, name, slot, vm))
            threads = [
                threading.Thread(target=_watch, args=(m, v, payload, timeout, protocol))
                for m, v in zip(machines, vms, strict=True)
                if m is not None
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        for machine in machines:
            if machine is not None:
                machine.stop()
        for vm in vms:
            vm.tap_counters = tap_counters(lab.ns, vm.tap)
        for slot in slots:
            lab.release(slot)
        slam_events = [event for server_ in slam for event in server_.events()]
        for server_ in slam:
            server_.stop()
    events = (lab.tftp.events()[events_mark:] if lab.tftp else []) + slam_events
    (directory / "server.events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    for vm in vms:
        _write_evidence(vm)
    return payload, vms, cap.result, events


def _start(lab: Lab, rom_set: RomSet, name: str, slot: Any, vm: FullBootVm) -> Vm | None:
    model = nic(name)
    try:
        rom = rom_set.checked_rom(model)
    except (RomMissing, RomMismatch) as exc:
        vm.status, vm.outcome, vm.detail = (
            Status.ERROR,
            "error",
            f"ROM problem (the lab's, not the driver's): {exc}",
        )
        return None
    assert model.qemu_device is not None
    spec = QemuSpec(
        model.qemu_device, slot.mac, rom, slot.tap, accel=lab.config.accel, pcap=vm.directory / "nic.pcap"
    )
    try:
        return Vm(lab.ns, spec, vm.directory)
    except LabError as exc:
        vm.status, vm.outcome, vm.detail = Status.ERROR, "error", str(exc)
        return None


#: The ROM banner, as the single-VM boots' "rom" stage reads it.
_BANNER = re.compile(next(stage.success for stage in BOOT_LADDER if stage.name == "rom"))


def lacks_feature(console: str, protocol: str) -> str | None:
    """The ``Features:`` word the ROM's banner lacks for ``protocol`` (None: it has it, or
    no banner was printed): such a VM is UNSUPPORTED, as in the single-VM cells."""
    banner = _BANNER.search(console)
    word = PROTOCOL_FEATURE.get(protocol)
    if banner is None or word is None or word in banner.group("features").split():
        return None
    return word


def _watch(machine: Vm, vm: FullBootVm, payload: FullBoot, timeout: float, protocol: str) -> None:
    """Wait for the marker or a failure on ``machine``'s console and record the verdict."""
    success = re.escape(payload.marker) + r" sha256=[0-9a-f]{64}"
    try:
        match = machine.console.expect(success, list(FAILURE_PATTERNS), timeout, consume=False)
    except TimeoutError:
        match = None
    except ConsoleClosed:
        match = None
    vm.seconds = time.monotonic() - machine.started
    text = machine.console.text
    vm.fetched_ok = "LAB fetched" in text
    missing = lacks_feature(text, protocol)
    if missing is not None:
        vm.status, vm.outcome = Status.UNSUPPORTED, "unsupported"
        vm.detail = f"the ROM's Features: line has no {missing}"
        return
    if match is not None and not match.failed:
        seen = parse_marker(text)
        if seen is not None and seen[0] == payload.carried_sha256:
            vm.status, vm.outcome = Status.PASS, "booted"
            vm.detail = f"{match.text} kernel={seen[1]}"
            return
        vm.status, vm.outcome = Status.FAIL, "wrong-hash"
        vm.detail = f"marker with another hash: {match.text}"
        return
    if match is not None:
        vm.status = Status.FAIL
        vm.outcome = "ok-but-corrupt" if vm.fetched_ok and "LAB fetch-failed" not in text else "failed"
        vm.detail = f"{FAILURE_PATTERNS[match.pattern]}: {match.text.strip()}"
        errors = [line for line in text.splitlines() if "ipxe.org/" in line]
        if errors and vm.outcome == "failed":
            vm.detail += f" ({errors[-1].strip()[-120:]})"
        return
    vm.status, vm.outcome = Status.FAIL, "failed"
    stage = (
        "booting"
        if "LAB booting" in text
        else "fetching"
        if "LAB fetch-start" in text
        else "before the script"
    )
    vm.detail = f"no marker within {timeout:.0f} s (stuck {stage}; last line: {_last_line(text)})"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][-100:] if lines else "none"


def _write_evidence(vm: FullBootVm) -> None:
    evidence = full_boot_evidence(vm)
    evidence.files.update(
        {"console": str(vm.directory / "console.log"), "nic_pcap": str(vm.directory / "nic.pcap")}
    )
    evidence.write(vm.directory / "evidence.json")


def full_boot_evidence(vm: FullBootVm) -> BootEvidence:
    evidence = BootEvidence(status=vm.status, reason=vm.detail, seconds=vm.seconds)
    evidence.stages.append(StageRecord("full boot", vm.status, vm.seconds, vm.seconds, message=vm.detail))
    evidence.delivery = {"outcome": vm.outcome}
    evidence.tap = vm.tap_counters
    return evidence


def session_figures(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per file: the server's own figures, from pyatftpd's ``mcast_session_end`` or (x-slam)
    pyslamd's ``idle`` over its ``transaction`` size; the last one wins."""
    ends: dict[str, dict[str, Any]] = {}
    sizes: dict[str, int] = {}
    for event in events:
        name = str(event.get("file", "")).rsplit("/", 1)[-1]  # pyslamd logs the path
        if event.get("event") == "mcast_session_end":
            ends[name] = {
                key: event.get(key)
                for key in ("group_ratio", "group_bytes", "unicast_bytes", "clients", "done")
            }
        elif event.get("event") == "transaction":
            sizes[name] = int(event.get("bytes", 0))
        elif event.get("event") == "idle" and sizes.get(name):
            sent = int(event.get("data_bytes", 0))
            ends[name] = {"group_ratio": round(sent / sizes[name], 4), "group_bytes": sent,
                          "passes": event.get("passes"), "repairs": event.get("repairs")}
    return ends


def run_fullboot_train(lab: Lab, rom_set: RomSet, plan: Any, directory: Path) -> Any:
    """One full-boot train (``plan`` is a :class:`lab.train.TrainPlan` with ``full_boot``)."""
    from lab.train import TrainResult, TrainVm, draw_train_timelines, stream_timeline

    directory.mkdir(parents=True, exist_ok=True)
    kind = plan.server if plan.server in ("pyatftpd", "atftpd") else "pyatftpd"
    if lab.tftp is None or lab.tftp.kind != kind:
        lab.start_tftp(kind)
    payload, boots, capture, events = run_fullboot_vms(
        lab, rom_set, plan.nics, plan.gap, plan.protocol, directory
    )
    total = payload.kernel.stat().st_size + payload.initrd.stat().st_size
    vms: list[TrainVm] = []
    for boot in boots:
        vm = TrainVm(boot.nic, boot.ip, boot.directory, full_boot_evidence(boot), boot.started_at)
        if boot.status is not Status.PASS:
            refused = refused_fallback(events, boot.ip)
            vm.diagnosis = f"{boot.detail}; {refused}" if refused else boot.detail
        pcap = capture.files.get(boot.tap) if capture else None
        if pcap is not None and pcap.exists():
            heard = stream_timeline(pcap, boot.ip, KERNEL_NAME, listen_after=".ipxe")
            vm.heard_before_asking, vm.transfer = heard
        vms.append(vm)
    train = TrainResult(plan, Status.MISS, "", directory, vms)
    bridge = capture.summaries.get(BRIDGE) if capture else None
    if bridge is not None:
        train.group_bytes = bridge.group_bytes()
        train.group_ratio = train.group_bytes / total if total else None
    judge_full_boot(train, boots, events, total)
    train.full_boot = {
        "kernel_package": payload.kernel_package,
        "payload_bytes": total,
        "sessions": session_figures(events),
    }
    train.timelines = draw_train_timelines(directory)
    (directory / "train.json").write_text(json.dumps(train.to_json(), indent=1) + "\n")
    return train


def judge_full_boot(train: Any, boots: list[FullBootVm], events: list[dict[str, Any]], total: int) -> None:
    from lab.train import TrainCheck, mark_unsupported

    if boots and mark_unsupported(train, [b.status for b in boots]):
        return
    checks = train.checks
    checks.append(TrainCheck(
        "every VM booted Debian's kernel to the marker (the initramfs hashes the file it carries)",
        all(b.status is Status.PASS for b in boots),
        ", ".join(_verdict(b) for b in boots),
    ))  # fmt: skip
    corrupt = [b.nic for b in boots if b.outcome == "ok-but-corrupt"]
    checks.append(TrainCheck(
        "no VM called both files ok and then failed to boot them",
        not corrupt,
        f"iPXE printed ok, the kernel failed on: {', '.join(corrupt)}" if corrupt else "none",
    ))  # fmt: skip
    missing, listened = [], []
    for name in (KERNEL_NAME, INITRD_NAME):
        asked = {
            str(e.get("client", "")).rsplit(":", 1)[0]
            for e in events
            if str(e.get("file", "")).rsplit("/", 1)[-1] == name  # pyslamd logs the path
        }
        for b in boots:
            if b.ip in asked or b.status is Status.ERROR:
                continue
            if train.plan.protocol == "x-slam" and b.status is Status.PASS:
                listened.append(f"{b.nic} ({name})")  # a SLAM client that heard it all never NACKs
            else:
                missing.append(f"{b.nic} ({name})")
    checks.append(TrainCheck(
        "every VM appears in the server's events for the kernel and the initrd",
        not missing,
        f"absent: {', '.join(missing)}"
        if missing
        else f"{len(boots)} clients in {len(events)} events"
        + (f"; listened without a NACK: {', '.join(listened)}" if listened else ""),
    ))  # fmt: skip
    vms = train.vms
    first = min((v for v in vms if v.transfer is not None), key=lambda v: v.transfer[0], default=None)
    late = [v for v in vms if v is not first and v.transfer is not None]
    fallbacks = [e for e in events if e.get("event") == "multicast_not_received"]
    fell_back = {str(e.get("client", "")).rsplit(":", 1)[0] for e in fallbacks}
    all_fell_back = bool(boots) and all(b.ip in fell_back for b in boots)
    if all_fell_back:  # ROMs that cannot hear the group: the train must complete anyway, and say so
        shared: bool | None = None
        detail = (
            "not applicable: the server saw every VM not receive the group (multicast_not_received) "
            "and served it by unicast"
        )
    else:
        shared = bool(late) and all(v.heard_before_asking > 0 for v in late)
        detail = ", ".join(
            f"{v.nic}: {v.heard_before_asking} group blocks it never asked for" for v in late
        ) or "no late VM"
    checks.append(TrainCheck("late VMs took kernel blocks from the running stream", shared, detail))
    if train.group_ratio is None:
        checks.append(
            TrainCheck(f"group bytes <= {GROUP_RATIO_LIMIT} x kernel + initrd", False, "no bridge capture")
        )
    else:
        checks.append(TrainCheck(
            f"group bytes <= {GROUP_RATIO_LIMIT} x kernel + initrd",
            train.group_ratio <= GROUP_RATIO_LIMIT,
            f"{train.group_bytes} B = {train.group_ratio:.3f} x the {total} B of kernel and initrd "
            "(bridge capture)",
        ))  # fmt: skip
    statuses = [b.status for b in boots]
    if Status.ERROR in statuses and Status.FAIL not in statuses:
        train.status = Status.ERROR
    else:
        train.status = Status.PASS if all(c.ok is not False for c in checks) else Status.FAIL
    if corrupt:
        train.outcome = "ok-but-corrupt"
    elif train.status is Status.PASS:
        train.outcome = "unicast-fallback" if all_fell_back else "booted"
    else:
        train.outcome = "failed" if train.status is Status.FAIL else train.status.value.lower()
    train.reason = "; ".join(f"{c.name}: {c.detail}" for c in checks if c.ok is False)


def _verdict(boot: FullBootVm) -> str:
    return f"{boot.nic}={boot.status.value}" + ("" if boot.status is Status.PASS else f" ({boot.detail})")
