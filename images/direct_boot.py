"""Boot the verifier straight from QEMU's multiboot loader (``-kernel``/``-initrd``), no network.

This checks the verifier itself (its SHA-256 against hashlib, its exit codes) in about
a second per boot under TCG, without iPXE, a ROM or the lab namespace.  QEMU runs in
its own process group and the whole group is killed on timeout, because a QEMU whose
parent died keeps running.
"""

from __future__ import annotations

import os
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
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
        status: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, _ = proc.communicate()
        status = None
    finally:
        if proc.poll() is None:  # interrupted (e.g. KeyboardInterrupt): never leave QEMU behind
            _kill_group(proc)
            proc.wait()
    console = out.decode("utf-8", "replace")
    return DirectRun(status, console, time.monotonic() - started, parse_console(console))


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
