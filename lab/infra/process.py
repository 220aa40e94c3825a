"""One process inside the lab namespace: started in its own group, logged, waited for, ended.

Why one base: dnsmasq, the TFTP and SLAM servers, the packet capture and QEMU each need
the same four things, and each wrote them again: start inside the namespace in a
process group of its own (QEMU outlives a killed wrapper, so the *group* is ended), send
its output to a file, wait until it is ready or say why it is not, and end it for sure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from lab.infra.namespace import Namespace, kill_group
from lab.model.errors import LabError

#: What a process's stream may be: a subprocess constant (PIPE, DEVNULL) or an open file.
Stream = int | IO[Any] | None


class NamespaceProcess:
    """A started process; ``log`` (appended) takes stdout and stderr unless they are given."""

    def __init__(
        self,
        ns: Namespace,
        argv: Sequence[str],
        name: str,
        log: Path | None = None,
        stdout: Stream = None,
        stderr: Stream = None,
        stdin: Stream = subprocess.DEVNULL,
        cwd: str | None = None,
    ) -> None:
        self.ns = ns
        self.name = name
        self.argv = list(argv)
        self.log_path = log
        self._log: IO[bytes] | None = open(log, "ab") if log is not None else None  # noqa: SIM115 - closed by stop()
        try:
            self.proc = ns.popen(
                self.argv,
                stdout=self._log if stdout is None else stdout,
                stderr=self._log if stderr is None else stderr,
                stdin=stdin,
                cwd=cwd,
            )
        except OSError as exc:
            self._close_log()
            raise LabError(f"could not start {name} ({self.argv[0]}): {exc}") from exc

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, ready: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
        """Poll ``ready`` until it holds; LabError if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while not ready():
            if self.proc.poll() is not None:
                raise LabError(f"{self.name} exited {self.proc.returncode} at start; see {self._where()}")
            if time.monotonic() > deadline:
                raise LabError(f"{self.name} did not {what} within {timeout:g} s; see {self._where()}")
            time.sleep(0.05)

    def _where(self) -> str:
        return str(self.log_path) if self.log_path is not None else "its output"

    def stop(self, grace: float = 3.0) -> None:
        """End the process group (SIGTERM, then SIGKILL) and close the log; safe to call twice."""
        kill_group(self.proc, grace)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def udp_listening(ns: Namespace, port: int) -> bool:
    """Something in the namespace listens on UDP ``port`` (the servers' readiness probe)."""
    return bool(ns.run(["ss", "-Hlun", f"sport = :{port}"], check=False).stdout.strip())


def find_program(name: str) -> str | None:
    """``name`` on PATH, or beside this Python (a venv's console scripts when PATH lacks them)."""
    beside = os.path.dirname(sys.executable)
    return shutil.which(name) or shutil.which(name, path=beside)
