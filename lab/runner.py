"""Run a matrix plan: boots spread over parallel labs, each in its own namespace.

Why threads and not processes: the work is in QEMU and the servers (subprocesses);
a Python thread per lab only waits on consoles.  Each thread owns one ``Lab`` (its
own namespace, bridge, dnsmasq and TFTP server), so parallel boots never share ports
or addresses, and ``jobs`` bounds the VMs running at once.
"""

from __future__ import annotations

import os
import queue
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from lab.errors import LabError
from lab.evidence import BootEvidence, StageRecord
from lab.scenario import BootPlan, CellKey, CellPlan
from lab.session import Lab, LabConfig
from lab.status import Status, combine
from lab.topology import Topology
from roms.catalog import nic
from roms.romset import RomSet


@dataclass
class BootOutcome:
    plan: BootPlan
    evidence: BootEvidence
    directory: Path


@dataclass
class CellResult:
    key: CellKey
    status: Status
    reason: str = ""
    boots: list[BootOutcome] = field(default_factory=list)


ProgressFn = Callable[[int, int, BootOutcome], None]


def default_jobs() -> int:
    """One VM per CPU: TCG keeps a core busy per guest."""
    return max(1, min(len(os.sched_getaffinity(0)), 8))


def run_plan(
    cells: list[CellPlan],
    rom_sets: list[RomSet],
    directory: Path,
    jobs: int,
    accel: str = "tcg",
    progress: ProgressFn | None = None,
) -> list[CellResult]:
    boots = [boot for cell in cells for boot in cell.boots]
    by_set = {rs.name: rs for rs in rom_sets}
    todo: queue.Queue[BootPlan] = queue.Queue()
    for boot in boots:
        todo.put(boot)
    outcomes: dict[BootPlan, BootOutcome] = {}
    lock = threading.Lock()
    done = [0]

    def worker(index: int) -> None:
        lab: Lab | None = None
        try:
            while True:
                try:
                    boot = todo.get_nowait()
                except queue.Empty:
                    return
                where = directory / "boots" / boot.slug
                try:
                    if lab is None:
                        first = boot.key
                        config = LabConfig(
                            directory / "labs" / f"lab{index}", index=index,
                            topology=Topology.parse(first.topology), server=first.server, accel=accel,
                        )  # fmt: skip
                        lab = Lab(config)
                        lab.__enter__()
                    if lab.config.topology != Topology.parse(boot.key.topology):
                        lab.close()  # bridge settings are fixed per lab: a new lab for a new topology
                        lab = Lab(replace(lab.config, topology=Topology.parse(boot.key.topology)))
                        lab.__enter__()
                    if lab.tftp is None or lab.tftp.kind != boot.key.server:
                        lab.start_tftp(boot.key.server)
                    run = lab.launch(nic(boot.key.nic), by_set[boot.key.rom_set], boot.size, boot.seed, where)
                    evidence = run.finish()
                except LabError as exc:
                    evidence = _broken(exc.status, str(exc))
                    _drop(lab)
                    lab = None
                except Exception as exc:  # noqa: BLE001 - a lab bug must become ERROR, not stop the matrix
                    evidence = _broken(Status.ERROR, f"lab crashed: {exc}\n{traceback.format_exc()}")
                    _drop(lab)
                    lab = None
                outcome = BootOutcome(boot, evidence, where)
                with lock:
                    outcomes[boot] = outcome
                    done[0] += 1
                    if progress:
                        progress(done[0], len(boots), outcome)
        finally:
            _drop(lab)

    threads = [threading.Thread(target=worker, args=(i,), name=f"lab{i}") for i in range(max(1, jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [_cell_result(cell, outcomes) for cell in cells]


def _broken(status: Status, reason: str) -> BootEvidence:
    evidence = BootEvidence(reason=f"{status.value}@lab: {reason}")
    evidence.stages.append(StageRecord("lab", status, 0.0, 0.0, message=reason))
    evidence.settle()
    return evidence


def _drop(lab: Lab | None) -> None:
    if lab is not None:
        lab.close()


def _cell_result(cell: CellPlan, outcomes: dict[BootPlan, BootOutcome]) -> CellResult:
    if cell.verdict is not None:
        return CellResult(cell.key, Status[cell.verdict[0]], cell.verdict[1])
    boots = [outcomes[b] for b in cell.boots if b in outcomes]
    status = combine(o.evidence.status for o in boots) if boots else Status.MISS
    reasons = [f"{o.plan.size} B: {o.evidence.reason}" for o in boots if o.evidence.status is not Status.PASS]
    return CellResult(cell.key, status, "; ".join(reasons), boots)
