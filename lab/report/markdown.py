"""matrix.md: the matrix as a Markdown page, KernelCI-email style.

Why written from the results and never edited: a cell's text is derived from its
evidence, and every non-PASS cell links to the boot folder that justifies it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from lab.judge.cells import cell_outcome
from lab.judge.expectations import GateResult
from lab.model.results import CellResult, RunInfo, TrainResult
from lab.model.status import Status
from lab.report.summary import (
    OUTCOME_WORDS,
    STAGES,
    columns,
    full_boot_of,
    gate_marks,
    ipxe_versions,
    rows,
    sizes,
    stage_medians,
    summarise,
)
from roms.catalog import nic


def _cut_off(cell: CellResult) -> str:
    """For a snooping+querier column: did the group reach the VM's tap at all?"""
    if "querier" not in cell.key.topology or not cell.boots:
        return ""
    delivery = cell.boots[0].evidence.delivery
    figures = delivery.figures if delivery is not None else {}
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
    versions = ipxe_versions(results, name)
    if not versions:
        return "—"
    qemu = info.qemu_version.replace("QEMU emulator version ", "QEMU ")
    return f"{info.started[:10]}, iPXE {'/'.join(versions)}, {qemu}, {info.commit}"


def _marked(text: str, mark: str | None) -> str:
    return f"{text} **{mark}**" if mark else text


def _gate_markdown(gate: GateResult | None, rerun: str) -> list[str]:
    """The gate's verdict: what fails it, each with what was expected and how to re-run it."""
    if gate is None or gate.expectations is None:
        return ["No expectations given: every FAIL counts as news (`lab matrix --expect auto`).", ""]
    failing = gate.failing() + gate.of("lab-broke")
    lines = [f"Gate: {gate.expectations}; exit status {gate.exit_status()}.", ""]
    for j in failing:
        expected = f"expected {j.expected}" if j.expected else "no expectation"
        lines.append(
            f"- **{j.verdict}** {j.kind} `{j.name}`: {j.status.value} {j.outcome}, {expected}"
            + (f" ({j.reason})" if j.reason else "")
            + f"; re-run: `{rerun} --only {j.name}`"
        )
    return [*lines, ""] if failing else lines


