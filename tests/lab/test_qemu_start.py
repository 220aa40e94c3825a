"""QEMU that cannot start is the lab's problem (ERROR), reported with QEMU's own words."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from lab.model.status import Status
from lab.run.boot import launch
from lab.run.lab import Lab
from roms.catalog import nic
from roms.romset import RomSet

pytestmark = pytest.mark.vm


def test_qemu_refusing_its_command_line_is_error_at_the_rom_stage(lab: Lab, artifacts: Path) -> None:
    bogus = replace(nic("e1000"), qemu_device="no-such-nic")
    run = launch(lab, bogus, RomSet.debian(), 1, 1, artifacts / "bogus")
    evidence = run.finish()
    assert evidence.status is Status.ERROR, evidence.reason
    assert evidence.failed_stage == "rom"
    assert evidence.exit_status not in (None, 0, 33)
    assert "no-such-nic" in (artifacts / "bogus" / "qemu.stderr").read_text()
    assert lab.health_problem() is None  # the lab itself is fine, and the slot came back
