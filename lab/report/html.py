"""matrix.html: the matrix as one self-contained page (no scripts, no external files).

Why from matrix.json's data and not from the results: the page then shows exactly
what the JSON says.  Every cell links to its boot folder; a cell that did not pass
also links straight to the files a reader opens first: the console log, the server
events, the pcaps and their counts.
"""

from __future__ import annotations

import html
from typing import Any

_STYLE = """
body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #999;padding:3px 6px;font-size:13px;vertical-align:top}
.PASS{background:#cfc}.FAIL{background:#f99}.ERROR{background:#fc6}.MISS{background:#ddd}
.UNSUPPORTED{background:#eef}.NOT_EMULATED{background:#eee;color:#666}.SKIP{background:#f4f4f4}
small{color:#333}
"""


def _rel(path: str) -> str:
    """A link to a path of matrix.json (already relative to the run folder)."""
    return html.escape(path)


def _files(boot: dict[str, Any]) -> str:
    files = boot.get("files", {})
    wanted = [("console", "console"), ("tftp_events", "events"), ("slam_events", "slam events")]
    wanted += [(k, k.replace("_", " ")) for k in sorted(files) if k.startswith("timeline")]
    wanted += [(k, k.replace("pcap_", "pcap ")) for k in sorted(files) if k.startswith("pcap_")]
    wanted += [
        (k, k.replace("wire_", "counts "))
        for k in sorted(files)
        if k.startswith("wire_") and k != "wire_error"
    ]
    links = [f'<a href="{_rel(files[k])}">{html.escape(label)}</a>' for k, label in wanted if k in files]
    return " ".join(links)


def _cell(cell: dict[str, Any]) -> str:
    status = cell["status"]
    boots = cell.get("boots", [])
    text = f"{status} {html.escape(cell.get('outcome', ''))}"
    if not boots:
        return f'<td class="{status}" title="{html.escape(cell.get("reason", ""))}">{text}</td>'
    bad = next((b for b in boots if b["status"] != "PASS"), boots[0])
    stage = f"@{bad['failed_stage']}" if bad.get("failed_stage") else ""
    body = f'<a href="{_rel(bad["artifacts"])}/">{html.escape(status + stage)}</a> '
    body += html.escape(cell.get("outcome", ""))
    if status not in ("PASS", "UNSUPPORTED"):
        body += f"<br><small>{_files(bad)}</small>"
    elif "timeline" in bad.get("files", {}):
        body += f' <small><a href="{_rel(bad["files"]["timeline"])}">timeline</a></small>'

    evidence = str((bad.get("delivery") or {}).get("evidence", ""))
    return f'<td class="{status}" title="{html.escape(evidence)}">{body}</td>'


def matrix_html(data: dict[str, Any]) -> str:
    run = data["run"]
    columns: list[str] = data["columns"]
    by_key = {(c["nic"], c["column"]): c for c in data["cells"]}
    out = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Boot confirmation matrix {html.escape(run['id'])}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Boot confirmation matrix {html.escape(run['id'])}</h1>",
        f"<p><b>{html.escape(data['summary']['text'])}</b></p>",
        f"<p>{html.escape(run['qemu_version'])}; commit {html.escape(run['commit'])}; "
        f"{run['wall_seconds']:.0f} s, {run['jobs']} parallel VM(s), accel {html.escape(run['accel'])}. "
        "Hover a cell for its evidence; a cell links to its boot folder, failing cells also to the "
        "console log, events and pcaps.</p>",
        "<table><tr><th>NIC</th><th>QEMU device</th><th>PCI ID</th><th>iPXE driver</th>",
    ]
    out += [f"<th>{html.escape(c)}</th>" for c in columns]
    out.append("</tr>")
    for row in data["rows"]:
        out.append(
            f"<tr><td>{html.escape(row['nic'])}</td><td>{html.escape(str(row['qemu_device'] or '—'))}</td>"
            f"<td>{html.escape(str(row['pci_id'] or '—'))}</td><td>{html.escape(row['ipxe_driver'])}</td>"
        )
        for column in columns:
            cell = by_key.get((row["nic"], column))
            out.append(_cell(cell) if cell else "<td></td>")
        out.append("</tr>")
    out.append("</table>")
    out += _trains_html(data.get("trains", []))
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _trains_html(trains: list[dict[str, Any]]) -> list[str]:
    if not trains:
        return []
    out: list[str] = []
    out.append(
        "<h2>Trains</h2><table><tr><th>train</th><th>status</th><th>outcome</th>"
        "<th>group bytes / payload</th><th>full boot</th><th>checks</th><th>VMs</th></tr>"
    )
    by_column = {t["column"]: t for t in trains}
    for t in trains:
        full = by_column.get(t.get("full_boot_train") or "")
        full_cell = (
            f'<td class="{full["status"]}"><a href="{_rel(full["artifacts"])}/">'
            f"{full['status']} ({html.escape(full['outcome'])})</a></td>"
            if full
            else "<td>not run</td>"
        )
        ratio = "—" if t["group_ratio"] is None else f"{t['group_bytes']} B = {t['group_ratio']:.3f}"
        checks = "<br>".join(
            f"{ {True: 'ok', False: 'FAILED', None: 'n/a'}[c['ok']] }: {html.escape(c['name'])}: "
            f"{html.escape(c['detail'])}"
            for c in t["checks"]
        )
        vms = "<br>".join(
            f'<a href="{_rel(v["artifacts"])}/">{html.escape(v["nic"])}</a> {v["status"]} '
            f"{html.escape(str((v['evidence'].get('delivery') or {}).get('outcome', '')))}"
            for v in t["vms"]
        )
        pictures = " ".join(f'<a href="{_rel(p)}">timeline</a>' for p in t.get("timelines", []))
        if t.get("timeline_error"):
            pictures += html.escape(t["timeline_error"])
        out.append(
            f'<tr><td><a href="{_rel(t["artifacts"])}/">{html.escape(t["column"])}</a>'
            f"<br><small>{pictures}</small></td>"
            f'<td class="{t["status"]}">{t["status"]}</td><td>{html.escape(t["outcome"])}</td>'
            f"<td>{ratio}</td>{full_cell}<td>{checks}</td><td>{vms}</td></tr>"
        )
    out.append("</table>")
    return out
