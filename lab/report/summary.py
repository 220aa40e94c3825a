"""What every report derives from the results the same way: outcomes, medians, rows, columns.

Why one module: matrix.md, matrix.json, matrix.html and JUnit must agree on what a cell's
outcome is and which full boot belongs to which train; each computing it alone drifted.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from lab.model.results import CellResult, TrainResult
from lab.model.status import Status

STAGES = ("rom", "dhcp", "script", "kernel", "payload", "verified")

#: Short words for a delivery outcome in a cell.
OUTCOME_WORDS = {
    "multicast": "multicast",
    "unicast-fallback": "unicast fallback",
    "unicast": "unicast",
    "ok-but-corrupt": "ok but corrupt",
}


def stage_medians(results: Sequence[CellResult], size: int | None = None) -> dict[str, float]:
    """Median seconds per stage over every boot (of ``size`` bytes, if given) that passed that stage."""
    per: dict[str, list[float]] = {}
    for cell in results:
        for boot in cell.boots:
            if size is not None and boot.plan.size != size:
                continue
            for stage in boot.evidence.stages:
                if stage.status is Status.PASS:
                    per.setdefault(stage.name, []).append(stage.seconds)
    return {name: round(statistics.median(values), 3) for name, values in per.items()}


def sizes(results: Sequence[CellResult]) -> list[int]:
    return sorted({boot.plan.size for r in results for boot in r.boots})


def columns(results: Sequence[CellResult]) -> list[str]:
    return list(dict.fromkeys(r.key.column for r in results))


def rows(results: Sequence[CellResult]) -> list[str]:
    return list(dict.fromkeys(r.key.nic for r in results))


def cell_outcome(cell: CellResult) -> str:
    """The cell's delivery outcome: the worst boot's, from its evidence (docs/matrix.md)."""
    if cell.status is Status.NOT_EMULATED:
        return "not-emulated"
    if cell.status is Status.UNSUPPORTED:
        return "unsupported"
    if not cell.boots:
        return str(cell.status.value).lower()
    worst = min(cell.boots, key=lambda b: b.evidence.status.priority)
    return worst.evidence.outcome or cell.status.value.lower()


def full_boot_of(train: TrainResult, trains: Sequence[TrainResult]) -> TrainResult | None:
    """The full-boot train of ``train``'s protocol, ROM set and server (itself for a full boot).

    Only the plain train's row shows it: the lossy and labelled (legacy) trains boot
    other VMs under other conditions, so a full boot says nothing about them.
    """
    if train.plan.full_boot:
        return train
    plan = train.plan
    if plan.loss_percent or plan.label:
        return None
    return next(
        (
            t
            for t in trains
            if t.plan.full_boot and (t.plan.protocol, t.plan.rom_set, t.plan.server)
            == (plan.protocol, plan.rom_set, plan.server)
        ),
        None,
    )


def ipxe_versions(results: Sequence[CellResult], nic: str | None = None) -> list[str]:
    """iPXE versions seen in ROM banners (of one NIC's boots when ``nic`` is given)."""
    seen = {
        b.evidence.rom.get("ipxe_version", "")
        for r in results
        if nic is None or r.key.nic == nic
        for b in r.boots
    }
    return sorted(seen - {""})
