"""Build a ROM set from an iPXE tree: copy, patch, configure, make, collect, write the manifest.

Each distinct (tree, patches, options) has one build copy under the cache
(``~/.cache/netboot-lab/ipxe/builds/<describe>-<key>``); asking again for ROMs it has
built copies them out without running make.  A new copy is seeded from an earlier one
(the same tree unpatched first, else the latest copy made with the same options) so
make compiles only the files that differ (roms.build_seed).

Which ROMs: for every catalog NIC QEMU emulates, the ROM iPXE builds for the NIC's own
PCI ID (``bin/<vvvvdddd>.rom``), when the tree's generated device list (``bin/.rom.defs``,
made by iPXE's ``util/parserom.pl`` from the drivers' ``PCI_ROM`` tables) has that ID;
else the first of the catalog's family IDs (``compatible_rom_ids``) it has, which the
ROM set then retargets.  Nothing here lists what a tree "should" have.

Options go through iPXE's own mechanism: ``src/config/local/general.h`` in the copy.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from roms.build_deps import apt_get_line, missing_build_packages
from roms.build_seed import list_files, seed_build_copy
from roms.catalog import CATALOG, NicModel
from roms.ipxe_tree import TreeSource, cache_root, extract
from roms.manifest import (
    MANIFEST_NAME,
    BuiltRom,
    RomSetManifest,
    read_manifest,
    sha256_file,
    write_manifest,
)
from roms.payload import rom_has_feature, rom_ipxe_version

#: ``--with NAME`` -> (config header under src/config/local/, the #define, the Features: word it adds).
OPTIONS: dict[str, tuple[str, str, str]] = {
    "slam": ("general.h", "DOWNLOAD_PROTO_SLAM", "SLAM"),
}

_STATE = "state.json"
_STATUS_EVERY = 15.0


class BuildError(Exception):
    """A build step failed; the message names the file and the log to read."""


@dataclass(frozen=True)
class Patch:
    path: Path
    sha256: str

    @classmethod
    def read(cls, path: Path | str) -> Patch:
        target = Path(path).expanduser().resolve()
        if not target.is_file():
            raise BuildError(f"patch {target} does not exist")
        return cls(target, sha256_file(target))

    def entry(self) -> dict[str, str]:
        return {"name": self.path.name, "path": str(self.path), "sha256": self.sha256}


@dataclass(frozen=True)
class BuildRequest:
    source: TreeSource
    patches: tuple[Patch, ...] = ()
    options: tuple[str, ...] = ()
    #: NICs to build for (default: every catalog NIC QEMU emulates on PCI).
    nics: tuple[str, ...] | None = None

    def config_files(self) -> dict[str, str]:
        """``src/config/local/<header>`` -> its contents, for the chosen options."""
        files: dict[str, list[str]] = {}
        for option in sorted(set(self.options)):
            if option not in OPTIONS:
                raise BuildError(f"unknown build option {option!r}; known: {', '.join(sorted(OPTIONS))}")
            header, define, _ = OPTIONS[option]
            files.setdefault(header, []).append(f"#define {define}")
        return {
            f"src/config/local/{header}": "/* written by netboot-lab's `lab roms build` */\n"
            + "\n".join(lines)
            + "\n"
            for header, lines in files.items()
        }

    def key(self) -> str:
        """The cache key: tree identity, patch contents in order, configuration contents."""
        data = {
            "source": self.source.key_part(),
            "patches": [p.sha256 for p in self.patches],
            "config": self.config_files(),
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()

    def config_key(self) -> str:
        return hashlib.sha256(json.dumps(self.config_files(), sort_keys=True).encode()).hexdigest()

    def unpatched(self) -> BuildRequest:
        return BuildRequest(self.source, (), self.options, self.nics)

    def selected_nics(self) -> list[NicModel]:
        if self.nics is None:
            return [m for m in CATALOG.values() if m.emulated and m.pci_id is not None]
        unknown = [n for n in self.nics if n not in CATALOG]
        if unknown:
            raise BuildError(f"unknown NIC(s) {', '.join(unknown)}; valid: {', '.join(sorted(CATALOG))}")
        return [CATALOG[n] for n in self.nics]


@dataclass(frozen=True)
class RomDef:
    """One ROM the tree's device list offers: ``bin/<rom_id>.rom``."""

    rom_id: str
    driver: str
    pci_id: str


