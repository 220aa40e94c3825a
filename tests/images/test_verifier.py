"""The in-guest verifier, built with this machine's gcc and booted directly by QEMU (TCG, no network).

Each boot takes about 0.2 s here, so these run in ``tox -e py``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from images import verifier
from images.payload import LAB_BLKSIZE, make_payload
from images.verifier import (
    VERIFY_EXIT_FAIL,
    VERIFY_EXIT_NOEXPECT,
    VERIFY_EXIT_PASS,
    build_verifier,
    exit_status,
    parse_console,
    verdict_from_exit,
)
from lab.infra.direct_boot import run_direct, run_qemu

needs_qemu = pytest.mark.skipif(
    shutil.which("qemu-system-x86_64") is None,
    reason="no qemu-system-x86_64; fix: apt-get install qemu-system-x86",
)
needs_gcc = pytest.mark.skipif(
    shutil.which("gcc") is None or shutil.which("ld") is None,
    reason="no gcc/ld; fix: apt-get install gcc binutils",
)


@pytest.fixture(scope="module")
def elf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None or shutil.which("ld") is None:
        pytest.skip("no gcc/ld to build the verifier; fix: apt-get install gcc binutils")
    return build_verifier(tmp_path_factory.mktemp("cache"))


def test_fixed_exit_statuses() -> None:
    assert exit_status(VERIFY_EXIT_PASS) == 33
    assert exit_status(VERIFY_EXIT_FAIL) == 35
    assert exit_status(VERIFY_EXIT_NOEXPECT) == 37
    assert [verdict_from_exit(s) for s in (33, 35, 37, 39)] == ["PASS", "FAIL", "NOEXPECT", "ERROR"]


@pytest.mark.parametrize("status", [0, 1, 3, 32, 34, 41, 255, -9])
def test_other_statuses_are_not_verdicts(status: int) -> None:
    assert verdict_from_exit(status) is None


def test_parse_console_takes_the_last_run() -> None:
    first = "iPXE ...\r\nVERIFY start\r\nVERIFY sha256=" + "0" * 64 + " bytes=1\r\n"
    first += "VERIFY FAIL expected=" + "1" * 64 + "\r\nreboot\r\n"
    text = first + "VERIFY start\r\nVERIFY sha256=" + "a" * 64 + " bytes=22\r\nVERIFY PASS\r\n"
    report = parse_console(text)
    assert (report.started, report.sha256, report.size, report.verdict) == (True, "a" * 64, 22, "PASS")
    assert not parse_console("iPXE only").started
    assert parse_console("VERIFY start\r\n").verdict is None


@needs_gcc
def test_build_is_cached_by_source_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = build_verifier(tmp_path)
    assert first.read_bytes()[:4] == b"\x7fELF" and first.read_bytes()[4] == 1  # ELF32
    mtime = first.stat().st_mtime_ns
    assert build_verifier(tmp_path) == first and first.stat().st_mtime_ns == mtime

    sources = tmp_path / "src"
    shutil.copytree(verifier.SOURCE_DIR, sources)
    with (sources / "verifier.c").open("a") as handle:
        handle.write("/* changed */\n")
    monkeypatch.setattr(verifier, "SOURCE_DIR", sources)
    changed = build_verifier(tmp_path)
    assert changed != first and changed.parent.name.startswith("verifier-")


@needs_gcc
def test_missing_compiler_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(verifier.VerifierBuildError, match="apt-get install gcc binutils"):
        build_verifier(tmp_path)


@needs_gcc
def test_multiboot_header_is_in_the_first_8k(elf: Path) -> None:
    data = elf.read_bytes()[:8192]
    at = data.find((0x1BADB002).to_bytes(4, "little"))
    assert at >= 0 and at % 4 == 0
    magic, flags, checksum = (int.from_bytes(data[at + i : at + i + 4], "little") for i in (0, 4, 8))
    assert (magic + flags + checksum) & 0xFFFFFFFF == 0


def _boot(elf: Path, tmp_path: Path, data: bytes, append: str) -> tuple[int | None, str | None, str]:
    module = tmp_path / "module.bin"
    module.write_bytes(data)
    run = run_direct(elf, [module], f"{elf.name} {append}")
    assert run.report.started, run.console[-2000:]
    return run.status, run.report.sha256, run.console


@needs_qemu
@pytest.mark.parametrize("size", [0, 1, 55, 56, 63, 64, 65, 119, 120, LAB_BLKSIZE * 3, (1 << 20) + 3])
def test_sha256_matches_hashlib(elf: Path, tmp_path: Path, size: int) -> None:
    data = make_payload(size, seed=size)
    digest = hashlib.sha256(data).hexdigest()
    status, guest_digest, console = _boot(elf, tmp_path, data, f"expect={digest} size={size}")
    assert guest_digest == digest, console[-2000:]
    assert f"VERIFY sha256={digest} bytes={size}" in console
    assert "VERIFY PASS" in console and status == 33


@needs_qemu
def test_wrong_expect_fails_with_status_35(elf: Path, tmp_path: Path) -> None:
    data = make_payload(1000, 1)
    wrong = hashlib.sha256(data + b"x").hexdigest()
    status, guest_digest, console = _boot(elf, tmp_path, data, f"expect={wrong} size=1000")
    assert guest_digest == hashlib.sha256(data).hexdigest()
    assert f"VERIFY FAIL expected={wrong}" in console and status == 35


@needs_qemu
def test_right_digest_wrong_size_fails(elf: Path, tmp_path: Path) -> None:
    data = make_payload(1000, 1)
    digest = hashlib.sha256(data).hexdigest()
    status, _, console = _boot(elf, tmp_path, data, f"expect={digest.upper()} size=999")
    assert f"VERIFY FAIL expected={digest} size=999" in console and status == 35


@needs_qemu
@pytest.mark.parametrize("append", ["", "size=10", "expect=1234 size=10", "notexpect=" + "0" * 64])
def test_missing_or_malformed_expect_gives_37(elf: Path, tmp_path: Path, append: str) -> None:
    status, guest_digest, console = _boot(elf, tmp_path, b"0123456789", append)
    assert guest_digest == hashlib.sha256(b"0123456789").hexdigest()
    assert "VERIFY NOEXPECT" in console and status == 37


@needs_qemu
def test_no_module_fails(elf: Path) -> None:
    run = run_direct(elf, [], "expect=" + "0" * 64)
    assert "VERIFY FAIL no-module" in run.console and run.status == 35


@needs_qemu
def test_second_module_is_ignored(elf: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "a.bin", tmp_path / "b.bin"
    first.write_bytes(make_payload(5000, 1))
    second.write_bytes(make_payload(7000, 2))
    digest = hashlib.sha256(first.read_bytes()).hexdigest()
    run = run_direct(elf, [first, second], f"expect={digest} size=5000")
    assert "modules=2" in run.console and "hashing the first only" in run.console
    assert run.report.verdict == "PASS" and run.status == 33


@needs_qemu
def test_large_module(elf: Path, tmp_path: Path) -> None:
    """24 MiB: big enough to cross 16 MiB and to show hashing speed under TCG (about 1 s here)."""
    size = 24 * 1024 * 1024 + 17
    data = make_payload(size, 24)
    digest = hashlib.sha256(data).hexdigest()
    status, guest_digest, console = _boot(elf, tmp_path, data, f"expect={digest} size={size}")
    assert guest_digest == digest and status == 33, console[-2000:]


@needs_qemu
def test_without_exit_device_the_verifier_halts_and_qemu_is_stopped(elf: Path, tmp_path: Path) -> None:
    module = tmp_path / "m.bin"
    module.write_bytes(b"x")
    run = run_direct(elf, [module], "expect=" + "0" * 64, debug_exit=False, stop_on=b"VERIFY halted")
    assert run.status is None and run.exit_verdict is None
    assert run.report.verdict == "FAIL" and "VERIFY halted" in run.console


@needs_qemu
def test_timeout_kills_the_qemu_process_group() -> None:
    name = f"netboot-lab-timeout-{uuid.uuid4().hex}"
    argv = ["qemu-system-x86_64", "-accel", "tcg", "-nodefaults", "-nographic", "-S", "-name", name]
    status, _, seconds = run_qemu(argv, timeout=1.0)  # -S: the CPU never starts, QEMU would wait forever
    assert status is None and seconds < 30
    leftovers = subprocess.run(["pgrep", "-f", name], capture_output=True, text=True, check=False)
    assert leftovers.stdout.strip() == ""


@needs_qemu
def test_qemu_does_not_outlive_a_killed_caller() -> None:
    """pytest killed with SIGKILL mid-boot must not leave QEMU behind (setpriv --pdeathsig)."""
    import signal
    import sys
    import time

    name = f"netboot-lab-orphan-{uuid.uuid4().hex}"
    code = (
        "from lab.infra.direct_boot import run_qemu; "
        "run_qemu(['qemu-system-x86_64', '-accel', 'tcg', '-nodefaults', '-nographic', '-S', "
        f"'-name', '{name}'], timeout=120)"
    )
    caller = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 30
        while not _qemus_named(name):
            assert time.monotonic() < deadline, "QEMU never started"
            time.sleep(0.1)
        caller.send_signal(signal.SIGKILL)
        caller.wait(timeout=10)
        for _ in range(50):
            if not _qemus_named(name):
                break
            time.sleep(0.1)
        assert _qemus_named(name) == []
    finally:
        for pid in _qemus_named(name):
            os.kill(pid, 9)


def _qemus_named(name: str) -> list[int]:
    """PIDs of QEMU processes (not the caller, whose command line names it too) with ``name``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"qemu-system-x86_64") and name.encode() in argv:
            found.append(int(entry.name))
    return found
