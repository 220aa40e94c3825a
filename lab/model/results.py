"""What the lab proved: stage records, boots, cells, trains and the run they belong to.

Why the result types live here and not beside the code that runs boots: reports,
``lab diff`` and ``lab merge`` read them back from JSON without running anything, and
the judge fills them without knowing how a VM was started.  They are plain dataclasses
serialised by :mod:`lab.model.jsonable`; the field names are the JSON keys (schema in
docs/matrix.schema.json).  Every path is a ``Path`` so reports can write it relative to
the run folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from lab.model.jsonable import ROUND3, keyed
from lab.model.plan import BootPlan, CellKey
from lab.model.status import Status, combine
from lab.model.train_plan import TrainPlan


@dataclass
class StageRecord:
    name: str
    status: Status
    seconds: float = field(metadata=ROUND3)  # how long this stage took (from the previous stage's end)
    at: float = field(metadata=ROUND3)  # seconds since QEMU started
    detail: dict[str, str] = field(default_factory=dict)
    message: str = ""


@dataclass
class PayloadCheck:
    """One payload the guest hashed: expected against what the verifier printed."""

    JSON_PROPERTIES: ClassVar[tuple[str, ...]] = ("status",)

    size: int
    expect_sha256: str
    seen_sha256: str | None = None
    seen_bytes: int | None = None

    @property
    def status(self) -> Status:
        if self.seen_sha256 is None:
            return Status.MISS
        ok = self.seen_sha256 == self.expect_sha256 and self.seen_bytes == self.size
        return Status.PASS if ok else Status.FAIL


@dataclass
class WireFigures:
    """What one VM's tap capture says about its payload transfer."""

    group_data_bytes: int = 0  # group DATA that reached the VM's tap
    group_data_frames: int = 0
    unicast_data_bytes: int = 0  # unicast TFTP DATA payload to the VM (all files)
    unicast_payload_bytes: int = 0  # the same minus the unicast files that are not the payload
    unicast_retransmits: int = 0
    acks: int = 0
    slam_nacks: int = 0
    igmp_reports: int = 0
    kernel_drops: int = 0
    #: Group DATA bytes the server sent, as seen on the bridge (what the tap could have got).
    bridge_group_data_bytes: int | None = None


@dataclass
class Delivery:
    """How a boot's payload travelled (docs/matrix.md, "Outcomes")."""

    outcome: str
    #: One line for the matrix cell's details: the evidence in words and figures.
    evidence: str = ""
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass
class IpxeError:
    """iPXE's own error line from a console (lab.judge.ipxe_error)."""

    line: str  # as the console showed it: "Connection timed out (http://ipxe.org/4c126035)"
    code: str  # "4c126035"
    words: str  # the error in words (printed by the ROM, or decoded from the code's top byte)
    printed: bool = True  # the ROM printed the words (False: decoded here)


@dataclass
class BootEvidence:
    """Everything one VM boot proved or failed to prove."""

    JSON_PROPERTIES: ClassVar[tuple[str, ...]] = ("failed_stage", "fetch_seconds")

    status: Status = Status.MISS
    reason: str = ""
    stages: list[StageRecord] = field(default_factory=list)
    payloads: list[PayloadCheck] = field(default_factory=list)
    rom: dict[str, str] = field(default_factory=dict)
    #: Evidence name -> file (console log, events, pcaps, counts, pictures).
    files: dict[str, Path] = field(default_factory=dict)
    #: Why a piece of evidence is missing (a capture that failed, a picture not drawn).
    notes: dict[str, str] = field(default_factory=dict)
    #: The TFTP server the VM booted from (pyatftpd or atftpd).
    server: str = ""
    exit_status: int | None = None
    seconds: float = field(default=0.0, metadata=ROUND3)
    #: How the payload travelled, for multicast scenarios (lab.judge.delivery).
    delivery: Delivery | None = None
    #: The VM's tap when the VM stopped: frames handed to QEMU and frames QEMU never read.
    tap: dict[str, int] = field(default_factory=dict)
    #: The console's last lines (readable text) and iPXE's own last error line.
    console_tail: list[str] = field(default_factory=list)
    ipxe_error: IpxeError | None = None
    #: Loss injected on the VM's tap (``--lab-cell-loss``): percent, from when, how.
    loss: dict[str, Any] = field(default_factory=dict)
    #: Unix time QEMU started: puts a failure on a timeline even in a copied run folder.
    started_unix: float | None = None
    #: The payload's fetch as the VM's tap saw it (``lab.wire.streams.stream_timeline``): from
    #: the first request a server could act on (the TFTP RRQ, the first SLAM NACK) to the
    #: last payload frame.  Beside ``fetch_seconds`` it shows how long the client waited
    #: before it asked: iPXE's x-slam sends its first NACK only after a fixed second
    #: (docs/pyslamd.md, "How the single-client goal is measured").  Set for cells; None when
    #: the fetch did not finish or was not captured, and for train VMs (their span on the
    #: tap is ``TrainVm.transfer``).
    wire_fetch_seconds: float | None = field(default=None, metadata=ROUND3)

    @property
    def failed_stage(self) -> str | None:
        bad = [s for s in self.stages if s.status not in (Status.PASS, Status.SKIP)]
        return bad[0].name if bad else None

    @property
    def fetch_seconds(self) -> float | None:
        """The payload's fetch as the guest's console timed it (from the kernel's "fetched"
        marker to the payload's), None when the fetch did not finish."""
        stage = next((s for s in self.stages if s.name == "payload" and s.status is Status.PASS), None)
        return round(stage.seconds, 3) if stage is not None else None

    @property
    def outcome(self) -> str:
        return self.delivery.outcome if self.delivery is not None else ""

    def said_ok(self) -> bool:
        """iPXE called the payload fetched ("LAB fetched"): the payload stage passed."""
        return any(s.name == "payload" and s.status is Status.PASS for s in self.stages)

    def settle(self) -> Status:
        """Combine stages and payload checks into one status (KCIDB order)."""
        parts = [s.status for s in self.stages] + [p.status for p in self.payloads]
        self.status = combine(parts) if parts else Status.MISS
        if self.status is Status.PASS and Status.UNSUPPORTED in parts:
            # The stages that ran passed, but the scenario itself could not run on this ROM.
            self.status = Status.UNSUPPORTED
        return self.status


