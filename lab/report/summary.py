"""What every report derives from the results the same way: outcomes, medians, rows, columns.

Why one module: matrix.md, matrix.json, matrix.html and JUnit must agree on what a cell's
outcome is and which full boot belongs to which train; each computing it alone drifted.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from lab.judge.expectations import GateResult
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
            if t.plan.full_boot
            and (t.plan.protocol, t.plan.rom_set, t.plan.server) == (plan.protocol, plan.rom_set, plan.server)
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


@dataclass(frozen=True)
class Summary:
    """The one set of counts every report prints (md, json, html, JUnit): cells and trains
    apart, the not-emulated and no-ROM rows out of the counts that mean something ran."""

    cells: dict[str, int]
    trains: dict[str, int]
    #: Gate verdicts (expected, regression, unexpected-pass, new, lab-broke); empty without a gate.
    gate: dict[str, int] = field(default_factory=dict)

    @property
    def cells_run(self) -> int:
        return sum(n for status, n in self.cells.items() if status not in _NOT_RUN)

    def line(self) -> str:
        """One sentence with every count."""
        ran = ", ".join(f"{n} {s}" for s, n in self.cells.items() if s not in _NOT_RUN and n)
        idle = ", ".join(f"{n} {_words(s)}" for s, n in self.cells.items() if s in _NOT_RUN and n)
        trains = ", ".join(f"{n} {s}" for s, n in self.trains.items() if n) or "none"
        text = f"{sum(self.cells.values())} cells: {self.cells_run} ran ({ran or 'none'})"
        text += f"; not run: {idle}" if idle else ""
        text += f". {sum(self.trains.values())} trains: {trains}."
        if self.gate:
            text += " Gate: " + ", ".join(f"{n} {v}" for v, n in self.gate.items() if n) + "."
        return text


def _words(status: str) -> str:
    return status.lower().replace("_", " ")


#: Cell statuses that say nothing ran: not in the counts of what ran.
_NOT_RUN = ("NOT_EMULATED", "SKIP")


def summarise(
    results: Sequence[CellResult], trains: Sequence[TrainResult], gate: dict[str, int] | None = None
) -> Summary:
    order = [s.value for s in Status]
    cells = {s: n for s in order if (n := sum(1 for r in results if r.status.value == s))}
    train_counts = {s: n for s in order if (n := sum(1 for t in trains if t.status.value == s))}
    return Summary(cells, train_counts, dict(gate or {}))


def gate_marks(gate: GateResult | None, changes: dict[str, str] | None) -> dict[str, str]:
    """Name -> the words a report adds to a cell or train: its gate verdict when it is news
    (REGRESSION, UNEXPECTED PASS, NEW FAIL) and what it was in the baseline run."""
    marks: dict[str, list[str]] = {}
    for judgement in gate.judgements if gate is not None else []:
        if judgement.fails_gate:
            word = "NEW FAIL" if judgement.verdict == "new" else judgement.verdict.replace("-", " ").upper()
            marks.setdefault(judgement.name, []).append(word)
    for name, was in (changes or {}).items():
        marks.setdefault(name, []).append(was)
    return {name: "; ".join(words) for name, words in marks.items()}
