"""`lab bisect` end to end: real iPXE builds from the upstream archive and a real boot per step.

A repository made from the archive gets three commits: the RFC 2090 fix, an unrelated
change, and the fix reverted.  Between the fix (good) and the revert (bad) `lab bisect
--cell e1000/tftm` must boot the unrelated commit, see tftm arrive by multicast, and name
the revert.  Runs where the archive is (CI); skipped with one line elsewhere.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lab.pytest_plugin import require_vm_support
from roms.ipxe_tree import extract, open_source

REPO = Path(__file__).resolve().parents[2]
ARCHIVE_DIR = Path(os.environ.get("LAB_IPXE_ARCHIVE_DIR") or REPO.parent / "shared" / "ipxe")
ARCHIVES = sorted(ARCHIVE_DIR.glob("ipxe-*.tar.*")) if ARCHIVE_DIR.is_dir() else []
PATCH = ARCHIVE_DIR / "tftm-socket-address.patch"

pytestmark = [
    pytest.mark.vm,
    pytest.mark.ipxe_build,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(
        not ARCHIVES or not PATCH.is_file(),
        reason=f"no iPXE source archive and tftm-socket-address.patch in {ARCHIVE_DIR} "
        "(set LAB_IPXE_ARCHIVE_DIR)",
    ),
]


def _git(repo: Path, *args: str) -> str:
    ident = ["-c", "user.name=lab", "-c", "user.email=lab@example.org"]
    done = subprocess.run(["git", "-C", str(repo), *ident, *args], check=True, capture_output=True, text=True)
    return done.stdout.strip()


def test_lab_bisect_names_the_commit_that_broke_tftm_on_e1000(tmp_path: Path) -> None:
    require_vm_support()
    repo = extract(open_source(ARCHIVES[-1]), tmp_path / "ipxe")
    _git(repo, "init", "-q", "-b", "master")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", f"import {ARCHIVES[-1].name}")
    subprocess.run(["patch", "-p1", "-s", "-i", str(PATCH)], cwd=repo, check=True)
    _git(repo, "commit", "-q", "-am", "tftp: zero the multicast socket address")
    fix = _git(repo, "rev-parse", "HEAD")
    with (repo / "README.md").open("a") as readme:
        readme.write("\nAn unrelated change.\n")
    _git(repo, "commit", "-q", "-am", "README: an unrelated change")
    unrelated = _git(repo, "rev-parse", "HEAD")
    _git(repo, "revert", "--no-edit", fix)
    revert = _git(repo, "rev-parse", "HEAD")
    argv = [sys.executable, "-m", "lab.cli", "bisect", str(repo), "--good", fix, "--bad", revert,
            "--cell", "e1000/tftm", "--lab-artifacts", str(tmp_path / "artifacts")]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=1500)
    print(done.stdout)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"first bad commit: {revert}" in done.stdout
    assert re.search(rf"step 1: {unrelated[:12]} good .*evidence: ", done.stdout), done.stdout
    assert re.search(r"total \d+ s", done.stdout)
    evidence = next((tmp_path / "artifacts").glob(f"bisect-*/{unrelated[:12]}/boot/evidence.json"))
    assert '"outcome": "multicast"' in evidence.read_text()
