"""ROM sets (folders of iPXE option ROMs) and the header check that pairs a ROM with a NIC.

A ROM built for another card is the classic way to waste an afternoon: the VM boots no
firmware (or the wrong driver) and the run looks like a driver failure.  Reading the PCI
IDs from the ROM's own header before starting QEMU turns that into a clear lab ERROR
that names the right ROM.

The rule checked is SeaBIOS's: an x86 image starts only on the device whose
vendor:device its header names, exactly (QEMU patches headers only for its default
ROMs, never for ``romfile=``).  Where a set's ROM carries the right iPXE driver under
another or a placeholder ID (Debian's ne2k_pci, i8255x variants, e1000 variants,
transitional virtio), ``RomSet.rom_path`` hands out a retargeted copy, see
``roms.retarget``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from roms.catalog import CATALOG, NicModel
from roms.header import (
    RomFormatError,
    RomImage,
    bios_header_ids,
    format_pci_id,
    is_generic_id,
    parse_pci_id,
    parse_rom_images,
    read_rom_pci_ids,
)
from roms.payload import rom_lists_pci_id
from roms.retarget import retarget_rom

# The header helpers are re-exported: they lived here before roms/header.py existed.
__all__ = [
    "DEBIAN_ROM_DIR",
    "RomFormatError",
    "RomImage",
    "bios_header_ids",
    "format_pci_id",
    "is_generic_id",
    "parse_pci_id",
    "parse_rom_images",
    "RomMismatch",
    "RomMissing",
    "RomSet",
    "RomSetError",
    "check_rom",
    "read_rom_pci_ids",
    "retarget_reason",
    "rom_sets",
]

DEBIAN_ROM_DIR = Path("/usr/lib/ipxe/qemu")


class RomMismatch(Exception):
    """The ROM's header names other PCI devices than the NIC it was paired with."""


class RomMissing(Exception):
    """The ROM set has no ROM for this NIC."""


class RomSetError(ValueError):
    """A ROM set specification (``NAME=DIR``) is malformed or names no folder."""


def _ids_text(ids: Iterable[tuple[int, int]]) -> str:
    return ", ".join(format_pci_id(*i) for i in ids)


def check_rom(path: Path | str, nic: NicModel) -> None:
    """Raise RomMismatch unless SeaBIOS will start this ROM on ``nic`` (an x86 image names its ID)."""
    if nic.pci_id is None:
        raise RomMismatch(f"NIC {nic.name} is not a PCI device ({nic.bus}): it takes no option ROM")
    headers = bios_header_ids(path)
    if parse_pci_id(nic.pci_id) in headers:
        return
    names = " or ".join(_candidate_names(nic))
    carried = read_rom_pci_ids(path)
    reason = retarget_reason(path, nic)
    if reason:
        raise RomMismatch(
            f"ROM {path} carries PCI IDs [{_ids_text(carried)}] ({reason}), but NIC {nic.name} is "
            f"{nic.pci_id} and SeaBIOS starts a ROM only on the device its header names; use "
            f"RomSet.rom_path() (it retargets a copy) or pick the ROM built for {nic.pci_id} ({names})"
        )
    owners = sorted({m.name for m in CATALOG.values() if m.pci_id and parse_pci_id(m.pci_id) in carried})
    owner = f" (a ROM for {', '.join(owners)})" if owners else ""
    raise RomMismatch(
        f"ROM {path} carries PCI IDs [{_ids_text(carried)}]{owner}, but NIC {nic.name} is {nic.pci_id}; "
        f"pick the ROM built for {nic.pci_id} ({names})"
    )


def retarget_reason(path: Path | str, nic: NicModel) -> str | None:
    """Why a copy of this ROM retargeted to ``nic``'s ID would drive ``nic``, or None if it would not.

    Decided from the ROM's unpacked body when possible (its iPXE drivers list the ID);
    otherwise, yes when the x86 header carries only a placeholder ID or the ID of a
    sibling device of the same iPXE driver (``nic.compatible_rom_ids``).
    """
    if nic.pci_id is None:
        return None
    target = parse_pci_id(nic.pci_id)
    headers = bios_header_ids(path)
    if not headers or target in headers:
        return None
    listed = rom_lists_pci_id(path, *target)
    if listed is not None:
        return f"its iPXE drivers list {nic.pci_id} but its header does not" if listed else None
    if all(is_generic_id(*i) for i in headers):
        return f"a placeholder header, built for no single device ({_ids_text(headers)})"
    family = {parse_pci_id(i) for i in nic.compatible_rom_ids}
    if family & set(headers):
        return f"the same iPXE driver ({nic.ipxe_driver}) built for a sibling device"
    return None


def _ipxe_name(pci_id: str) -> str:
    return pci_id.replace(":", "") + ".rom"


def _candidate_names(nic: NicModel) -> list[str]:
    """File names a ROM for ``nic`` may have: QEMU's ``pxe-<model>.rom``, then iPXE's ``vvvvdddd.rom``."""
    names: list[str] = [nic.rom_file] if nic.rom_file else []
    names += [_ipxe_name(i) for i in nic.rom_ids()]
    return list(dict.fromkeys(names))


def _default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "netboot-lab" / "roms"


@dataclass(frozen=True)
class RomSet:
    """A named folder of BIOS option ROMs (never committed to the repository)."""

    name: str
    directory: Path
    #: Where retargeted copies go (default ~/.cache/netboot-lab/roms).
    cache_dir: Path | None = None

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

    def source_rom(self, nic: NicModel) -> Path:
        """The ROM file for ``nic`` as it lies in the set, or RomMissing saying why and what to do."""
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

    def rom_path(self, nic: NicModel) -> Path:
        """The ROM to pass as QEMU's ``romfile=`` for ``nic``.

        The set's own file when its header names the NIC (or names some other device:
        check_rom then reports the mismatch); a retargeted copy in the cache when the
        file carries the NIC's iPXE driver under a placeholder or sibling ID (see
        retarget_reason).  The copy's name ends in ``-as-<vvvvdddd>.rom`` so evidence
        shows it.
        """
        source = self.source_rom(nic)
        if retarget_reason(source, nic) is None or nic.pci_id is None:
            return source
        target = nic.pci_id.replace(":", "")
        cache = self.cache_dir if self.cache_dir is not None else _default_cache()
        copy = cache / self.name / f"{source.stem}-as-{target}.rom"
        if copy.is_file() and copy.stat().st_mtime >= source.stat().st_mtime:
            return copy
        return retarget_rom(source, copy, nic.pci_id)

    def checked_rom(self, nic: NicModel) -> Path:
        """rom_path() followed by check_rom()."""
        path = self.rom_path(nic)
        check_rom(path, nic)
        return path

    def has_rom(self, nic: NicModel) -> bool:
        try:
            self.source_rom(nic)
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