@dataclass
class BuildResult:
    manifest: RomSetManifest
    out: Path
    copy: Path
    ran_make: bool
    seconds: float
    make_seconds: float = 0.0
    seeded_from: str | None = None


Progress = Callable[[str], None]


def timed_progress(stream: TextIO | None = None, prefix: str = "roms build") -> Progress:
    """Progress lines with the seconds since the start: ``roms build [  12.3 s] text`` (stderr by default)."""
    start = time.monotonic()

    def show(text: str) -> None:
        print(f"{prefix} [{time.monotonic() - start:6.1f} s] {text}", file=stream or sys.stderr, flush=True)

    return show


def stderr_progress(prefix: str = "roms build") -> Progress:
    return timed_progress(None, prefix)


# --- the build copy -------------------------------------------------------------------------------


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:48].strip("_.") or "ipxe"


@dataclass
class BuildCopy:
    """A build copy's folder: ``ipxe/`` (the tree), ``logs/``, ``roms/`` (collected), ``state.json``."""

    directory: Path
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def tree(self) -> Path:
        return self.directory / "ipxe"

    @property
    def logs(self) -> Path:
        return self.directory / "logs"

    @property
    def roms(self) -> Path:
        return self.directory / "roms"

    def load(self) -> BuildCopy:
        path = self.directory / _STATE
        self.state = json.loads(path.read_text()) if path.is_file() else {}
        return self

    def save(self) -> None:
        path = self.directory / _STATE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2) + "\n")
        tmp.replace(path)

    @property
    def sources(self) -> Path:
        """The tree's files before make ran (what roms.build_seed must not copy as generated)."""
        return self.directory / "sources.json"

    @property
    def prepared(self) -> bool:
        return bool(self.state.get("prepared")) and (self.tree / "src" / "Makefile").is_file()

    @property
    def built(self) -> bool:
        return self.prepared and bool(self.state.get("built"))


def copy_for(request: BuildRequest, cache: Path) -> BuildCopy:
    name = _slug(request.source.describe) + ("+patched" if request.patches else "") + "-" + request.key()[:12]
    return BuildCopy(cache / "builds" / name).load()


