"""The tcpdump path of lab.capture, which the rootless lab namespace cannot use.

tcpdump runs where the capture has real root in a network namespace (a lab run with
``ip netns``, say). To check that path for real, this test makes a network namespace
*without* a user namespace, which needs real root, and is skipped otherwise. It stays
sealed like the lab: own network and PID namespace, torn down with its holder process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from lab.infra.capture import Capture
from lab.infra.namespace import Namespace
from lab.infra.network import make_veth_segment
from lab.model.jsonable import to_json
from lab.wire.counts import parse_pcap

REPO = Path(__file__).resolve().parent.parent
HOLDER = "import sys; sys.stdin.read()"
KEYS = ("clients", "groups", "igmp_queries", "dhcp_by_mac", "group_bytes", "ip_fragments")


class RootNetNamespace(Namespace):
    """A net+pid namespace owned by real root: no user namespace, so tcpdump may drop privileges."""

    def start(self) -> None:
        self._unshare = subprocess.Popen(
            ["unshare", "--net", "--pid", "--fork", "--kill-child", sys.executable, "-c", HOLDER],
            stdin=subprocess.PIPE,
        )
        self.holder_pid = self._find_holder(self._unshare.pid)
        self.run(["ip", "link", "set", "lo", "up"])

    def enter_argv(self, argv: Sequence[str]) -> list[str]:
        return ["nsenter", f"--target={self.holder_pid}", "--net", "--pid", "--", *argv]


@pytest.fixture
def root_netns() -> Iterator[Namespace]:
    if os.geteuid() != 0:
        pytest.skip("needs real root to make a network namespace without a user namespace (tcpdump path)")
    with RootNetNamespace() as ns:
        yield ns


def counts(path: Path) -> dict[str, object]:
    data = to_json(parse_pcap(path))
    for section in ("clients", "groups"):
        for row in data[section].values():
            row.pop("first_ts")
            row.pop("last_ts")
    return {k: data[k] for k in KEYS}


@pytest.mark.netns
def test_tcpdump_and_af_packet_count_the_same(root_netns: Namespace, tmp_path: Path) -> None:
    make_veth_segment(root_netns)
    argv = [sys.executable, "-m", "tests.netgen", "frames", "lab0"]
    with Capture(root_netns, "lab1", tmp_path / "tcpdump", method="tcpdump") as by_tcpdump:
        root_netns.run(argv, cwd=str(REPO))
    with Capture(root_netns, "lab1", tmp_path / "af_packet", method="af_packet") as by_socket:
        root_netns.run(argv, cwd=str(REPO))
    first, second = by_tcpdump.stop(), by_socket.stop()
    assert (first.method, first.fallback_reason, first.snaplen) == ("tcpdump", None, 342)
    assert second.method == "af_packet"
    assert counts(first.files["lab1"]) == counts(second.files["lab1"])
