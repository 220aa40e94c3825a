"""A console fed from a pipe and a fake QEMU process, to test the ladder without VMs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from lab.infra.console import Console


class FakeProc:
    def __init__(self, status: int) -> None:
        self.status = status

    def wait(self, timeout: float | None = None) -> int:
        return self.status

    def poll(self) -> int:
        return self.status


def console_with(text: str, tmp_path: Path, close: bool = True) -> tuple[Console, int]:
    """A Console that has read ``text``; its writer is closed unless ``close`` is False."""
    read_fd, write_fd = os.pipe()
    os.write(write_fd, text.encode())
    if close:
        os.close(write_fd)
    stream = os.fdopen(read_fd, "rb")
    return Console(stream, tmp_path / "console.log"), write_fd


def as_popen(proc: FakeProc) -> subprocess.Popen[bytes]:
    fake: Any = proc
    return fake  # type: ignore[no-any-return]
