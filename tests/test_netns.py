"""The lab namespace is sealed and leaves nothing behind, even after kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from lab.infra.namespace import Namespace, kill_group
from lab.infra.network import make_bridge, make_veth_segment


def _host_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def test_bridge_lives_only_inside_the_namespace(netns: Namespace) -> None:
    before = _host_links()
    make_bridge(netns, snooping=True, querier=False)
    inside = netns.run(["ip", "-d", "link", "show", "br0"]).stdout
    assert "mcast_snooping 1" in inside
    assert "mcast_querier 0" in inside
    routes = netns.run(["ip", "route"]).stdout
    assert "224.0.0.0/4 dev br0" in routes
    assert "br0" not in _host_links()
    assert _host_links() == before


def test_veth_segment_carries_multicast_route(netns: Namespace) -> None:
    make_veth_segment(netns)
    addrs = netns.run(["ip", "-br", "addr"]).stdout
    assert "192.0.2.1/24" in addrs and "192.0.2.2/24" in addrs
    assert "224.0.0.0/4 dev lab0" in netns.run(["ip", "route"]).stdout


def test_processes_in_the_namespace_end_with_their_group(netns: Namespace) -> None:
    proc = netns.popen(["sleep", "300"])
    time.sleep(0.2)
    kill_group(proc, grace=1)
    assert proc.returncode is not None


def test_kill_9_of_the_owner_leaves_no_process_or_interface(tmp_path: Path) -> None:
    """The owner makes a bridge, a tap and a long-lived process, then dies by SIGKILL."""
    marker = f"netboot-lab-kill9-{os.getpid()}"
    script = tmp_path / "owner.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys, time
            sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
            from lab.infra.namespace import Namespace
            from lab.infra.network import make_bridge
            ns = Namespace(); ns.start(); make_bridge(ns)
            ns.run(["ip", "tuntap", "add", "tap7", "mode", "tap"])
            ns.run(["ip", "link", "set", "tap7", "master", "br0"])
            ns.popen(["bash", "-c", "exec -a {marker} sleep 600"])
            print(ns.holder_pid, flush=True)
            time.sleep(600)
            """
        )
    )
    owner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    holder_pid = int(owner.stdout.readline())
    deadline = time.monotonic() + 5
    while not _pgrep(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _pgrep(marker), "the process inside the namespace never started"
    holder_netns = os.readlink(f"/proc/{holder_pid}/ns/net")

    owner.send_signal(signal.SIGKILL)
    owner.wait()

    deadline = time.monotonic() + 10
    while (_pgrep(marker) or Path(f"/proc/{holder_pid}").exists()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _pgrep(marker), "a process survived its namespace's owner"
    assert not Path(f"/proc/{holder_pid}").exists(), "the namespace holder survived"
    assert not _any_process_in_netns(holder_netns), "something still holds the lab network namespace"
    assert "tap7" not in _host_links() and "br0" not in _host_links()


def _pgrep(pattern: str) -> list[str]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return out.split()


def _any_process_in_netns(netns_id: str) -> bool:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "ns" / "net") == netns_id:
                return True
        except OSError:
            continue
    return False


def test_enter_argv_is_reproducible_by_hand(netns: Namespace) -> None:
    argv = netns.enter_argv(["ip", "link"])
    assert argv[0] == "nsenter" and f"--target={netns.holder_pid}" in argv
    assert subprocess.run(argv, capture_output=True).returncode == 0
