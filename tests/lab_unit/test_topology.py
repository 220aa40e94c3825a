"""lab.topology.tap_counters: the host side of a VM's tap, from ``ip -s -j link``."""

from __future__ import annotations

import json
import subprocess
from typing import Any, cast

from lab.infra.namespace import Namespace
from lab.infra.network import tap_counters


class _Ip:
    def __init__(self, stdout: str) -> None:
        self.stdout = stdout
        self.argv: list[str] = []

    def run(self, argv: list[str], check: bool = True, **_: Any) -> subprocess.CompletedProcess[str]:
        self.argv = argv
        return subprocess.CompletedProcess(argv, 0, self.stdout, "")


def test_tap_counters_read_the_frames_qemu_never_took() -> None:
    link = [{"ifname": "tap3", "stats64": {"rx": {"packets": 9, "dropped": 0},
                                            "tx": {"packets": 4700, "dropped": 812}}}]  # fmt: skip
    ip = _Ip(json.dumps(link))
    counters = tap_counters(cast(Namespace, ip), "tap3")
    assert counters == {"tx_packets": 4700, "tx_dropped": 812, "rx_packets": 9}
    assert ip.argv[-1] == "tap3" and "-j" in ip.argv


def test_tap_counters_are_empty_when_ip_cannot_say() -> None:
    for stdout in ("", "[]", "not json", json.dumps([{"ifname": "tap3"}])):
        assert tap_counters(cast(Namespace, _Ip(stdout)), "tap3") == {}