@contextmanager
def _locked(directory: Path, blocking: bool = True) -> Iterator[bool]:
    """An exclusive flock on ``<directory>.lock``: one build per copy at a time, across processes."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(directory.with_name(directory.name + ".lock"), "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def remove_copy(directory: Path) -> None:
    """Delete a build copy once no build uses it (waits for its lock); the lock file stays."""
    with _locked(directory):
        shutil.rmtree(directory, ignore_errors=True)


def _find_seed(request: BuildRequest, cache: Path, exclude: Path) -> BuildCopy | None:
    """The copy to seed from: the same tree unpatched, else the latest copy with the same options."""
    if request.patches:
        base = copy_for(request.unpatched(), cache)
        if base.built and base.sources.is_file():
            return base
    candidates = []
    for state in (cache / "builds").glob(f"*/{_STATE}"):
        copy = BuildCopy(state.parent).load()
        if (
            copy.directory != exclude
            and copy.built
            and copy.sources.is_file()
            and copy.state.get("config_key") == request.config_key()
        ):
            candidates.append((state.stat().st_mtime, copy))
    return max(candidates, key=lambda c: c[0])[1] if candidates else None


def _prepare(request: BuildRequest, copy: BuildCopy, cache: Path, progress: Progress) -> str | None:
    """Make the copy's tree: extract, patch, configure, seed.  Returns what it was seeded from."""
    if copy.directory.exists():
        shutil.rmtree(copy.directory)
    copy.logs.mkdir(parents=True)
    started = time.monotonic()
    extract(request.source, copy.tree)
    progress(f"extracted {request.source.describe} into {copy.tree} ({time.monotonic() - started:.1f} s)")
    for number, patch in enumerate(request.patches, 1):
        _apply_patch(patch, copy, number)
        progress(f"applied {patch.path.name}")
    for rel, text in request.config_files().items():
        (copy.tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (copy.tree / rel).write_text(text)
        progress(f"configured {rel}: {', '.join(x for x in text.splitlines() if x.startswith('#define'))}")
    copy.sources.write_text(json.dumps(list_files(copy.tree)))
    seeded_from = None
    seed = _find_seed(request, cache, copy.directory)
    if seed is not None:
        with _locked(seed.directory, blocking=False) as got:
            if got:
                started = time.monotonic()
                sources = json.loads(seed.sources.read_text())
                copied, kept, changed = seed_build_copy(seed.tree, sources, copy.tree)
                seeded_from = seed.directory.name
                progress(
                    f"seeded from {seeded_from}: {copied} generated files copied, {kept} sources "
                    f"unchanged, {changed} changed ({time.monotonic() - started:.1f} s)"
                )
    copy.state = {
        "prepared": True,
        "built": False,
        "key": request.key(),
        "config_key": request.config_key(),
        "source": request.source.identity(),
        "patches": [p.entry() for p in request.patches],
        "options": sorted(set(request.options)),
        "seeded_from": seeded_from,
    }
    copy.save()
    return seeded_from


def _apply_patch(patch: Patch, copy: BuildCopy, number: int) -> None:
    log = copy.logs / f"patch-{number}-{_slug(patch.path.name)}.log"
    with log.open("w") as handle:
        result = subprocess.run(
            [
                "patch",
                "-p1",
                "--batch",
                "--forward",
                "--no-backup-if-mismatch",
                f"--reject-file={log.with_suffix('.rej')}",
                "-i",
                str(patch.path),
            ],
            cwd=copy.tree,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    if result.returncode != 0:
        tail = log.read_text().strip().splitlines()[-6:]
        copy.state = {}
        copy.save()
        raise BuildError(
            f"patch {patch.path} does not apply to {copy.tree} (patch -p1 exit {result.returncode}):\n  "
            + "\n  ".join(tail)
            + f"\nfull log: {log}"
        )


# --- what the tree offers -------------------------------------------------------------------------


def parse_rom_defs(text: str) -> dict[str, RomDef]:
    """PCI ROMs in iPXE's generated ``bin/.rom.defs`` (``DRIVER_<id>``, ``ROM_TYPE_<id> = pci``, IDs)."""
    values: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        match = re.match(r"(DRIVER|ROM_TYPE|PCI_VENDOR|PCI_DEVICE)_(\S+)\s*=\s*(\S+)", line)
        if match:
            values.setdefault(match.group(2), {})[match.group(1)] = match.group(3)
    defs = {}
    for rom_id, fields in values.items():
        if fields.get("ROM_TYPE") == "pci" and "DRIVER" in fields and "PCI_VENDOR" in fields:
            pci_id = f"{int(fields['PCI_VENDOR'], 16):04x}:{int(fields['PCI_DEVICE'], 16):04x}"
            defs[rom_id] = RomDef(rom_id, fields["DRIVER"], pci_id)
    return defs


def list_tree_roms(copy: BuildCopy, make_args: Sequence[str], progress: Progress) -> dict[str, RomDef]:
    """Run ``make bin/.rom.defs`` in the copy (iPXE's parserom.pl over its drivers) and read it."""
    if "rom_defs" in copy.state:
        return {k: RomDef(**v) for k, v in copy.state["rom_defs"].items()}
    log = copy.logs / "rom-defs.log"
    started = time.monotonic()
    _run_make(copy, ["bin/.rom.defs", *make_args], log, progress, "device list")
    defs = parse_rom_defs((copy.tree / "src" / "bin" / ".rom.defs").read_text())
    progress(f"the tree offers {len(defs)} PCI ROMs ({time.monotonic() - started:.1f} s)")
    copy.state["rom_defs"] = {k: v.__dict__ for k, v in defs.items()}
    copy.save()
    return defs


def choose_roms(
    nics: Sequence[NicModel], defs: dict[str, RomDef]
) -> tuple[dict[str, tuple[RomDef, list[str]]], list[dict[str, str]]]:
    """ROM id -> (its definition, the NICs it serves); and the NICs the tree has no ROM for, with why."""
    chosen: dict[str, tuple[RomDef, list[str]]] = {}
    absent: list[dict[str, str]] = []
    for nic in nics:
        if nic.pci_id is None:
            absent.append({"nic": nic.name, "reason": f"{nic.bus.upper()} card: no PCI option ROM"})
            continue
        rom_ids = [i.replace(":", "") for i in nic.rom_ids()]
        found = next((i for i in rom_ids if i in defs), None)
        if found is None:
            absent.append(
                {"nic": nic.name, "reason": f"the tree's drivers list none of {', '.join(nic.rom_ids())}"}
            )
            continue
        chosen.setdefault(found, (defs[found], []))[1].append(nic.name)
    return chosen, absent


# --- make -----------------------------------------------------------------------------------------

_MARK = re.compile(r"^\s*\[(\w+)\]\s+(\S+)")


def _run_make(copy: BuildCopy, targets: Sequence[str], log: Path, progress: Progress, what: str) -> float:
    """Run make in the copy's src/, all output to ``log``, a condensed status line every 15 s."""
    argv = ["make", "-C", str(copy.tree / "src"), *targets]
    started = last = time.monotonic()
    counts: dict[str, int] = {}
    with log.open("a") as handle:
        handle.write(f"$ {' '.join(argv)}\n")
        handle.flush()
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            handle.write(line)
            match = _MARK.match(line)
            if match:
                counts[match.group(1)] = counts.get(match.group(1), 0) + 1
            if time.monotonic() - last >= _STATUS_EVERY:
                last = time.monotonic()
                progress(f"make ({what}): {_counts_text(counts)}")
        status = proc.wait()
    seconds = time.monotonic() - started
    if status != 0:
        raise BuildError(
            f"make failed (exit {status}) in {copy.tree / 'src'} building {what}:\n  "
            + "\n  ".join(_error_lines(log))
            + f"\nfull log: {log}"
        )
    if counts:
        progress(f"make ({what}) done in {seconds:.1f} s: {_counts_text(counts)}")
    return seconds


def _counts_text(counts: dict[str, int]) -> str:
    names = {"DEPS": "dependency files", "BUILD": "objects compiled", "FINISH": "ROMs finished"}
    parts = [f"{counts[k]} {v}" for k, v in names.items() if counts.get(k)]
    return ", ".join(parts) or "starting"


def _error_lines(log: Path, limit: int = 12) -> list[str]:
    lines = log.read_text(errors="replace").splitlines()
    errors = [line for line in lines if "error" in line.lower() or "Error" in line]
    return (errors or lines)[-limit:]


def _make_args(request: BuildRequest, jobs: int) -> list[str]:
    args = [f"-j{jobs}"]
    if request.source.commit:
        # The copy has no .git, so iPXE's Makefile cannot read the commit itself; given, the
        # banner reads "iPXE 2.0.0+ (g0ab22)" as from a checkout.
        args.append(f"GITVERSION={request.source.commit}")
    return args


# --- the whole build ------------------------------------------------------------------------------


def build_romset(
    request: BuildRequest,
    out: Path,
    cache: Path | None = None,
    progress: Progress | None = None,
    jobs: int | None = None,
) -> BuildResult:
    """Build (or reuse) the ROMs for ``request`` and write them with manifest.json into ``out``."""
    show = progress or stderr_progress()
    root = cache or cache_root()
    started = time.monotonic()
    _check_out_dir(out)
    copy = copy_for(request, root)
    with _locked(copy.directory):
        copy.load()
        seeded_from = None
        if not copy.prepared:
            missing = missing_build_packages(need_patch=bool(request.patches))
            if missing:
                raise BuildError(f"building iPXE needs {', '.join(missing)}; run: {apt_get_line(missing)}")
            seeded_from = _prepare(request, copy, root, show)
        else:
            show(f"build copy {copy.directory} is ready")
        make_args = _make_args(request, jobs or os.cpu_count() or 1)
        defs = list_tree_roms(copy, make_args, show)
        chosen, absent = choose_roms(request.selected_nics(), defs)
        if not chosen:
            raise BuildError(f"{request.source.describe} offers no ROM for the NICs asked for: {absent}")
        collected: dict[str, str] = copy.state.get("collected", {})
        todo = [
            rom_id
            for rom_id in chosen
            if not (copy.roms / f"{rom_id}.rom").is_file() or rom_id not in collected
        ]
        make_seconds = 0.0
        if todo:
            missing = missing_build_packages()
            if missing:
                raise BuildError(f"building iPXE needs {', '.join(missing)}; run: {apt_get_line(missing)}")
            show(f"make {len(todo)} ROMs: {' '.join(todo)}")
            log = copy.logs / "make.log"
            make_seconds = _run_make(
                copy, [*make_args, *(f"bin/{r}.rom" for r in todo)], log, show, f"{len(todo)} ROMs"
            )
            copy.roms.mkdir(exist_ok=True)
            for rom_id in todo:
                built = copy.tree / "src" / "bin" / f"{rom_id}.rom"
                shutil.copy2(built, copy.roms / built.name)
                collected[rom_id] = sha256_file(copy.roms / built.name)
            copy.state.update(built=True, collected=collected)
            copy.save()
        else:
            show(f"reusing {len(chosen)} cached ROMs from {copy.roms} (make not run)")
        manifest = _manifest(request, copy, chosen, absent, make_seconds, todo)
        _write_out(out, copy, manifest)
    seconds = time.monotonic() - started
    version = manifest.ipxe_version or "version unknown"
    show(f"{len(manifest.roms)} ROMs in {out} ({manifest.label()}; iPXE {version}) in {seconds:.1f} s")
    return BuildResult(manifest, out, copy.directory, bool(todo), seconds, make_seconds, seeded_from)


def _manifest(
    request: BuildRequest,
    copy: BuildCopy,
    chosen: dict[str, tuple[RomDef, list[str]]],
    absent: list[dict[str, str]],
    make_seconds: float,
    made: list[str],
) -> RomSetManifest:
    roms = []
    for rom_id, (rom_def, nics) in chosen.items():
        path = copy.roms / f"{rom_id}.rom"
        sha = sha256_file(path)
        if sha != copy.state["collected"][rom_id]:
            raise BuildError(f"{path} changed since it was built; remove {copy.directory} and build again")
        roms.append(BuiltRom(path.name, rom_def.pci_id, rom_def.driver, tuple(nics), sha))
    first = copy.roms / roms[0].file
    version = rom_ipxe_version(first)
    for option in sorted(set(request.options)):
        word = OPTIONS[option][2]
        if rom_has_feature(first, word) is False:
            raise BuildError(
                f"{first} was built with --with {option} but its body has no {word} feature: "
                f"check {copy.tree / 'src' / 'config' / 'local'} and {copy.logs / 'make.log'}"
            )
    return RomSetManifest(
        source=request.source.identity(),
        patches=tuple(p.entry() for p in request.patches),
        options=tuple(sorted(set(request.options))),
        config=request.config_files(),
        ipxe_version=version,
        roms=tuple(roms),
        absent=tuple(absent),
        build={
            "key": request.key(),
            "copy": str(copy.directory),
            "logs": str(copy.logs),
            "seeded_from": copy.state.get("seeded_from"),
            "made_now": made,
            "make_seconds": round(make_seconds, 1),
        },
    )


def _check_out_dir(out: Path) -> None:
    """``out`` must be new, empty, or a folder this tool wrote (its manifest.json is there)."""
    if out.exists() and not out.is_dir():
        raise BuildError(f"--out {out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST_NAME).is_file():
        raise BuildError(f"--out {out} holds files but no {MANIFEST_NAME}: give a new or empty folder")


def _write_out(out: Path, copy: BuildCopy, manifest: RomSetManifest) -> None:
    out.mkdir(parents=True, exist_ok=True)
    old = read_manifest(out) if (out / MANIFEST_NAME).is_file() else None
    if old is not None:
        for rom in old.roms:
            (out / rom.file).unlink(missing_ok=True)
    for rom in manifest.roms:
        shutil.copy2(copy.roms / rom.file, out / rom.file)
    write_manifest(out, manifest)
