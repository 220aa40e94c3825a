"""``python -m lab.report.timeline_redraw RUN``: draw a finished run's timelines again.

Why: the pictures are drawn once, when each boot and train finishes; after a change to
the drawing (or to see a copied run's pictures with names and failures) a maintainer
redraws them from the run folder alone, with the same names and failures the run layer
passes.  The run's matrix.json gives every multicast boot and train; a boot's address
comes from its ``dhcp.log``, a failure's time from its VM folder's ``qemu.cmdline``
(:mod:`lab.report.timeline_inputs`), so copy a run with its file times (``cp -a``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from lab.model.jsonable import from_json
from lab.model.results import BootEvidence
from lab.report.matrix_json import read_matrix
from lab.report.timeline import draw_pictures
from lab.report.timeline_inputs import boot_failure, boot_names, train_failures, train_names, vm_started_unix

_OFFER = re.compile(r"DHCPACK\(\S+\) (\d+\.\d+\.\d+\.\d+)")


def rebase(path: Path, run: Path) -> Path:
    """A folder recorded by the run (often absolute, on the machine that ran it) inside ``run``."""
    parts = path.parts
    for anchor in ("boots", "trains"):
        if anchor in parts:
            return run.joinpath(*parts[len(parts) - 1 - parts[::-1].index(anchor) :])
    return path


def boot_address(directory: Path) -> str | None:
    """The VM's IPv4 address from the DHCP server's log of its boot."""
    try:
        found = _OFFER.findall((directory / "dhcp.log").read_text())
    except OSError:
        return None
    return found[-1] if found else None


def redraw_run(run: Path) -> list[tuple[Path, list[Path], str | None]]:
    """Every multicast boot's and train's pictures again: (folder, pictures, error)."""
    doc = read_matrix(run)
    out = []
    for cell in doc.cells:
        for boot in cell.boots:
            folder = rebase(boot.directory, run)
            if cell.key.protocol == "tftp" or not folder.is_dir():
                continue
            ip = boot_address(folder)
            names = boot_names(cell.key.nic, ip) if ip else {}
            failure = boot_failure(boot.evidence, ip, vm_started_unix(folder)) if ip else None
            pictures, error = draw_pictures(folder, names=names, failures=[failure] if failure else [])
            out.append((folder, pictures, error))
    for train in doc.trains:
        train.directory = rebase(train.directory, run)
        for vm in train.vms:
            vm.directory = rebase(vm.directory, run)
            evidence = vm.directory / "evidence.json"
            if evidence.is_file():  # train.json keeps only a summary of each VM's evidence
                vm.evidence = from_json(BootEvidence, json.loads(evidence.read_text()), vm.directory)
        if train.directory.is_dir():
            pictures, error = draw_pictures(train.directory, names=train_names(train),
                                            failures=train_failures(train))  # fmt: skip
            out.append((train.directory, pictures, error))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="draw a finished lab run's session timelines again")
    parser.add_argument("run", type=Path, help="the run folder (holds matrix.json)")
    args = parser.parse_args(argv)
    try:
        drawn = redraw_run(args.run)
    except (OSError, ValueError) as exc:
        print(f"lab.report.timeline_redraw: {exc}", file=sys.stderr)
        return 2
    for folder, pictures, error in drawn:
        print(f"{folder}: {error or ' '.join(p.name for p in pictures) or 'no multicast session'}")
    return 1 if any(error for _, _, error in drawn) else 0


if __name__ == "__main__":
    sys.exit(main())
