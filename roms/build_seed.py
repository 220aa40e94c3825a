"""Seed a fresh build copy with another copy's objects so make rebuilds only what differs.

make decides by timestamps alone.  A fresh copy's files carry the archive's (or the
commit's) times, which say nothing about the seed's objects, so the rule here is:
after seeding, a source file identical to the seed's own has the seed's mtime (its
objects stay valid), and every other file (patched, changed between commits, new) has
the current time (everything that depends on it is rebuilt, headers included, through
iPXE's dependency files).  That holds for any pair of trees, so the unpatched build
seeds the patched one and one bisect step seeds the next.

What make generated (``src/bin/``, but also ``src/.echocheck``, ``src/util/zbin32``
and empty ``src/config/local/*.h``, which every object depends on through make's own
rules) is copied with its timestamps, except finished images (see ``_final_output``);
it is told apart from the seed's sources by the list of files the seed was prepared
with (``list_files`` at preparation time), so a file deleted between two commits is
not brought back.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path


def list_files(tree: Path) -> list[str]:
    """Every file (and symlink) under ``tree``, relative, sorted: the sources of a prepared copy."""
    files: list[str] = []
    for root, _dirs, names in os.walk(tree):
        here = Path(root)
        files += [str((here / name).relative_to(tree)) for name in names]
    return sorted(files)


def _final_output(rel: str) -> bool:
    """A finished image in ``src/bin*/`` (``8086100e.rom``, its ``.tmp`` and map): never taken from a seed.

    Its banner carries the commit (GITVERSION on make's command line, a change make cannot
    see) and make deletes the version object as an intermediate, so a seeded ROM would
    look up to date and name the seed's commit.  Objects (``.o``), libraries (``.a``), the
    dependency files and make's dot-lists are kept: they are what saves the time.
    """
    parts = Path(rel).parts
    if len(parts) != 3 or parts[0] != "src" or not parts[1].startswith("bin"):
        return False
    name = parts[2]
    return not (name.startswith(".") or name.endswith((".o", ".a")))


def seed_build_copy(seed: Path, seed_sources: Iterable[str], tree: Path) -> tuple[int, int, int]:
    """Bring ``seed``'s generated files into ``tree`` and align timestamps.

    ``seed`` and ``tree`` are tree tops (each holds ``src/Makefile``); ``seed_sources`` is
    the seed's file list from before its first make.  The seed is only read.  Returns
    (generated files copied, sources kept as built, sources to rebuild).
    """
    sources = set(seed_sources)
    mine = list_files(tree)
    copied = 0
    for rel in list_files(seed):
        if rel in sources or _final_output(rel):
            continue
        target = tree / rel
        if target.exists() or target.is_symlink():
            continue  # the fresh tree has it as a source (new in this tree): keep that one
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(seed / rel, target, follow_symlinks=False)
        copied += 1
    now = time.time()
    kept = changed = 0
    for rel in mine:
        path, theirs = tree / rel, seed / rel
        if path.is_symlink():
            continue
        if (
            rel in sources
            and theirs.is_file()
            and not theirs.is_symlink()
            and filecmp.cmp(path, theirs, False)
        ):
            stat = theirs.stat()
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
            kept += 1
        else:
            os.utime(path, (now, now))
            changed += 1
    return copied, kept, changed
