"""QEMU booting a payload straight from its own loader (``-kernel``/``-initrd``), no network.

Why: the verifier and the full boot payload are checked on their own (the verifier's
SHA-256 against hashlib and its exit codes; the full boot's marker) in a second or two
under TCG, without iPXE, a ROM or the lab namespace.  QEMU runs in its own process group
and the whole group is killed on timeout, because a QEMU whose parent died keeps running.

CLI: ``python -m lab.infra.direct_boot --fullboot`` builds (or finds) the full boot
payload and boots it to check the marker.
"""

from __future__ import annotations

import argparse
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from images.fullboot import KERNEL_APPEND, FullBoot, FullBootError, build_fullboot, parse_marker
from images.verifier import VerifierReport, parse_console, verdict_from_exit
from lab.infra.qemu import QEMU, DirectSpec, direct_argv


@dataclass(frozen=True)
class DirectRun:
    status: int | None  # QEMU's exit status; None if it had to be killed
    console: str
    seconds: float
    report: VerifierReport

    @property
    def exit_verdict(self) -> str | None:
        return None if self.status is None else verdict_from_exit(self.status)


def run_direct(
    elf: Path,
    modules: Sequence[Path],
    append: str = "",
    timeout: float = 60.0,
    memory_mb: int = 128,
    qemu: str = QEMU,
    debug_exit: bool = True,
    stop_on: bytes | None = None,
) -> DirectRun:
    """Boot the verifier ``elf`` with ``modules`` under TCG and return what happened."""
    spec = DirectSpec(elf, tuple(modules), append, memory_mib=memory_mb, binary=qemu, debug_exit=debug_exit)
    status, console, seconds = run_qemu(direct_argv(spec), timeout, stop_on)
    return DirectRun(status, console, seconds, parse_console(console))


def run_qemu(
    argv: Sequence[str], timeout: float, stop_on: bytes | None = None
) -> tuple[int | None, str, float]:
    """Run QEMU in its own process group; return (exit status, console, seconds).

    The status is None when QEMU had to be killed: on timeout, or as soon as the
    console shows ``stop_on``.
    """
    run = watch_qemu(argv, timeout, stop_on)
    return run.status, run.console, run.seconds


@dataclass(frozen=True)
class QemuRun:
    status: int | None  # None: QEMU had to be killed
    console: str
    seconds: float
    #: Seconds from the start until the console first showed ``watch`` (None: never).
    watch_seconds: float | None = None


def watch_qemu(
    argv: Sequence[str], timeout: float, stop_on: bytes | None = None, watch: bytes | None = None
) -> QemuRun:
    """:func:`run_qemu`, also noting when the console first shows ``watch``."""
    started = time.monotonic()
    deadline = started + timeout
    # QEMU runs in its own session (so a timeout can end its whole group), which also means a
    # SIGKILLed caller (pytest killed mid-test) would leave it running: the kernel ends it
    # with its parent instead (util-linux setpriv sets PR_SET_PDEATHSIG, kept across exec).
    launcher = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []
    proc = subprocess.Popen(
        [*launcher, *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert proc.stdout is not None
    output = bytearray()
    killed = False
    seen: float | None = None
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or (stop_on is not None and stop_on in output):
                    _kill_group(proc)
                    killed = True
                    break
                if selector.select(timeout=min(left, 0.5)):
                    chunk = os.read(proc.stdout.fileno(), 65536)
                    if not chunk:
                        break
                    output += chunk
                    if watch is not None and seen is None and watch in output:
                        seen = time.monotonic() - started
    finally:
        if proc.poll() is None and (killed or time.monotonic() >= deadline):
            _kill_group(proc)
        try:
            status: int | None = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.wait()
            killed = True
        proc.stdout.close()
    console = output.decode("utf-8", "replace")
    return QemuRun(None if killed else status, console, time.monotonic() - started, seen)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@dataclass(frozen=True)
class DirectBoot:
    """A full boot straight from QEMU's ``-kernel``/``-initrd`` (no network)."""

    console: str
    #: Seconds from QEMU's start to the marker line (None: never seen).
    marker_seconds: float | None
    seconds: float
    status: int | None  # QEMU's exit status; None if it had to be killed
    sha256: str | None
    kernel_release: str | None


def boot_direct(
    fullboot: FullBoot, timeout: float = 120.0, memory_mb: int = 256, qemu: str = QEMU
) -> DirectBoot:
    """Boot the full boot payload under TCG and return the console, the marker's hash and the timings."""
    spec = DirectSpec(fullboot.kernel, (fullboot.initrd,), KERNEL_APPEND, memory_mib=memory_mb, binary=qemu,
                      debug_exit=False)  # fmt: skip
    run = watch_qemu(direct_argv(spec), timeout, watch=f"{fullboot.marker} sha256=".encode())
    parsed = parse_marker(run.console)
    return DirectBoot(
        console=run.console,
        marker_seconds=run.watch_seconds,
        seconds=run.seconds,
        status=run.status,
        sha256=parsed[0] if parsed else None,
        kernel_release=parsed[1] if parsed else None,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="boot a payload straight from QEMU's loader (TCG)")
    parser.add_argument(
        "--fullboot", action="store_true", help="build (or find) the full boot and check its marker"
    )
    parser.add_argument("--cache-dir", type=Path, default=None, help="default ~/.cache/netboot-lab/fullboot")
    args = parser.parse_args(argv)
    if not args.fullboot:
        parser.error("say what to boot: --fullboot")
    try:
        fb = build_fullboot(args.cache_dir)
    except FullBootError as exc:
        print(f"direct boot: {exc}", file=sys.stderr)
        return 2
    run = boot_direct(fb)
    ok = run.sha256 == fb.carried_sha256
    when = f"{run.marker_seconds:.1f} s" if run.marker_seconds is not None else "never"
    verdict = "OK" if ok else "FAILED"
    print(f"boot    {verdict}: marker after {when}, QEMU exit {run.status}, {run.seconds:.1f} s")
    if not ok:
        print(run.console[-2000:], file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
