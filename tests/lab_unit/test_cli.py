"""``lab matrix``'s options: rows, a host that cannot run VMs (exit 2), bad option values."""

from pathlib import Path

import pytest

import lab.cli as cli
from lab.model.matrix_plan import select_rows
from roms.romset import RomSet


def test_matrix_on_a_host_without_vms_runs_nothing_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CI container without /dev/net/tun must not go green with nothing run."""
    monkeypatch.setattr(cli, "vm_support_problem", lambda: "/dev/net/tun is missing; modprobe tun")
    status = cli.main(["matrix", "--lab-artifacts", str(tmp_path), "--lab-nics", "e1000,tg3"])
    assert status == 2
    assert (
        "cannot run VMs here, so nothing was run: /dev/net/tun is missing; modprobe tun"
        in capsys.readouterr().err
    )
    assert not list(tmp_path.glob("*/matrix.json"))


def test_nic_selection_keeps_not_emulated_rows() -> None:
    design = select_rows("design", [RomSet.debian()])
    assert design[:5] == ["e1000", "rtl8139", "pcnet", "ne2k_pci", "eepro100"]
    assert "tg3" in design and "w89c840" in design
    with pytest.raises(ValueError, match="unknown NIC"):
        select_rows("e1000,nope", [RomSet.debian()])


def test_design_rows_include_every_seed_driver_qemu_emulates() -> None:
    rows = select_rows("design", [RomSet.debian()])
    assert "tulip" in rows  # seed-list driver, emulated, no Debian ROM: a row with "no ROM in set"
    assert "i82559c" not in rows  # its driver (eepro100) is already a design row


def test_default_rows_add_every_nic_debian_ships_a_rom_for() -> None:
    rows = select_rows("default", [RomSet.debian()])
    assert rows[:8] == [
        "e1000",
        "rtl8139",
        "pcnet",
        "ne2k_pci",
        "eepro100",
        "e1000e",
        "virtio-net-pci",
        "vmxnet3",
    ]
    assert "i82550" not in rows and "virtio-net-pci-non-transitional" not in rows  # retargeted siblings
    assert "tulip" in rows and "tg3" in rows


def test_help_states_defaults_nic_names_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["matrix", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "exit status: 0 every cell and train as the expectations say" in text
    assert "2 the lab broke (ERROR/MISS), or VMs cannot run here at all" in text
    assert "vmxnet3" in text and "(default mtftp,tftm,x-slam)" in text


def test_train_nics_must_be_known_and_emulated(capsys: pytest.CaptureFixture[str]) -> None:
    from lab.cli import main

    assert main(["matrix", "--lab-train-nics", "e1000,bogus"]) == 2
    assert "unknown NIC model 'bogus'" in capsys.readouterr().err
    assert main(["matrix", "--lab-train-nics", "e1000,3c509"]) == 2
    assert "QEMU cannot emulate 3c509; pick others" in capsys.readouterr().err


def test_loss_options_take_a_percent(capsys: pytest.CaptureFixture[str]) -> None:
    from lab.cli import main

    assert main(["matrix", "--lab-cell-loss", "100"]) == 2
    assert "--lab-cell-loss 100: give a percent from 0 to 99" in capsys.readouterr().err
    assert main(["matrix", "--lab-loss", "-1"]) == 2
    assert "--lab-loss -1: give a percent" in capsys.readouterr().err
