"""``lab bisect``: the first iPXE commit that broke one cell, one build and one boot per step.

Why a boot per step and not a test of the tree: a driver regression shows only when real
firmware runs on the emulated NIC against our servers.  Each step builds the candidate's
ROM for the cell's NIC (roms.ipxe_bisect, seeded from the last build so only what changed
compiles) and boots it once in a lab of its own.  A step is

* good: the guest verified the bytes, and a multicast protocol's payload came on the group;
* bad: the boot failed, or the bytes came only by unicast (the server's fallback hides a
  client that cannot hear the group, which is exactly what such a bisect looks for);
* skipped (git's exit 125): the commit does not build, its ROM lacks the protocol, or the
  lab broke under the boot.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from lab.model.plan import PROTOCOLS
from lab.model.status import Status
from lab.run.boot import launch
from lab.run.lab import Lab, LabConfig
from roms.catalog import CATALOG, nic
from roms.ipxe_bisect import BisectResult, StepContext, bisect
from roms.romset import RomSet

GOOD, BAD, SKIP = 0, 1, 125
#: One payload per step: big enough for hundreds of group blocks, small enough to be quick.
STEP_PAYLOAD = 512 * 1024


@dataclass(frozen=True)
class CellTarget:
    nic: str
    protocol: str
    server: str = "pyatftpd"

    @classmethod
    def parse(cls, text: str, server: str) -> CellTarget:
        name, _, protocol = text.partition("/")
        if name not in CATALOG or nic(name).qemu_device is None:
            raise ValueError(f"--cell {text!r}: {name!r} is not a NIC QEMU emulates here (roms/catalog.py)")
        if protocol not in PROTOCOLS:
            raise ValueError(f"--cell {text!r}: the protocol must be one of {', '.join(PROTOCOLS)}")
        return cls(name, protocol, "pyslamd" if protocol == "x-slam" else server)


def step_verdict(target: CellTarget, artifacts: Path, accel: str = "tcg") -> Callable[[StepContext], int]:
    """The verdict of one bisect step: boot ``target`` with the step's ROM set."""

    def verdict(ctx: StepContext) -> int:
        rom_set = RomSet(f"bisect-{ctx.commit[:8]}", ctx.rom_dir)
        where = artifacts / ctx.commit[:12]
        config = LabConfig(
            where / "lab", accel=accel, server=target.server if target.server != "pyslamd" else "pyatftpd"
        )
        with ExitStack() as stack:
            lab = stack.enter_context(Lab(config))
            run = launch(
                lab,
                nic(target.nic),
                rom_set,
                STEP_PAYLOAD,
                1,
                where / "boot",
                protocol=target.protocol,
                server=target.server,
            )
            evidence = run.finish()
        if evidence.status in (Status.ERROR, Status.MISS, Status.UNSUPPORTED, Status.SKIP):
            return SKIP
        multicast_needed = target.protocol != "tftp"
        if evidence.status is Status.PASS and (not multicast_needed or evidence.outcome == "multicast"):
            return GOOD
        return BAD

    return verdict


def bisect_cell(
    src: Path,
    good: str,
    bad: str,
    target: CellTarget,
    artifacts: Path,
    options: tuple[str, ...] = (),
    patches: tuple[Path, ...] = (),
    accel: str = "tcg",
) -> BisectResult:
    """Bisect ``src`` between ``good`` and ``bad`` for ``target``; each step's boot under ``artifacts``."""
    if target.protocol == "x-slam" and "slam" not in options:
        options = (*options, "slam")  # a SLAM cell needs SLAM in every build
    return bisect(
        src,
        good,
        bad,
        step_verdict(target, artifacts, accel),
        options=options,
        patches=patches,
        nics=(target.nic,),
    )
