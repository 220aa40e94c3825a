"""Real VMs: Debian's iPXE ROMs boot by tftp:// and the in-guest verifier proves the bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.infra.tftp_service import TftpService
from lab.model.status import Status
from lab.pytest_plugin import Confirm, VmFactory
from lab.wire.counts import parse_pcap

pytestmark = pytest.mark.vm

FIVE_MIB = 5 * 1024 * 1024


def test_design_nic_verifies_a_kernel_sized_payload(nic_model: str, vm: VmFactory, confirm: Confirm) -> None:
    evidence = vm(nic_model, size=FIVE_MIB).finish()
    confirm.passed(evidence)
    assert [s.name for s in evidence.stages] == ["rom", "dhcp", "script", "kernel", "payload", "verified"]
    assert all(s.seconds > 0 for s in evidence.stages)
    check = evidence.payloads[0]
    assert (check.seen_sha256, check.seen_bytes) == (check.expect_sha256, FIVE_MIB)
    assert evidence.exit_status == 33
    assert "TFTP" in evidence.rom["features"].split()
    wire = parse_pcap(Path(evidence.files["pcap"]))  # the bytes really crossed the NIC
    assert sum(c.unicast_data_bytes for c in wire.clients.values()) >= FIVE_MIB, wire


@pytest.mark.parametrize("size", [1, 1432 * 3])
def test_each_server_delivers_the_edge_sizes(
    tftp_server: TftpService, size: int, vm: VmFactory, confirm: Confirm
) -> None:
    run = vm("rtl8139", size=size)
    evidence = run.finish()
    confirm.passed(evidence, label=tftp_server.kind)
    events = [json.loads(line) for line in Path(evidence.files["tftp_events"]).read_text().splitlines()]
    assert run.slot is not None
    payloads = {str(e.get("file")) for e in events if str(e.get("file", "")).startswith("payload-")}
    # only this boot's evidence, although slots (and so addresses) are reused within a lab
    assert payloads == {f"payload-{size}-1.bin"}, f"{tftp_server.kind} events: {payloads}"
    assert run.slot.mac in Path(evidence.files["dhcp_log"]).read_text()


def test_two_vms_boot_at_once_with_their_own_address_and_script(vm: VmFactory, confirm: Confirm) -> None:
    first, second = vm("e1000", size=1), vm("pcnet", size=1432 * 3, seed=7)
    results = [first.finish(), second.finish()]
    for label, evidence in zip(("e1000", "pcnet"), results, strict=True):
        confirm.passed(evidence, label=label)
    assert first.slot is not None and second.slot is not None
    assert first.slot.ipv4 != second.slot.ipv4
    assert "payload-4296-7.bin" in Path(results[1].files["boot_script"]).read_text()
    assert all(e.status is Status.PASS for e in results)


def test_debian_rom_has_no_slam_so_x_slam_is_unsupported(vm: VmFactory, confirm: Confirm) -> None:
    evidence = confirm(vm("rtl8139", size=1, protocol="x-slam").finish())
    assert evidence.status is Status.UNSUPPORTED, evidence.reason
    assert "SLAM" not in evidence.rom["features"].split()
    assert evidence.payloads == []
