"""junit.xml: one testcase per boot and per train, for CI dashboards."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from xml.etree import ElementTree as ET

from lab.model.jsonable import to_json
from lab.model.results import BootOutcome, CellResult, RunInfo, TrainResult
from lab.model.status import Status


def junit_xml(
    results: Sequence[CellResult], info: RunInfo, out_dir: Path, trains: Sequence[TrainResult] = ()
) -> str:
    """One testcase per boot (or per cell that could not run), JUnit-style for CI."""
    suite = ET.Element("testsuite", name="lab-matrix", timestamp=info.started)
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for r in results:
        classname = f"lab.{r.key.column.replace('/', '.')}"
        entries: list[tuple[str, Status, str, BootOutcome | None]] = [
            (f"{r.key.nic}[{b.plan.size}B]", b.evidence.status, b.evidence.reason, b) for b in r.boots
        ]
        if not r.boots:
            entries = [(r.key.nic, r.status, r.reason, None)]
        for name, status, reason, boot in entries:
            seconds = boot.evidence.seconds if boot else 0.0
            case = ET.SubElement(suite, "testcase", classname=classname, name=name, time=f"{seconds:.3f}")
            counts["tests"] += 1
            if boot is not None:
                props = ET.SubElement(case, "properties")
                for key, value in (("artifacts", to_json(boot.directory, out_dir)), ("status", status.value)):
                    ET.SubElement(props, "property", name=key, value=value)
            first_line = reason.splitlines()[0] if reason else status.value
            if status is Status.FAIL:
                ET.SubElement(case, "failure", message=first_line).text = reason
                counts["failures"] += 1
            elif status in (Status.ERROR, Status.MISS):
                ET.SubElement(case, "error", message=first_line).text = reason
                counts["errors"] += 1
            elif status is not Status.PASS:
                ET.SubElement(case, "skipped", message=f"{status.value}: {reason}")
                counts["skipped"] += 1
    for t in trains:
        case = ET.SubElement(suite, "testcase", classname="lab.trains", name=t.plan.column, time="0")
        counts["tests"] += 1
        props = ET.SubElement(case, "properties")
        ET.SubElement(props, "property", name="artifacts", value=to_json(t.directory, out_dir))
        ET.SubElement(props, "property", name="group_ratio", value=str(t.group_ratio))
        if t.status is Status.FAIL:
            ET.SubElement(case, "failure", message=t.reason[:200]).text = t.reason
            counts["failures"] += 1
        elif t.status in (Status.ERROR, Status.MISS):
            ET.SubElement(case, "error", message=t.reason[:200]).text = t.reason
            counts["errors"] += 1
        elif t.status is not Status.PASS:
            ET.SubElement(case, "skipped", message=f"{t.status.value}: {t.reason}")
            counts["skipped"] += 1
    for key, count in counts.items():
        suite.set(key, str(count))
    suite.set("time", f"{info.wall_seconds:.3f}")
    return str(ET.tostring(suite, encoding="unicode", xml_declaration=True)) + "\n"
