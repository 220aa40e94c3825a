"""A guest whose iPXE stopped ends its stage with a FAIL that says so, not a 270 s timeout."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from lab.judge.stall import QUIET_SECONDS, SILENT_SECONDS, SilenceJudge
from lab.model.results import BootEvidence, PayloadCheck
from lab.model.status import Status
from lab.run.ladder import run_ladder
from tests.lab_unit.fakes import FakeProc, as_popen, console_with
from tests.lab_unit.test_stages import BANNER, DHCP


def test_a_guest_that_keeps_sending_is_alive() -> None:
    judge = SilenceJudge()
    assert all(judge.observe(t, sent=t, received=0) is None for t in range(0, 300, 5))


def test_a_fed_listener_may_stay_silent() -> None:
    """An MTFTP or SLAM listener hears the stream without answering: not a stall."""
    judge = SilenceJudge()
    assert all(judge.observe(t, sent=3, received=100 * t) is None for t in range(0, 300, 5))


def test_silent_and_unfed_for_long_enough_is_a_stop_with_its_reason() -> None:
    judge = SilenceJudge()
    assert judge.observe(0.0, sent=10, received=500) is None
    assert judge.observe(SILENT_SECONDS - 1, sent=10, received=500) is None  # iPXE may still retry
    reason = judge.observe(SILENT_SECONDS, sent=10, received=500)
    assert reason is not None and reason.startswith("iPXE stopped: the guest sent nothing for 40 s")
    assert SILENT_SECONDS >= 4 * 10 and QUIET_SECONDS >= 2 * 10  # iPXE's longest retry is 10 s


def test_a_plain_tftp_fetch_silent_under_a_flood_is_a_stop() -> None:
    """The others' group stream floods a train VM's tap; a TFTP client must still ACK."""
    judge = SilenceJudge()
    assert judge.observe(0.0, sent=15, received=100, may_listen=False) is None
    reason = judge.observe(SILENT_SECONDS, sent=15, received=12830, may_listen=False)
    assert reason is not None and "in a plain TFTP fetch, while 12830 frames had reached it" in reason


def test_data_stopping_late_restarts_the_quiet_clock() -> None:
    judge = SilenceJudge()
    judge.observe(0.0, sent=10, received=0)
    judge.observe(50.0, sent=10, received=900)  # the stream still flowed at 50 s
    assert judge.observe(50.0 + QUIET_SECONDS - 1, sent=10, received=900) is None
    assert judge.observe(50.0 + QUIET_SECONDS, sent=10, received=900) is not None


def test_an_aborted_console_fails_the_payload_stage_with_the_watchers_reason(tmp_path: Path) -> None:
    text = BANNER + DHCP + "LAB fetch-start\r\nLAB kernel-fetched\r\nmtftp://192.0.2.1/p.bin... 12%"
    console, writer = console_with(text, tmp_path, close=False)
    payload = PayloadCheck(1, "a" * 64)
    evidence = BootEvidence(payloads=[payload])
    reason = "iPXE stopped: the guest sent nothing for 40 s and nothing came to it for 21 s"
    threading.Timer(0.5, console.abort, args=(reason,)).start()
    run_ladder(console, as_popen(FakeProc(0)), payload, evidence, 0.0)
    os.close(writer)
    evidence.settle()
    assert evidence.status is Status.FAIL and evidence.failed_stage == "payload"
    stage = next(s for s in evidence.stages if s.name == "payload")
    assert reason in stage.message and stage.seconds < 30  # not the stage's 180 s timeout
