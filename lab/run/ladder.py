"""Walk a VM's console up the boot ladder; the judging is :class:`lab.judge.ladder.LadderJudge`'s.

Why split: waiting on a console is I/O with timeouts (this module), deciding what a
timeout, a failure line or QEMU's exit means is a rule that tests check on recorded text
(the judge).  ``run_ladder`` never raises for a driver or a lab failure.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence

from lab.infra.console import Console, ConsoleAborted, ConsoleClosed, Match
from lab.judge.ladder import BOOT_LADDER, LadderJudge, Stage
from lab.model.errors import StageFailed, StageStalled, StageTimeout
from lab.model.results import BootEvidence, PayloadCheck


def wait_stage(console: Console, stage: Stage, timeout_scale: float = 1.0) -> Match:
    """Wait for one stage: its match, or StageTimeout / StageFailed naming the stage.

    ConsoleClosed passes through (QEMU is gone: the caller decides whose fault that is).
    """
    timeout = stage.timeout * timeout_scale
    try:
        match = console.expect(stage.success, stage.failures, timeout)
    except TimeoutError:
        raise StageTimeout(stage.name, timeout, console.tail()) from None
    except ConsoleAborted as exc:
        raise StageStalled(stage.name, exc.reason) from None
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
    """Walk the stages, filling ``evidence``; the first stage that does not pass ends the walk.

    When the ROM's ``Features:`` line lacks ``required_feature`` (e.g. SLAM), the boot
    ends UNSUPPORTED right after the banner.
    """
    judge = LadderJudge(evidence, payload, stages, required_feature)
    last = started
    for index, stage in enumerate(stages):
        record = judge.begin(stage)
        try:
            match = wait_stage(console, stage, timeout_scale)
        except StageFailed as exc:
            judge.failed(record, stage, str(exc), exc.line, time.monotonic() - last)
        except (StageTimeout, StageStalled) as exc:
            judge.failed(record, stage, str(exc), None, time.monotonic() - last)
        except ConsoleClosed:
            status = proc.wait()
            judge.qemu_exited(record, stage, status, "\n".join(console.tail(8)), time.monotonic() - last)
        else:
            now = time.monotonic()
            if not judge.passed(index, record, match.groups, now - last, now - started):
                return
            last = now
            continue
        judge.stopped(index, record, time.monotonic() - started, console.text)
        return
    judge.exited(_exit_status(proc, 30.0), 30.0)


def _exit_status(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None
