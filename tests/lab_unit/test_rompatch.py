from pathlib import Path

import pytest

from lab.rompatch import needs_patch, patch_ids, prepared_rom
from roms.romset import RomSet, parse_rom_images, read_rom_pci_ids


def _rom(vendor: int, device: int) -> bytes:
    """A one-image x86 option ROM of 1 KiB with a PCIR header at 0x40 and a zero byte sum."""
    data = bytearray(1024)
    data[0:2] = b"\x55\xaa"
    data[2] = 2  # 2 x 512 bytes
    data[0x18:0x1A] = (0x40).to_bytes(2, "little")
    data[0x40:0x44] = b"PCIR"
    data[0x44:0x46] = vendor.to_bytes(2, "little")
    data[0x46:0x48] = device.to_bytes(2, "little")
    data[0x4C] = 0  # revision
    data[0x50:0x52] = (2).to_bytes(2, "little")
    data[0x54] = 0  # x86
    data[0x55] = 0x80  # last image
    data[0x100] = 0x42
    data[6] = (-sum(data)) & 0xFF
    return bytes(data)


def test_generic_rom_gets_the_device_ids_and_keeps_a_zero_checksum() -> None:
    rom = _rom(0, 0)
    assert needs_patch(rom)
    patched = patch_ids(rom, "10ec:8029")
    image = parse_rom_images(patched)[0]
    assert (image.vendor, image.device) == (0x10EC, 0x8029)
    assert sum(patched[: image.length]) % 256 == 0
    assert not needs_patch(patched)


def test_a_rom_for_a_specific_device_is_never_patched(tmp_path: Path) -> None:
    path = tmp_path / "pxe-rtl8139.rom"
    path.write_bytes(_rom(0x10EC, 0x8139))
    assert prepared_rom(path, "8086:100e", tmp_path) == (path, False)


def test_debian_ne2k_pci_rom_is_prepared_for_qemus_device(tmp_path: Path) -> None:
    debian = RomSet.debian()
    rom = debian.directory / "pxe-ne2k_pci.rom"
    if not rom.is_file():
        pytest.skip("Debian's ROMs are missing; apt-get install ipxe-qemu")
    path, patched = prepared_rom(rom, "10ec:8029", tmp_path)
    assert patched and path.parent == tmp_path
    assert read_rom_pci_ids(path)[0] == (0x10EC, 0x8029)
