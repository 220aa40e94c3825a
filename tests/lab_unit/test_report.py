import json
from pathlib import Path
from xml.etree import ElementTree as ET

from lab.model.plan import BootPlan, CellKey
from lab.model.results import BootEvidence, BootOutcome, CellResult, PayloadCheck, RunInfo, StageRecord
from lab.model.status import Status
from lab.report import write_reports
from lab.report.markdown import matrix_markdown
from lab.report.matrix_json import matrix_json

INFO = RunInfo("RUN", "2026-01-01T00:00:00+00:00", 12.5, 2, "tcg", "QEMU 7.2", "abc123", {"debian": "/roms"})


def _boot(key: CellKey, size: int, status: Status, folder: Path, stage_seconds: float = 1.0) -> BootOutcome:
    names = ("rom", "dhcp", "script", "kernel", "payload")
    stages = [StageRecord(n, Status.PASS, stage_seconds, 0.0) for n in names]
    stages.append(StageRecord("verified", status, stage_seconds, 0.0, message="x"))
    ev = BootEvidence(stages=stages, payloads=[PayloadCheck(size, "a" * 64, "a" * 64, size)])
    ev.settle()
    ev.reason = "" if status is Status.PASS else f"{status.value}@verified: x"
    return BootOutcome(BootPlan(key, size, 1), ev, folder / key.slug / str(size))


def _results(tmp_path: Path) -> list[CellResult]:
    good = CellKey("e1000", "debian")
    bad = CellKey("rtl8139", "debian")
    return [
        CellResult(good, Status.PASS, "", [_boot(good, 1, Status.PASS, tmp_path, 2.0)]),
        CellResult(bad, Status.FAIL, "1 B: FAIL@verified", [_boot(bad, 1, Status.FAIL, tmp_path, 4.0)]),
        CellResult(CellKey("tg3", "debian"), Status.NOT_EMULATED, "QEMU has no tg3"),
        CellResult(CellKey("ne2k_pci", "mine"), Status.SKIP, "no ROM in set 'mine' for ne2k_pci"),
    ]


def test_json_has_per_stage_timings_medians_and_completeness(tmp_path: Path) -> None:
    data = matrix_json(_results(tmp_path), INFO)
    cell = next(c for c in data["cells"] if c["nic"] == "e1000")
    stages = cell["boots"][0]["stages"]
    assert [s["name"] for s in stages] == ["rom", "dhcp", "script", "kernel", "payload", "verified"]
    assert stages[1]["seconds"] == 2.0
    assert data["stage_medians_seconds"]["rom"] == 3.0  # median of 2.0 and 4.0 (passed stages only)
    assert "verified" in data["stage_medians_seconds"]  # only e1000's verified passed
    assert data["stage_medians_seconds"]["verified"] == 2.0
    assert data["stage_medians_seconds_by_size"]["1"]["rom"] == 3.0
    assert data["complete"] is True
    assert data["summary"]["cells"] == {"FAIL": 1, "PASS": 1, "SKIP": 1, "NOT_EMULATED": 1}
    assert data["summary"]["cells_run"] == 2  # not emulated and no-ROM cells are not counted as run
    assert cell["boots"][0]["artifacts"].endswith("/1")


def test_markdown_keeps_not_emulated_and_missing_rom_distinct_and_links_failures(tmp_path: Path) -> None:
    text = matrix_markdown(_results(tmp_path), INFO, tmp_path)
    row = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert "not emulated" in row["tg3"]
    assert "no ROM in set" in row["ne2k_pci"]
    assert "[FAIL@verified](rtl8139-tftp-debian-pyatftpd/1/)" in row["rtl8139"]
    assert "[PASS " in row["e1000"]
    assert "confirmed" in text and "abc123" not in row["tg3"]
    assert "1 FAIL" in text


def test_junit_counts_failures_errors_and_skips(tmp_path: Path) -> None:
    paths = write_reports(_results(tmp_path), INFO, tmp_path / "out")
    suite = ET.parse(paths["junit"]).getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == (
        "4", "1", "0", "2",
    )  # fmt: skip
    failing = [c for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failing[0].get("name") == "rtl8139/tftp/debian/pyatftpd"
    assert json.loads(paths["json"].read_text())["schema"] == 3
    assert (tmp_path / "out" / "matrix.html").read_text().count("<tr>") >= 4


def test_lab_errors_mark_the_matrix_incomplete(tmp_path: Path) -> None:
    key = CellKey("e1000", "debian")
    data = matrix_json([CellResult(key, Status.ERROR, "dnsmasq died")], INFO)
    assert data["complete"] is False


def test_html_links_each_multicast_cell_and_train_to_its_timeline(tmp_path: Path) -> None:
    from lab.report.html import matrix_html

    key = CellKey("e1000", "debian", protocol="mtftp")
    boot = _boot(key, 1, Status.PASS, tmp_path)
    boot.evidence.files["timeline"] = boot.directory / "timeline.png"
    data = matrix_json([CellResult(key, Status.PASS, "", [boot])], INFO, out_dir=tmp_path)
    data["trains"] = [
        {
            "column": "mtftp/debian/pyatftpd/train4", "artifacts": "t", "status": "PASS",
            "outcome": "multicast", "group_bytes": 1, "group_ratio": 1.0, "checks": [], "vms": [],
            "timelines": ["t/timeline.png"],
        }
    ]  # fmt: skip
    page = matrix_html(data)
    assert f'href="{key.slug}/1/index.html">PASS' in page  # the boot folder's index lists its picture
    assert 'href="t/timeline.png">timeline.png</a>' in page


def test_the_four_reports_print_the_same_counts(tmp_path: Path) -> None:
    """md, json, html and JUnit are read by different people: one count for each, everywhere."""
    import html

    paths = write_reports(_results(tmp_path), INFO, tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    line = data["summary"]["text"]
    assert "4 cells: 2 ran (1 FAIL, 1 PASS)" in line, line
    assert line in paths["md"].read_text()
    assert f'id="summary">{html.escape(line)}</p>' in paths["html"].read_text()
    suite = ET.parse(paths["junit"]).getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    assert {p.get("name"): p.get("value") for p in suite.iter("property")}["summary"] == line
    cells = data["summary"]["cells"]
    assert int(suite.get("failures", 0)) == cells["FAIL"]
    assert int(suite.get("skipped", 0)) == cells["SKIP"] + cells["NOT_EMULATED"]
