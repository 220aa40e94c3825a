"""What the run layer knows and a picture cannot: each client's name, and what failed when.

Why the caller says it: the capture and the server's events know a client by its
address, never by its NIC, and they never see a VM's verdict (a payload stage that timed
out, a SHA-256 that did not match, a train VM's diagnosis).  The run layer has both; these
helpers turn its results into the ``names`` and ``failures`` that
:func:`lab.report.timeline.draw_pictures` takes.

Failure times are Unix time, the clock of the events and the capture.  A stage record's
``at`` counts from QEMU's start, so the caller gives the Unix time QEMU started
(``started_unix``).  Where it does not (a train: its results keep only the VMs' offsets
from each other), the time is read from the VM folder's ``qemu.cmdline``, which the lab
writes the moment before it starts QEMU; when that is missing too, the failure is drawn at
the client's last record and says its time is unknown.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

from lab.model.results import BootEvidence, StageRecord, TrainResult
from lab.model.status import Status
from lab.report.timeline_model import Failure

#: Statuses that mean something went wrong (SKIP, UNSUPPORTED, NOT_EMULATED are facts, not failures).
FAILED = (Status.FAIL, Status.ERROR, Status.MISS)
#: Written by lab.infra.vm.Vm just before QEMU starts.
QEMU_CMDLINE = "qemu.cmdline"


def wall_clock(monotonic_stamp: float) -> float:
    """The Unix time of a ``time.monotonic()`` stamp taken earlier in this process."""
    return time.time() - (time.monotonic() - monotonic_stamp)


def vm_started_unix(directory: Path) -> float | None:
    """When the VM of ``directory`` started QEMU, from its ``qemu.cmdline`` (None: no such file)."""
    try:
        return (directory / QEMU_CMDLINE).stat().st_mtime
    except OSError:
        return None


def boot_names(nic: str, ip: str, note: str = "") -> dict[str, str]:
    """One VM's name in a picture: "e1000 192.0.2.101" (``note``: "e1000 (lossy 5 %) ...")."""
    return {ip: f"{nic} ({note}) {ip}" if note else f"{nic} {ip}"}


def failed_stage(evidence: BootEvidence) -> StageRecord | None:
    """The first stage that did not pass (the ladder stops there)."""
    return next((s for s in evidence.stages if s.status not in (Status.PASS, Status.SKIP)), None)


def boot_failure(
    evidence: BootEvidence, client_ip: str, started_unix: float | None, words: str = ""
) -> Failure | None:
    """A failed boot as a failure: its stage and message, iPXE's error line (from the evidence)
    and ``words`` (a diagnosis), at ``started_unix`` + the stage's ``at``.  None when the boot
    did not fail."""
    if evidence.status not in FAILED:
        return None
    stage = failed_stage(evidence)
    at = None
    if stage is not None and started_unix is not None and stage.at > 0:
        at = started_unix + stage.at
    if stage is not None:
        message = stage.message.removeprefix(f"stage '{stage.name}': ") or evidence.reason
        reason = f"{evidence.status.value} at stage {stage.name}: {message}"
    else:
        reason = evidence.reason or evidence.status.value
    generic = f"failed at stage {stage.name}" if stage is not None else ""
    for part in _ipxe_words(evidence) + (words.split("; ") if words else []):
        if part not in reason and part != generic:
            reason += f"; {part}"
    return Failure(client_ip, at, reason)


def _ipxe_words(evidence: BootEvidence) -> list[str]:
    """iPXE's own error line, with its words when the ROM printed only the code."""
    error = evidence.ipxe_error
    if error is None:
        return []
    return [f"iPXE: {error.line}" + (f" ({error.words})" if error.words and not error.printed else "")]


def boot_inputs(
    nic: str, client_ip: str, evidence: BootEvidence, started_unix: float | None, words: str = ""
) -> tuple[dict[str, str], list[Failure]]:
    """The ``names`` and ``failures`` of one VM's boot, for :func:`lab.report.timeline.draw_pictures`."""
    failure = boot_failure(evidence, client_ip, started_unix, words)
    return boot_names(nic, client_ip), [failure] if failure is not None else []


def train_names(train: TrainResult) -> dict[str, str]:
    """Every VM of a train by NIC and address; the lossy one says so."""
    lossy = train.loss.get("vm") if train.loss else None
    if lossy is None and train.plan.loss_percent:
        lossy = len(train.vms) - 1  # the lossy VM starts last (lab.run.train.LossAfterDhcp)
    names: dict[str, str] = {}
    for index, vm in enumerate(train.vms):
        note = f"lossy {train.plan.loss_percent} %" if index == lossy else ""
        names.update(boot_names(vm.nic, vm.ip, note))
    return names


def train_failures(train: TrainResult, started_unix: Mapping[str, float] | None = None) -> list[Failure]:
    """Each failed VM of a train, with its diagnosis, at the time its stage failed.

    ``started_unix``: VM IP -> Unix time its QEMU started; a VM not in it is timed from its
    evidence (``started_unix``), else from its folder's ``qemu.cmdline`` (runs made before).
    """
    out = []
    for vm in train.vms:
        start = (
            (started_unix or {}).get(vm.ip) or vm.evidence.started_unix or vm_started_unix(vm.directory)
        )
        failure = boot_failure(vm.evidence, vm.ip, start, vm.diagnosis)
        if failure is not None:
            out.append(failure)
    return out
