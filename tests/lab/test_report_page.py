"""matrix.html of a small real run in Chromium: a failing cell's iPXE error line, the summary
and the trains on the first 1400x900 screen; the failing cell's folder browses on its own.

The run: Debian's e1000 ROM fetching by ``tftm://`` from atftpd, which fails (Debian's
iPXE cannot hear an RFC 2090 group and atftpd has no unicast fallback, docs/findings.md),
and a two-VM tftm train of the same.  No expectations are given, so the FAIL is news and
the run exits 1: what a maintainer's first look must show.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from lab.pytest_plugin import require_vm_support
from tests.report_probe import assert_first_screen, need_chromium, probe_first_screen

pytestmark = pytest.mark.vm

REPO = Path(__file__).resolve().parents[2]
CELL = "e1000/tftm/debian/atftpd"
SMALL_RUN = [
    "--lab-nics", "e1000", "--lab-protocols", "tftm", "--lab-sizes", "1", "--lab-mcast-size", "65536",
    "--lab-server", "atftpd", "--lab-trains", "tftm", "--lab-train-nics", "e1000,rtl8139",
    "--lab-train-size", "65536", "--lab-querier-protocols", "none", "--lab-full-boot", "none",
    "--lab-loss", "0", "--lab-upstream-sets", "none",
]  # fmt: skip


def _png_size(path: Path) -> tuple[int, int]:
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return width, height


def test_a_real_runs_page_shows_the_failure_and_its_folder_browses(tmp_path: Path) -> None:
    require_vm_support()
    need_chromium()
    argv = [sys.executable, "-m", "lab.cli", "matrix", *SMALL_RUN, "--lab-artifacts", str(tmp_path)]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 1, done.stderr[-3000:]  # a FAIL nobody expected
    (run,) = [p.parent for p in tmp_path.glob("*/matrix.json")]
    data = json.loads((run / "matrix.json").read_text())
    (cell,) = [c for c in data["cells"] if f"{c['nic']}/{c['column']}" == CELL]
    (boot,) = cell["boots"]
    assert (cell["status"], boot["failed_stage"]) == ("FAIL", "payload")
    error = boot["ipxe_error"]
    assert error["words"] == "Connection timed out" and error["line"].endswith(f"{error['code']})")
    assert _png_size(run / "matrix.png") == (1400, 900)
    assert_first_screen(probe_first_screen(run / "matrix.html", CELL), error["line"])
    folder = run / boot["artifacts"]
    index = (folder / "index.html").read_text()
    for name in ("console.txt", "console.log", "evidence.json", "tftp.events.jsonl", "nic.pcap"):
        assert f'href="{name}"' in index, name
    assert f"--only {CELL}" in index  # the command that re-runs just this cell
    console = (folder / "console.txt").read_text()
    assert "\x1b" not in console and "\b" not in console and "Connection timed out" in console
    assert any("LAB fetch-failed" in line for line in boot["console_tail"])
