"""The boot ladder as data, and how each step of a boot is judged.

Why a ladder: a bare PASS/FAIL hides where a driver broke.  Each stage has a success
pattern, failure patterns and its own timeout (generous: TCG on 2 shared cores), and
records its duration, so a cell reads ``FAIL@payload`` with the console tail to show.

Judgement keeps the driver and the lab apart: anything before the ROM banner (QEMU did
not start, SeaBIOS found no ROM to run, e.g. a ROM for another NIC) is ERROR; a stage
failing after the ROM ran is FAIL; QEMU ending with an unexpected status (killed,
crashed) is ERROR.  The console is read by the run layer (lab.run.ladder), which reports
what it saw to a :class:`LadderJudge`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from images.bootscript import BOOT_FAILED, FETCH_FAILED, FETCH_START, FETCHED, KERNEL_FETCHED
from images.verifier import VERIFY_EXIT_PASS, exit_status
from lab.model.results import BootEvidence, PayloadCheck, StageRecord
from lab.model.status import Status

#: Any iPXE error message ends with its ipxe.org error URL (which may wrap).
IPXE_ERROR = r"(?P<error>[^\n]*\(http://\s*ipxe\.org/[0-9a-f]{8}\))"
ROM_NEVER_RAN = r"(?P<error>No bootable device|Boot failed: could not read the boot disk)"
_FETCH_FAILED = rf"(?P<error>{FETCH_FAILED})"
#: The ROM banner: Debian's 1.0.0 reads "iPXE 1.0.0+git-... -- Open Source"; current iPXE
#: adds the commit: "iPXE 2.0.0+ (g0ab22) -- Open Source".
ROM_BANNER = (
    r"iPXE (?P<version>\S+(?: \(g[0-9a-f]+\))?) -- Open Source[\s\S]*?Features: (?P<features>[^\n]*)\n"
)

#: The ``Features:`` word a ROM needs for each URL scheme (iPXE builds tftm:// and
#: mtftp:// into its TFTP support; SLAM is a feature of its own).
PROTOCOL_FEATURE = {"tftp": "TFTP", "tftm": "TFTP", "mtftp": "TFTP", "x-slam": "SLAM"}

#: QEMU's exit status when the verifier writes PASS to isa-debug-exit.
EXIT_VERIFY_PASS = exit_status(VERIFY_EXIT_PASS)


@dataclass(frozen=True)
class Stage:
    name: str
    success: str
    failures: tuple[str, ...]
    timeout: float


#: SeaBIOS's serial forwarding loses the last character iPXE prints before ``boot`` hands
#: COM1 to the verifier ("LAB fetche"), so the payload marker must not depend on it.
_FETCHED_CUT = re.escape(FETCHED[:-1]) + r"(?=d|\s)"

#: The stages of a boot with in-guest verification, in order.
BOOT_LADDER: tuple[Stage, ...] = (
    Stage("rom", ROM_BANNER, (ROM_NEVER_RAN,), 60.0),
    Stage(
        "dhcp",
        r"net0: \S+ using (?P<driver>\S+) on[\s\S]*?Configuring \(net0 [^)]*\)[.\s]*ok",
        (r"(?P<error>No configuration methods\s+succeeded)", IPXE_ERROR),
        60.0,
    ),
    Stage("script", re.escape(FETCH_START), (IPXE_ERROR, ROM_NEVER_RAN), 60.0),
    Stage("kernel", re.escape(KERNEL_FETCHED), (IPXE_ERROR, _FETCH_FAILED), 120.0),
    Stage("payload", _FETCHED_CUT, (IPXE_ERROR, _FETCH_FAILED), 180.0),
    Stage(
        "verified",
        r"VERIFY sha256=(?P<sha256>[0-9a-f]{64}) bytes=(?P<bytes>\d+)\s+VERIFY (?P<verdict>PASS)",
        (r"(?P<error>VERIFY (?:FAIL|NOEXPECT|ERROR)[^\n]*)", IPXE_ERROR, rf"(?P<error>{BOOT_FAILED})"),
        120.0,
    ),
)

_VERIFY_LINE = re.compile(r"VERIFY sha256=(?P<sha256>[0-9a-f]{64}) bytes=(?P<bytes>\d+)")


def lacks_feature(features: str, protocol: str) -> str | None:
    """The ``Features:`` word missing for ``protocol`` (None when the ROM has it)."""
    word = PROTOCOL_FEATURE.get(protocol)
    return word if word is not None and word not in features.split() else None


class LadderJudge:
    """Turns what the console showed at each stage into stage records and a boot verdict.

    The run layer calls one method per stage outcome; the judge fills ``evidence``.
    """

    def __init__(
        self,
        evidence: BootEvidence,
        payload: PayloadCheck,
        stages: Sequence[Stage] = BOOT_LADDER,
        required_feature: str | None = None,
    ) -> None:
        self.evidence = evidence
        self.payload = payload
        self.stages = stages
        self.required_feature = required_feature

    def begin(self, stage: Stage) -> StageRecord:
        record = StageRecord(stage.name, Status.MISS, 0.0, 0.0)
        self.evidence.stages.append(record)
        return record

    def blame(self, stage: Stage) -> Status:
        """Before the banner the ROM has not run: whatever stops the boot there is the lab's."""
        return Status.ERROR if stage.name == "rom" else Status.FAIL

    def passed(
        self, index: int, record: StageRecord, groups: dict[str, str], seconds: float, at: float
    ) -> bool:
        """Record a passed stage; False when the boot ends here (the ROM lacks the feature)."""
        stage = self.stages[index]
        record.status, record.detail, record.seconds, record.at = Status.PASS, groups, seconds, at
        if stage.name == "rom":
            self.evidence.rom["ipxe_version"] = groups.get("version", "")
            self.evidence.rom["features"] = groups.get("features", "").strip()
        if stage.name == "verified":
            self.payload.seen_sha256 = groups["sha256"]
            self.payload.seen_bytes = int(groups["bytes"])
        features = self.evidence.rom.get("features", "")
        if stage.name == "rom" and self.required_feature and self.required_feature not in features.split():
            self.evidence.reason = f"UNSUPPORTED: the ROM's Features: line has no {self.required_feature}"
            self.evidence.stages.append(StageRecord("feature", Status.UNSUPPORTED, 0.0, at))
            self.evidence.payloads = []
            for rest in self.stages[index + 1 :]:
                self.evidence.stages.append(
                    StageRecord(rest.name, Status.SKIP, 0.0, 0.0, message="unsupported")
                )
            return False
        return True

    def failed(
        self, record: StageRecord, stage: Stage, message: str, error_line: str | None, seconds: float
    ) -> None:
        """A failure pattern appeared (``error_line``) or the stage timed out (None)."""
        if error_line is not None:
            record.detail = {"error": error_line}
        record.status, record.message, record.seconds = self.blame(stage), message, seconds

    def qemu_exited(self, record: StageRecord, stage: Stage, status: int, tail: str, seconds: float) -> None:
        """QEMU ended during a stage: a guest reset (-no-reboot: exit 0) after the ROM ran is
        the firmware's doing, anything else the lab's."""
        self.evidence.exit_status = status
        kind = Status.FAIL if status == 0 and stage.name != "rom" else Status.ERROR
        record.status, record.seconds = kind, seconds
        record.message = (
            f"QEMU exited with status {status} during stage '{stage.name}'; console tail:\n{tail}"
        )

    def stopped(self, index: int, record: StageRecord, at: float, console_text: str) -> None:
        """The walk ended at stage ``index``: say where, keep the digest the guest did compute,
        and mark the rest as not reached (the report shows how far the boot got)."""
        record.at = at
        self.evidence.reason = f"{record.status.value}@{record.name}: {record.message.splitlines()[0]}"
        found = list(_VERIFY_LINE.finditer(console_text))
        if found:
            self.payload.seen_sha256 = found[-1]["sha256"]
            self.payload.seen_bytes = int(found[-1]["bytes"])
        for rest in self.stages[index + 1 :]:
            self.evidence.stages.append(StageRecord(rest.name, Status.MISS, 0.0, 0.0, message="not reached"))

    def exited(self, status: int | None, timeout: float) -> None:
        """'verified' also needs QEMU's exit status 33 (the verifier's PASS through isa-debug-exit)."""
        record = self.evidence.stages[-1]
        if status is None:
            record.status = Status.ERROR
            record.message = f"VERIFY PASS printed but QEMU did not exit within {timeout:.0f} s"
        else:
            self.evidence.exit_status = status
            if status == EXIT_VERIFY_PASS:
                return
            record.status = Status.ERROR
            record.message = f"VERIFY PASS printed but QEMU exit status {status}, expected {EXIT_VERIFY_PASS}"
        self.evidence.reason = f"ERROR@verified: {record.message}"
