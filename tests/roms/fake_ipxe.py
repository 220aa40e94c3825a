"""A stand-in iPXE tree: the same make targets the lab asks for, built in milliseconds.

Its ``src/Makefile`` makes ``bin/.rom.defs`` from ``PCI_ROM`` lines in
``drivers/net/*.c`` (in the format iPXE's parserom.pl writes), "compiles" a driver by
copying it to ``bin/<driver>.o`` (appending its name to ``bin/.compiled.log``), fails
on a driver holding ``#error``, and links ``bin/<id>.rom`` from the driver object,
``config/local/general.h`` and ``GITVERSION``.  So the build machinery's reuse,
seeding, patching and failure paths are tested here without a compiler run of minutes.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

#: Recipe lines start with "> " here (ruff keeps tabs out of the source); make gets tabs.
MAKEFILE = r"""
DRIVERS := $(wildcard drivers/net/*.c)

bin/.rom.defs : $(DRIVERS)
> @mkdir -p bin
> @echo "  [PARSEROM]"
> @for f in $(DRIVERS); do d=$$(basename $$f .c); \
>   sed -n 's/^PCI_ROM ( *0x\([0-9a-f]*\), *0x\([0-9a-f]*\) *).*/\1 \2/p' $$f | while read v p; do \
>     echo "DRIVER_$$v$$p = $$d"; echo "ROM_TYPE_$$v$$p = pci"; \
>     echo "PCI_VENDOR_$$v$$p = 0x$$v"; echo "PCI_DEVICE_$$v$$p = 0x$$p"; echo "ROMS += $$v$$p"; \
>   done; done > $@

-include bin/.rom.defs

bin/%.o : drivers/net/%.c $(wildcard config/local/general.h)
> @mkdir -p bin
> @echo "  [BUILD] $@"
> @if grep -q '#error' $<; then echo "$<:1: error: this driver does not compile" >&2; exit 1; fi
> @cp $< $@
> @echo $* >> bin/.compiled.log

# iPXE lists every object in its library, so none is an intermediate make deletes.
.SECONDARY:
.SECONDEXPANSION:
bin/%.rom : bin/$$(DRIVER_$$*).o
> @echo "  [FINISH] $@"
> @{ cat $<; cat config/local/general.h 2>/dev/null; echo "version $(GITVERSION)"; } > $@
""".replace("\n> ", "\n\t")

DRIVERS = {
    "intel": ["8086:100e", "8086:100f", "8086:10d3"],
    "realtek": ["10ec:8139"],
    "eepro100": ["8086:1229", "8086:1209"],
}


def driver_text(pci_ids: list[str], extra: str = "") -> str:
    lines = [f"PCI_ROM ( 0x{pid.split(':')[0]}, 0x{pid.split(':')[1]} ),\n" for pid in pci_ids]
    return "/* fake driver */\n" + "".join(lines) + extra


def make_tree(top: Path, drivers: dict[str, list[str]] | None = None) -> Path:
    """Write a fake iPXE tree at ``top`` (``top/src/Makefile``) and return ``top``."""
    src = top / "src"
    (src / "drivers" / "net").mkdir(parents=True)
    (src / "config" / "local").mkdir(parents=True)
    (src / "Makefile").write_text(MAKEFILE)
    for name, ids in (drivers or DRIVERS).items():
        (src / "drivers" / "net" / f"{name}.c").write_text(driver_text(ids))
    (top / "README").write_text("a fake iPXE tree for netboot-lab's tests\n")
    return top


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def make_repo(top: Path) -> Path:
    """A git checkout of the fake tree with one commit, tagged v1.0."""
    make_tree(top)
    git(top, "init", "-q", "-b", "master")
    git(top, "add", "-A")
    git(top, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-m", "import")
    git(top, "tag", "v1.0")
    return top


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def compiled(tree: Path) -> list[str]:
    """The drivers the fake make compiled in a build copy's tree, in order."""
    log = tree / "src" / "bin" / ".compiled.log"
    return log.read_text().split() if log.is_file() else []
