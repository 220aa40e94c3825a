"""matrix.html and each boot folder's index.html, from templates (jinja2).

Why from matrix.json's data and not from the results: the page then shows exactly what the
JSON says, and a merged or downloaded run renders the same.  What a maintainer needs first
is on the first screen at 1400x900: the summary, what fails the gate, each non-passing
cell's failing check with iPXE's own error line, and the trains; the big table follows,
columns grouped by protocol, with the rows that never boot folded into one line each.
Every link is a file (a boot folder's index.html lists its artifacts), so a zipped run
still browses.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

TEMPLATES = Path(__file__).resolve().parent / "templates"
#: Short words for an outcome inside a cell (the legend spells them out).
SHORT = {
    "multicast": "mcast",
    "unicast-fallback": "fallback",
    "unicast": "unicast",
    "ok-but-corrupt": "ok but corrupt",
    "booted": "booted",
    "failed": "",
}
#: Files of a boot folder worth a link, in the order a reader opens them.
KEY_FILES = ("console_text", "console", "tftp_events", "slam_events", "timeline", "pcap_br0", "dhcp_log",
             "boot_script", "qemu_cmdline")  # fmt: skip


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


@dataclass
class CellView:
    status: str
    text: str
    link: str = ""
    stage: str = ""
    error: str = ""
    mark: str = ""
    title: str = ""


@dataclass
class Column:
    protocol: str
    label: str  # the rest of the column: "debian/pyatftpd", "debian/pyatftpd/snoop+querier"
    name: str  # the whole column


@dataclass
class Finding:
    name: str
    status: str
    stage: str
    error: str
    link: str
    verdict: str = ""
    expected: str = ""
    reason: str = ""


@dataclass
class Page:
    data: dict[str, Any]
    columns: list[Column] = field(default_factory=list)
    groups: list[tuple[str, int]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    folded: list[tuple[str, list[str]]] = field(default_factory=list)
    #: Cells the reader must look at (the gate failed on them, or no gate): shown first.
    findings: list[Finding] = field(default_factory=list)
    #: News beyond the first screen, and the failures the expectations foresaw: folded.
    more_findings: list[Finding] = field(default_factory=list)
    expected_findings: list[Finding] = field(default_factory=list)
    failing: list[dict[str, Any]] = field(default_factory=list)


def _worst_boot(cell: dict[str, Any]) -> dict[str, Any] | None:
    boots = cell.get("boots", [])
    return next((b for b in boots if b["status"] != "PASS"), boots[0] if boots else None)


def _boot_link(boot: dict[str, Any] | None) -> str:
    return f"{boot['artifacts']}/index.html" if boot else ""


def _error_line(boot: dict[str, Any] | None) -> str:
    if boot is None:
        return ""
    error = boot.get("ipxe_error") or {}
    return str(error.get("line", ""))


def _failing_check(cell: dict[str, Any], boot: dict[str, Any] | None) -> str:
    if boot is None:
        return str(cell.get("reason", ""))
    stage = boot.get("failed_stage") or ""
    message = next((s["message"] for s in boot.get("stages", []) if s["name"] == stage), "")
    return (message or boot.get("reason", "")).splitlines()[0] if (message or boot.get("reason")) else ""


def cell_view(cell: dict[str, Any], mark: str) -> CellView:
    boot = _worst_boot(cell)
    status, outcome = cell["status"], cell.get("outcome", "")
    words = SHORT.get(outcome, outcome)
    passed = sum(1 for b in cell.get("boots", []) if b["status"] == "PASS")
    count = f" {passed}/{len(cell['boots'])}" if len(cell.get("boots", [])) > 1 else ""
    view = CellView(status, f"{status} {words}".strip() + count, _boot_link(boot), mark=mark)
    if status not in ("PASS", "UNSUPPORTED"):
        view.stage = (boot or {}).get("failed_stage") or ""
        view.error = _error_line(boot) or _failing_check(cell, boot)
    delivery = (boot or {}).get("delivery") or {}
    view.title = str(delivery.get("evidence", "")) or cell.get("reason", "")
    return view


def _columns(names: Iterable[str]) -> list[Column]:
    out = []
    for name in names:
        protocol, _, rest = name.partition("/")
        out.append(Column(protocol, rest, name))
    order = {p: i for i, p in enumerate(dict.fromkeys(c.protocol for c in out))}
    return sorted(out, key=lambda c: order[c.protocol])


def _marks(data: dict[str, Any]) -> dict[str, str]:
    marks: dict[str, list[str]] = {}
    for j in (data.get("gate") or {}).get("judgements", []):
        fails = j["verdict"] in ("regression", "unexpected-pass") or (
            j["verdict"] == "new" and j["status"] == "FAIL"
        )
        if fails:
            word = "NEW FAIL" if j["verdict"] == "new" else j["verdict"].replace("-", " ").upper()
            marks.setdefault(j["name"], []).append(word)
    for name, was in (data.get("changes") or {}).items():
        marks.setdefault(name, []).append(was)
    return {name: "; ".join(words) for name, words in marks.items()}


def build_page(data: dict[str, Any]) -> Page:
    """The view of one matrix.json: columns grouped by protocol, rows, folded rows, findings."""
    page = Page(data, _columns(data["columns"]))
    for column in page.columns:
        if page.groups and page.groups[-1][0] == column.protocol:
            page.groups[-1] = (column.protocol, page.groups[-1][1] + 1)
        else:
            page.groups.append((column.protocol, 1))
    marks = _marks(data)
    judgements = {j["name"]: j for j in (data.get("gate") or {}).get("judgements", [])}
    by_key = {(c["nic"], c["column"]): c for c in data["cells"]}
    folded: dict[str, list[str]] = {"not emulated by QEMU": [], "no ROM in any set": []}
    for row in data["rows"]:
        cells = [by_key.get((row["nic"], c.name)) for c in page.columns]
        present = [c for c in cells if c is not None]
        if present and all(c["status"] == "NOT_EMULATED" for c in present):
            folded["not emulated by QEMU"].append(row["nic"])
            continue
        if present and all(c["status"] == "SKIP" for c in present):
            folded["no ROM in any set"].append(row["nic"])
            continue
        views = [cell_view(c, marks.get(f"{c['nic']}/{c['column']}", "")) if c else None for c in cells]
        page.rows.append({**row, "cells": views, "confirmed": _confirmed(row["nic"], present, data)})
        for cell in present:
            name = f"{cell['nic']}/{cell['column']}"
            passed = cell["status"] in ("PASS", "UNSUPPORTED", "NOT_EMULATED", "SKIP")
            if passed and judgements.get(name, {}).get("verdict") != "unexpected-pass":
                continue
            view = cell_view(cell, marks.get(name, ""))
            j = judgements.get(name, {})
            finding = Finding(name, cell["status"], view.stage, view.error, view.link)
            finding.verdict, finding.expected, finding.reason = (
                j.get("verdict", ""),
                j.get("expected", ""),
                j.get("reason", ""),
            )
            page.findings.append(finding)
    page.folded = [(what, names) for what, names in folded.items() if names]
    _fold_findings(page)
    gate = data.get("gate") or {}
    page.failing = [j for j in gate.get("judgements", []) if marks.get(j["name"]) and j["kind"] == "train"]
    return page


#: Findings shown open: with the summary and the trains they fill a 1400x900 first screen.
OPEN_FINDINGS = 6


def _fold_findings(page: Page) -> None:
    """News first and open (at most OPEN_FINDINGS); what the expectations foresaw folded.

    Why: a gated run carries dozens of expected FAILs (atftpd's tftm cells, rows whose
    driver is known broken); listed open they push the one regression's error line and
    the trains off the first screen, which is all a maintainer reads.
    """
    everything = sorted(page.findings, key=lambda f: f.name)
    news = [f for f in everything if f.verdict != "expected"]
    news.sort(key=lambda f: f.verdict not in ("regression", "unexpected-pass", "new"))
    page.findings, page.more_findings = news[:OPEN_FINDINGS], news[OPEN_FINDINGS:]
    page.expected_findings = [f for f in everything if f.verdict == "expected"]


def _confirmed(nic: str, cells: list[dict[str, Any]], data: dict[str, Any]) -> str:
    versions = sorted(
        {b.get("rom", {}).get("ipxe_version", "") for c in cells for b in c.get("boots", [])} - {""}
    )
    if not versions:
        return ""
    run = data["run"]
    qemu = str(run["qemu_version"]).replace("QEMU emulator version ", "QEMU ")
    return f"{run['started'][:10]}, iPXE {'/'.join(versions)}, {qemu}, {run['commit']}"


def matrix_html(data: dict[str, Any]) -> str:
    page = build_page(data)
    marks = _marks(data)
    return str(_environment().get_template("matrix.html.j2").render(page=page, data=data, marks=marks))


def boot_index_html(title: str, evidence: dict[str, Any], folder: Path, rerun: str) -> str:
    """A boot folder's index.html: its verdict, iPXE's error line, the console's end, every file."""
    files = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != "index.html")
    subfolders = sorted(p.name for p in folder.iterdir() if p.is_dir())
    named = {Path(str(v)).name: k for k, v in evidence.get("files", {}).items()}
    return str(_environment().get_template("boot_index.html.j2").render(
        title=title, evidence=evidence, files=files, subfolders=subfolders, named=named, rerun=rerun,
        key_files=KEY_FILES,
    ))  # fmt: skip


