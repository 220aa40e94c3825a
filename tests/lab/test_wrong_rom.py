"""A ROM for another NIC is a lab setup error (ERROR), never a driver failure (FAIL)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.model.status import Status
from lab.pytest_plugin import VmFactory
from roms.romset import RomSet

pytestmark = pytest.mark.vm


@pytest.fixture
def swapped_roms(tmp_path: Path) -> RomSet:
    """A ROM set whose e1000 ROM is really Debian's rtl8139 ROM."""
    source = RomSet.debian().directory / "pxe-rtl8139.rom"
    if not source.is_file():
        pytest.skip("Debian's ROMs are missing; apt-get install ipxe-qemu")
    (tmp_path / "pxe-e1000.rom").write_bytes(source.read_bytes())
    return RomSet("swapped", tmp_path)


def test_header_check_refuses_another_nics_rom_before_booting(vm: VmFactory, swapped_roms: RomSet) -> None:
    run = vm("e1000", rom_set=swapped_roms)
    evidence = run.finish()
    assert run.vm is None, "no VM may start with a mismatched ROM"
    assert evidence.status is Status.ERROR
    assert "ROM mismatch" in evidence.reason and "10ec:8139" in evidence.reason


def test_qemu_given_another_nics_rom_is_an_error_at_the_rom_stage(
    vm: VmFactory, swapped_roms: RomSet
) -> None:
    run = vm("e1000", rom_set=swapped_roms, check_rom=False)
    evidence = run.finish()
    assert run.vm is not None
    assert evidence.status is Status.ERROR, evidence.reason
    assert evidence.failed_stage == "rom"
    assert evidence.payloads[0].status is not Status.FAIL
