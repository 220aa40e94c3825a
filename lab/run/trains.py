"""Run every train of a matrix, one after another, in one lab of their own.

Why one at a time: a train's 4 VMs need both cores; why a lab of their own: a train's
servers hold their streams for its VMs and must not see a matrix boot.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from lab.model.errors import LabError
from lab.model.results import TrainResult
from lab.model.status import Status
from lab.model.train_plan import TrainPlan
from lab.run.fullboot import run_fullboot_train
from lab.run.lab import Lab, LabConfig
from lab.run.train import run_train
from roms.romset import RomSet

#: Stage timeouts of train VMs for 3 MiB; run_trains scales it with the largest payload.
#: The payload stage waits 135 s per 3 MiB: a healthy 3 MiB train VM is done in about 70 s
#: here, while a VM stuck listening in MTFTP (iPXE ignores failures in MTFTP mode) holds
#: its train for the whole wait.
TRAIN_TIMEOUT_SCALE = 0.75
_TIMEOUT_REFERENCE_SIZE = 3 * 1024 * 1024
#: A lab index of its own, so train MACs never look like a matrix worker's.
TRAIN_LAB_INDEX = 7

TrainProgress = Callable[[int, int, TrainResult], None]


def run_trains(
    plans: list[TrainPlan], rom_sets: list[RomSet], directory: Path, accel: str,
    progress: TrainProgress | None = None, pyatftpd_args: tuple[str, ...] = (),
) -> list[TrainResult]:  # fmt: skip
    """Every train in one lab of its own (its own namespace), one train at a time: all cores for 4 VMs."""
    by_set = {rs.name: rs for rs in rom_sets}
    largest = max((p.size for p in plans), default=0)
    scale = TRAIN_TIMEOUT_SCALE * max(1.0, largest / _TIMEOUT_REFERENCE_SIZE)
    config = LabConfig(directory / "labs" / "trains", index=TRAIN_LAB_INDEX, accel=accel, capture=False,
                       timeout_scale=scale, pyatftpd_args=pyatftpd_args)  # fmt: skip
    results: list[TrainResult] = []
    stack = ExitStack()
    lab: Lab | None = None
    with stack:
        for index, plan in enumerate(plans):
            where = directory / "trains" / plan.slug
            try:
                lab = lab or stack.enter_context(Lab(config))
                runner = run_fullboot_train if plan.full_boot else run_train
                result = runner(lab, by_set[plan.rom_set], plan, where)
            except (LabError, OSError, RuntimeError, ValueError) as exc:
                result = TrainResult(plan, Status.ERROR, "error", where, reason=f"the lab broke: {exc}")
                stack.close()
                lab = None
            results.append(result)
            if progress is not None:
                progress(index + 1, len(plans), result)
    return results
