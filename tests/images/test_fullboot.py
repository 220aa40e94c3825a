"""The full boot payload: initramfs packing (fast, with a stand-in busybox .deb) and a real boot.

The real boot (Debian's kernel + the busybox initramfs under TCG) takes 9-18 s here
plus a 70 MB download on first use, so it is marked ``vm`` (``pytest -m vm``).
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from images import fullboot
from images.fullboot import (
    CARRIED_NAME,
    CARRIED_SEED,
    CARRIED_SIZE,
    KERNEL_APPEND,
    MARKER,
    FullBootError,
    build_fullboot,
    fullboot_script,
    parse_marker,
)
from images.payload import make_payload
from lab.infra.direct_boot import boot_direct

needs_cpio = pytest.mark.skipif(shutil.which("cpio") is None, reason="no cpio; fix: apt-get install cpio")
needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="no dpkg-deb (Debian's dpkg)")


def read_newc(archive: bytes) -> dict[str, tuple[int, int, int, bytes]]:
    """name -> (mode, uid, mtime, data) from an uncompressed newc cpio archive."""
    entries: dict[str, tuple[int, int, int, bytes]] = {}
    pos = 0
    while True:
        header = archive[pos : pos + 110]
        assert header[:6] == b"070701", f"not newc at {pos}"
        fields = [int(header[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        mode, uid, mtime, size, namesize = fields[1], fields[2], fields[5], fields[6], fields[11]
        name_start = pos + 110
        name = archive[name_start : name_start + namesize - 1].decode()
        data_start = (name_start + namesize + 3) & ~3
        data = archive[data_start : data_start + size]
        pos = (data_start + size + 3) & ~3
        if name == "TRAILER!!!":
            return entries
        entries[name] = (mode, uid, mtime, data)


@pytest.fixture
def fake_busybox_deb(tmp_path: Path) -> Path:
    """A .deb holding ./bin/busybox (a stand-in), built with dpkg-deb: no download needed."""
    if shutil.which("dpkg-deb") is None:
        pytest.skip("no dpkg-deb (Debian's dpkg)")
    tree = tmp_path / "pkg"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "bin").mkdir()
    (tree / "DEBIAN" / "control").write_text(
        "Package: busybox-static\nVersion: 1:0.0-test\nArchitecture: amd64\n"
        "Maintainer: test <t@example.invalid>\nDescription: stand-in\n"
    )
    (tree / "bin" / "busybox").write_bytes(b"\x7fELF stand-in busybox")
    deb = tmp_path / "busybox-static_1%3a0.0-test_amd64.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(tree), str(deb)], check=True,
                   capture_output=True)  # fmt: skip
    return deb


def test_script_boots_kernel_with_console_and_initrd() -> None:
    script = fullboot_script("mtftp://192.0.2.1/vmlinuz", "mtftp://192.0.2.1/initrd.gz")
    lines = script.splitlines()
    assert lines[0] == "#!ipxe"
    assert f"kernel mtftp://192.0.2.1/vmlinuz {KERNEL_APPEND} || goto failed" in lines
    initrd = "initrd mtftp://192.0.2.1/initrd.gz || goto failed"
    assert initrd in lines
    assert lines.index(initrd) < lines.index("boot || goto failed")
    assert "echo LAB fetch-failed" in lines


def test_parse_marker() -> None:
    digest = "ab" * 32
    console = f"noise\r\n{MARKER} sha256={digest} kernel=6.1.0-56-amd64\r\n[ 9.1] reboot: Power down\r\n"
    assert parse_marker(console) == (digest, "6.1.0-56-amd64")
    assert parse_marker(f"{MARKER} sha256={digest}") == (digest, None)
    assert parse_marker(f"{MARKER} sha256=short") is None
    assert parse_marker("Kernel panic - not syncing") is None


@needs_cpio
@needs_dpkg
def test_initrd_layout_is_reproducible(fake_busybox_deb: Path, tmp_path: Path) -> None:
    carried = make_payload(CARRIED_SIZE, CARRIED_SEED)
    first = fullboot._build_initrd(fake_busybox_deb, carried, tmp_path / "a")
    second = fullboot._build_initrd(fake_busybox_deb, carried, tmp_path / "b")
    assert first.read_bytes() == second.read_bytes(), "same inputs must give the same initramfs bytes"
    assert first.name == second.name, "the cache key depends on the inputs only"
    assert fullboot._build_initrd(fake_busybox_deb, carried, tmp_path / "a") == first  # cached
    entries = read_newc(gzip.decompress(first.read_bytes()))
    assert set(entries) == {"bin", "bin/busybox", "dev", "init", "proc", "sys", CARRIED_NAME}
    mode, uid, mtime, data = entries["init"]
    assert mode & 0o777 == 0o755 and uid == 0 and mtime == 0
    assert data.startswith(b"#!/bin/busybox sh\n") and MARKER.encode() in data and b"poweroff -f" in data
    assert entries["bin/busybox"][3] == b"\x7fELF stand-in busybox"
    assert entries["bin/busybox"][0] & 0o111
    assert hashlib.sha256(entries[CARRIED_NAME][3]).digest() == hashlib.sha256(carried).digest()
    other = fullboot._build_initrd(fake_busybox_deb, carried[:-1] + b"\0", tmp_path / "a")
    assert other != first, "a different carried file must give another cache entry"


@needs_dpkg
def test_missing_cpio_names_the_package(
    fake_busybox_deb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_which = shutil.which
    monkeypatch.setattr(fullboot.shutil, "which", lambda name: None if name == "cpio" else real_which(name))
    with pytest.raises(FullBootError, match=r"Debian package cpio"):
        fullboot._build_initrd(fake_busybox_deb, b"x", tmp_path)


def test_unresolvable_kernel_without_cache_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fullboot, "_resolve_kernel_package", lambda: None)
    with pytest.raises(FullBootError, match=r"linux-image-amd64.*apt-get update"):
        build_fullboot(tmp_path)


@pytest.mark.vm
def test_debian_kernel_boots_and_proves_the_carried_file() -> None:
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("no qemu-system-x86_64; fix: apt-get install qemu-system-x86")
    try:
        payload = build_fullboot()
    except FullBootError as exc:
        pytest.skip(f"full boot payload unavailable: {exc}")
    assert payload.kernel.stat().st_size > 4_000_000, "Debian's vmlinuz is about 8 MB"
    run = boot_direct(payload, timeout=180)
    assert run.marker_seconds is not None, f"no marker; console tail:\n{run.console[-1500:]}"
    assert run.sha256 == payload.carried_sha256
    assert run.kernel_release and run.kernel_release in payload.kernel.name
    assert run.status == 0, f"QEMU should exit after poweroff -f, got {run.status}"
    print(f"full boot: marker after {run.marker_seconds:.1f} s, {payload.kernel_package}")
