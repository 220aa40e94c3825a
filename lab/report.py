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

from lab.report_html import matrix_html
from lab.runner import BootOutcome, CellResult
from lab.status import Status
from lab.train import TrainResult
from roms.catalog import nic

SCHEMA_VERSION = 2
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


def matrix_json(
    results: Sequence[CellResult], info: RunInfo, trains: Sequence[TrainResult] = ()
) -> dict[str, Any]:
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
    statuses = [r.status for r in results] + [t.status for t in trains]
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
                "outcome": cell_outcome(r),
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
        "trains": [{**t.to_json(), "full_boot_train": _full_boot_column(t, trains)} for t in trains],
    }


#: Short words for a delivery outcome in a cell.
OUTCOME_WORDS = {
    "multicast": "multicast",
    "unicast-fallback": "unicast fallback",
    "unicast": "unicast",
    "ok-but-corrupt": "ok but corrupt",
}


def cell_outcome(cell: CellResult) -> str:
    """The cell's delivery outcome: the worst boot's, from its evidence (docs/matrix.md)."""
    if cell.status is Status.NOT_EMULATED:
        return "not-emulated"
    if cell.status is Status.UNSUPPORTED:
        return "unsupported"
    if not cell.boots:
        return str(cell.status.value).lower()
    worst = min(cell.boots, key=lambda b: b.evidence.status.priority)
    return str(worst.evidence.delivery.get("outcome") or cell.status.value.lower())


def _cut_off(cell: CellResult) -> str:
    """For a snooping+querier column: did the group reach the VM's tap at all?"""
    if "querier" not in cell.key.topology or not cell.boots:
        return ""
    figures = cell.boots[0].evidence.delivery.get("figures", {})
    sent, got = figures.get("bridge_group_data_bytes"), figures.get("group_data_bytes")
    if sent is None or got is None:
        return ""
    if sent and not got:
        return f", group cut off (tap 0 of {sent} B)"
    return f", group reached the tap ({got} of {sent} B)"


def _cell_text(cell: CellResult, out_dir: Path) -> str:
    if cell.status is Status.NOT_EMULATED:
        return "not emulated"
    if cell.status is Status.SKIP and "no ROM" in cell.reason:
        return "no ROM in set"
    if not cell.boots:
        return str(cell.status.value)
    passed = sum(1 for b in cell.boots if b.evidence.status is Status.PASS)
    outcome = cell_outcome(cell)
    bad = next((b for b in cell.boots if b.evidence.status is not Status.PASS), cell.boots[0])
    link = os.path.relpath(bad.directory, out_dir)
    counts = f" {passed}/{len(cell.boots)}" if len(cell.boots) > 1 else ""
    if cell.status is Status.PASS:
        return f"[PASS {OUTCOME_WORDS.get(outcome, outcome)}]({link}/){counts}{_cut_off(cell)}"
    if cell.status is Status.UNSUPPORTED:
        return f"[UNSUPPORTED]({link}/)"
    stage = bad.evidence.failed_stage or "?"
    word = f" {OUTCOME_WORDS[outcome]}" if outcome == "ok-but-corrupt" else ""
    return f"[{cell.status.value}@{stage}{word}]({link}/){counts}{_cut_off(cell)}"


def _confirmed(name: str, results: Sequence[CellResult], info: RunInfo) -> str:
    versions = sorted(
        {b.evidence.rom.get("ipxe_version", "") for r in results if r.key.nic == name for b in r.boots} - {""}
    )
    if not versions:
        return "—"
    qemu = info.qemu_version.replace("QEMU emulator version ", "QEMU ")
    return f"{info.started[:10]}, iPXE {'/'.join(versions)}, {qemu}, {info.commit}"


