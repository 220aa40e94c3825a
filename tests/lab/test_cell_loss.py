"""One VM, one protocol, a loss figure (``--lab-cell-loss``): the loss is really on the VM's
tap, the cell has its own column, and the boot reports its fetch time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab.pytest_plugin import require_vm_support

pytestmark = pytest.mark.vm

REPO = Path(__file__).resolve().parents[2]


def test_a_lossy_cell_fetches_through_the_loss_and_says_how_long_it_took(tmp_path: Path) -> None:
    require_vm_support()
    argv = [
        sys.executable, "-m", "lab.cli", "matrix", "--lab-nics", "e1000", "--lab-protocols", "tftp",
        "--lab-sizes", str(256 * 1024), "--lab-server", "pyatftpd", "--lab-trains", "none",
        "--lab-querier-protocols", "none", "--lab-cell-loss", "10", "--lab-artifacts", str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "tftp/debian/pyatftpd/loss10" in done.stderr and "(fetch " in done.stderr
    (run,) = tmp_path.glob("*/matrix.json")
    (cell,) = json.loads(run.read_text())["cells"]
    assert (cell["column"], cell["loss"], cell["status"]) == ("tftp/debian/pyatftpd/loss10", 10, "PASS")
    (boot,) = cell["boots"]
    assert boot["loss"]["injected"] is True and boot["loss"]["percent"] == 10
    assert boot["fetch_seconds"] > 0
    # 10 % of ~370 frames each way were dropped: the server must have sent some block again.
    log = run.parent / boot["files"]["tftp_events"]
    events = [json.loads(line) for line in log.read_text().splitlines()]
    resent = [e for e in events if e["event"] == "retransmit"]
    resent_in_done = sum(e.get("retransmits", 0) for e in events if e["event"] == "done")
    assert resent or resent_in_done, "no retransmission: the loss was not on the tap"
