"""Retargeting changes only the header IDs and the checksum byte, and refuses ROMs it does not know."""

from __future__ import annotations

from pathlib import Path

import pytest

from roms.header import RomFormatError, bios_header_ids, parse_rom_images
from roms.retarget import retarget_rom, retargeted_bytes
from roms.romset import DEBIAN_ROM_DIR
from tests.roms.test_romset import make_image, needs_debian_roms


def test_only_ids_and_checksum_change() -> None:
    original = make_image(0x8086, 0x1229, units=2, last=False) + make_image(0x8086, 0x1229, code_type=3)
    patched = retargeted_bytes(original, "8086:2449")
    changed = [i for i, (a, b) in enumerate(zip(original, patched, strict=True)) if a != b]
    assert changed == [6, 0x46, 0x47]  # checksum byte; device ID low and high byte in PCIR at 0x40
    assert sum(patched[:1024]) % 256 == 0
    images = parse_rom_images(patched)
    assert [(i.vendor, i.device) for i in images] == [(0x8086, 0x2449), (0x8086, 0x1229)]


def test_refuses_a_rom_with_a_bad_checksum() -> None:
    image = bytearray(make_image(0, 0))
    image[100] ^= 0xFF
    with pytest.raises(RomFormatError, match="checksum is already wrong"):
        retargeted_bytes(bytes(image), "10ec:8029")


def test_refuses_a_rom_without_x86_image() -> None:
    with pytest.raises(RomFormatError, match="no x86"):
        retargeted_bytes(make_image(0x8086, 0x100E, code_type=3), "8086:100e")


def test_refuses_unknown_header_layout() -> None:
    image = bytearray(make_image(0, 0))
    image[3] = 0xEB  # short jump: the checksum byte may be code
    image[6] = (image[6] - 0xEB + 0xE9) % 256
    with pytest.raises(RomFormatError, match="iPXE-style"):
        retargeted_bytes(bytes(image), "10ec:8029")


@needs_debian_roms
def test_debian_virtio_rom_retargeted_to_transitional_id(tmp_path: Path) -> None:
    out = retarget_rom(DEBIAN_ROM_DIR / "pxe-virtio.rom", tmp_path / "v.rom", "1af4:1000")
    assert bios_header_ids(out) == [(0x1AF4, 0x1000)]
    assert len(out.read_bytes()) == len((DEBIAN_ROM_DIR / "pxe-virtio.rom").read_bytes())
