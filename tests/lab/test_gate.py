"""The regression gate on real VMs: a small matrix passes it, a broken pyatftpd fails it, and
two shards merged are the unsharded run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from lab.pytest_plugin import require_vm_support

pytestmark = pytest.mark.vm

REPO = Path(__file__).resolve().parents[2]
SMALL = [
    "--lab-nics", "e1000", "--lab-protocols", "tftp,mtftp", "--lab-sizes", "1", "--lab-server", "pyatftpd",
    "--lab-trains", "none", "--lab-querier-protocols", "none", "--expect", "auto",
]  # fmt: skip


def _matrix(artifacts: Path, *extra: str, fault: str | None = None) -> tuple[int, str, Path]:
    env = dict(os.environ)
    env.pop("PYATFTPD_TEST_FAULT", None)
    if fault:
        env["PYATFTPD_TEST_FAULT"] = fault
    argv = [sys.executable, "-m", "lab.cli", "matrix", *SMALL, *extra, "--lab-artifacts", str(artifacts)]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
    runs = sorted(artifacts.glob("*/matrix.json"))
    assert runs, done.stderr[-3000:]
    return done.returncode, done.stderr, runs[-1].parent


def _verdicts(run: Path) -> dict[str, tuple[str, str]]:
    data = json.loads((run / "matrix.json").read_text())
    return {f"{c['nic']}/{c['column']}": (c["status"], c["outcome"]) for c in data["cells"]}


def test_the_gate_passes_a_sound_run_and_names_the_cell_a_broken_server_regressed(tmp_path: Path) -> None:
    require_vm_support()
    status, err, run = _matrix(tmp_path / "sound")
    assert status == 0, err[-3000:]
    assert _verdicts(run)["e1000/mtftp/debian/pyatftpd"] == ("PASS", "multicast")
    schema = json.loads((REPO / "docs" / "matrix.schema.json").read_text())
    jsonschema.validate(json.loads((run / "matrix.json").read_text()), schema)
    status, err, run = _matrix(tmp_path / "broken", "--only", "e1000/mtftp/*", fault="drop-group-data")
    assert status == 1, err[-3000:]
    assert "REGRESSION: cell e1000/mtftp/debian/pyatftpd" in err
    assert "--only e1000/mtftp/debian/pyatftpd" in err  # the command that re-runs just that cell
    assert _verdicts(run)["e1000/mtftp/debian/pyatftpd"] != ("PASS", "multicast")
    junit = (run / "junit.xml").read_text()
    assert 'name="e1000/mtftp/debian/pyatftpd"' in junit and "<failure" in junit and "<system-out>" in junit


def test_two_shards_merged_give_the_cells_of_the_unsharded_run(tmp_path: Path) -> None:
    require_vm_support()
    _, _, whole = _matrix(tmp_path / "whole")
    shards = [_matrix(tmp_path / f"shard{k}", "--shard", f"{k}/2")[2] for k in (1, 2)]
    assert all(_verdicts(s) for s in shards), "each shard ran something"
    merged = subprocess.run(
        [sys.executable, "-m", "lab.cli", "merge", *map(str, shards), "--out", str(tmp_path / "merged"),
         "--expect", "auto"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert merged.returncode == 0, merged.stderr[-3000:]
    assert _verdicts(tmp_path / "merged") == _verdicts(whole)
