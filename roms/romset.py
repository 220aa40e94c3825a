"""ROM sets (folders of iPXE option ROMs) and the PCI header check that pairs a ROM with a NIC.

A ROM built for another card is the classic way to waste an afternoon: the VM boots
no firmware (or the wrong driver) and the run looks like a driver failure.  Reading the
PCI IDs from the ROM's own header before starting QEMU turns that into a clear lab
ERROR that names the right ROM.

Option ROM layout (PCI Firmware Specification 3.0, section 5.1): each image starts with
0x55 0xAA, holds at 0x18 a 16-bit offset to its "PCIR" data structure (vendor, device,
device-list pointer, image length in 512-byte units, code type, and an indicator byte
whose bit 7 marks the last image).  Images are chained back to back; QEMU's efi-*.rom
files carry a BIOS image followed by an EFI one.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from roms.catalog import CATALOG, NicModel

DEBIAN_ROM_DIR = Path("/usr/lib/ipxe/qemu")

_IMAGE_SIGNATURE = b"\x55\xaa"
_PCIR_SIGNATURE = b"PCIR"
_LAST_IMAGE = 0x80
_MAX_IMAGES = 16


class RomFormatError(ValueError):
    """The file is not a PCI option ROM (or is truncated)."""


class RomMismatch(Exception):
    """The ROM's header names other PCI devices than the NIC it was paired with."""


class RomMissing(Exception):
    """The ROM set has no ROM for this NIC."""


class RomSetError(ValueError):
    """A ROM set specification (``NAME=DIR``) is malformed or names no folder."""


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


def read_rom_pci_ids(path: Path | str) -> list[tuple[int, int]]:
    """Every (vendor, device) the ROM's images declare, in order, without repeats."""
    data = Path(path).read_bytes()
    try:
        images = parse_rom_images(data)
    except RomFormatError as exc:
        raise RomFormatError(f"{path}: {exc}") from None
    seen: list[tuple[int, int]] = []
    for image in images:
        seen += [pci_id for pci_id in image.pci_ids() if pci_id not in seen]
    return seen


def specific_pci_ids(path: Path | str) -> list[tuple[int, int]]:
    """The ROM's PCI IDs without placeholders; empty if the ROM names no device."""
    return [pci_id for pci_id in read_rom_pci_ids(path) if not is_generic_id(*pci_id)]


def check_rom(path: Path | str, nic: NicModel) -> None:
    """Raise RomMismatch unless the ROM's header allows it to drive ``nic``.

    A ROM whose header carries only placeholder IDs (see is_generic_id) names no
    device and so cannot be proven wrong: it is accepted.
    """
    if nic.pci_id is None:
        raise RomMismatch(f"NIC {nic.name} is not a PCI device ({nic.bus}): it takes no option ROM")
    carried = specific_pci_ids(path)
    if not carried:
        return
    wanted = {parse_pci_id(i) for i in nic.rom_ids()}
    if wanted & set(carried):
        return
    shown = ", ".join(format_pci_id(*i) for i in carried)
    owners = sorted({m.name for m in CATALOG.values() if m.pci_id and parse_pci_id(m.pci_id) in carried})
    owner = f" (a ROM for {', '.join(owners)})" if owners else ""
    names = " or ".join(_candidate_names(nic))
    raise RomMismatch(
        f"ROM {path} carries PCI IDs [{shown}]{owner}, but NIC {nic.name} is {nic.pci_id}; "
        f"pick the ROM built for {nic.pci_id} ({names})"
    )


def _ipxe_name(pci_id: str) -> str:
    return pci_id.replace(":", "") + ".rom"


def _candidate_names(nic: NicModel) -> list[str]:
    """File names a ROM for ``nic`` may have: QEMU's ``pxe-<model>.rom``, then iPXE's ``vvvvdddd.rom``."""
    names: list[str] = [nic.rom_file] if nic.rom_file else []
    names += [_ipxe_name(i) for i in nic.rom_ids()]
    return list(dict.fromkeys(names))


@dataclass(frozen=True)
class RomSet:
    """A named folder of BIOS option ROMs (never committed to the repository)."""

    name: str
    directory: Path

    @classmethod
    def debian(cls) -> RomSet:
        """Debian's ipxe-qemu ROMs (iPXE 1.0.0+git-20190125.36a4c85): the lab's default set."""
        return cls("debian", DEBIAN_ROM_DIR)

    @classmethod
    def parse(cls, spec: str) -> RomSet:
        """``NAME=DIR`` as given to ``--lab-rom-dir``."""
        name, sep, folder = spec.partition("=")
        name, folder = name.strip(), folder.strip()
        if not sep or not name or not folder:
            raise RomSetError(f"ROM set {spec!r} is not NAME=DIR, e.g. --lab-rom-dir fixed=/srv/ipxe/bin")
        if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise RomSetError(f"ROM set name {name!r} must be letters, digits, '-', '_' or '.'")
        directory = Path(folder).expanduser()
        if not directory.is_dir():
            raise RomSetError(f"ROM set {name!r}: folder {directory} does not exist or is not a folder")
        return cls(name, directory.resolve())

    def candidates(self, nic: NicModel) -> list[Path]:
        """Paths searched for ``nic``'s ROM, in order."""
        if self.name == "debian" and self.directory == DEBIAN_ROM_DIR:
            names = [nic.rom_file] if nic.rom_file else []
        else:
            names = _candidate_names(nic)
        return [self.directory / name for name in names]

    def rom_path(self, nic: NicModel) -> Path:
        """The ROM file for ``nic`` in this set, or RomMissing saying why and what to do."""
        if nic.qemu_device is None:
            raise RomMissing(f"NIC {nic.name} is not emulated by QEMU here, so no ROM can be tried")
        if nic.pci_id is None:
            raise RomMissing(f"NIC {nic.name} is an {nic.bus.upper()} card: there is no option ROM to load")
        for path in self.candidates(nic):
            if path.is_file():
                return path
        looked = ", ".join(p.name for p in self.candidates(nic))
        hint = (
            "install Debian's ROMs with `apt-get install ipxe-qemu`"
            if self.directory == DEBIAN_ROM_DIR and not self.directory.is_dir()
            else f"build one with iPXE (make bin/{_ipxe_name(nic.pci_id)}) and pass --lab-rom-dir NAME=DIR"
        )
        raise RomMissing(
            f"no ROM in set {self.name!r} ({self.directory}) for NIC {nic.name} (looked for {looked}); {hint}"
        )

    def checked_rom(self, nic: NicModel) -> Path:
        """rom_path() followed by check_rom(): the path to pass as QEMU's ``romfile=``."""
        path = self.rom_path(nic)
        check_rom(path, nic)
        return path

    def has_rom(self, nic: NicModel) -> bool:
        try:
            self.rom_path(nic)
        except RomMissing:
            return False
        return True


def rom_sets(specs: Iterable[str], include_debian: bool = True) -> list[RomSet]:
    """Debian's set (first) plus every ``NAME=DIR`` given; names must be unique."""
    sets = [RomSet.debian()] if include_debian else []
    for spec in specs:
        rom_set = RomSet.parse(spec)
        if any(s.name == rom_set.name for s in sets):
            raise RomSetError(f"ROM set name {rom_set.name!r} is given twice")
        sets.append(rom_set)
    return sets
