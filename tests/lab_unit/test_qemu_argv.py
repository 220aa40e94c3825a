from pathlib import Path

import pytest

from lab.infra.qemu import QemuSpec, qemu_argv


def test_golden_argv_for_a_tcg_vm() -> None:
    spec = QemuSpec("e1000", "52:54:00:1a:00:03", Path("/roms/pxe-e1000.rom"), "tap3")
    assert qemu_argv(spec) == [
        "qemu-system-x86_64",
        "-nodefaults",
        "-nographic",
        "-no-reboot",
        "-accel", "tcg",
        "-m", "256",
        "-serial", "stdio",
        "-monitor", "none",
        "-netdev", "tap,id=n0,ifname=tap3,script=no,downscript=no,vnet_hdr=off",
        "-device", "e1000,netdev=n0,mac=52:54:00:1a:00:03,romfile=/roms/pxe-e1000.rom,bootindex=1",
        "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
    ]  # fmt: skip


def test_nic_capture_is_qemus_filter_dump_on_the_nic_backend() -> None:
    spec = QemuSpec("e1000", "52:54:00:1a:00:03", Path("/r.rom"), "tap3", pcap=Path("/a/nic.pcap"))
    argv = qemu_argv(spec)
    assert argv[argv.index("-object") + 1] == "filter-dump,id=dump0,netdev=n0,file=/a/nic.pcap"


def test_kvm_only_when_asked_and_extra_options_last() -> None:
    spec = QemuSpec("i82557b", "52:54:00:1a:01:00", Path("/r.rom"), "tap0", accel="kvm", extra=("-S",))
    argv = qemu_argv(spec)
    assert argv[argv.index("-accel") + 1] == "kvm"
    assert argv[-1] == "-S"


def test_unknown_accelerator_is_refused_with_advice() -> None:
    with pytest.raises(ValueError, match="tcg"):
        qemu_argv(QemuSpec("e1000", "52:54:00:00:00:01", Path("/r.rom"), "tap0", accel="hvf"))
