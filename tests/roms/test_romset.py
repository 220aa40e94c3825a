"""ROM header parsing and NIC pairing, on the real Debian ROMs and on synthetic images."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from roms.catalog import CATALOG, DESIGN_NICS, nic
from roms.romset import (
    DEBIAN_ROM_DIR,
    RomFormatError,
    RomMismatch,
    RomMissing,
    RomSet,
    RomSetError,
    check_rom,
    parse_rom_images,
    read_rom_pci_ids,
)

needs_debian_roms = pytest.mark.skipif(
    not (DEBIAN_ROM_DIR / "pxe-e1000.rom").is_file(),
    reason=f"Debian's iPXE ROMs are not in {DEBIAN_ROM_DIR}; fix: apt-get install ipxe-qemu",
)


def make_image(
    vendor: int,
    device: int,
    units: int = 1,
    last: bool = True,
    code_type: int = 0,
    devlist: tuple[int, ...] = (),
    revision: int = 3,
) -> bytes:
    """A minimal option ROM image: header, PCIR at 0x40, optional PCI 3.0 device list at 0x60."""
    image = bytearray(units * 512)
    image[0:2] = b"\x55\xaa"
    image[2] = units
    struct.pack_into("<H", image, 0x18, 0x40)
    list_ptr = 0x20 if devlist else 0
    pcir = struct.pack(
        "<4sHHHHB3sHHBBH",
        b"PCIR",
        vendor,
        device,
        list_ptr,
        0x18,
        revision,
        b"\x00\x00\x02",
        units,
        1,
        code_type,
        0x80 if last else 0,
        0,
    )
    image[0x40 : 0x40 + len(pcir)] = pcir
    for i, dev in enumerate((*devlist, 0) if devlist else ()):
        struct.pack_into("<H", image, 0x60 + 2 * i, dev)
    return bytes(image)


@needs_debian_roms
@pytest.mark.parametrize("name", [m.name for m in CATALOG.values() if m.emulated and m.bus == "pci"])
def test_debian_rom_matches_its_catalog_nic(name: str) -> None:
    model = nic(name)
    rom_set = RomSet.debian()
    if not rom_set.has_rom(model):
        assert model.name == "tulip", f"Debian's set should have a ROM for {name}"
        return
    path = rom_set.checked_rom(model)
    ids = read_rom_pci_ids(path)
    if model.name == "ne2k_pci":
        assert ids == [(0, 0)], "Debian's ne2k_pci ROM used to carry a placeholder ID; re-check the note"
    else:
        own = [f"{v:04x}:{d:04x}" for v, d in ids]
        assert set(own) & set(model.rom_ids()), (name, own)


@needs_debian_roms
def test_debian_has_no_tulip_rom_and_says_how_to_get_one() -> None:
    with pytest.raises(RomMissing, match=r"no ROM in set 'debian'.*tulip.*make bin/10110019.rom"):
        RomSet.debian().rom_path(nic("tulip"))


@needs_debian_roms
@pytest.mark.parametrize(
    ("rom", "nic_name"),
    [
        ("rtl8139", "e1000"),
        ("e1000", "eepro100"),
        ("pcnet", "rtl8139"),
        ("eepro100", "e1000e"),
        ("virtio", "vmxnet3"),
    ],
)
def test_wrong_pairing_raises_mismatch_naming_the_right_rom(rom: str, nic_name: str) -> None:
    model = nic(nic_name)
    with pytest.raises(
        RomMismatch, match=f"NIC {nic_name} is {model.pci_id}; pick the ROM built for"
    ) as info:
        check_rom(DEBIAN_ROM_DIR / f"pxe-{rom}.rom", model)
    assert str(model.rom_file) in str(info.value)


@needs_debian_roms
def test_efi_combined_rom_has_two_images_with_the_same_id() -> None:
    images = parse_rom_images((DEBIAN_ROM_DIR / "efi-e1000.rom").read_bytes())
    assert [(i.code_type, i.last) for i in images] == [(0, False), (3, True)]
    assert read_rom_pci_ids(DEBIAN_ROM_DIR / "efi-e1000.rom") == [(0x8086, 0x100E)]


def test_chain_follows_image_length_and_stops_at_last_indicator(tmp_path: Path) -> None:
    rom = (
        make_image(0x8086, 0x100E, units=2, last=False)
        + make_image(0x10EC, 0x8139, code_type=3)
        + b"\xff" * 512
    )
    path = tmp_path / "chain.rom"
    path.write_bytes(rom)
    assert read_rom_pci_ids(path) == [(0x8086, 0x100E), (0x10EC, 0x8139)]
    check_rom(path, nic("rtl8139"))  # any image naming the NIC is enough


def test_device_list_extends_the_ids(tmp_path: Path) -> None:
    path = tmp_path / "list.rom"
    path.write_bytes(make_image(0x8086, 0x1229, devlist=(0x1229, 0x1209)))
    assert read_rom_pci_ids(path) == [(0x8086, 0x1229), (0x8086, 0x1209)]


def test_device_list_ignored_before_pci_3(tmp_path: Path) -> None:
    image = bytearray(make_image(0x8086, 0x1229, devlist=(0x1209,), revision=0))
    path = tmp_path / "old.rom"
    path.write_bytes(image)
    assert read_rom_pci_ids(path) == [(0x8086, 0x1229)]


def test_placeholder_ids_cannot_be_proven_wrong(tmp_path: Path) -> None:
    path = tmp_path / "generic.rom"
    path.write_bytes(make_image(0, 0))
    check_rom(path, nic("e1000"))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "signature at the start"),
        (b"MZ" + bytes(600), "signature at the start"),
        (b"\x55\xaa\x01" + bytes(20), "truncated"),
        (b"\x55\xaa\x01" + bytes(0x15) + b"\x40\x00" + bytes(600), "no PCIR"),
    ],
)
def test_malformed_roms_give_clear_errors(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "bad.rom"
    path.write_bytes(data)
    with pytest.raises(RomFormatError, match=message):
        read_rom_pci_ids(path)


def test_second_image_without_signature_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "broken-chain.rom"
    path.write_bytes(make_image(0x8086, 0x100E, last=False) + b"\x00" * 512)
    with pytest.raises(RomFormatError, match="image 2"):
        read_rom_pci_ids(path)


def test_zero_length_image_does_not_loop(tmp_path: Path) -> None:
    image = bytearray(make_image(0x8086, 0x100E, last=False))
    image[2] = 0
    struct.pack_into("<H", image, 0x40 + 0x10, 0)
    path = tmp_path / "zero.rom"
    path.write_bytes(bytes(image))
    assert read_rom_pci_ids(path) == [(0x8086, 0x100E)]


def test_user_set_accepts_ipxe_naming_and_checks_ids(tmp_path: Path) -> None:
    (tmp_path / "8086100e.rom").write_bytes(make_image(0x8086, 0x100E))
    (tmp_path / "pxe-rtl8139.rom").write_bytes(make_image(0x8086, 0x100E))  # mislabelled on purpose
    rom_set = RomSet.parse(f"mine={tmp_path}")
    assert rom_set.checked_rom(nic("e1000")).name == "8086100e.rom"
    with pytest.raises(RomMismatch, match="carries PCI IDs \\[8086:100e\\] \\(a ROM for e1000"):
        rom_set.checked_rom(nic("rtl8139"))
    with pytest.raises(RomMissing, match="looked for pxe-pcnet.rom, 10222000.rom"):
        rom_set.rom_path(nic("pcnet"))


def test_family_rom_serves_variants(tmp_path: Path) -> None:
    (tmp_path / "80861229.rom").write_bytes(make_image(0x8086, 0x1229))
    rom_set = RomSet.parse(f"fam={tmp_path}")
    assert rom_set.checked_rom(nic("i82550")).name == "80861229.rom"


def test_not_emulated_and_isa_nics_have_no_rom() -> None:
    with pytest.raises(RomMissing, match="not emulated"):
        RomSet.debian().rom_path(nic("3c90x"))
    with pytest.raises(RomMissing, match="ISA card"):
        RomSet.debian().rom_path(nic("ne2k_isa"))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nodir", "NAME=DIR"),
        ("=/tmp", "NAME=DIR"),
        ("x=/nonexistent/roms", "does not exist"),
        ("bad name=/tmp", "must be letters"),
    ],
)
def test_bad_specs_are_rejected(spec: str, message: str) -> None:
    with pytest.raises(RomSetError, match=message):
        RomSet.parse(spec)


def test_design_nics_all_have_debian_rom_names() -> None:
    assert all(nic(n).rom_file for n in DESIGN_NICS)
