"""The full boot's verdicts: did each VM boot Debian's kernel to the initramfs's marker?

Why the verdict comes from each guest: the initramfs prints the SHA-256 of a file it
carries (docs/fullboot.md); a corrupt kernel or initrd does not.  It also catches what
only two files on one group show: iPXE fetches every ``mtftp://`` file on
239.255.1.1:3001, and a VM that opens the initrd while the kernel still streams can take
kernel blocks for initrd blocks and print ``ok`` (docs/multicast.md, "One group for every
file").  The train-level checks are :mod:`lab.judge.train`'s.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from images.bootscript import FETCH_FAILED, FETCH_START, FETCHED
from images.fullboot import parse_marker
from lab.judge.ipxe_error import ipxe_error
from lab.judge.ladder import ROM_BANNER, lacks_feature
from lab.judge.train import (
    BOOT_CORRUPT_CHECK,
    EVERY_VM_BOOTED_CHECK,
    corrupt_check,
    every_vm_check,
    mark_unsupported,
    ratio_check,
    settle,
    stream_check,
)
from lab.model.results import BootEvidence, Delivery, IpxeError, StageRecord, TrainCheck, TrainResult
from lab.model.status import Status
from netboot.events import ServerEvent, as_server_events

KERNEL_NAME = "vmlinuz"
INITRD_NAME = "initrd.gz"
#: The script's marker between the fetches and ``boot`` (images.fullboot.fullboot_script).
BOOTING = "LAB booting"
#: Console text after which the marker will never come.
FAILURE_PATTERNS = {
    r"Initramfs unpacking failed[^\n]*": "the kernel could not unpack the initrd iPXE called ok",
    r"Kernel panic[^\n]*": "the kernel panicked",
    re.escape(FETCH_FAILED): "iPXE could not fetch the kernel or the initrd",
    r"No bootable device": "iPXE ended (no more boot devices)",
}

_BANNER = re.compile(ROM_BANNER)


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
    tap_counters: dict[str, int] = field(default_factory=dict)
    console_tail: list[str] = field(default_factory=list)
    ipxe_error: IpxeError | None = None


@dataclass(frozen=True)
class ConsoleEnd:
    """How waiting for a full boot's marker ended: the text matched (None: it timed out or
    QEMU ended first) and whether it was a failure pattern."""

    text: str | None
    failed: bool = False
    pattern: str = ""


def success_pattern(marker: str) -> str:
    return re.escape(marker) + r" sha256=[0-9a-f]{64}"


def rom_lacks(console: str, protocol: str) -> str | None:
    """The ``Features:`` word the ROM's banner lacks for ``protocol`` (None: it has it, or
    no banner was printed): such a VM is UNSUPPORTED, as in the single-VM cells."""
    banner = _BANNER.search(console)
    return None if banner is None else lacks_feature(banner.group("features"), protocol)


def judge_console(vm: FullBootVm, text: str, end: ConsoleEnd, carried_sha256: str, protocol: str,
                  timeout: float) -> None:  # fmt: skip
    """Fill ``vm``'s status, outcome and detail from its console text."""
    vm.fetched_ok = FETCHED in text
    vm.ipxe_error = ipxe_error(text)
    missing = rom_lacks(text, protocol)
    if missing is not None:
        vm.status, vm.outcome, vm.detail = (
            Status.UNSUPPORTED,
            "unsupported",
            f"the ROM's Features: line has no {missing}",
        )
    elif end.text is not None and not end.failed:
        seen = parse_marker(text)
        if seen is not None and seen[0] == carried_sha256:
            vm.status, vm.outcome, vm.detail = Status.PASS, "booted", f"{end.text} kernel={seen[1]}"
        else:
            vm.status, vm.outcome, vm.detail = (
                Status.FAIL,
                "wrong-hash",
                f"marker with another hash: {end.text}",
            )
    elif end.text is not None:
        vm.status = Status.FAIL
        vm.outcome = "ok-but-corrupt" if vm.fetched_ok and FETCH_FAILED not in text else "failed"
        vm.detail = f"{FAILURE_PATTERNS[end.pattern]}: {end.text.strip()}"
        errors = [line for line in text.splitlines() if "ipxe.org/" in line]
        if errors and vm.outcome == "failed":
            vm.detail += f" ({errors[-1].strip()[-120:]})"
    else:
        where = "booting" if BOOTING in text else "fetching" if FETCH_START in text else "before the script"
        vm.status, vm.outcome = Status.FAIL, "failed"
        vm.detail = f"no marker within {timeout:.0f} s (stuck {where}; last line: {_last_line(text)})"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][-100:] if lines else "none"


