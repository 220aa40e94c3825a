"""Matrix reports: matrix.json (schema in docs/lab.md), matrix.md, and JUnit XML.

Why written from the results and never edited: a cell's text is derived from its
evidence, and every non-PASS cell links to the boot folders that justify it.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from lab.runner import BootOutcome, CellResult
from lab.status import Status
from roms.catalog import nic

SCHEMA_VERSION = 1
STAGES = ("rom", "dhcp", "script", "kernel", "payload", "verified")


@dataclass
class RunInfo:
    run_id: str
    started: str
    wall_seconds: float
    jobs: int
    accel: str
    qemu_version: str
    commit: str
    rom_sets: dict[str, str]
    extra: dict[str, Any] = field(default_factory=dict)


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


def _sizes(results: Sequence[CellResult]) -> list[int]:
    return sorted({boot.plan.size for r in results for boot in r.boots})


def _columns(results: Sequence[CellResult]) -> list[str]:
    return list(dict.fromkeys(r.key.column for r in results))


def _rows(results: Sequence[CellResult]) -> list[str]:
    return list(dict.fromkeys(r.key.nic for r in results))


def matrix_json(results: Sequence[CellResult], info: RunInfo) -> dict[str, Any]:
    rows = []
    for name in _rows(results):
        model = nic(name)
        rows.append(
            {
                "nic": model.name,
                "qemu_device": model.qemu_device,
                "pci_id": model.pci_id,
                "ipxe_driver": model.ipxe_driver,
                "etherboot_drivers": list(model.etherboot_drivers),
                "emulated": model.emulated,
            }
        )
    statuses = [r.status for r in results]
    return {
        "schema": SCHEMA_VERSION,
        "run": {
            "id": info.run_id,
            "started": info.started,
            "wall_seconds": round(info.wall_seconds, 3),
            "jobs": info.jobs,
            "accel": info.accel,
            "qemu_version": info.qemu_version,
            "commit": info.commit,
            "rom_sets": info.rom_sets,
            **info.extra,
        },
        "complete": not any(s in (Status.ERROR, Status.MISS) for s in statuses),
        "summary": {s.value: statuses.count(s) for s in Status if s in statuses},
        "stage_medians_seconds": stage_medians(results),
        "stage_medians_seconds_by_size": {str(s): stage_medians(results, s) for s in _sizes(results)},
        "columns": _columns(results),
        "rows": rows,
        "cells": [
            {
                **r.key.to_json(),
                "column": r.key.column,
                "status": r.status.value,
                "reason": r.reason,
                "boots": [
                    {
                        "size": b.plan.size,
                        "seed": b.plan.seed,
                        "artifacts": str(b.directory),
                        **b.evidence.to_json(),
                    }
                    for b in r.boots
                ],
            }
            for r in results
        ],
    }


def _cell_text(cell: CellResult, out_dir: Path) -> str:
    if cell.status is Status.NOT_EMULATED:
        return "not emulated"
    if cell.status is Status.SKIP and "no ROM" in cell.reason:
        return "no ROM in set"
    if not cell.boots:
        return str(cell.status.value)
    passed = sum(1 for b in cell.boots if b.evidence.status is Status.PASS)
    text = f"{cell.status.value} {passed}/{len(cell.boots)}"
    if cell.status is not Status.PASS:
        bad = next(b for b in cell.boots if b.evidence.status is not Status.PASS)
        stage = bad.evidence.failed_stage or "?"
        link = os.path.relpath(bad.directory, out_dir)
        text = f"[{cell.status.value}@{stage}]({link}/) {passed}/{len(cell.boots)}"
    return text


def matrix_markdown(results: Sequence[CellResult], info: RunInfo, out_dir: Path) -> str:
    columns = _columns(results)
    by_key = {(r.key.nic, r.key.column): r for r in results}
    statuses = [r.status for r in results]
    regressions = statuses.count(Status.FAIL)
    lines = [
        f"# Boot confirmation matrix ({info.run_id})",
        "",
        f"{len(results)} cells, {regressions} FAIL, {statuses.count(Status.ERROR)} ERROR "
        f"(lab), {statuses.count(Status.PASS)} PASS. Wall time {info.wall_seconds:.1f} s with "
        f"{info.jobs} parallel VM(s), accel {info.accel}. {info.qemu_version}; commit {info.commit}.",
        "",
        "Columns are protocol/ROM set/server. A cell reads `STATUS passed/boots` (one boot per payload "
        "size); a non-PASS cell links to the first failing boot's artifacts.",
        "",
        "| NIC | QEMU device | PCI ID | iPXE driver | " + " | ".join(columns) + " |",
        "|---|---|---|---|" + "---|" * len(columns),
    ]
    for name in _rows(results):
        model = nic(name)
        cells = [_cell_text(by_key[(name, c)], out_dir) if (name, c) in by_key else "" for c in columns]
        device = model.qemu_device or "—"
        head = f"| {name} | {device} | {model.pci_id or '—'} | {model.ipxe_driver} | "
        lines.append(head + " | ".join(cells) + " |")
    if stage_medians(results):
        lines += ["", "## Median stage durations (seconds, passed stages)", ""]
        lines += ["| payload size | " + " | ".join(STAGES) + " |", "|---|" + "---|" * len(STAGES)]
        rows: list[tuple[str, int | None]] = [("all", None), *((f"{s} B", s) for s in _sizes(results))]
        for label, size in rows:
            medians = stage_medians(results, size)
            timings = " | ".join(f"{medians[s]:.2f}" if s in medians else "—" for s in STAGES)
            lines.append(f"| {label} | {timings} |")
    versions = sorted({b.evidence.rom.get("ipxe_version", "") for r in results for b in r.boots} - {""})
    if versions:
        lines += ["", "iPXE versions seen in ROM banners: " + ", ".join(versions)]
    details = [r for r in results if r.status in (Status.FAIL, Status.ERROR, Status.MISS)]
    if details:
        lines += ["", "## Details of non-passing cells", ""]
        for r in details:
            lines.append(f"### {r.key.nic} / {r.key.column}: {r.status.value}")
            lines.append("")
            lines.append("```")
            lines.append(r.reason.strip()[:3000])
            lines.append("```")
            lines.append("")
    return "\n".join(lines) + "\n"


def junit_xml(results: Sequence[CellResult], info: RunInfo) -> str:
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
                for key, value in (("artifacts", str(boot.directory)), ("status", status.value)):
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
    for key, count in counts.items():
        suite.set(key, str(count))
    suite.set("time", f"{info.wall_seconds:.3f}")
    return str(ET.tostring(suite, encoding="unicode", xml_declaration=True)) + "\n"


def write_reports(results: Sequence[CellResult], info: RunInfo, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "matrix.json", "md": out_dir / "matrix.md", "junit": out_dir / "junit.xml"}
    paths["json"].write_text(json.dumps(matrix_json(results, info), indent=2) + "\n")
    paths["md"].write_text(matrix_markdown(results, info, out_dir))
    paths["junit"].write_text(junit_xml(results, info))
    return paths
