"""The boot ladder's classification, driven by recorded console text (no VMs)."""

import hashlib
from pathlib import Path

from lab.model.results import BootEvidence, PayloadCheck
from lab.model.status import Status
from lab.run.ladder import run_ladder
from tests.lab_unit.fakes import FakeProc, as_popen, console_with

DIGEST = hashlib.sha256(b"x").hexdigest()
BANNER = (
    "SeaBIOS\r\niPXE 1.0.0+git-20190125.36a4c85-5.1 -- Open Source Network Boot Firmware -- http\r\n"
    "://ipxe.org\r\nFeatures: DNS HTTP TFTP MBOOT\r\n"
    "net0: 52:54:00:1a:00:00 using rtl8139 on 0000:00:02.0 (open)\r\n"
)
DHCP = "Configuring (net0 52:54:00:1a:00:00)...... ok\r\n"
FETCH = (
    "LAB fetch-start\r\ntftp://192.0.2.1/verifier.elf... ok\r\nLAB kernel-fetched\r\n"
    "tftp://192.0.2.1/p.bin... ok\r\nLAB fetche\r\n"  # the last character is lost on the serial line
)
VERIFY_PASS = f"VERIFY start\r\nVERIFY sha256={DIGEST} bytes=1\r\nVERIFY PASS\r\n"


def _walk(text: str, tmp_path: Path, exit_status: int, expect: str = DIGEST) -> BootEvidence:
    console, _ = console_with(text, tmp_path)
    payload = PayloadCheck(1, expect)
    evidence = BootEvidence(payloads=[payload])
    run_ladder(console, as_popen(FakeProc(exit_status)), payload, evidence, 0.0, timeout_scale=0.01)
    evidence.settle()
    return evidence


def test_full_boot_passes_and_records_every_stage(tmp_path: Path) -> None:
    ev = _walk(BANNER + DHCP + FETCH + VERIFY_PASS, tmp_path, 33)
    assert ev.status is Status.PASS
    assert [s.name for s in ev.stages] == ["rom", "dhcp", "script", "kernel", "payload", "verified"]
    assert ev.rom["ipxe_version"].startswith("1.0.0+git")
    assert ev.rom["features"] == "DNS HTTP TFTP MBOOT"
    assert ev.stages[1].detail["driver"] == "rtl8139"
    assert ev.payloads[0].seen_sha256 == DIGEST
    payload = next(s for s in ev.stages if s.name == "payload")
    assert ev.fetch_seconds == round(payload.seconds, 3)


def test_a_fetch_that_never_finished_has_no_fetch_time(tmp_path: Path) -> None:
    ev = _walk(BANNER + DHCP + "LAB fetch-start\r\nLAB kernel-fetched\r\nLAB fetch-failed\r\n", tmp_path, 0)
    assert ev.failed_stage == "payload"
    assert ev.fetch_seconds is None


def test_wrong_bytes_are_a_driver_fail_at_verified(tmp_path: Path) -> None:
    other = "0" * 64
    text = BANNER + DHCP + FETCH + f"VERIFY sha256={other} bytes=1\r\nVERIFY FAIL expected={DIGEST}\r\n"
    ev = _walk(text, tmp_path, 35)
    assert ev.status is Status.FAIL
    assert ev.failed_stage == "verified"
    assert ev.payloads[0].seen_sha256 == other


def test_rom_that_never_runs_is_a_lab_error(tmp_path: Path) -> None:
    text = "SeaBIOS\r\nBooting from Hard Disk...\r\nBoot failed: could not read the boot disk\r\n"
    ev = _walk(text, tmp_path, 0)
    assert ev.status is Status.ERROR
    assert ev.failed_stage == "rom"
    assert [s.status for s in ev.stages[1:]] == [Status.MISS] * 5


def test_dhcp_failure_after_the_rom_ran_is_a_driver_fail(tmp_path: Path) -> None:
    text = BANNER + "Configuring (net0 52:54:00:1a:00:00)........ No configuration methods \r\nsucceeded\r\n"
    ev = _walk(text, tmp_path, 0)
    assert (ev.status, ev.failed_stage) == (Status.FAIL, "dhcp")


