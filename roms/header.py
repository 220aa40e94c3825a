"""Parsing the PCI headers of an option ROM file.

Option ROM layout (PCI Firmware Specification 3.0, section 5.1): each image starts with
0x55 0xAA, holds at 0x18 a 16-bit offset to its "PCIR" data structure (vendor, device,
device-list pointer, image length in 512-byte units, code type, and an indicator byte
whose bit 7 marks the last image).  Images are chained back to back; QEMU's efi-*.rom
files carry an x86 BIOS image followed by an EFI one.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

_IMAGE_SIGNATURE = b"\x55\xaa"
_PCIR_SIGNATURE = b"PCIR"
_LAST_IMAGE = 0x80
_MAX_IMAGES = 16

CODE_TYPE_X86 = 0
CODE_TYPE_EFI = 3


class RomFormatError(ValueError):
    """The file is not a PCI option ROM (or is truncated)."""


@dataclass(frozen=True)
class RomImage:
    """One image of a (possibly multi-image) option ROM."""

    offset: int
    vendor: int
    device: int
    device_list: tuple[int, ...]
    code_type: int  # 0 = x86 BIOS, 3 = EFI
    length: int
    last: bool

    def pci_ids(self) -> list[tuple[int, int]]:
        ids = [(self.vendor, self.device)]
        ids += [(self.vendor, dev) for dev in self.device_list if dev != self.device]
        return ids


def format_pci_id(vendor: int, device: int) -> str:
    return f"{vendor:04x}:{device:04x}"


def parse_pci_id(text: str) -> tuple[int, int]:
    vendor, _, device = text.partition(":")
    return int(vendor, 16), int(device, 16)


def is_generic_id(vendor: int, device: int) -> bool:
    """True for placeholder IDs a ROM carries when it was not built for one device.

    iPXE writes 0000:0000 into the header of a ROM whose driver also declares ISA
    ROMs (Debian's ne2k_pci ROM, from the legacy ns8390 driver); its EFI images then
    carry odd values with device 0.
    """
    return vendor in (0x0000, 0xFFFF) or device == 0x0000


def parse_rom_images(data: bytes) -> list[RomImage]:
    """Walk the image chain of an option ROM held in memory."""
    images: list[RomImage] = []
    offset = 0
    while True:
        if data[offset : offset + 2] != _IMAGE_SIGNATURE:
            where = "start" if offset == 0 else f"offset {offset:#x} (image {len(images) + 1})"
            raise RomFormatError(f"no 0x55AA option ROM signature at the {where}")
        if offset + 0x1A > len(data):
            raise RomFormatError(f"truncated ROM image header at offset {offset:#x}")
        pcir = offset + struct.unpack_from("<H", data, offset + 0x18)[0]
        if data[pcir : pcir + 4] != _PCIR_SIGNATURE or pcir + 0x18 > len(data):
            raise RomFormatError(f"no PCIR data structure where the image at {offset:#x} points ({pcir:#x})")
        vendor, device, list_ptr = struct.unpack_from("<HHH", data, pcir + 4)
        revision = data[pcir + 0x0C]
        units = struct.unpack_from("<H", data, pcir + 0x10)[0] or data[offset + 2]
        code_type, indicator = data[pcir + 0x14], data[pcir + 0x15]
        device_list = _device_list(data, pcir + list_ptr) if revision >= 3 and list_ptr else ()
        last = bool(indicator & _LAST_IMAGE)
        images.append(RomImage(offset, vendor, device, device_list, code_type, units * 512, last))
        if last or units == 0:
            return images
        offset += units * 512
        if offset >= len(data):
            return images  # the indicator lied; everything present has been read
        if len(images) >= _MAX_IMAGES:
            raise RomFormatError(f"more than {_MAX_IMAGES} images chained: not a sane option ROM")


def _device_list(data: bytes, start: int) -> tuple[int, ...]:
    """PCI 3.0 device list: 16-bit device IDs ending with 0 (bounded, a bad pointer yields nothing)."""
    ids: list[int] = []
    for pos in range(start, min(start + 2 * 256, len(data) - 1), 2):
        (dev,) = struct.unpack_from("<H", data, pos)
        if dev == 0:
            return tuple(ids)
        ids.append(dev)
    return ()


def read_rom_images(path: Path | str) -> list[RomImage]:
    try:
        return parse_rom_images(Path(path).read_bytes())
    except RomFormatError as exc:
        raise RomFormatError(f"{path}: {exc}") from None


def read_rom_pci_ids(path: Path | str) -> list[tuple[int, int]]:
    """Every (vendor, device) the ROM's images declare (headers and PCI 3.0 device lists), in order."""
    seen: list[tuple[int, int]] = []
    for image in read_rom_images(path):
        seen += [pci_id for pci_id in image.pci_ids() if pci_id not in seen]
    return seen


def bios_header_ids(path: Path | str) -> list[tuple[int, int]]:
    """The vendor:device of each x86 image: the only IDs SeaBIOS compares with the device."""
    return [(i.vendor, i.device) for i in read_rom_images(path) if i.code_type == CODE_TYPE_X86]
