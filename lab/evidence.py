"""What a boot leaves behind: per-stage records, payload checks and evidence paths.

Why one record type: the pytest ``confirm`` fixture, ``lab matrix`` and the reports
all read and write the same ``evidence.json``, so a matrix cell is always traceable
to the files that justify it (console log, server events, DHCP log, QEMU argv).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lab.status import Status, combine


@dataclass
class StageRecord:
    name: str
    status: Status
    seconds: float  # how long this stage took (from the previous stage's end)
    at: float  # seconds since QEMU started
    detail: dict[str, str] = field(default_factory=dict)
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        data["seconds"] = round(self.seconds, 3)
        data["at"] = round(self.at, 3)
        return data


@dataclass
class PayloadCheck:
    """One payload the guest hashed: expected against what the verifier printed."""

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
class BootEvidence:
    """Everything one VM boot proved or failed to prove."""

    status: Status = Status.MISS
    reason: str = ""
    stages: list[StageRecord] = field(default_factory=list)
    payloads: list[PayloadCheck] = field(default_factory=list)
    rom: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # evidence name -> path
    exit_status: int | None = None
    seconds: float = 0.0
    #: How the payload travelled (lab.delivery.Delivery.to_json()), for multicast scenarios.
    delivery: dict[str, Any] = field(default_factory=dict)
    #: The VM's tap when the VM stopped (lab.topology.tap_counters): frames QEMU never read.
    tap: dict[str, int] = field(default_factory=dict)

    @property
    def failed_stage(self) -> str | None:
        bad = [s for s in self.stages if s.status not in (Status.PASS, Status.SKIP)]
        return bad[0].name if bad else None

    def settle(self) -> Status:
        """Combine stages and payload checks into one status (KCIDB order)."""
        parts = [s.status for s in self.stages] + [p.status for p in self.payloads]
        self.status = combine(parts) if parts else Status.MISS
        if self.status is Status.PASS and Status.UNSUPPORTED in parts:
            # The stages that ran passed, but the scenario itself could not run on this ROM.
            self.status = Status.UNSUPPORTED
        return self.status

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "reason": self.reason,
            "failed_stage": self.failed_stage,
            "stages": [s.to_json() for s in self.stages],
            "payloads": [
                {
                    "size": p.size,
                    "expect_sha256": p.expect_sha256,
                    "seen_sha256": p.seen_sha256,
                    "seen_bytes": p.seen_bytes,
                    "status": p.status.value,
                }
                for p in self.payloads
            ],
            "rom": self.rom,
            "files": self.files,
            "tap": self.tap,
            "exit_status": self.exit_status,
            "seconds": round(self.seconds, 3),
            "delivery": self.delivery,
        }

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