def full_boot_evidence(vm: FullBootVm) -> BootEvidence:
    evidence = BootEvidence(status=vm.status, reason=vm.detail, seconds=vm.seconds)
    evidence.stages.append(StageRecord("full boot", vm.status, vm.seconds, vm.seconds, message=vm.detail))
    evidence.delivery = Delivery(vm.outcome)
    evidence.tap = vm.tap_counters
    evidence.console_tail, evidence.ipxe_error = vm.console_tail, vm.ipxe_error
    return evidence


def session_figures(events: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per file: the server's own figures, from pyatftpd's ``mcast_session_end`` or (x-slam)
    pyslamd's ``idle`` over its ``transaction`` size; the last one wins."""
    ends: dict[str, dict[str, Any]] = {}
    sizes: dict[str, int] = {}
    for event in as_server_events(events):
        name = str(event.get("file", "")).rsplit("/", 1)[-1]  # pyslamd logs the path
        if event.event == "mcast_session_end":
            ends[name] = {
                k: event.get(k) for k in ("group_ratio", "group_bytes", "unicast_bytes", "clients", "done")
            }
        elif event.event == "transaction":
            sizes[name] = int(event.get("bytes", 0))
        elif event.event == "idle" and sizes.get(name):
            sent = int(event.get("data_bytes", 0))
            ends[name] = {"group_ratio": round(sent / sizes[name], 4), "group_bytes": sent,
                          "passes": event.get("passes"), "repairs": event.get("repairs")}  # fmt: skip
    return ends


def _files_check(
    train: TrainResult, boots: Sequence[FullBootVm], events: Sequence[ServerEvent]
) -> TrainCheck:
    missing, listened = [], []
    for name in (KERNEL_NAME, INITRD_NAME):
        asked = {e.client_ip for e in events if str(e.get("file", "")).rsplit("/", 1)[-1] == name}
        for b in boots:
            if b.ip in asked or b.status is not Status.PASS:
                continue  # a VM that failed (the every-VM check says so) may never have reached this file
            if train.plan.protocol == "x-slam" and b.status is Status.PASS:
                listened.append(f"{b.nic} ({name})")  # a SLAM client that heard it all never NACKs
            else:
                missing.append(f"{b.nic} ({name})")
    detail = f"absent: {', '.join(missing)}" if missing else f"{len(boots)} clients in {len(events)} events"
    if listened and not missing:
        detail += f"; listened without a NACK: {', '.join(listened)}"
    return TrainCheck(
        "every VM appears in the server's events for the kernel and the initrd", not missing, detail
    )


def judge_full_boot(
    train: TrainResult, boots: Sequence[FullBootVm], server_events: Sequence[Mapping[str, Any]], total: int
) -> None:
    """A full-boot train's checks, status and outcome; ``total`` = kernel + initrd bytes."""
    events = as_server_events(server_events)
    if boots and mark_unsupported(train, [b.status for b in boots]):
        return
    vms, checks = train.vms, train.checks
    checks.append(every_vm_check(EVERY_VM_BOOTED_CHECK, vms))
    checks.append(corrupt_check(BOOT_CORRUPT_CHECK, vms,
                                "iPXE printed ok, the kernel failed on"))  # fmt: skip
    checks.append(_files_check(train, boots, events))
    fell_back = {e.client_ip for e in events if e.event == "multicast_not_received"}
    all_fell_back = bool(boots) and all(b.ip in fell_back for b in boots)
    reason = (
        "the server saw every VM not receive the group (multicast_not_received) and served it by unicast"
        if all_fell_back
        else None
    )
    checks.append(stream_check(vms, reason))
    checks.append(ratio_check(train, "kernel + initrd", total))
    settle(train, "unicast-fallback" if all_fell_back else "booted")
