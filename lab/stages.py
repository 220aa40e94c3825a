"""The boot ladder: the ordered stages a lab VM must pass, and how each is recognised.

Why a ladder: a bare PASS/FAIL hides where a driver broke.  Each stage has a success
pattern, failure patterns and its own timeout (generous: TCG on 2 shared cores), and
records its duration, so a cell reads ``FAIL@payload`` with the console tail to show.

Classification keeps the driver and the lab apart: anything before the ROM banner
(QEMU did not start, SeaBIOS found no ROM to run, e.g. a ROM for another NIC) is
ERROR; a stage failing after the ROM ran is FAIL; QEMU ending with an unexpected
status (killed, crashed) is ERROR.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

from lab.console import Console, ConsoleClosed, Match
from lab.errors import StageFailed, StageTimeout
from lab.evidence import BootEvidence, PayloadCheck, StageRecord
from lab.status import Status

#: Any iPXE error message ends with its ipxe.org error URL (which may wrap).
IPXE_ERROR = r"(?P<error>[^\n]*\(http://\s*ipxe\.org/[0-9a-f]{8}\))"
ROM_NEVER_RAN = r"(?P<error>No bootable device|Boot failed: could not read the boot disk)"
_FETCH_FAILED = r"(?P<error>LAB fetch-failed)"

#: The ``Features:`` word a ROM needs for each URL scheme (iPXE builds tftm:// and
#: mtftp:// into its TFTP support; SLAM is a feature of its own).
PROTOCOL_FEATURE = {"tftp": "TFTP", "tftm": "TFTP", "mtftp": "TFTP", "x-slam": "SLAM"}

#: QEMU exit status when the verifier writes PASS (0x10) to isa-debug-exit.
EXIT_VERIFY_PASS = 33


@dataclass(frozen=True)
class Stage:
    name: str
    success: str
    failures: tuple[str, ...]
    timeout: float


#: The stages of a unicast boot with in-guest verification, in order.
BOOT_LADDER: tuple[Stage, ...] = (
    Stage(
        "rom",
        # Debian's 1.0.0 banner is "iPXE 1.0.0+git-... -- Open Source"; current iPXE adds the
        # commit: "iPXE 2.0.0+ (g0ab22) -- Open Source".
        r"iPXE (?P<version>\S+(?: \(g[0-9a-f]+\))?) -- Open Source[\s\S]*?Features: (?P<features>[^\n]*)\n",
        (ROM_NEVER_RAN,),
        60.0,
    ),
    Stage(
        "dhcp",
        r"net0: \S+ using (?P<driver>\S+) on[\s\S]*?Configuring \(net0 [^)]*\)[.\s]*ok",
        (r"(?P<error>No configuration methods\s+succeeded)", IPXE_ERROR),
        60.0,
    ),
    Stage("script", r"LAB fetch-start", (IPXE_ERROR, ROM_NEVER_RAN), 60.0),
    Stage("kernel", r"LAB kernel-fetched", (IPXE_ERROR, _FETCH_FAILED), 120.0),
    # SeaBIOS's serial forwarding loses the last character iPXE prints before ``boot`` hands
    # COM1 to the verifier ("LAB fetche"), so the marker must not depend on it.
    Stage("payload", r"LAB fetche(?=d|\s)", (IPXE_ERROR, _FETCH_FAILED), 180.0),
    Stage(
        "verified",
        r"VERIFY sha256=(?P<sha256>[0-9a-f]{64}) bytes=(?P<bytes>\d+)\s+VERIFY (?P<verdict>PASS)",
        (r"(?P<error>VERIFY (?:FAIL|NOEXPECT|ERROR)[^\n]*)", IPXE_ERROR, r"(?P<error>LAB boot-failed)"),
        120.0,
    ),
)

_VERIFY_LINE = r"VERIFY sha256=(?P<sha256>[0-9a-f]{64}) bytes=(?P<bytes>\d+)"


def wait_stage(console: Console, stage: Stage, timeout_scale: float = 1.0) -> Match:
    """Wait for one stage: its match, or StageTimeout / StageFailed naming the stage.

    ConsoleClosed passes through (QEMU is gone: the caller decides whose fault that is).
    """
    timeout = stage.timeout * timeout_scale
    try:
        match = console.expect(stage.success, stage.failures, timeout)
    except TimeoutError:
        raise StageTimeout(stage.name, timeout, console.tail()) from None
    if match.failed:
        raise StageFailed(stage.name, match.groups.get("error", match.text).strip())
    return match


def run_ladder(
    console: Console,
    proc: subprocess.Popen[bytes],
    payload: PayloadCheck,
    evidence: BootEvidence,
    started: float,
    stages: Sequence[Stage] = BOOT_LADDER,
    timeout_scale: float = 1.0,
    required_feature: str | None = None,
) -> None:
    """Walk the stages, filling ``evidence``; never raises for a driver or lab failure.

    The first stage that does not pass ends the walk; the rest are recorded as MISS so
    the report shows how far the boot got.  When the ROM's ``Features:`` line lacks
    ``required_feature`` (e.g. SLAM), the boot ends UNSUPPORTED right after the banner.
    """
    last = started
    for index, stage in enumerate(stages):
        record = StageRecord(stage.name, Status.MISS, 0.0, 0.0)
        evidence.stages.append(record)
        # Before the banner the ROM has not run: whatever stops the boot there is the lab's.
        blame = Status.ERROR if stage.name == "rom" else Status.FAIL
        try:
            match = wait_stage(console, stage, timeout_scale)
        except (StageTimeout, StageFailed) as exc:
            if isinstance(exc, StageFailed):
                record.detail = {"error": exc.line}
            _fail(record, exc, blame, last)
        except ConsoleClosed:
            status = proc.wait()
            evidence.exit_status = status
            # A guest that resets (-no-reboot: exit 0) after its ROM ran is the firmware's doing.
            kind = Status.FAIL if status == 0 and stage.name != "rom" else Status.ERROR
            tail = "\n".join(console.tail(8))
            record.message = (
                f"QEMU exited with status {status} during stage '{stage.name}'; console tail:\n{tail}"
            )
            _close(record, kind, last)
        else:
            record.detail = match.groups
            _close(record, Status.PASS, last)
            last = time.monotonic()
            record.at = last - started
            _absorb(stage, match.groups, payload, evidence)
            features = evidence.rom.get("features", "").split()
            if stage.name == "rom" and required_feature and required_feature not in features:
                evidence.reason = f"UNSUPPORTED: the ROM's Features: line has no {required_feature}"
                evidence.stages.append(StageRecord("feature", Status.UNSUPPORTED, 0.0, record.at))
                evidence.payloads = []
                for rest in stages[index + 1 :]:
                    skipped = StageRecord(rest.name, Status.SKIP, 0.0, 0.0, message="unsupported")
                    evidence.stages.append(skipped)
                return
            continue
        record.at = time.monotonic() - started
        evidence.reason = f"{record.status.value}@{stage.name}: {record.message.splitlines()[0]}"
        _record_verify_line(console, payload)
        for rest in stages[index + 1 :]:
            evidence.stages.append(StageRecord(rest.name, Status.MISS, 0.0, 0.0, message="not reached"))
        return
    _check_exit(proc, evidence)


def _fail(record: StageRecord, exc: Exception, status: Status, since: float) -> None:
    record.message = str(exc)
    _close(record, status, since)


def _close(record: StageRecord, status: Status, since: float) -> None:
    record.status = status
    record.seconds = time.monotonic() - since


def _absorb(stage: Stage, groups: dict[str, str], payload: PayloadCheck, evidence: BootEvidence) -> None:
    if stage.name == "rom":
        evidence.rom["ipxe_version"] = groups.get("version", "")
        evidence.rom["features"] = groups.get("features", "").strip()
    if stage.name == "verified":
        payload.seen_sha256 = groups["sha256"]
        payload.seen_bytes = int(groups["bytes"])


def _record_verify_line(console: Console, payload: PayloadCheck) -> None:
    """After a FAIL at 'verified', keep the digest the guest did compute (it shows what arrived)."""
    import re

    found = list(re.finditer(_VERIFY_LINE, console.text))
    if found:
        m = found[-1]
        payload.seen_sha256 = m["sha256"]
        payload.seen_bytes = int(m["bytes"])


def _check_exit(proc: subprocess.Popen[bytes], evidence: BootEvidence, timeout: float = 30.0) -> None:
    """'verified' also needs QEMU's exit status 33 (the verifier's PASS through isa-debug-exit)."""
    record = evidence.stages[-1]
    try:
        status = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        record.status = Status.ERROR
        record.message = f"VERIFY PASS printed but QEMU did not exit within {timeout:.0f} s"
        evidence.reason = f"ERROR@verified: {record.message}"
        return
    evidence.exit_status = status
    if status != EXIT_VERIFY_PASS:
        record.status = Status.ERROR
        record.message = f"VERIFY PASS printed but QEMU exit status {status}, expected {EXIT_VERIFY_PASS}"
        evidence.reason = f"ERROR@verified: {record.message}"
