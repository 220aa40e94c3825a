"""The Debian packages an iPXE ROM build needs, checked before make runs.

Why check first: a missing ``lzma.h`` shows up as a compiler error deep in a 1,000-line
make log (iPXE's ``util/zbin.c`` packs every ROM with liblzma); naming the apt-get line
up front is the fix the user needs.  ``lab.infra.provision`` imports ``BUILD_PACKAGES`` from
here, so there is one list.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable

#: Debian package -> why a ROM build needs it.
BUILD_PACKAGES: dict[str, str] = {
    "gcc": "compiles iPXE (C and x86 assembly)",
    "make": "runs iPXE's build",
    "perl": "iPXE's build scripts (util/parserom.pl, util/zbin's helpers)",
    "liblzma-dev": "lzma.h for iPXE's util/zbin, which packs every ROM",
    "patch": "applies --patch files to the build copy",
}


def _has_lzma_header() -> bool:
    if shutil.which("gcc") is None:
        return True  # reported as gcc; cannot probe the header without a compiler
    probe = subprocess.run(
        ["gcc", "-E", "-x", "c", "-"], input="#include <lzma.h>\n", capture_output=True, text=True
    )
    return probe.returncode == 0


def missing_build_packages(need_patch: bool = False) -> list[str]:
    """The packages whose tools are absent, probed directly (works outside Debian too)."""
    missing = [tool for tool in ("gcc", "make", "perl") if shutil.which(tool) is None]
    if not _has_lzma_header():
        missing.append("liblzma-dev")
    if need_patch and shutil.which("patch") is None:
        missing.append("patch")
    return missing


def apt_get_line(packages: Iterable[str]) -> str:
    return "sudo apt-get update && sudo apt-get install -y " + " ".join(packages)
