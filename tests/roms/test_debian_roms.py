"""What Debian's ROM set lacks, read from the ROMs themselves (docs/findings.md).

Why pinned: the lab's design rests on it (x-slam is UNSUPPORTED with this set, and the
bytes are proven by the in-guest verifier because the ROMs cannot hash an image).  A new
ipxe-qemu that gains SLAM or the digest commands fails here, which is the moment to
revisit lab/expectations/debian.toml and docs/verifier.md.
"""

from __future__ import annotations

import pytest

from roms.payload import rom_has_feature, unpacked_bodies
from roms.romset import DEBIAN_ROM_DIR
from tests.roms.test_romset import needs_debian_roms

#: iPXE's digest commands (DIGEST_CMD): the names it would register if they were built in.
DIGEST_COMMANDS = (b"sha1sum", b"sha256sum", b"md5sum", b"imgverify")


@needs_debian_roms
@pytest.mark.parametrize("rom", ["pxe-e1000.rom", "pxe-rtl8139.rom", "pxe-eepro100.rom", "pxe-virtio.rom"])
def test_debian_roms_have_no_slam_and_no_digest_commands(rom: str) -> None:
    path = DEBIAN_ROM_DIR / rom
    body = b"".join(unpacked_bodies(path.read_bytes()))
    assert body, f"{rom}: the iPXE body could not be unpacked"
    assert rom_has_feature(path, "TFTP") is True, "the control: a feature the ROM has is found"
    assert rom_has_feature(path, "SLAM") is False
    assert b"\x00imgfetch\x00" in body, "the control: a command the ROM has is found"
    assert [name for name in DIGEST_COMMANDS if name in body] == []
