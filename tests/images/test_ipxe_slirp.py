"""The verifier and a generated script booted by a real Debian iPXE ROM, over QEMU's own user-mode network.

QEMU's slirp with ``restrict=on`` serves DHCP and TFTP from inside the QEMU process: no
host interface, no namespace, no packet leaves QEMU.  This checks the chain the lab
relies on (ROM -> script -> ``kernel`` + ``module`` -> multiboot -> verifier verdict)
without the lab's network; about 6 s per boot under TCG.  One boot runs in ``tox -e
py``; the other design NICs are marked ``vm``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from images.bootscript import BOOT_FAILED, FETCHED, KERNEL_FETCHED, ipxe_script, payload_url
from images.payload import write_payload
from images.verifier import ISA_DEBUG_EXIT, build_verifier, parse_console, verdict_from_exit
from lab.infra.direct_boot import run_qemu
from roms.catalog import DESIGN_NICS, nic
from roms.romset import DEBIAN_ROM_DIR, RomSet

pytestmark = [
    pytest.mark.skipif(
        shutil.which("qemu-system-x86_64") is None, reason="fix: apt-get install qemu-system-x86"
    ),
    pytest.mark.skipif(not DEBIAN_ROM_DIR.is_dir(), reason="fix: apt-get install ipxe-qemu"),
    pytest.mark.skipif(shutil.which("gcc") is None, reason="fix: apt-get install gcc binutils"),
]

SLIRP_SERVER = "10.0.2.2"


def boot_over_slirp(
    tmp_path: Path, nic_name: str, size: int, corrupt: bool = False, memory_mb: int = 256
) -> tuple[int | None, str]:
    shutil.copy(build_verifier(), tmp_path / "verifier.elf")
    digest = write_payload(tmp_path / "payload.bin", size, seed=size)
    if corrupt:  # the server holds other bytes than the digest the script expects
        write_payload(tmp_path / "payload.bin", size, seed=size + 1)
    script = ipxe_script(
        payload_url("tftp", SLIRP_SERVER, "verifier.elf"),
        payload_url("tftp", SLIRP_SERVER, "payload.bin"),
        digest,
        size,
    )
    (tmp_path / "boot.ipxe").write_text(script)
    model = nic(nic_name)
    rom = RomSet("debian", DEBIAN_ROM_DIR, cache_dir=tmp_path / "roms").checked_rom(model)
    argv = [
        "qemu-system-x86_64", "-accel", "tcg", "-m", str(memory_mb), "-nodefaults", "-nographic",
        "-serial", "stdio",
        "-no-reboot", *ISA_DEBUG_EXIT, "-boot", "n",
        "-netdev", f"user,id=n0,restrict=on,tftp={tmp_path},bootfile=boot.ipxe",
        "-device", f"{model.qemu_device},netdev=n0,romfile={rom}",
    ]  # fmt: skip
    status, console, _ = run_qemu(argv, timeout=180, stop_on=BOOT_FAILED.encode())
    (tmp_path / "console.log").write_text(console)
    return status, console


def check_pass(status: int | None, console: str, size: int) -> None:
    report = parse_console(console)
    assert KERNEL_FETCHED in console and FETCHED in console, console[-3000:]
    assert report.verdict == "PASS" and report.size == size, console[-3000:]
    assert status is not None and verdict_from_exit(status) == "PASS"


def test_e1000_rom_boots_verifier_with_5mib_payload(tmp_path: Path) -> None:
    size = 5 * 1024 * 1024
    status, console = boot_over_slirp(tmp_path, "e1000", size)
    check_pass(status, console, size)


@pytest.mark.vm
@pytest.mark.parametrize("nic_name", DESIGN_NICS)
@pytest.mark.parametrize("size", [1, 1432 * 3])
def test_design_nic_boots_verifier(tmp_path: Path, nic_name: str, size: int) -> None:
    status, console = boot_over_slirp(tmp_path, nic_name, size)
    check_pass(status, console, size)


@pytest.mark.vm
@pytest.mark.parametrize(
    "nic_name", ["i82550", "i82801", "e1000-82545em", "virtio-net-pci", "vmxnet3", "e1000e"]
)
def test_more_qemu_nics_boot_verifier(tmp_path: Path, nic_name: str) -> None:
    """Variants that need a retargeted copy of a Debian ROM, and the other NICs Debian has ROMs for."""
    status, console = boot_over_slirp(tmp_path, nic_name, 4096)
    check_pass(status, console, 4096)


@pytest.mark.vm
def test_wrong_bytes_on_the_server_fail_in_the_guest(tmp_path: Path) -> None:
    status, console = boot_over_slirp(tmp_path, "rtl8139", 4096, corrupt=True)
    assert parse_console(console).verdict == "FAIL" and status == 35, console[-3000:]


@pytest.mark.vm
def test_payload_too_big_for_guest_memory_reports_boot_failed(tmp_path: Path) -> None:
    """24 MiB fetched into a 32 MiB guest: iPXE cannot place the multiboot images."""
    status, console = boot_over_slirp(tmp_path, "e1000", 24 * 1024 * 1024, memory_mb=32)
    assert FETCHED in console and BOOT_FAILED in console and status is None, console[-3000:]
    assert not parse_console(console).started
