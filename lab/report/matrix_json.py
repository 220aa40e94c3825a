"""matrix.json: the run as data, written from the results and read back by ``lab diff``/``merge``.

Why relative paths: a run folder is moved, zipped and downloaded as a CI artifact, so
every path in the document is relative to the folder matrix.json is in.  The layout is
described by docs/matrix.schema.json, which the tests validate every written report
against.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.judge.cells import cell_outcome
from lab.judge.expectations import GateResult, gate_run
from lab.model.jsonable import from_json, to_json
from lab.model.plan import BootPlan, CellKey
from lab.model.results import BootEvidence, BootOutcome, CellResult, RunInfo, TrainResult
from lab.model.status import Status
from lab.report.summary import columns, full_boot_of, rows, sizes, stage_medians, summarise
from roms.catalog import nic

SCHEMA_VERSION = 3
#: Schema 2 (before the layers) reads well enough for ``lab diff``: statuses, outcomes, trains.
READABLE_SCHEMAS = (2, 3)


def _cell(cell: CellResult, out_dir: Path | None) -> dict[str, Any]:
    return {
        **to_json(cell.key),
        "column": cell.key.column,
        "status": cell.status.value,
        "outcome": cell_outcome(cell),
        "reason": cell.reason,
        "boots": [
            {
                "size": b.plan.size,
                "seed": b.plan.seed,
                "artifacts": to_json(b.directory, out_dir),
                **to_json(b.evidence, out_dir),
            }
            for b in cell.boots
        ],
    }


def _row(name: str) -> dict[str, Any]:
    model = nic(name)
    return {
        "nic": model.name,
        "qemu_device": model.qemu_device,
        "pci_id": model.pci_id,
        "ipxe_driver": model.ipxe_driver,
        "etherboot_drivers": list(model.etherboot_drivers),
        "emulated": model.emulated,
    }


def matrix_json(
    results: Sequence[CellResult],
    info: RunInfo,
    trains: Sequence[TrainResult] = (),
    out_dir: Path | None = None,
    gate: GateResult | None = None,
    changes: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The document; paths relative to ``out_dir`` (the folder matrix.json goes in) when given."""
    statuses = [r.status for r in results] + [t.status for t in trains]
    gate = gate or gate_run(None, results, trains)
    summary = summarise(results, trains, gate.counts() if gate.expectations is not None else None)
    return {
        "schema": SCHEMA_VERSION,
        "run": to_json(info),
        "complete": not any(s in (Status.ERROR, Status.MISS) for s in statuses),
        "summary": {
            "cells": summary.cells,
            "trains": summary.trains,
            "gate": summary.gate,
            "cells_run": summary.cells_run,
            "text": summary.line(),
        },
        "gate": {
            "expectations": None if gate.expectations is None else str(gate.expectations),
            "exit_status": gate.exit_status(),
            "judgements": [to_json(j) for j in gate.judgements],
        },
        "changes": dict(changes or {}),
        "stage_medians_seconds": stage_medians(results),
        "stage_medians_seconds_by_size": {str(s): stage_medians(results, s) for s in sizes(results)},
        "columns": columns(results),
        "rows": [_row(name) for name in rows(results)],
        "cells": [_cell(r, out_dir) for r in results],
        "trains": [
            {**to_json(t, out_dir), "full_boot_train": _column_of(full_boot_of(t, trains))} for t in trains
        ],
    }


def _column_of(train: TrainResult | None) -> str | None:
    return None if train is None else train.plan.column


@dataclass
class MatrixDocument:
    """A matrix.json read back: the results it was written from, paths made absolute."""

    info: RunInfo
    cells: list[CellResult] = field(default_factory=list)
    trains: list[TrainResult] = field(default_factory=list)
    path: Path = Path("matrix.json")


def _cell_from_json(data: dict[str, Any], base: Path) -> CellResult:
    key = from_json(CellKey, data)
    boots = [
        BootOutcome(
            BootPlan(key, b["size"], b["seed"]), from_json(BootEvidence, b, base), base / b["artifacts"]
        )
        for b in data.get("boots", [])
    ]
    return CellResult(key, Status(data["status"]), data.get("reason", ""), boots)


def read_matrix(path: Path) -> MatrixDocument:
    """Load a matrix.json (a file, or the run folder holding one)."""
    path = path / "matrix.json" if path.is_dir() else path
    data = json.loads(path.read_text())
    if data.get("schema") not in READABLE_SCHEMAS:
        schema = data.get("schema")
        raise ValueError(f"{path}: matrix.json schema {schema}, this lab reads {READABLE_SCHEMAS}")
    base = path.parent.resolve()
    return MatrixDocument(
        info=from_json(RunInfo, data["run"]),
        cells=[_cell_from_json(c, base) for c in data["cells"]],
        trains=[from_json(TrainResult, t, base) for t in data["trains"]],
        path=path,
    )
