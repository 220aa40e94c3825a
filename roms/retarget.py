"""Retarget an option ROM's PCI header to the exact device it will run on.

SeaBIOS starts a PCI option ROM image only if the vendor:device in its "PCIR" header
equals the device's own IDs, and QEMU patches the device ID only for its default ROMs,
never for a ``romfile=``.  Measured here with Debian's ROMs: ``pxe-ne2k_pci.rom``
(header 0000:0000) never starts on ne2k_pci, ``pxe-eepro100.rom`` (8086:1229) never
starts on i82550 (8086:1209), ``pxe-virtio.rom`` (1af4:1041) never starts on the
transitional virtio-net-pci (1af4:1000): the VM falls through to "No bootable device".
The iPXE driver inside each of them does handle those devices, so a copy whose header
names the device (and whose checksum is fixed) boots and verifies.  The copy is made at
run time from the installed ROM and is never committed.
"""

from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path

from roms.header import RomFormatError, parse_pci_id, parse_rom_images

_X86 = 0


def retargeted_bytes(data: bytes, pci_id: str) -> bytes:
    """``data`` with its first x86 image's header naming ``pci_id`` and a valid checksum."""
    rom = bytearray(data)
    image = next((i for i in parse_rom_images(data) if i.code_type == _X86), None)
    if image is None:
        raise RomFormatError("the ROM has no x86 BIOS image to retarget")
    start, end = image.offset, image.offset + image.length
    if end > len(rom):
        raise RomFormatError(f"the x86 image claims {image.length} bytes but the file ends first")
    if sum(rom[start:end]) % 256 != 0:
        raise RomFormatError("the x86 image's checksum is already wrong: refusing to patch an unknown ROM")
    if rom[start + 3] != 0xE9:
        raise RomFormatError("not an iPXE-style header (no jump at offset 3): unknown checksum byte")
    vendor, device = parse_pci_id(pci_id)
    pcir = start + struct.unpack_from("<H", rom, start + 0x18)[0]
    struct.pack_into("<HH", rom, pcir + 4, vendor, device)
    checksum_at = start + 6  # iPXE (and Etherboot) keep the checksum byte right after the jump
    rom[checksum_at] = (rom[checksum_at] - sum(rom[start:end])) % 256
    return bytes(rom)


def retarget_rom(src: Path, dst: Path, pci_id: str) -> Path:
    """Write a copy of ``src`` retargeted to ``pci_id`` at ``dst`` (atomically) and return ``dst``."""
    data = retargeted_bytes(src.read_bytes(), pci_id)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=dst.name, dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dst
