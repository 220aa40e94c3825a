"""Boot the verifier straight from QEMU's multiboot loader (``-kernel``/``-initrd``), no network.

This checks the verifier itself (its SHA-256 against hashlib, its exit codes) in about
a second per boot under TCG, without iPXE, a ROM or the lab namespace.  QEMU runs in
its own process group and the whole group is killed on timeout, because a QEMU whose
parent died keeps running.
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from images.verifier import ISA_DEBUG_EXIT, VerifierReport, parse_console, verdict_from_exit

QEMU = "qemu-system-x86_64"


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
    """Boot ``elf`` with ``modules`` under TCG and return what happened."""
    for module in modules:
        if "," in str(module):
            raise ValueError(f"QEMU's -initrd list cannot hold a path with a comma: {module}")
    argv = [qemu, "-accel", "tcg", "-m", str(memory_mb), "-nodefaults", "-nographic",
            "-serial", "stdio", "-no-reboot", "-kernel", str(elf)]  # fmt: skip
    if debug_exit:
        argv += ISA_DEBUG_EXIT
    if append:
        argv += ["-append", append]
    if modules:
        argv += ["-initrd", ",".join(str(m) for m in modules)]
    status, console, seconds = run_qemu(argv, timeout, stop_on)
    return DirectRun(status, console, seconds, parse_console(console))


def run_qemu(
    argv: Sequence[str], timeout: float, stop_on: bytes | None = None
) -> tuple[int | None, str, float]:
    """Run QEMU in its own process group; return (exit status, console, seconds).

    The status is None when QEMU had to be killed: on timeout, or as soon as the
    console shows ``stop_on``.
    """
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
    return (None if killed else status), output.decode("utf-8", "replace"), time.monotonic() - started


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