def _trains_markdown(trains: Sequence[TrainResult], out_dir: Path) -> list[str]:
    if not trains:
        return []
    lines = ["", "## Trains (4 VMs of mixed NICs, 0.5 s apart, one payload)", ""]
    lines += [
        "Full boot: the same NICs boot Debian's kernel and an initramfs fetched by the train's "
        "protocol (`-fullboot` rows, docs/fullboot.md); the column shows that train's status.",
        "",
        "| train | status | outcome | group bytes / payload | full boot | checks failed | artifacts |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in trains:
        ratio = "—" if t.group_ratio is None else f"{t.group_bytes} B = {t.group_ratio:.3f}"
        failed = "; ".join(c.name for c in t.checks if c.ok is False) or "none"
        link = os.path.relpath(t.directory, out_dir)
        lines.append(
            f"| {t.plan.column} | {t.status.value} | {t.outcome} | {ratio} | "
            f"{_full_boot_cell(t, trains, out_dir)} | {failed} | [{link}]({link}/) |"
        )
    for t in trains:
        lines += ["", f"### {t.plan.column}: {t.status.value} ({t.outcome})", ""]
        if t.full_boot:
            sessions = ", ".join(
                f"{name}: group {fig.get('group_ratio')} x, {fig.get('unicast_bytes')} B unicast, "
                f"{fig.get('done')}/{fig.get('clients')} done"
                if "passes" not in fig
                else f"{name}: group {fig.get('group_ratio')} x, {fig.get('passes')} pass(es), "
                f"{fig.get('repairs')} repairs"
                for name, fig in t.full_boot.get("sessions", {}).items()
            )
            kernel = t.full_boot.get("kernel_package")
            lines.append(f"Kernel: {kernel}; server sessions: {sessions or 'none'}.")
            lines.append("")
        if t.loss:
            lines.append(f"Loss: {t.loss['percent']} % each way on {t.loss['tap']} (VM {t.loss['vm']}), "
                         f"from {t.loss.get('from', 'boot')}, "
                         f"method {t.loss['method']} (egress) / {t.loss['ingress_method']} (ingress).")
            lines.append("")
        for c in t.checks:
            mark = {True: "ok", False: "FAILED", None: "n/a"}[c.ok]
            lines.append(f"- {mark}: {c.name}: {c.detail}")
        lines.append("")
        lines += ["| VM | NIC | started | status | outcome | never-asked group blocks | unicast rexmits "
                  "| frames QEMU never read (tap drops) |",
                  "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for i, v in enumerate(t.vms):
            fig = v.evidence.delivery.get("figures", {})
            link = os.path.relpath(v.directory, out_dir)
            lines.append(
                f"| [{i}]({link}/) | {v.nic} | +{v.started_at:.1f} s | {v.evidence.status.value} | "
                f"{v.evidence.delivery.get('outcome', '—')} | {v.heard_before_asking} | "
                f"{fig.get('unicast_retransmits', '—')} | {v.evidence.tap.get('tx_dropped', '—')} |"
            )
    return lines


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


def _full_boot_column(train: TrainResult, trains: Sequence[TrainResult]) -> str | None:
    full = full_boot_of(train, trains)
    return None if full is None else full.plan.column


def _full_boot_cell(train: TrainResult, trains: Sequence[TrainResult], out_dir: Path) -> str:
    full = full_boot_of(train, trains)
    if full is None:
        return "not run"
    link = os.path.relpath(full.directory, out_dir)
    return f"[{full.status.value} ({full.outcome})]({link}/)"


def matrix_markdown(
    results: Sequence[CellResult], info: RunInfo, out_dir: Path, trains: Sequence[TrainResult] = ()
) -> str:
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
        "Columns are protocol/ROM set/server[/topology]. A cell reads `STATUS outcome` (how the payload "
        "travelled, from the server's events and the VM's tap capture; docs/matrix.md) and links to the "
        "boot's "
        "artifacts (console.log, events, wire/ pcaps and counts); `passed/boots` when a cell has several "
        "payload sizes. Confirmed = run date, iPXE version from the ROM banner, QEMU version, commit.",
        "",
        "| NIC | QEMU device | PCI ID | iPXE driver | " + " | ".join(columns) + " | confirmed |",
        "|---|---|---|---|" + "---|" * len(columns) + "---|",
    ]
    for name in _rows(results):
        model = nic(name)
        cells = [_cell_text(by_key[(name, c)], out_dir) if (name, c) in by_key else "" for c in columns]
        device = model.qemu_device or "—"
        head = f"| {name} | {device} | {model.pci_id or '—'} | {model.ipxe_driver} | "
        lines.append(head + " | ".join(cells) + f" | {_confirmed(name, results, info)} |")
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
    lines += _trains_markdown(trains, out_dir)
    details = [r for r in results if r.status in (Status.FAIL, Status.ERROR, Status.MISS)]
    if details:
        lines += ["", "## Details of non-passing cells", ""]
        for r in details:
            lines.append(f"### {r.key.nic} / {r.key.column}: {r.status.value}")
            lines.append("")
            lines.append("```")
            lines.append(r.reason.strip()[:3000])
            lines.append("```")
            for b in r.boots:
                if b.evidence.delivery.get("evidence"):
                    lines.append(f"Evidence ({b.plan.size} B): {b.evidence.delivery['evidence']}")
            lines.append("")
    return "\n".join(lines) + "\n"


def junit_xml(results: Sequence[CellResult], info: RunInfo, trains: Sequence[TrainResult] = ()) -> str:
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
    for t in trains:
        case = ET.SubElement(suite, "testcase", classname="lab.trains", name=t.plan.column, time="0")
        counts["tests"] += 1
        props = ET.SubElement(case, "properties")
        ET.SubElement(props, "property", name="artifacts", value=str(t.directory))
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


def write_reports(
    results: Sequence[CellResult], info: RunInfo, out_dir: Path, trains: Sequence[TrainResult] = ()
) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / "matrix.json", "md": out_dir / "matrix.md", "junit": out_dir / "junit.xml",
        "html": out_dir / "matrix.html",
    }  # fmt: skip
    data = matrix_json(results, info, trains)
    paths["json"].write_text(json.dumps(data, indent=2) + "\n")
    paths["md"].write_text(matrix_markdown(results, info, out_dir, trains))
    paths["junit"].write_text(junit_xml(results, info, trains))
    paths["html"].write_text(matrix_html(data, out_dir))
    return paths
