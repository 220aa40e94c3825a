"""Real VMs, multicast: Debian's ROMs get mtftp:// on the group and tftm:// only by the fallback.

The outcome is read from evidence (server events + the VM's tap capture), as the matrix does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.pytest_plugin import Confirm, VmFactory

pytestmark = pytest.mark.vm

SIZE = 512 * 1024


def _wire(evidence_files: dict[str, str], name: str) -> dict[str, object]:
    return dict(json.loads(Path(evidence_files[name]).read_text()))


def test_mtftp_payload_comes_on_the_group(vm: VmFactory, confirm: Confirm) -> None:
    run = vm("e1000", size=SIZE, protocol="mtftp")
    evidence = run.finish()
    confirm.passed(evidence)
    assert run.slot is not None
    delivery = evidence.delivery
    assert delivery is not None
    assert delivery.outcome == "multicast", delivery
    assert delivery.figures["group_data_bytes"] >= SIZE
    assert delivery.figures["unicast_payload_bytes"] < SIZE
    tap = _wire(evidence.files, f"wire_{run.slot.tap}")
    assert "239.255.1.1:3001" in tap["groups"]  # type: ignore[operator]
    events = Path(evidence.files["tftp_events"]).read_text()
    assert '"mcast_session_start"' in events and '"mtftp"' in events


def test_tftm_completes_only_through_the_unicast_fallback(vm: VmFactory, confirm: Confirm) -> None:
    run = vm("rtl8139", size=SIZE, protocol="tftm")
    evidence = run.finish()
    confirm.passed(evidence)
    delivery = evidence.delivery
    assert delivery is not None
    assert delivery.outcome == "unicast-fallback", delivery
    assert delivery.figures["multicast_not_received"]["event"] == "multicast_not_received"
    assert delivery.figures["unicast_payload_bytes"] >= SIZE
    assert delivery.figures["igmp_reports"] == 0  # iPXE has no IGMP code
