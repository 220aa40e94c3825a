from pathlib import Path

import pytest

from lab.infra.dnsmasq import dnsmasq_argv, dnsmasq_config
from lab.model.network import slots


def _conf(count: int = 3, lab_index: int = 1) -> list[str]:
    text = dnsmasq_config(slots(lab_index, count), Path("/a/leases"), Path("/a/dhcp.log"), Path("/a/pid"))
    return text.splitlines()


def test_each_slot_gets_fixed_address_tag_and_boot_file() -> None:
    lines = _conf()
    assert "dhcp-host=52:54:00:1a:01:00,set:vm0,192.0.2.100" in lines
    assert "dhcp-host=52:54:00:1a:01:02,set:vm2,192.0.2.102" in lines
    assert "dhcp-boot=tag:vm1,vm1.ipxe,,192.0.2.1" in lines
    assert sum(line.startswith("dhcp-host=") for line in lines) == 3
    assert sum(line.startswith("dhcp-boot=") for line in lines) == 3


def test_no_dns_no_ping_logs_and_leases_in_artifacts() -> None:
    lines = _conf()
    for expected in ("port=0", "no-ping", "log-dhcp", "log-facility=/a/dhcp.log", "dhcp-leasefile=/a/leases"):
        assert expected in lines
    assert "interface=br0" in lines and "bind-interfaces" in lines


def test_router_advertisements_answer_ipxe_router_solicitations() -> None:
    lines = _conf()
    assert "enable-ra" in lines
    assert "dhcp-range=::,constructor:br0,ra-stateless" in lines


def test_ipxe_skips_the_proxydhcp_wait() -> None:
    assert "dhcp-option=encap:175,176,1b" in _conf()


def test_macs_of_parallel_labs_never_collide() -> None:
    macs = {s.mac for lab in range(4) for s in slots(lab, 8)}
    assert len(macs) == 32


def test_slot_limits_are_enforced() -> None:
    with pytest.raises(ValueError):
        slots(0, 0)
    with pytest.raises(ValueError):
        slots(256, 1)


def test_dnsmasq_runs_in_foreground_debug_mode_without_system_config() -> None:
    argv = dnsmasq_argv(Path("/a/dnsmasq.conf"))
    assert argv[:2] == ["dnsmasq", "--no-daemon"]
    assert "--conf-file=/a/dnsmasq.conf" in argv