def _trains_markdown(trains: Sequence[TrainResult], out_dir: Path, marks: dict[str, str]) -> list[str]:
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
        status = _marked(t.status.value, marks.get(t.plan.column))
        lines.append(
            f"| {t.plan.column} | {status} | {t.outcome} | {ratio} | "
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
            lines.append(
                f"Loss: {t.loss['percent']} % each way on {t.loss['tap']} (VM {t.loss['vm']}), "
                f"from {t.loss.get('from', 'boot')}, "
                f"method {t.loss['method']} (egress) / {t.loss['ingress_method']} (ingress)."
            )
            lines.append("")
        for c in t.checks:
            mark = {True: "ok", False: "FAILED", None: "n/a"}[c.ok]
            lines.append(f"- {mark}: {c.name}: {c.detail}")
        lines.append("")
        lines += [
            "| VM | NIC | started | status | outcome | never-asked group blocks | unicast rexmits "
            "| frames QEMU never read (tap drops) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for i, v in enumerate(t.vms):
            fig = v.evidence.delivery.figures if v.evidence.delivery is not None else {}
            link = os.path.relpath(v.directory, out_dir)
            lines.append(
                f"| [{i}]({link}/) | {v.nic} | +{v.started_at:.1f} s | {v.evidence.status.value} | "
                f"{v.evidence.outcome or '—'} | {v.heard_before_asking} | "
                f"{fig.get('unicast_retransmits', '—')} | {v.evidence.tap.get('tx_dropped', '—')} |"
            )
    return lines


def _full_boot_cell(train: TrainResult, trains: Sequence[TrainResult], out_dir: Path) -> str:
    full = full_boot_of(train, trains)
    if full is None:
        return "not run"
    link = os.path.relpath(full.directory, out_dir)
    return f"[{full.status.value} ({full.outcome})]({link}/)"


def matrix_markdown(
    results: Sequence[CellResult],
    info: RunInfo,
    out_dir: Path,
    trains: Sequence[TrainResult] = (),
    gate: GateResult | None = None,
    changes: dict[str, str] | None = None,
) -> str:
    table_columns = columns(results)
    by_key = {(r.key.nic, r.key.column): r for r in results}
    gated = gate is not None and gate.expectations is not None
    summary = summarise(results, trains, gate.counts() if gate is not None and gated else None)
    marks = gate_marks(gate, changes)
    lines = [
        f"# Boot confirmation matrix ({info.run_id})",
        "",
        f"{summary.line()} Wall time {info.wall_seconds:.1f} s with {info.jobs} parallel VM(s), accel "
        f"{info.accel}. {info.qemu_version}; commit {info.commit}.",
        "",
        *_gate_markdown(gate, str(info.extra.get("rerun", "lab matrix"))),
        "Columns are protocol/ROM set/server[/topology]. A cell reads `STATUS outcome` (how the payload "
        "travelled, from the server's events and the VM's tap capture; docs/matrix.md) and links to the "
        "boot's "
        "artifacts (console.log, events, wire/ pcaps and counts); `passed/boots` when a cell has several "
        "payload sizes. Confirmed = run date, iPXE version from the ROM banner, QEMU version, commit.",
        "",
        "| NIC | QEMU device | PCI ID | iPXE driver | " + " | ".join(table_columns) + " | confirmed |",
        "|---|---|---|---|" + "---|" * len(table_columns) + "---|",
    ]
    for name in rows(results):
        model = nic(name)
        cells = [
            _marked(_cell_text(by_key[(name, c)], out_dir), marks.get(f"{name}/{c}"))
            if (name, c) in by_key
            else ""
            for c in table_columns
        ]
        device = model.qemu_device or "—"
        head = f"| {name} | {device} | {model.pci_id or '—'} | {model.ipxe_driver} | "
        lines.append(head + " | ".join(cells) + f" | {_confirmed(name, results, info)} |")
    lines += _medians_markdown(results)
    versions = ipxe_versions(results)
    if versions:
        lines += ["", "iPXE versions seen in ROM banners: " + ", ".join(versions)]
    lines += _trains_markdown(trains, out_dir, marks)
    lines += _details_markdown(results, str(info.extra.get("rerun", "lab matrix")))
    return "\n".join(lines) + "\n"


def _medians_markdown(results: Sequence[CellResult]) -> list[str]:
    """Median seconds per boot stage, over every payload size and per size."""
    if not stage_medians(results):
        return []
    lines = ["", "## Median stage durations (seconds, passed stages)", ""]
    lines += ["| payload size | " + " | ".join(STAGES) + " |", "|---|" + "---|" * len(STAGES)]
    by_size: list[tuple[str, int | None]] = [("all", None), *((f"{s} B", s) for s in sizes(results))]
    for label, size in by_size:
        medians = stage_medians(results, size)
        timings = " | ".join(f"{medians[s]:.2f}" if s in medians else "—" for s in STAGES)
        lines.append(f"| {label} | {timings} |")
    return lines


def _details_markdown(results: Sequence[CellResult], rerun: str) -> list[str]:
    """Every cell that did not pass: its reason, iPXE's own error line, the evidence in words,
    and the command that re-runs just it."""
    details = [r for r in results if r.status in (Status.FAIL, Status.ERROR, Status.MISS)]
    if not details:
        return []
    lines = ["", "## Details of non-passing cells", ""]
    for r in details:
        lines += [
            f"### {r.key.nic} / {r.key.column}: {r.status.value}",
            "",
            "```",
            r.reason.strip()[:3000],
            "```",
        ]
        for b in r.boots:
            if b.evidence.ipxe_error is not None:
                lines.append(f"iPXE ({b.plan.size} B): `{b.evidence.ipxe_error.line}`  ")
            if b.evidence.delivery is not None and b.evidence.delivery.evidence:
                lines.append(f"Evidence ({b.plan.size} B): {b.evidence.delivery.evidence}  ")
        lines += [f"Re-run: `{rerun} --only {r.key.nic}/{r.key.column}`", ""]
    return lines