def broken_evidence(status: Status, reason: str) -> BootEvidence:
    """The evidence of a boot the lab could not run (ERROR/MISS at the stage "lab")."""
    evidence = BootEvidence(reason=f"{status.value}@lab: {reason}")
    evidence.stages.append(StageRecord("lab", status, 0.0, 0.0, message=reason))
    evidence.settle()
    return evidence


@dataclass
class BootOutcome:
    plan: BootPlan
    evidence: BootEvidence
    directory: Path = field(metadata=keyed("artifacts"))


@dataclass
class CellResult:
    key: CellKey
    status: Status
    reason: str = ""
    boots: list[BootOutcome] = field(default_factory=list)


@dataclass
class TrainCheck:
    name: str
    ok: bool | None  # None: not applicable (said why in detail)
    detail: str


@dataclass
class TrainVm:
    JSON_PROPERTIES: ClassVar[tuple[str, ...]] = ("status",)

    nic: str
    ip: str
    directory: Path = field(metadata=keyed("artifacts"))
    evidence: BootEvidence = field(default_factory=BootEvidence)
    started_at: float = field(default=0.0, metadata=ROUND3)  # seconds after the first VM started
    heard_before_asking: int = 0  # distinct group blocks it received but never asked for
    #: First/last payload frame on its tap (capture clock).
    transfer: tuple[float, float] | None = None
    diagnosis: str = ""  # for a failed VM: what its tap shows (lab.judge.diagnosis)
    #: For a failed VM: a defect outside the project its evidence proves (docs/findings.md id).
    defect: str = ""
    #: For a failed VM: what the server did with it, in order (lab.judge.server_story).
    server_story: str = ""

    @property
    def status(self) -> Status:
        return self.evidence.status


@dataclass
class TrainResult:
    JSON_PROPERTIES: ClassVar[tuple[str, ...]] = ("column",)

    plan: TrainPlan
    status: Status
    outcome: str
    directory: Path = field(metadata=keyed("artifacts"))
    vms: list[TrainVm] = field(default_factory=list)
    checks: list[TrainCheck] = field(default_factory=list)
    group_bytes: int = 0
    group_ratio: float | None = field(default=None, metadata={"digits": 4})
    #: Group data bytes first sent before the last VM began its transfer: what it missed,
    #: which any server must send again (None: not measured, e.g. a full boot).
    missed_by_last: int | None = None
    loss: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    #: Wall seconds from the first VM's start to the last one's verdict.
    seconds: float = field(default=0.0, metadata=ROUND3)
    #: PNGs of the session(s).
    timelines: list[Path] = field(default_factory=list)
    #: Why no picture was drawn (empty when they were).
    timeline_error: str = ""
    #: Full-boot trains: the kernel package, the bytes of kernel + initrd, and the server's
    #: figures per file.
    full_boot: dict[str, Any] = field(default_factory=dict)

    @property
    def column(self) -> str:
        return self.plan.column


@dataclass
class RunInfo:
    run_id: str = field(metadata=keyed("id"))
    started: str
    wall_seconds: float = field(metadata=ROUND3)
    jobs: int
    accel: str
    qemu_version: str
    commit: str
    rom_sets: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

