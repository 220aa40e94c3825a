"""``lab matrix`` on a host that cannot run VMs: every cell MISS or a fact, loudly, exit 0."""

import json
from pathlib import Path

import pytest

import lab.cli as cli


def test_matrix_without_vm_support_writes_miss_cells_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "vm_support_problem", lambda: "/dev/net/tun is missing; modprobe tun")
    status = cli.main(["matrix", "--lab-artifacts", str(tmp_path), "--lab-nics", "e1000,tg3"])
    assert status == 0
    assert "SKIPPED every VM boot: /dev/net/tun is missing; modprobe tun" in capsys.readouterr().err
    (matrix,) = tmp_path.glob("*/matrix.json")
    data = json.loads(matrix.read_text())
    statuses = {c["nic"]: c["status"] for c in data["cells"]}
    assert statuses == {"e1000": "MISS", "tg3": "NOT_EMULATED"}
    assert data["complete"] is False
    assert "PASS" not in data["summary"]


def test_nic_selection_keeps_not_emulated_rows() -> None:
    design = cli.select_nics("design")
    assert design[:5] == ["e1000", "rtl8139", "pcnet", "ne2k_pci", "eepro100"]
    assert "tg3" in design and "w89c840" in design
    with pytest.raises(SystemExit, match="unknown NIC"):
        cli.select_nics("e1000,nope")


def test_design_rows_include_every_seed_driver_qemu_emulates() -> None:
    from lab.cli import select_nics

    rows = select_nics("design")
    assert "tulip" in rows  # seed-list driver, emulated, no Debian ROM: a row with "no ROM in set"
    assert "i82559c" not in rows  # its driver (eepro100) is already a design row


@pytest.mark.parametrize(
    ("statuses", "fail_on", "expected"),
    [
        ({cli.Status.PASS}, "fail", 0),
        ({cli.Status.PASS, cli.Status.FAIL}, "fail", 1),
        ({cli.Status.PASS, cli.Status.FAIL}, "error", 0),
        ({cli.Status.FAIL, cli.Status.ERROR}, "error", 2),
        ({cli.Status.FAIL, cli.Status.ERROR}, "fail", 2),
        ({cli.Status.MISS}, "error", 2),
    ],
)
def test_exit_status_keeps_a_broken_lab_apart_from_findings(
    statuses: set[cli.Status], fail_on: str, expected: int
) -> None:
    assert cli.exit_status(statuses, fail_on) == expected


def test_train_nics_must_be_known_and_emulated(capsys: pytest.CaptureFixture[str]) -> None:
    from lab.cli import main

    assert main(["matrix", "--lab-train-nics", "e1000,bogus"]) == 2
    assert "unknown NIC model 'bogus'" in capsys.readouterr().err
    assert main(["matrix", "--lab-train-nics", "e1000,3c509"]) == 2
    assert "QEMU cannot emulate 3c509; pick others" in capsys.readouterr().err
