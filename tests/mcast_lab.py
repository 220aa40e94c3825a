"""Helpers for multicast tests: a namespace with a veth segment, a server, a scenario.

Everything runs inside the namespace the test made (``lab.netns``); the test process
only reads files and JSON.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lab.infra.namespace import Namespace, kill_group
from lab.infra.network import make_veth_segment

REPO = Path(__file__).resolve().parent.parent
SERVER_IP = "192.0.2.1"
ATFTPD = "/usr/sbin/atftpd"


class Served:
    """A TFTP server (pyatftpd or Debian's atftpd) running in a namespace on lab0."""

    def __init__(self, ns: Namespace, kind: str, root: Path, extra: list[str], workdir: Path) -> None:
        self.ns = ns
        self.kind = kind
        self.root = root
        self.events = workdir / f"{kind}-events.jsonl"
        self.log = workdir / f"{kind}.log"
        common = ["--daemon", "--no-fork", "--logfile", "-", "--user", "root"]
        if kind == "pyatftpd":
            argv = [sys.executable, "-m", "netboot.tftp.cli", *common, "--events", str(self.events), *extra]
        else:
            argv = [ATFTPD, *common, "--group", "root", "--verbose=6", *extra]
        with open(self.log, "w") as log:
            self.proc = ns.popen([*argv, str(root)], stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO))
        self._wait_listening()

    def _wait_listening(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited at start: {self.log.read_text()[-2000:]}")
            if ":69 " in self.ns.run(["ss", "-uln"]).stdout:
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.kind} did not listen on port 69 within {timeout} s")

    def stop(self) -> None:
        """End the server and wait until it is gone, so the next one can bind port 69.

        Why not :func:`kill_group` alone: it returns once nsenter (the group's leader) has
        exited, and nsenter dies at the SIGTERM at once.  atftpd run with ``--no-fork``
        finishes its running session threads first and held port 69 for a while longer
        (``tests/test_mcast_lab.py``); so every process of the group is waited for too,
        and killed if it outlives the grace.
        """
        group = group_members(self.proc.pid)
        kill_group(self.proc)
        wait_gone(group)

    def read_events(self) -> list[dict[str, Any]]:
        from netboot.events import read_events

        return read_events(str(self.events)) if self.events.exists() else []


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first), None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def group_members(pgid: int) -> dict[int, str]:
    """The processes of process group ``pgid`` now: pid -> start time (to know a reused pid)."""
    members = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) and int(fields[2]) == pgid:
            members[int(entry.name)] = fields[19]
    return members


def _running(pid: int, started: str) -> bool:
    """Still that process, and not a zombie (a zombie holds no socket; the holder never reaps)."""
    fields = _stat(pid)
    return fields is not None and fields[19] == started and fields[0] not in ("Z", "X")


def _all_gone(processes: dict[int, str], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while any(_running(pid, started) for pid, started in processes.items()):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def wait_gone(processes: dict[int, str], grace: float = 3.0) -> None:
    """Wait until ``processes`` (from :func:`group_members`) are gone; SIGKILL after ``grace``."""
    if _all_gone(processes, grace):
        return
    for pid, started in processes.items():
        if _running(pid, started):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if not _all_gone(processes, 5.0):
        alive = [pid for pid, started in processes.items() if _running(pid, started)]
        raise RuntimeError(f"processes {alive} outlived SIGKILL by 5 s")


def segment(ns: Namespace) -> None:
    make_veth_segment(ns)


def make_file(root: Path, name: str, size: int, seed: int = 7) -> bytes:
    import random

    data = random.Random(seed).randbytes(size)
    root.mkdir(parents=True, exist_ok=True)
    (root / name).write_bytes(data)
    return data


def start_scenario(ns: Namespace, url: str, *args: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return ns.popen(
        [sys.executable, "-m", "tests.mcast_scenario", url, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=str(REPO),
        env=env,
    )


def collect_scenario(proc: subprocess.Popen[bytes], timeout: float = 180.0) -> dict[str, Any]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"scenario failed ({proc.returncode}): {err.decode()[-3000:]}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


def run_scenario(ns: Namespace, url: str, *args: str, timeout: float = 180.0) -> dict[str, Any]:
    return collect_scenario(start_scenario(ns, url, *args), timeout)


def session_totals(events: list[dict[str, Any]]) -> dict[str, int]:
    ends = [e for e in events if e["event"] == "mcast_session_end"]
    return {
        "sessions": len(ends),
        "group_bytes": sum(e["group_bytes"] for e in ends),
        "unicast_bytes": sum(e["unicast_bytes"] for e in ends),
    }


def wait_for_event(served: Served, name: str, count: int = 1, timeout: float = 20.0) -> list[dict[str, Any]]:
    """Events once ``count`` events called ``name`` were logged (sessions end a few s after the clients)."""
    deadline = time.monotonic() + timeout
    while True:
        events = served.read_events()
        if sum(1 for e in events if e["event"] == name) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.1)
