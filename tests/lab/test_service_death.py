"""A service dying under a boot is a lab ERROR: the driver is never blamed for it."""

from __future__ import annotations

import pytest

from lab.infra.namespace import kill_group
from lab.model.status import Status
from lab.pytest_plugin import VmFactory
from lab.run.lab import Lab
from lab.run.services import Services, TftpWant

pytestmark = pytest.mark.vm


def test_tftp_server_dying_mid_boot_is_error_not_fail(lab: Lab, vm: VmFactory) -> None:
    saved = lab.config.timeout_scale
    lab.config.timeout_scale = 0.25  # the script stage gives up after 15 s, not 60
    try:
        run = vm("rtl8139", size=1)
        assert run.vm is not None and lab.tftp is not None
        # the ROM runs: now break the lab
        run.vm.console.expect(r"iPXE \S+ -- Open Source", [], 60, consume=False)
        kill_group(lab.tftp.process.proc)
        evidence = run.finish()
    finally:
        lab.config.timeout_scale = saved
        lab.ensure(Services(TftpWant(lab.config.server), fresh=True))
    assert evidence.status is Status.ERROR, evidence.reason
    assert "TFTP server" in evidence.reason and "died" in evidence.reason
    assert "FAIL@" in evidence.reason  # the withheld driver verdict is kept for the record
