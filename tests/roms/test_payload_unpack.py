"""Unpacking an iPXE ROM's zbin body: version string and PCI ID tables."""

from __future__ import annotations

import hashlib
import lzma
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from roms.payload import rom_ipxe_version, rom_lists_pci_id, unpacked_bodies
from roms.romset import DEBIAN_ROM_DIR
from tests.roms.test_romset import make_image, needs_debian_roms


def branch_filter(data: bytes) -> bytes:
    """zbin's forward x86 filter (iPXE src/util/zbin.c, bcj_filter), to build test input."""
    out = bytearray(data)
    limit = len(out) - 5
    offset = 0
    while offset <= limit:
        if out[offset] in (0xE8, 0xE9):
            (target,) = struct.unpack_from("<i", out, offset + 1)
            if -offset <= target < limit - offset:
                target += offset
            elif limit - offset <= target < limit:
                target -= limit
            struct.pack_into("<i", out, offset + 1, target)
            offset += 4
        offset += 1
    return bytes(out)


def zbin_pack(body: bytes) -> bytes:
    filters = [{"id": lzma.FILTER_LZMA1, "lc": 2, "lp": 0, "pb": 0, "preset": 9 | lzma.PRESET_EXTREME}]
    packed = lzma.compress(branch_filter(body), format=lzma.FORMAT_RAW, filters=filters)
    crc = zlib.crc32(packed) ^ 0xFFFFFFFF
    return struct.pack("<I", len(packed) + 4) + packed + struct.pack("<I", crc)


BODY = (
    b"\x90" * 700
    + b"\xe8\x10\x00\x00\x00"  # call +16
    + b"\xe9\xf0\xff\xff\xff"  # jmp -16
    + b"\x00iPXE\x002.5.0+ (gabc123)\x00"
    + struct.pack("<IHHI", 0x1234, 0x10EC, 0x8029, 0)  # a pci_device_id entry
    + hashlib.shake_256(b"incompressible").digest(3000)  # packed size above the 1 KiB floor
)


def test_synthetic_body_round_trips_and_is_read(tmp_path: Path) -> None:
    rom = make_image(0, 0, units=16)
    packed = zbin_pack(BODY)
    data = rom[:0x200] + packed + rom[0x200 + len(packed) :]
    assert unpacked_bodies(data) == [BODY]
    path = tmp_path / "synthetic.rom"
    path.write_bytes(data)
    assert rom_ipxe_version(path) == "2.5.0+ (gabc123)"
    assert rom_lists_pci_id(path, 0x10EC, 0x8029) is True
    assert rom_lists_pci_id(path, 0x8086, 0x100E) is False


def test_rom_without_packed_body_gives_none(tmp_path: Path) -> None:
    path = tmp_path / "plain.rom"
    path.write_bytes(make_image(0x8086, 0x100E))
    assert rom_ipxe_version(path) is None
    assert rom_lists_pci_id(path, 0x8086, 0x100E) is None


def test_corrupt_packed_body_is_ignored(tmp_path: Path) -> None:
    packed = bytearray(zbin_pack(BODY))
    packed[40] ^= 0x55  # the CRC no longer matches
    assert unpacked_bodies(bytes(packed)) == []


@needs_debian_roms
@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="not a Debian system")
def test_debian_rom_version_is_the_package_version() -> None:
    package = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "ipxe-qemu"], capture_output=True, text=True, check=False
    ).stdout.strip()
    if not package:
        pytest.skip("ipxe-qemu is not installed as a package; fix: apt-get install ipxe-qemu")
    assert rom_ipxe_version(DEBIAN_ROM_DIR / "pxe-e1000.rom") == package


@needs_debian_roms
def test_debian_roms_list_their_drivers_ids() -> None:
    assert rom_lists_pci_id(DEBIAN_ROM_DIR / "pxe-ne2k_pci.rom", 0x10EC, 0x8029) is True
    assert rom_lists_pci_id(DEBIAN_ROM_DIR / "pxe-eepro100.rom", 0x8086, 0x1209) is True
    assert rom_lists_pci_id(DEBIAN_ROM_DIR / "pxe-e1000.rom", 0x10EC, 0x8139) is False
    assert rom_lists_pci_id(DEBIAN_ROM_DIR / "pxe-rtl8139.rom", 0x8086, 0x100E) is False


def test_current_ipxe_version_after_alignment_padding_is_read(tmp_path: Path) -> None:
    body = b"iPXE\x00f\x90\x902.0.0+ (g0ab22)\x00" + BODY[40:]
    rom = make_image(0, 0, units=16)
    packed = zbin_pack(body)
    path = tmp_path / "current.rom"
    path.write_bytes(rom[:0x200] + packed + rom[0x200 + len(packed) :])
    assert rom_ipxe_version(path) == "2.0.0+ (g0ab22)"
