"""Run pyslamd and simulated iPXE SLAM clients as processes inside a test-made namespace.

Why processes: the namespace is entered with nsenter, so whatever runs inside is a
child process; the test stays outside, reads their JSON results and the server's
event log, and asserts.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lab.infra.namespace import Namespace, kill_group
from lab.infra.network import make_veth_segment
from netboot.events import read_events

SERVER_IP = "192.0.2.1"
URI = f"x-slam://{SERVER_IP}"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class SlamSession:
    def __init__(self, ns: Namespace, workdir: Path, make_segment: bool = True) -> None:
        self.ns = ns
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.events_path = workdir / "events.jsonl"
        self.procs: list[subprocess.Popen[bytes]] = []
        if make_segment:
            make_veth_segment(ns)

    def start_server(self, path: Path, *extra: str) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "netboot.slam.cli", str(path), "--bind-address", SERVER_IP,
                "--events", str(self.events_path), *extra]
        err = open(self.workdir / "pyslamd.log", "wb")  # noqa: SIM115 - closed with the process
        proc = self.ns.popen(argv, stderr=err, stdout=subprocess.DEVNULL)
        self.procs.append(proc)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.events_path.exists() and any(e["event"] == "listening" for e in self.events()):
                return proc
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"pyslamd did not start: {(self.workdir / 'pyslamd.log').read_text()}")

    def start_clients(self, count: int, *extra: str) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "netboot.clients.slam_cli", URI, "--count", str(count), "--json",
                "--timeout", "60", *extra]
        proc = self.ns.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.procs.append(proc)
        return proc

    @staticmethod
    def results(proc: subprocess.Popen[bytes], timeout: float = 90) -> list[dict[str, Any]]:
        out, err = proc.communicate(timeout=timeout)
        try:
            return list(json.loads(out)["results"])
        except (ValueError, KeyError):
            raise AssertionError(
                f"client run printed no results (exit {proc.returncode}): {err.decode()}"
            ) from None

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        if not self.events_path.exists():
            return []
        events = read_events(str(self.events_path))
        return [e for e in events if name is None or e["event"] == name]

    def close(self) -> None:
        for proc in self.procs:
            kill_group(proc)
