"""The manifest beside a built ROM set: what tree, patches and options made which ROM.

``lab roms build`` writes ``manifest.json`` into the output folder; the matrix's
"confirmed" column reads it back with ``read_manifest`` to name the tree (``git
describe`` or the archive) and its patches next to the version the ROM banner shows.
A folder without a manifest (Debian's, a hand-made one) simply has none.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"
FORMAT = 1


class ManifestError(ValueError):
    """manifest.json exists but cannot be read as one."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class BuiltRom:
    file: str
    pci_id: str
    driver: str
    nics: tuple[str, ...]
    sha256: str


@dataclass(frozen=True)
class RomSetManifest:
    """A built ROM set's provenance, as written by ``roms.ipxe_build``."""

    source: dict[str, Any]
    patches: tuple[dict[str, str], ...]
    options: tuple[str, ...]
    config: dict[str, str]
    ipxe_version: str | None
    roms: tuple[BuiltRom, ...]
    absent: tuple[dict[str, str], ...] = ()
    build: dict[str, Any] = field(default_factory=dict)

    def label(self) -> str:
        """The tree and its patches in one line: ``ipxe-0ab2277c4.tar.xz + tftm-socket-address.patch``."""
        text = str(self.source.get("describe") or self.source.get("name") or "?")
        for patch in self.patches:
            text += f" + {patch['name']}"
        if self.options:
            text += f" (with {','.join(self.options)})"
        return text

    def rom_for(self, pci_id: str) -> BuiltRom | None:
        return next((rom for rom in self.roms if rom.pci_id == pci_id), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "label": self.label(),
            "source": self.source,
            "patches": list(self.patches),
            "options": list(self.options),
            "config": self.config,
            "ipxe_version": self.ipxe_version,
            "roms": [rom.__dict__ | {"nics": list(rom.nics)} for rom in self.roms],
            "absent": list(self.absent),
            "build": self.build,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RomSetManifest:
        if data.get("format") != FORMAT:
            raise ManifestError(f"manifest format {data.get('format')!r}, expected {FORMAT}")
        roms = tuple(
            BuiltRom(r["file"], r["pci_id"], r["driver"], tuple(r["nics"]), r["sha256"]) for r in data["roms"]
        )
        return cls(
            source=dict(data["source"]),
            patches=tuple(dict(p) for p in data["patches"]),
            options=tuple(data["options"]),
            config=dict(data["config"]),
            ipxe_version=data.get("ipxe_version"),
            roms=roms,
            absent=tuple(dict(a) for a in data.get("absent", ())),
            build=dict(data.get("build", {})),
        )


def write_manifest(directory: Path, manifest: RomSetManifest) -> Path:
    path = directory / MANIFEST_NAME
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest.to_json(), indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


def read_manifest(directory: Path | str) -> RomSetManifest | None:
    """The manifest of a ROM set folder, None when it has none; ManifestError when it is unreadable."""
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        return RomSetManifest.from_json(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as exc:
        raise ManifestError(
            f"{path} is not a ROM set manifest ({exc}); rebuild it with `lab roms build`"
        ) from None


def verify_manifest(directory: Path | str) -> list[str]:
    """Problems between the manifest and the ROM files beside it (missing, changed); empty when they agree."""
    manifest = read_manifest(directory)
    if manifest is None:
        return [f"{directory} has no {MANIFEST_NAME}"]
    problems = []
    for rom in manifest.roms:
        path = Path(directory) / rom.file
        if not path.is_file():
            problems.append(f"{rom.file} is listed but missing")
        elif sha256_file(path) != rom.sha256:
            problems.append(f"{rom.file} differs from the manifest's sha256 (changed after the build)")
    return problems
