"""`lab bisect` end to end: real iPXE builds from the upstream archive and a real boot per step.

A repository made from the archive gets three commits: the RFC 2090 fix, an unrelated
change, and the fix reverted.  Between the fix (good) and the revert (bad) `lab bisect
--cell e1000/tftm` must boot the unrelated commit, see tftm arrive by multicast, and name
the revert.  Runs where the archive is (CI); skipped with one line elsewhere.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from lab.pytest_plugin import require_vm_support
from tests.roms.upstream_archive import HAVE_ARCHIVE, MISSING, REPO_ROOT, fix_then_revert

pytestmark = [
    pytest.mark.vm,
    pytest.mark.ipxe_build,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(not HAVE_ARCHIVE, reason=MISSING),
]


def test_lab_bisect_names_the_commit_that_broke_tftm_on_e1000(tmp_path: Path) -> None:
    require_vm_support()
    history = fix_then_revert(tmp_path / "ipxe")
    repo, fix, unrelated, revert = history.repo, history.fix, history.unrelated, history.revert
    argv = [sys.executable, "-m", "lab.cli", "bisect", str(repo), "--good", fix, "--bad", revert,
            "--cell", "e1000/tftm", "--lab-artifacts", str(tmp_path / "artifacts")]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO_ROOT, timeout=1500)
    print(done.stdout)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"first bad commit: {revert}" in done.stdout
    assert re.search(rf"step 1: {unrelated[:12]} good .*evidence: ", done.stdout), done.stdout
    assert re.search(r"total \d+ s", done.stdout)
    evidence = next((tmp_path / "artifacts").glob(f"bisect-*/{unrelated[:12]}/boot/evidence.json"))
    assert '"outcome": "multicast"' in evidence.read_text()
