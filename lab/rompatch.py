"""Give a generic ROM the PCI IDs of the device it is loaded into, as QEMU does for its own.

Why: SeaBIOS does not run a PCI option ROM whose PCIR header names another vendor
(0000 included; observed with QEMU 7.2).  QEMU patches the IDs of its *default* ROMs (``pci_patch_ids``), but
never of a ROM given with ``romfile=``, which is how the lab puts a ROM under test.
Debian's ne2k_pci ROM carries 0000:0000 (iPXE's ns8390 driver also declares ISA ROMs),
so given explicitly it never runs.  The lab does what QEMU's default path does: it
writes a copy with the device's IDs and a corrected checksum into the boot's folder,
and records that it did.  ROMs that carry a specific ID are never patched, so a ROM
for another NIC still fails loudly (RomMismatch or ERROR@rom).
"""

from __future__ import annotations

import struct
from pathlib import Path

from roms.romset import is_generic_id, parse_pci_id, parse_rom_images

_X86_CODE = 0


def needs_patch(data: bytes) -> bool:
    """True when the first x86 image carries only placeholder IDs."""
    x86 = [img for img in parse_rom_images(data) if img.code_type == _X86_CODE]
    return bool(x86) and is_generic_id(x86[0].vendor, x86[0].device)


def patch_ids(data: bytes, pci_id: str) -> bytes:
    """The ROM with its first x86 image's vendor:device set to ``pci_id``, checksum kept at 0."""
    vendor, device = parse_pci_id(pci_id)
    out = bytearray(data)
    image = next(img for img in parse_rom_images(data) if img.code_type == _X86_CODE)
    pcir = image.offset + struct.unpack_from("<H", out, image.offset + 0x18)[0]
    struct.pack_into("<HH", out, pcir + 4, vendor, device)
    end = image.offset + min(image.length, len(out) - image.offset)
    # iPXE keeps the image's byte sum at zero with the byte at offset 6, as QEMU assumes.
    out[image.offset + 6] = 0
    out[image.offset + 6] = (-sum(out[image.offset : end])) & 0xFF
    return bytes(out)


def prepared_rom(rom: Path, pci_id: str, directory: Path) -> tuple[Path, bool]:
    """The path to give QEMU: ``rom`` itself, or a patched copy in ``directory``."""
    data = rom.read_bytes()
    if not needs_patch(data):
        return rom, False
    patched = directory / f"{rom.stem}.patched-{pci_id.replace(':', '')}.rom"
    patched.write_bytes(patch_ids(data, pci_id))
    return patched, True
