"""matrix.html in a real browser: what a maintainer must see fits the first 1400x900 screen.

Why Chromium and not string checks: "on the first screen" is layout, and only a browser
knows where a table ends.  The page of a gated run with one regression, 32
expected failures and ten trains is rendered headless; a probe script added to a copy
of the page reports where the summary, the regression's iPXE error line and the trains
table end.  The screenshot stays in the test's folder for a human to look at.
"""

from __future__ import annotations

from pathlib import Path

from lab.judge.expectations import Expectation, Expectations, gate_run
from lab.model.plan import BootPlan, CellKey
from lab.model.results import (
    BootEvidence,
    BootOutcome,
    CellResult,
    Delivery,
    IpxeError,
    PayloadCheck,
    RunInfo,
    StageRecord,
)
from lab.model.status import Status
from lab.report.html import matrix_html
from lab.report.matrix_json import matrix_json
from lab.report.screenshot import screenshot
from tests.report_probe import assert_first_screen, need_chromium, probe_first_screen

ROWS = (
    "e1000",
    "e1000e",
    "rtl8139",
    "pcnet",
    "ne2k_pci",
    "eepro100",
    "virtio-net-pci",
    "vmxnet3",
    "tulip",
    "i82550",
    "i82551",
    "i82557a",
    "i82558b",
    "i82559a",
    "i82559b",
    "i82801",
)
COLUMNS = (
    ("tftp", "pyatftpd"),
    ("tftp", "atftpd"),
    ("tftm", "pyatftpd"),
    ("tftm", "atftpd"),
    ("mtftp", "pyatftpd"),
    ("mtftp", "atftpd"),
    ("x-slam", "pyslamd"),
)
REGRESSION = "rtl8139/mtftp/debian/pyatftpd"
ERROR_LINE = "Connection timed out (https://ipxe.org/4c0a6035)"


def _cell(nic: str, rom_set: str, protocol: str, server: str, status: Status, folder: Path) -> CellResult:
    key = CellKey(nic, rom_set, protocol, server)
    names = ("rom", "dhcp", "script", "kernel", "payload")
    stages = [StageRecord(n, Status.PASS, 1.0, 0.0) for n in names[:-1]]
    stages.append(
        StageRecord("payload", status, 30.0, 0.0, message="failure pattern seen: 'LAB fetch-failed'")
    )
    evidence = BootEvidence(stages=stages, payloads=[PayloadCheck(1 << 20, "a" * 64)])
    evidence.settle()
    evidence.delivery = Delivery("multicast" if status is Status.PASS else "failed")
    if status is not Status.PASS:
        evidence.ipxe_error = IpxeError(ERROR_LINE, "4c0a6035", "Connection timed out")
    where = folder / "boots" / key.slug
    return CellResult(key, status, "", [BootOutcome(BootPlan(key, 1 << 20, 1), evidence, where)])


def _train(column: str, status: str, failed_checks: int) -> dict[str, object]:
    check = (
        "every VM verified the bytes: e1000=FAIL (sent nothing for the last 13 s of the group stream and "
        "left 1 unicast frames to it unanswered (stage payload)), rtl8139=FAIL (listened without sending)"
    )
    return {
        "column": column,
        "artifacts": "trains/" + column.replace("/", "-"),
        "status": status,
        "outcome": "multicast" if status == "PASS" else "failed",
        "group_bytes": 6 << 20,
        "group_ratio": 1.04,
        "seconds": 150.0,
        "checks": [{"name": f"check {i}", "ok": False, "detail": check} for i in range(failed_checks)],
        "vms": [
            {"nic": n, "status": status, "artifacts": "x"}
            for n in ("e1000", "rtl8139", "virtio-net-pci", "vmxnet3")
        ],
        "timelines": ["t/timeline.png"],
    }


def _page(folder: Path) -> str:
    """A gated run as tox -e lab makes it: atftpd's tftm cells of two ROM sets fail as
    expected (32 cells), one cell regressed."""
    cells = []
    for rom_set in ("debian", "upstream"):
        for nic in ROWS:
            for protocol, server in COLUMNS:
                name = f"{nic}/{protocol}/{rom_set}/{server}"
                failing = (protocol, server) == ("tftm", "atftpd") or name == REGRESSION
                status = Status.FAIL if failing else Status.PASS
                cells.append(_cell(nic, rom_set, protocol, server, status, folder))
    book = Expectations(
        Path("lab/expectations/debian.toml"),
        [
            Expectation(
                ("*/tftm/*/atftpd",), (Status.FAIL,), (), "Debian's iPXE never hears an RFC 2090 group"
            ),
            Expectation(("*",), (Status.PASS,), ()),
        ],
    )
    info = RunInfo(
        "RUN",
        "2026-12-06T00:00:00+00:00",
        1036.8,
        2,
        "tcg",
        "QEMU emulator version 7.2.22",
        "abc123",
        {"debian": "Debian's ipxe-qemu package"},
        {"rerun": "lab matrix --expect auto"},
    )
    data = matrix_json(cells, info, out_dir=folder, gate=gate_run(book, cells, []))
    columns = [
        f"{protocol}/{rom_set}/{server}/train4{suffix}"
        for rom_set in ("debian", "upstream")
        for protocol, server, suffix in (
            ("mtftp", "pyatftpd", ""),
            ("mtftp", "atftpd", ""),
            ("tftm", "pyatftpd", ""),
            ("tftm", "atftpd", ""),
            ("x-slam", "pyslamd", ""),
            ("mtftp", "pyatftpd", "/loss5"),
            ("mtftp", "pyatftpd", "-fullboot"),
        )
    ][:10]
    data["trains"] = [
        _train(c, "FAIL" if "/atftpd/" in c else "PASS", 2 if "/atftpd/" in c else 0) for c in columns
    ]
    return matrix_html(data)


def test_summary_regression_error_line_and_trains_fit_the_first_screen(tmp_path: Path) -> None:
    need_chromium()
    page = _page(tmp_path)
    html = tmp_path / "matrix.html"
    html.write_text(page)
    assert screenshot(html, tmp_path / "matrix.png") is None  # kept for a human to look at
    assert_first_screen(probe_first_screen(html, REGRESSION), ERROR_LINE)
    assert "32 cells did not pass, as the expectations say" in page  # folded, still one click away
