"""The upstream iPXE archive and its fix (``../shared/ipxe/`` or ``$LAB_IPXE_ARCHIVE_DIR``),
and the three-commit history the bisection tests search: fix, unrelated change, revert."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from roms.ipxe_tree import extract, open_source

REPO_ROOT = Path(__file__).resolve().parents[2]
ARCHIVE_DIR = Path(os.environ.get("LAB_IPXE_ARCHIVE_DIR") or REPO_ROOT.parent / "shared" / "ipxe")
ARCHIVES = sorted(ARCHIVE_DIR.glob("ipxe-*.tar.*")) if ARCHIVE_DIR.is_dir() else []
PATCH = ARCHIVE_DIR / "tftm-socket-address.patch"
HAVE_ARCHIVE = bool(ARCHIVES) and PATCH.is_file()
MISSING = f"no iPXE source archive and tftm-socket-address.patch in {ARCHIVE_DIR} (set LAB_IPXE_ARCHIVE_DIR)"


def git(repo: Path, *args: str) -> str:
    ident = ["-c", "user.name=lab", "-c", "user.email=lab@example.org"]
    done = subprocess.run(["git", "-C", str(repo), *ident, *args], check=True, capture_output=True, text=True)
    return done.stdout.strip()


@dataclass(frozen=True)
class History:
    repo: Path
    fix: str
    unrelated: str
    revert: str


def fix_then_revert(dest: Path) -> History:
    """A git repo of the archive with three commits on top: the fix, an unrelated change, the fix reverted."""
    repo = extract(open_source(ARCHIVES[-1]), dest)
    git(repo, "init", "-q", "-b", "master")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"import {ARCHIVES[-1].name}")
    subprocess.run(["patch", "-p1", "-s", "-i", str(PATCH)], cwd=repo, check=True)
    git(repo, "commit", "-q", "-am", "tftp: zero the multicast socket address")
    fix = git(repo, "rev-parse", "HEAD")
    with (repo / "README.md").open("a") as readme:
        readme.write("\nAn unrelated change.\n")
    git(repo, "commit", "-q", "-am", "README: an unrelated change")
    unrelated = git(repo, "rev-parse", "HEAD")
    git(repo, "revert", "--no-edit", fix)
    return History(repo, fix, unrelated, git(repo, "rev-parse", "HEAD"))
