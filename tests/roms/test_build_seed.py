"""Seeding a build copy: make rebuilds exactly what differs from the seed; nothing dropped comes back."""

from __future__ import annotations

import os
import time
from pathlib import Path

from roms.build_seed import list_files, seed_build_copy

OLD = 1_000_000_000  # 2001: an archive's file times


def _tree(top: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = top / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        os.utime(path, (OLD, OLD))
    return top


def test_identical_sources_take_the_seed_s_time_and_the_rest_now(tmp_path: Path) -> None:
    seed = _tree(tmp_path / "seed", {"src/Makefile": "m", "src/a.c": "a", "src/b.c": "b", "src/gone.c": "g"})
    sources = list_files(seed)
    built = OLD + 500
    generated = {"src/bin/a.o": "A", "src/bin/x.rom": "R", "src/.echocheck": "", "src/config/local/x.h": ""}
    _tree(seed, generated)
    for rel in generated:
        os.utime(seed / rel, (built, built))
    os.utime(seed / "src" / "a.c", (OLD + 7, OLD + 7))
    fresh = {"src/Makefile": "m", "src/a.c": "a", "src/b.c": "b changed", "src/new.c": "n"}
    tree = _tree(tmp_path / "new", fresh)
    before = time.time()
    copied, kept, changed = seed_build_copy(seed, sources, tree)

    assert (copied, kept, changed) == (3, 2, 2)
    assert (tree / "src" / "bin" / "a.o").stat().st_mtime == built  # objects keep their times
    assert (tree / "src" / ".echocheck").is_file()  # generated outside bin/ too (make depends on it)
    assert (tree / "src" / "config" / "local" / "x.h").stat().st_mtime == built
    assert not (tree / "src" / "bin" / "x.rom").exists()  # a finished image names the seed's commit
    assert not (tree / "src" / "gone.c").exists()  # a source the new tree dropped stays dropped
    assert (tree / "src" / "a.c").stat().st_mtime == OLD + 7  # the seed's time: a.o stays valid
    for rel in ("src/b.c", "src/new.c"):
        assert (tree / rel).stat().st_mtime >= before  # newer than every seeded object: rebuilt
    assert (seed / "src" / "bin" / "x.rom").is_file()  # the seed itself is only read
