"""The catalog must cover the mission's checklist and describe QEMU's NICs consistently."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from roms.catalog import CATALOG, DESIGN_NICS, SEED_ETHERBOOT_DRIVERS, covering, emulated, nic

SEED_LIST = (
    "3c509 3c515 3c595 3c90x eepro100 epic100 forcedeth natsemi ns83820 ns8390 pcnet32 rtl8139 "
    "r8169 sis900 sundance tg3 tlan tulip via-rhine w89c840"
).split()


def test_seed_checklist_is_the_one_from_the_seed() -> None:
    assert sorted(SEED_ETHERBOOT_DRIVERS) == sorted(SEED_LIST)


@pytest.mark.parametrize("driver", SEED_LIST)
def test_every_seed_driver_has_a_row(driver: str) -> None:
    rows = covering(driver)
    assert rows, f"seed driver {driver} is missing from the catalog"
    for row in rows:
        assert row.note, f"{row.name} needs a note"
        if row.qemu_device is None:
            assert "emulat" in row.note, f"{row.name}: say that QEMU cannot emulate it"


def test_design_nics_are_emulated_pci_nics_with_a_rom_name() -> None:
    for name in DESIGN_NICS:
        model = nic(name)
        assert model.emulated and model.pci_id and model.rom_file, name


def test_eepro100_names_its_qemu_variant() -> None:
    model = nic("eepro100")
    assert model.qemu_device in {"i82557b", "i82550", "i82559er"}
    assert model.rom_file == "pxe-eepro100.rom"


def test_beyond_design_nics_are_present() -> None:
    for name in ("e1000e", "virtio-net-pci", "vmxnet3", "tulip", "i82550", "i82559er", "e1000-82545em"):
        assert nic(name).emulated, name


def test_keys_match_names_and_pci_ids_are_well_formed() -> None:
    for key, model in CATALOG.items():
        assert key == model.name
        for pci_id in (model.pci_id, *model.compatible_rom_ids):
            if pci_id is not None:
                assert re.fullmatch(r"[0-9a-f]{4}:[0-9a-f]{4}", pci_id), (key, pci_id)
        if model.bus == "pci" and model.emulated:
            assert model.pci_id, key


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(KeyError, match="e1000.*rtl8139|valid names"):
        nic("e1001")


def test_not_emulated_rows_are_kept_but_not_offered() -> None:
    names = {m.name for m in emulated()}
    assert "3c90x" in CATALOG and "3c90x" not in names
    assert set(DESIGN_NICS) <= names


@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="qemu-system-x86 not installed")
def test_every_emulated_device_exists_in_this_qemu() -> None:
    out = subprocess.run(
        ["qemu-system-x86_64", "-device", "help"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    devices = set(re.findall(r'^name "([^"]+)"', out, re.M))
    missing = [m.qemu_device for m in emulated() if m.qemu_device not in devices]
    assert not missing, f"catalog names devices this QEMU lacks: {missing}"
