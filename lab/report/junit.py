"""junit.xml: one testcase per cell and per train, classified by the gate, for CI dashboards.

Why per cell and not per boot: the matrix's unit is the cell, and the four reports must
give the same counts.  How the gate maps onto JUnit (docs/matrix.md, "JUnit"):

* a regression, an unexpected pass or a FAIL nobody expected is a ``<failure>``, with the
  console's last lines in ``<system-out>``;
* ERROR/MISS (the lab broke) is an ``<error>``;
* an expected non-PASS (a known finding, an unsupported feature, a NIC QEMU does not
  emulate) is ``<skipped>`` with the expectation's reason: it is not a pass, and not news;
* the rest passed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from xml.etree import ElementTree as ET

from lab.judge.cells import cell_name
from lab.judge.expectations import GateResult, Judgement, gate_run
from lab.model.console_text import console_tail
from lab.model.jsonable import to_json
from lab.model.results import CellResult, RunInfo, TrainResult
from lab.model.status import Status
from lab.report.summary import summarise


def _console_excerpt(cell: CellResult | None) -> str:
    if cell is None or not cell.boots:
        return ""
    worst = min(cell.boots, key=lambda b: b.evidence.status.priority)
    evidence = worst.evidence
    tail = "\n".join(evidence.console_tail) or console_tail(
        Path(evidence.files.get("console", worst.directory / "console.log"))
    )
    error = (
        f"iPXE's error: {evidence.ipxe_error.line} ({evidence.ipxe_error.words})\n"
        if evidence.ipxe_error
        else ""
    )
    return f"{error}console of {worst.directory.name} (last lines):\n{tail}" if tail or error else ""


def _ipxe_line(cell: CellResult | None) -> str:
    """iPXE's own error line of the cell's worst boot ("" when it printed none)."""
    if cell is None or not cell.boots:
        return ""
    worst = min(cell.boots, key=lambda b: b.evidence.status.priority)
    return f"; iPXE: {worst.evidence.ipxe_error.line}" if worst.evidence.ipxe_error else ""


def _verdict(case: ET.Element, judgement: Judgement, reason: str, excerpt: str) -> str:
    """Add the JUnit child for ``judgement``; returns the count it adds to."""
    what = f"{judgement.status.value} {judgement.outcome}"
    if judgement.verdict == "lab-broke":
        ET.SubElement(case, "error", message=f"the lab broke: {what}").text = reason
        return "errors"
    if judgement.fails_gate:
        expected = f", expected {judgement.expected}" if judgement.expected else ", no expectation"
        word = "new FAIL" if judgement.verdict == "new" else judgement.verdict
        ET.SubElement(case, "failure", message=f"{word}: {what}{expected}").text = reason
        if excerpt:
            ET.SubElement(case, "system-out").text = excerpt
        return "failures"
    if judgement.status is not Status.PASS:
        why = judgement.reason or reason or what
        ET.SubElement(case, "skipped", message=f"expected {what}: {why}"[:500])
        return "skipped"
    return "passed"


def junit_xml(
    results: Sequence[CellResult],
    info: RunInfo,
    out_dir: Path,
    trains: Sequence[TrainResult] = (),
    gate: GateResult | None = None,
) -> str:
    gate = gate or gate_run(None, results, trains)
    by_name = {(j.kind, j.name): j for j in gate.judgements}
    suite = ET.Element("testsuite", name="lab-matrix", timestamp=info.started)
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "passed": 0}
    for cell in results:
        name = cell_name(cell)
        seconds = sum(b.evidence.seconds for b in cell.boots)
        case = ET.SubElement(suite, "testcase", classname="lab.cells", name=name, time=f"{seconds:.3f}")
        props = ET.SubElement(case, "properties")
        for boot in cell.boots:
            ET.SubElement(
                props,
                "property",
                name=f"artifacts[{boot.plan.size}B]",
                value=to_json(boot.directory, out_dir),
            )
        judgement = by_name[("cell", name)]
        judgement = replace(judgement, outcome=judgement.outcome + _ipxe_line(cell))
        counts[_verdict(case, judgement, cell.reason, _console_excerpt(cell))] += 1
        counts["tests"] += 1
    for train in trains:
        case = ET.SubElement(
            suite, "testcase", classname="lab.trains", name=train.plan.column, time=f"{train.seconds:.3f}"
        )
        props = ET.SubElement(case, "properties")
        ET.SubElement(props, "property", name="artifacts", value=to_json(train.directory, out_dir))
        ET.SubElement(props, "property", name="group_ratio", value=str(train.group_ratio))
        judgement = by_name[("train", train.plan.column)]
        counts[_verdict(case, judgement, train.reason, "")] += 1
        counts["tests"] += 1
    for key in ("tests", "failures", "errors", "skipped"):
        suite.set(key, str(counts[key]))
    suite.set("time", f"{info.wall_seconds:.3f}")
    summary = summarise(results, trains, gate.counts() if gate.expectations else None)
    props = ET.Element("properties")
    ET.SubElement(props, "property", name="summary", value=summary.line())
    ET.SubElement(props, "property", name="commit", value=info.commit)
    suite.insert(0, props)
    return str(ET.tostring(suite, encoding="unicode", xml_declaration=True)) + "\n"
