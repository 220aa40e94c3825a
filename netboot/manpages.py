"""Man pages of the servers and client commands, generated from their argument parsers.

Why generated: the pages then say exactly what ``--help`` says, and a test fails when a
parser changes and the pages were not regenerated.  The pages are committed under
``netboot/data/man/`` (so building the package needs no generator) and installed into
``share/man`` with the package (pyproject.toml, data-files).  Regenerate with::

    python -m netboot.manpages          # needs argparse-manpage (the test extra has it)
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

FOLDER = Path(__file__).with_name("data") / "man"
#: A fixed date keeps the pages reproducible (the generator would put today's date).
DATE = "2026-12-06"
VERSION = "0.1.0"


class Page(NamedTuple):
    name: str
    section: str
    module: str
    description: str


PAGES = (
    Page("pyatftpd", "8", "netboot.tftp.cli", "TFTP server with atftpd's command line (RFC 1350, 2347-2349, "
         "2090 multicast, 7440, PXE MTFTP)"),
    Page("pyslamd", "8", "netboot.slam.cli", "SLAM (x-slam://) multicast file server (mini-slamd's drop-in)"),
    Page("netboot-fetch", "1", "netboot.clients.cli", "fetch a file as iPXE would (tftp, tftm, mtftp)"),
    Page("netboot-slam-fetch", "1", "netboot.clients.slam_cli", "fetch a file as iPXE's SLAM client would"),
)


def render(page: Page) -> str:
    from argparse_manpage.manpage import Manpage  # type: ignore[import-untyped]

    build: Callable[[], argparse.ArgumentParser] = importlib.import_module(page.module).build_parser
    data = {
        "project_name": "netboot-lab",
        "version": VERSION,
        "date": DATE,
        "manual_title": "System Administration" if page.section == "8" else "User Commands",
        "manual_section": page.section,
        "description": page.description,
        "url": "docs/pyatftpd.md, docs/pyslamd.md and docs/howto.md in the netboot-lab sources",
    }
    return str(Manpage(build(), data))


def path_of(page: Page) -> Path:
    return FOLDER / f"{page.name}.{page.section}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m netboot.manpages", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say which pages are out of date")
    args = parser.parse_args(argv)
    stale = []
    for page in PAGES:
        text = render(page)
        target = path_of(page)
        if target.exists() and target.read_text() == text:
            continue
        stale.append(str(target))
        if not args.check:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    if args.check and stale:
        print(f"out of date (run python -m netboot.manpages): {' '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
