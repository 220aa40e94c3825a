"""The report layer: what a run proved, drawn for people and written for machines.

matrix.md, matrix.json, matrix.html and junit.xml come from the same results and the
same summary (:mod:`lab.report.summary`); timelines picture one multicast session.
Nothing here runs a boot: reports read results and evidence files only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from lab.judge.expectations import GateResult, gate_run
from lab.model.results import CellResult, RunInfo, TrainResult
from lab.report.html import matrix_html, write_indexes
from lab.report.junit import junit_xml
from lab.report.markdown import matrix_markdown
from lab.report.matrix_json import matrix_json


def write_reports(
    results: Sequence[CellResult], info: RunInfo, out_dir: Path, trains: Sequence[TrainResult] = (),
    gate: GateResult | None = None, changes: dict[str, str] | None = None,
) -> dict[str, Path]:  # fmt: skip
    """Write matrix.json, matrix.md, junit.xml and matrix.html into ``out_dir``.

    ``gate``: every cell's and train's verdict against the expectations; ``changes``: name ->
    "was PASS multicast" for what differs from a baseline run.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    gate = gate or gate_run(None, results, trains)
    paths = {
        "json": out_dir / "matrix.json", "md": out_dir / "matrix.md", "junit": out_dir / "junit.xml",
        "html": out_dir / "matrix.html",
    }  # fmt: skip
    data = matrix_json(results, info, trains, out_dir, gate, changes)
    paths["json"].write_text(json.dumps(data, indent=2) + "\n")
    paths["md"].write_text(matrix_markdown(results, info, out_dir, trains, gate, changes))
    paths["junit"].write_text(junit_xml(results, info, out_dir, trains, gate))
    paths["html"].write_text(matrix_html(data))
    write_indexes(data, out_dir)
    return paths
