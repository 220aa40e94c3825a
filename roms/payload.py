"""Look inside an iPXE ROM: unpack its compressed body to read the iPXE version and its PCI ID tables.

iPXE ROMs carry a small uncompressed prefix and a body packed by iPXE's ``zbin``: a
32-bit length, a raw LZMA1 stream (lc=2, lp=0, pb=0) of the body after a simple x86
branch filter, and a CRC32 (zlib's, without the final inversion).  Unpacking it tells
which version built the ROM and whether its drivers list a device, which makes
retargeting a ROM to another device ID safe to decide.  Anything unexpected yields None:
this is evidence, never a reason to fail a run.
"""

from __future__ import annotations

import lzma
import re
import struct
import zlib
from functools import lru_cache
from pathlib import Path

_LZMA_FILTERS = [{"id": lzma.FILTER_LZMA1, "lc": 2, "lp": 0, "pb": 0, "dict_size": 8 << 20}]
_MIN_PACKED = 1024
_BRANCH = re.compile(rb"[\xe8\xe9]")
#: After a NUL (Debian's 1.0.0 ROMs) or after alignment padding such as ``f\x90\x90``
#: (current iPXE: ``iPXE\x00f\x90\x902.0.0+ (g0ab22)\x00``).
_VERSION = re.compile(rb"[\x00\x90](\d+\.\d+\.\d+[\x21-\x7e]*(?: \(g[0-9a-f]+\))?)\x00")


def unpacked_bodies(data: bytes) -> list[bytes]:
    """Every zbin-packed block found in ``data``, unpacked and unfiltered (largest first)."""
    bodies = []
    zero = data.find(0, 4)
    while zero >= 0:  # an LZMA stream starts with a zero byte, right after the 32-bit length
        pos, zero = zero - 4, data.find(0, zero + 1)
        (length,) = struct.unpack_from("<I", data, pos)
        end = pos + 4 + length
        if length < _MIN_PACKED or end > len(data):
            continue
        packed = data[pos + 4 : end - 4]
        (crc,) = struct.unpack_from("<I", data, end - 4)
        if zlib.crc32(packed) ^ 0xFFFFFFFF != crc:
            continue
        try:
            body = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS).decompress(packed)
        except lzma.LZMAError:
            continue
        bodies.append(_unfilter_branches(body))
    return sorted(bodies, key=len, reverse=True)


def _unfilter_branches(data: bytes) -> bytes:
    """Undo zbin's x86 filter: rel32 targets of E8/E9 were made absolute before packing."""
    out = bytearray(data)
    limit = len(out) - 5
    match = _BRANCH.search(out)
    while match is not None and (offset := match.start()) <= limit:
        (target,) = struct.unpack_from("<i", out, offset + 1)
        if 0 <= target < limit:
            target -= offset
        elif -offset <= target < 0:
            target += limit
        struct.pack_into("<i", out, offset + 1, target)
        match = _BRANCH.search(out, offset + 5)
    return bytes(out)


@lru_cache(maxsize=64)
def _bodies_of(path: str, mtime_ns: int) -> tuple[bytes, ...]:
    return tuple(unpacked_bodies(Path(path).read_bytes()))


def _bodies(path: Path | str) -> tuple[bytes, ...]:
    target = Path(path)
    return _bodies_of(str(target.resolve()), target.stat().st_mtime_ns)


def rom_ipxe_version(path: Path | str) -> str | None:
    """The iPXE version string built into the ROM (e.g. ``1.0.0+git-20190125.36a4c85-5.1``), or None."""
    for body in _bodies(path):
        match = _VERSION.search(body)
        if match:
            return match.group(1).decode("ascii")
    return None


def rom_lists_pci_id(path: Path | str, vendor: int, device: int) -> bool | None:
    """Whether the ROM's unpacked body holds ``vendor:device`` as in an iPXE PCI ID table entry.

    None when the body cannot be unpacked (not an iPXE ROM, or a format this does not know).
    """
    bodies = _bodies(path)
    if not bodies:
        return None
    needle = struct.pack("<HH", vendor, device)
    return any(needle in body for body in bodies)


def rom_has_feature(path: Path | str, name: str) -> bool | None:
    """Whether the ROM body holds ``name`` as a NUL-delimited string, as iPXE's feature table keeps it.

    iPXE prints its ``Features:`` line at run time from the names in its feature table
    (``FEATURE(..., "SLAM", ...)``), so a feature built in leaves its name in the body
    (beside its URI scheme: ``x-slam\\0SLAM\\0``).  None when the body cannot be unpacked.
    """
    bodies = _bodies(path)
    if not bodies:
        return None
    needle = b"\x00" + name.encode("ascii") + b"\x00"
    return any(needle in body for body in bodies)
