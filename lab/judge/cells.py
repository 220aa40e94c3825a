"""A cell's verdict from its boots: the worst status, and how its payload travelled.

Why here: the runner, the reports and the gate all need the same answer for a cell with
several boots (three payload sizes of a tftp cell); one rule, the KCIDB order for the
status and the worst boot's outcome.
"""

from __future__ import annotations

from collections.abc import Mapping

from lab.model.plan import BootPlan, CellPlan
from lab.model.results import BootOutcome, CellResult
from lab.model.status import Status, combine


def cell_result(cell: CellPlan, outcomes: Mapping[BootPlan, BootOutcome]) -> CellResult:
    """A planned cell's result from its boots' outcomes (MISS when none ran)."""
    if cell.verdict is not None:
        return CellResult(cell.key, Status[cell.verdict[0]], cell.verdict[1])
    boots = [outcomes[b] for b in cell.boots if b in outcomes]
    status = combine(o.evidence.status for o in boots) if boots else Status.MISS
    reasons = [f"{o.plan.size} B: {o.evidence.reason}" for o in boots if o.evidence.status is not Status.PASS]
    return CellResult(cell.key, status, "; ".join(reasons), boots)


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


def cell_name(cell: CellResult) -> str:
    """``NIC/column``: the name ``--only``, the expectations and ``lab diff`` use."""
    return f"{cell.key.nic}/{cell.key.column}"
