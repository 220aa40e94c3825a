"""kill -9 of a run with a VM, dnsmasq and a TFTP server leaves nothing on the host."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.pytest_plugin import require_vm_support

pytestmark = pytest.mark.vm


def _pids_in_netns(netns: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/net") == netns:
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie (exited; the host's init reaps it when it likes)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _host_links() -> set[str]:
    """Host interfaces with the names the lab uses inside its namespace (br0, tapN)."""
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    names = {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}
    return {n for n in names if n == "br0" or re.fullmatch(r"tap\d+", n)}


def _mounts_pinning(netns: str) -> list[str]:
    """nsfs mounts of the lab's namespace (they would keep it alive); the lab makes none.

    Other work on the host may mount other namespaces: only ours counts.
    """
    inode = int(netns.split("[", 1)[1].rstrip("]"))
    pinned = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if fields[2] == "nsfs":
            try:
                if os.stat(fields[1]).st_ino == inode:
                    pinned.append(fields[1])
            except OSError:
                continue
    return pinned


def test_kill_9_of_a_running_lab_leaves_the_host_clean(tmp_path: Path) -> None:
    require_vm_support()
    links_before = _host_links()
    helper = Path(__file__).with_name("killed_run.py")
    server = "pyatftpd"
    child = subprocess.Popen(
        [sys.executable, str(helper), str(tmp_path), server],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line, f"helper ended without a report (status {child.wait(5)})"
        report = json.loads(line)
        inside = _pids_in_netns(report["netns"])
        names = {Path(f"/proc/{p}/comm").read_text().strip() for p in inside}
        assert {"dnsmasq", "qemu-system-x86"} <= names, names  # the run really had its processes
        assert _host_links() == links_before, "the lab must never create host interfaces"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        deadline = time.monotonic() + 30
        while [p for p in _pids_in_netns(report["netns"]) if _alive(p)] and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        if child.poll() is None:
            child.kill()
    left = [(p, _comm(p)) for p in _pids_in_netns(report["netns"]) if _alive(p)]
    assert left == [], f"processes survived in the lab namespace: {left}"
    survivors = [(pid, _comm(pid)) for pid in inside if _alive(pid)]
    assert survivors == [], f"processes survived: {survivors}"
    assert _host_links() == links_before, "lab interface names appeared on the host"
    assert _mounts_pinning(report["netns"]) == [], "the lab namespace is pinned by a mount"
