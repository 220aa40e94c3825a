"""``NAME=SRC[@REV][,patch=FILE...][,with=OPTION...][,nics=A+B]``: a ROM set named on a command line.

The form ``lab matrix --lab-ipxe-src`` takes (issue 17): parse it, build (or reuse) the
set, and hand back a folder ``--lab-rom-dir NAME=DIR`` would take.  The folder lives in
the cache (``ipxe/sets/<NAME>-<key>``), one per distinct build, so a name reused for
another tree never overwrites the first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from roms.ipxe_build import OPTIONS, BuildRequest, BuildResult, Patch, Progress, build_romset
from roms.ipxe_tree import cache_root, open_source


class SpecError(ValueError):
    """The ``NAME=SRC...`` text is malformed; the message shows the expected form."""


FORM = "NAME=SRC[@REV][,patch=FILE...][,with=slam][,nics=A+B]"


@dataclass(frozen=True)
class IpxeSrcSpec:
    name: str
    src: Path
    rev: str | None
    patches: tuple[Path, ...]
    options: tuple[str, ...]
    nics: tuple[str, ...] | None

    def request(self) -> BuildRequest:
        return BuildRequest(
            open_source(self.src, self.rev),
            tuple(Patch.read(p) for p in self.patches),
            self.options,
            self.nics,
        )


def parse_ipxe_src(text: str) -> IpxeSrcSpec:
    """Parse ``NAME=SRC[@REV][,patch=FILE...][,with=slam][,nics=A+B]`` (paths relative to the cwd)."""
    head, *rest = text.split(",")
    name, sep, where = head.partition("=")
    name, where = name.strip(), where.strip()
    if not sep or not name or not where:
        raise SpecError(f"--lab-ipxe-src {text!r} is not {FORM}")
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise SpecError(f"ROM set name {name!r} must be letters, digits, '-', '_' or '.'")
    rev = None
    if not Path(where).expanduser().exists() and "@" in where:
        where, _, rev = where.rpartition("@")
    patches: list[Path] = []
    options: list[str] = []
    nics: tuple[str, ...] | None = None
    for item in rest:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not value:
            raise SpecError(f"--lab-ipxe-src: {item!r} is not KEY=VALUE; the form is {FORM}")
        if key == "patch":
            patches.append(Path(value).expanduser())
        elif key == "with":
            if value not in OPTIONS:
                raise SpecError(
                    f"--lab-ipxe-src: unknown option with={value}; known: {', '.join(sorted(OPTIONS))}"
                )
            options.append(value)
        elif key == "nics":
            nics = tuple(n for n in value.split("+") if n)
        else:
            raise SpecError(f"--lab-ipxe-src: unknown key {key!r}; the form is {FORM}")
    return IpxeSrcSpec(name, Path(where).expanduser(), rev or None, tuple(patches), tuple(options), nics)


def set_dir(spec: IpxeSrcSpec, request: BuildRequest, cache: Path | None = None) -> Path:
    return (cache or cache_root()) / "sets" / f"{spec.name}-{request.key()[:12]}"


def build_spec(spec: IpxeSrcSpec, cache: Path | None = None, progress: Progress | None = None) -> BuildResult:
    """Build (or reuse) the set ``spec`` names; ``result.out`` is the folder for ``--lab-rom-dir``."""
    request = spec.request()
    return build_romset(request, set_dir(spec, request, cache), cache, progress)