def write_indexes(data: dict[str, Any], out_dir: Path) -> None:
    """An index.html in every boot folder and every train folder of the run."""
    rerun = str((data["run"].get("extra") or {}).get("rerun") or "lab matrix")
    for cell in data["cells"]:
        name = f"{cell['nic']}/{cell['column']}"
        for boot in cell.get("boots", []):
            folder = out_dir / boot["artifacts"]
            if folder.is_dir():
                title = f"{name}, {boot['size']} B"
                html = boot_index_html(title, boot, folder, f"{rerun} --only {name}")
                (folder / "index.html").write_text(html)
    for train in data.get("trains", []):
        folder = out_dir / train["artifacts"]
        command = f"{rerun} --only {train['column']}"
        for vm in train.get("vms", []):
            vm_folder = out_dir / vm["artifacts"]
            if vm_folder.is_dir():
                title = f"{train['column']}: {vm['nic']} {vm['ip']}"
                (vm_folder / "index.html").write_text(
                    boot_index_html(title, vm["evidence"], vm_folder, command)
                )
        if folder.is_dir():
            summary = {"status": train["status"], "reason": train["reason"], "files": {},
                       "delivery": {"outcome": train["outcome"], "evidence": ""}}  # fmt: skip
            (folder / "index.html").write_text(boot_index_html(train["column"], summary, folder, command))