def test_console_ending_with_qemu_killed_is_a_lab_error(tmp_path: Path) -> None:
    ev = _walk(BANNER + DHCP + "LAB fetch-start\r\n", tmp_path, -9)
    assert (ev.status, ev.failed_stage) == (Status.ERROR, "kernel")
    assert "status -9" in ev.reason


def test_pass_printed_without_the_pass_exit_status_is_not_a_pass(tmp_path: Path) -> None:
    ev = _walk(BANNER + DHCP + FETCH + VERIFY_PASS, tmp_path, 1)
    assert ev.status is Status.ERROR


def test_guest_digest_different_from_expected_fails_even_if_it_says_pass(tmp_path: Path) -> None:
    ev = _walk(BANNER + DHCP + FETCH + VERIFY_PASS, tmp_path, 33, expect="f" * 64)
    assert ev.status is Status.FAIL


def test_a_stuck_stage_times_out_naming_the_stage_with_the_console_tail(tmp_path: Path) -> None:
    stuck = BANNER + "Configuring (net0 52:54:00:1a:00:00)...."
    console, _writer = console_with(stuck, tmp_path, close=False)
    payload = PayloadCheck(1, DIGEST)
    evidence = BootEvidence(payloads=[payload])
    run_ladder(console, as_popen(FakeProc(0)), payload, evidence, 0.0, timeout_scale=0.005)
    evidence.settle()
    assert (evidence.status, evidence.failed_stage) == (Status.FAIL, "dhcp")
    assert "stage 'dhcp'" in evidence.reason
    assert "Configuring (net0" in evidence.stages[1].message


def test_qemu_that_cannot_start_is_a_lab_error_at_the_rom_stage(tmp_path: Path) -> None:
    ev = _walk("", tmp_path, 1)
    assert (ev.status, ev.failed_stage) == (Status.ERROR, "rom")
    assert "status 1" in ev.reason


def test_a_rom_without_the_protocols_feature_is_unsupported_not_failed(tmp_path: Path) -> None:
    console, _writer = console_with(BANNER + DHCP, tmp_path, close=False)
    payload = PayloadCheck(1, DIGEST)
    evidence = BootEvidence(payloads=[payload])
    run_ladder(console, as_popen(FakeProc(0)), payload, evidence, 0.0, required_feature="SLAM")
    evidence.settle()
    assert evidence.status is Status.UNSUPPORTED
    assert "SLAM" in evidence.reason


def test_wait_stage_raises_a_stage_timeout_naming_the_stage(tmp_path: Path) -> None:
    import pytest

    from lab.judge.ladder import BOOT_LADDER
    from lab.model.errors import StageFailed, StageTimeout
    from lab.run.ladder import wait_stage

    console, _writer = console_with(BANNER, tmp_path, close=False)
    assert wait_stage(console, BOOT_LADDER[0]).groups["features"] == "DNS HTTP TFTP MBOOT"
    with pytest.raises(StageTimeout, match="stage 'dhcp'") as info:
        wait_stage(console, BOOT_LADDER[1], timeout_scale=0.002)
    assert any("net0:" in line for line in info.value.tail)
    (tmp_path / "second").mkdir()
    failing, _ = console_with("LAB fetch-start\r\nLAB fetch-failed\r\n", tmp_path / "second", close=False)
    wait_stage(failing, BOOT_LADDER[2])
    with pytest.raises(StageFailed, match="LAB fetch-failed"):
        wait_stage(failing, BOOT_LADDER[3])


def test_current_ipxe_banner_with_its_commit_is_read(tmp_path: Path) -> None:
    banner = BANNER.replace("1.0.0+git-20190125.36a4c85-5.1", "2.0.0+ (g0ab22)")
    ev = _walk(banner + DHCP + FETCH + VERIFY_PASS, tmp_path, 33)
    assert ev.status is Status.PASS
    assert ev.rom["ipxe_version"] == "2.0.0+ (g0ab22)"
