"""Helpers for multicast tests: a namespace with a veth segment, a server, a scenario.

Everything runs inside the namespace the test made (``lab.netns``); the test process
only reads files and JSON.
"""

from __future__ import annotations

import json
import os
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
        kill_group(self.proc)

    def read_events(self) -> list[dict[str, Any]]:
        from netboot.events import read_events

        return read_events(str(self.events)) if self.events.exists() else []


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
