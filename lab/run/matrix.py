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
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

from lab.judge.cells import cell_result
from lab.model.errors import LabError
from lab.model.network import Topology
from lab.model.plan import BootPlan, CellPlan
from lab.model.results import BootOutcome, CellResult, broken_evidence
from lab.model.status import Status
from lab.run.boot import launch
from lab.run.lab import Lab, LabConfig
from lab.run.services import tftp_kind
from roms.catalog import nic
from roms.romset import RomSet

ProgressFn = Callable[[int, int, BootOutcome], None]


def default_jobs() -> int:
    """One VM per CPU: TCG keeps a core busy per guest."""
    return max(1, min(len(os.sched_getaffinity(0)), 8))


class LabSlot:
    """A worker's lab, made when its first boot needs it and again for another topology
    (bridge settings are fixed per lab) or after it broke."""

    def __init__(self, directory: Path, index: int, accel: str, pyatftpd_args: tuple[str, ...] = ()) -> None:
        self.config = LabConfig(
            directory / "labs" / f"lab{index}", index=index, accel=accel, pyatftpd_args=pyatftpd_args
        )
        self._stack = ExitStack()
        self.lab: Lab | None = None

    def for_boot(self, boot: BootPlan) -> Lab:
        topology = Topology.parse(boot.key.topology)
        if self.lab is not None and self.lab.config.topology != topology:
            self.drop()
        if self.lab is None:
            config = replace(self.config, topology=topology, server=tftp_kind(boot.key.server))
            self.lab = self._stack.enter_context(Lab(config))
        return self.lab

    def drop(self) -> None:
        self._stack.close()
        self.lab = None


def run_plan(
    cells: list[CellPlan],
    rom_sets: list[RomSet],
    directory: Path,
    jobs: int,
    accel: str = "tcg",
    progress: ProgressFn | None = None,
    pyatftpd_args: tuple[str, ...] = (),
) -> list[CellResult]:
    boots = [boot for cell in cells for boot in cell.boots]
    by_set = {rs.name: rs for rs in rom_sets}
    todo: queue.Queue[BootPlan] = queue.Queue()
    for boot in boots:
        todo.put(boot)
    outcomes: dict[BootPlan, BootOutcome] = {}
    lock = threading.Lock()

    def worker(index: int) -> None:
        slot = LabSlot(directory, index, accel, pyatftpd_args)
        try:
            while True:
                try:
                    boot = todo.get_nowait()
                except queue.Empty:
                    return
                outcome = _boot(slot, boot, by_set[boot.key.rom_set], directory / "boots" / boot.slug)
                with lock:
                    outcomes[boot] = outcome
                    if progress:
                        progress(len(outcomes), len(boots), outcome)
        finally:
            slot.drop()

    threads = [threading.Thread(target=worker, args=(i,), name=f"lab{i}") for i in range(max(1, jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [cell_result(cell, outcomes) for cell in cells]


def _boot(slot: LabSlot, boot: BootPlan, rom_set: RomSet, where: Path) -> BootOutcome:
    """One boot of the plan; a lab that breaks becomes this boot's ERROR and a new lab."""
    try:
        lab = slot.for_boot(boot)
        run = launch(lab, nic(boot.key.nic), rom_set, boot.size, boot.seed, where, protocol=boot.key.protocol,
                     server=boot.key.server, loss=boot.key.loss)  # fmt: skip
        evidence = run.finish()
    except LabError as exc:
        evidence = broken_evidence(exc.status, str(exc))
        slot.drop()
    except Exception as exc:  # noqa: BLE001 - a lab bug must become ERROR, not stop the matrix
        evidence = broken_evidence(Status.ERROR, f"lab crashed: {exc}\n{traceback.format_exc()}")
        slot.drop()
    return BootOutcome(boot, evidence, where)
