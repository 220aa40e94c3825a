"""The regression gate, sharding, merging and diffs, on results made up in the test (no VMs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.judge.expectations import (
    EXPECTED,
    LAB_BROKE,
    NEW,
    REGRESSION,
    UNEXPECTED_PASS,
    Expectation,
    Expectations,
    ExpectationsError,
    gate,
    load_expectations,
)
from lab.model.matrix_plan import MatrixRequest, plan_matrix, select_rows
from lab.model.plan import BootPlan, CellKey
from lab.model.results import BootEvidence, BootOutcome, CellResult, Delivery, RunInfo, TrainResult
from lab.model.status import Status
from lab.model.train_plan import TRAIN_NICS, TrainPlan
from lab.report import write_reports
from lab.report.diff import diff
from lab.report.matrix_json import read_matrix
from lab.report.merge import MergeError, merge_runs
from roms.romset import RomSet

REPO = Path(__file__).resolve().parents[2]
DEBIAN = REPO / "lab" / "expectations" / "debian.toml"


def _book(*entries: Expectation, trains: tuple[Expectation, ...] = ()) -> Expectations:
    return Expectations(Path("x.toml"), list(entries), list(trains))


def test_each_kind_of_verdict_and_its_exit_status() -> None:
    book = _book(
        Expectation(("*/mtftp/*",), (Status.PASS,), ("multicast",)),
        Expectation(("*/tftm/*/atftpd",), (Status.FAIL,), ("failed",), "known"),
        Expectation(("*/x-slam/*",), (Status.UNSUPPORTED,), (), "no SLAM"),
    )
    judged = gate(
        book,
        [
            ("e1000/mtftp/debian/pyatftpd", Status.PASS, "multicast"),
            ("rtl8139/mtftp/debian/pyatftpd", Status.PASS, "unicast-fallback"),
            ("pcnet/mtftp/debian/pyatftpd", Status.FAIL, "failed"),
            ("e1000/tftm/debian/atftpd", Status.PASS, "multicast"),
            ("e1000/x-slam/up/pyslamd", Status.PASS, "multicast"),
            ("e1000/tftp/debian/pyatftpd", Status.FAIL, "failed"),
            ("e1000/tftp/other/pyatftpd", Status.PASS, "unicast"),
        ],
        [],
    )
    verdicts = [j.verdict for j in judged.judgements]
    assert verdicts == [EXPECTED, REGRESSION, REGRESSION, UNEXPECTED_PASS, UNEXPECTED_PASS, NEW, NEW]
    assert [j.fails_gate for j in judged.judgements] == [False, True, True, True, True, True, False]
    assert judged.exit_status() == 1
    assert gate(book, [("e1000/mtftp/debian/pyatftpd", Status.PASS, "multicast")], []).exit_status() == 0
    broke = gate(book, [("e1000/mtftp/debian/pyatftpd", Status.ERROR, "error")], [])
    assert broke.judgements[0].verdict == LAB_BROKE and broke.exit_status() == 2


def test_without_expectations_any_fail_fails_and_a_broken_lab_is_2() -> None:
    assert gate(None, [("a/tftp/x/y", Status.PASS, "unicast")], []).exit_status() == 0
    assert gate(None, [("a/tftp/x/y", Status.FAIL, "failed")], []).exit_status() == 1
    assert gate(None, [], [("t/x/y/train4", Status.MISS, "miss")]).exit_status() == 2


def test_an_entry_that_allows_a_failure_must_say_why(tmp_path: Path) -> None:
    bad = tmp_path / "e.toml"
    bad.write_text('[[cell]]\nmatch = "*"\nstatus = ["FAIL"]\n')
    with pytest.raises(ExpectationsError, match="needs a reason"):
        load_expectations(bad)
    bad.write_text('[[train]]\nmatch = "*"\nstatus = ["MAYBE"]\nreason = "x"\n')
    with pytest.raises(ExpectationsError, match="statuses are FAIL"):
        load_expectations(bad)


def test_debians_expectations_cover_every_cell_and_train_of_the_default_matrix() -> None:
    """A cell with no entry would be "new" on every run: the committed file must name them all."""
    book = load_expectations(DEBIAN)
    sets = [RomSet.debian()]
    request = MatrixRequest(
        nics=tuple(select_rows("default", sets)), servers=("pyatftpd", "atftpd"), sizes=(1, 4296, 5242880),
        querier_protocols=("mtftp",), trains=("mtftp", "tftm", "x-slam"), train_nics=TRAIN_NICS,
        loss_percent=5, legacy_train=True,
    )  # fmt: skip
    plan = plan_matrix(request, sets)
    assert len(plan.trains) == 8
    uncovered = [
        cell for cell in plan.ids if book.entry("cell", cell) is None and book.entry("train", cell) is None
    ]
    assert uncovered == []


def test_shards_cover_the_plan_once_keep_trains_whole_and_do_not_depend_on_the_machine() -> None:
    sets = [RomSet.debian()]
    nics = tuple(select_rows("default", sets))
    request = MatrixRequest(nics, sizes=(1, 4296), trains=("mtftp", "tftm"), train_nics=TRAIN_NICS,
                            loss_percent=5)
    plan = plan_matrix(request, sets)
    shards = [plan.shard(k, 3) for k in (1, 2, 3)]
    ids = [i for shard in shards for i in shard.ids]
    assert sorted(ids) == sorted(plan.ids) and len(ids) == len(set(ids))
    assert [s.ids for s in shards] == [plan.shard(k, 3).ids for k in (1, 2, 3)]
    assert all(shard.boots() > 0 for shard in shards)
    with pytest.raises(ValueError, match="between 1 and N"):
        plan.shard(4, 3)


def test_only_picks_cells_and_trains_by_glob() -> None:
    sets = [RomSet.debian()]
    plan = plan_matrix(
        MatrixRequest(nics=("e1000", "rtl8139"), trains=("mtftp",), train_nics=("e1000",)), sets
    )
    picked = plan.select(("e1000/mtftp/*", "mtftp/debian/pyatftpd/train1"))
    assert picked.ids == ["e1000/mtftp/debian/pyatftpd", "mtftp/debian/pyatftpd/train1"]
    assert plan.fingerprint() != picked.fingerprint()


def _cell(nic: str, protocol: str, status: Status, outcome: str, folder: Path) -> CellResult:
    key = CellKey(nic, "debian", protocol)
    evidence = BootEvidence(status=status, delivery=Delivery(outcome))
    where = folder / "boots" / key.slug
    where.mkdir(parents=True, exist_ok=True)
    return CellResult(key, status, "", [BootOutcome(BootPlan(key, 1, 1), evidence, where)])


def _run(
    folder: Path, cells: list[CellResult], trains: list[TrainResult], shard: str, plan: list[str]
) -> Path:
    info = RunInfo("R", "2026-12-06T00:00:00+00:00", 1.0, 2, "tcg", "QEMU 7.2", "abc", {"debian": "/x"},
                   {"shard": shard, "plan": {"fingerprint": "fp", "cells": plan, "trains": []}})  # fmt: skip
    write_reports(cells, info, folder, trains)
    return folder


def test_two_shards_merge_into_the_unsharded_matrix_and_mismatches_are_refused(tmp_path: Path) -> None:
    plan = ["e1000/tftp/debian/pyatftpd", "rtl8139/mtftp/debian/pyatftpd"]
    one = _run(
        tmp_path / "s1", [_cell("e1000", "tftp", Status.PASS, "unicast", tmp_path / "s1")], [], "1/2", plan
    )
    two = _run(
        tmp_path / "s2", [_cell("rtl8139", "mtftp", Status.FAIL, "failed", tmp_path / "s2")], [], "2/2", plan
    )
    merged = merge_runs([one, two], tmp_path / "merged")
    assert [(c.key.nic, c.status) for c in merged.cells] == [("e1000", Status.PASS), ("rtl8139", Status.FAIL)]
    assert (tmp_path / "merged" / "shards" / "2" / "matrix.json").is_file()
    assert str(merged.cells[1].boots[0].directory).startswith(str(tmp_path / "merged" / "shards" / "2"))
    with pytest.raises(MergeError, match=r"need shards 1..2 once each, got \[1\]"):
        merge_runs([one], tmp_path / "m2")
    other = json.loads((two / "matrix.json").read_text())
    other["run"]["commit"] = "def"
    (two / "matrix.json").write_text(json.dumps(other))
    with pytest.raises(MergeError, match="commit 'def' differs"):
        merge_runs([one, two], tmp_path / "m3")


def test_diff_names_regressions_fixes_outcomes_and_moved_train_figures(tmp_path: Path) -> None:
    plan = TrainPlan("mtftp", "pyatftpd", "debian", 1)
    old_trains = [TrainResult(plan, Status.PASS, "multicast", tmp_path / "t", group_ratio=1.05, seconds=100)]
    new_trains = [TrainResult(plan, Status.PASS, "multicast", tmp_path / "t", group_ratio=1.25, seconds=100)]
    before = [("e1000", "mtftp", Status.PASS, "multicast"), ("pcnet", "tftm", Status.FAIL, "failed"),
              ("rtl8139", "x-slam", Status.UNSUPPORTED, "unsupported")]  # fmt: skip
    old = _run(tmp_path / "old", [_cell(*c, tmp_path / "old") for c in before], old_trains, "1/1", [])
    after = [("e1000", "mtftp", Status.FAIL, "failed"), ("pcnet", "tftm", Status.PASS, "unicast-fallback"),
             ("rtl8139", "x-slam", Status.SKIP, "skip")]  # fmt: skip
    new = _run(tmp_path / "new", [_cell(*c, tmp_path / "new") for c in after], new_trains, "1/1", [])
    result = diff(read_matrix(old), read_matrix(new))
    assert [c.name for c in result.of("regression")] == ["e1000/mtftp/debian/pyatftpd"]
    assert [c.name for c in result.of("fix")] == ["pcnet/tftm/debian/pyatftpd"]
    assert [c.name for c in result.of("outcome")] == ["rtl8139/x-slam/debian/pyatftpd"]
    (figures,) = result.of("figures")
    assert "1.050 -> 1.250" in figures.detail
    assert result.was_text()["e1000/mtftp/debian/pyatftpd"] == "was PASS multicast"


def test_matrix_json_paths_are_relative_so_a_run_folder_can_move(tmp_path: Path) -> None:
    folder = _run(
        tmp_path / "run", [_cell("e1000", "tftp", Status.PASS, "unicast", tmp_path / "run")], [], "1/1", []
    )
    data = json.loads((folder / "matrix.json").read_text())
    assert data["cells"][0]["boots"][0]["artifacts"] == "boots/e1000-tftp-debian-pyatftpd"
    moved = tmp_path / "elsewhere"
    folder.rename(moved)
    assert read_matrix(moved).cells[0].boots[0].directory == moved / "boots" / "e1000-tftp-debian-pyatftpd"
    assert str(tmp_path) not in (moved / "matrix.json").read_text() + (moved / "junit.xml").read_text()


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def test_every_written_matrix_validates_against_its_schema_and_holds_no_absolute_path(tmp_path: Path) -> None:
    import jsonschema

    from lab.model.results import TrainCheck, TrainVm

    schema = json.loads((REPO / "docs" / "matrix.schema.json").read_text())
    plan = TrainPlan("mtftp", "pyatftpd", "debian", 1)
    vm = TrainVm("e1000", "192.0.2.100", tmp_path / "run" / "trains" / "t" / "vm0", BootEvidence(Status.PASS),
                 transfer=(1.0, 2.0))  # fmt: skip
    train = TrainResult(plan, Status.PASS, "multicast", tmp_path / "run" / "trains" / "t", [vm],
                        [TrainCheck("c", True, "d")], 10, 1.1, seconds=5.0,
                        timelines=[tmp_path / "run" / "trains" / "t" / "timeline.png"])  # fmt: skip
    cells = [_cell("e1000", "mtftp", Status.PASS, "multicast", tmp_path / "run"),
             CellResult(CellKey("tg3", "debian"), Status.NOT_EMULATED, "QEMU has no tg3")]  # fmt: skip
    cells[0].boots[0].evidence.files["console"] = cells[0].boots[0].directory / "console.log"
    from lab.cli import load_gate
    from lab.judge.expectations import gate_run

    book = load_gate(["auto"], [RomSet.debian()])

    info = RunInfo("R", "2026-12-06T00:00:00+00:00", 1.0, 2, "tcg", "QEMU 7.2", "abc", {"debian": "Debian's"})
    write_reports(cells, info, tmp_path / "run", [train], gate_run(book, cells, [train]))
    data = json.loads((tmp_path / "run" / "matrix.json").read_text())
    jsonschema.validate(data, schema)
    assert [s for s in _strings(data) if s.startswith("/")] == []
    assert data["summary"]["gate"]["expected"] == 3


def _legacy_train(
    tmp_path: Path, failing: tuple[str, ...], other_failed_check: bool = False, defect: str = ""
) -> TrainResult:
    from lab.model.results import TrainCheck, TrainVm
    from lab.model.train_plan import LEGACY_TRAIN_NICS

    plan = TrainPlan("mtftp", "pyatftpd", "debian", 4096, nics=LEGACY_TRAIN_NICS, label="legacy")
    vms = []
    for i, n in enumerate(LEGACY_TRAIN_NICS):
        evidence = BootEvidence(Status.FAIL if n in failing else Status.PASS)
        mine = defect if n in failing else ""
        vms.append(TrainVm(n, f"192.0.2.{100 + i}", tmp_path / f"vm{i}", evidence, defect=mine))
    checks = [TrainCheck("every VM verified the bytes", not failing, "...")]
    checks.append(TrainCheck("group bytes <= 1.2 x payload", not other_failed_check, "1.3 x"))
    status = Status.FAIL if failing or other_failed_check else Status.PASS
    outcome = "failed" if status is Status.FAIL else "multicast"
    return TrainResult(plan, status, outcome, tmp_path, vms, checks)


def test_a_known_broken_drivers_vm_may_fail_a_train_but_hides_nothing_else(tmp_path: Path) -> None:
    """vms_may_fail: the eepro100's own failure is expected; pcnet's, or a train-wide check's, is not."""
    from lab.judge.expectations import gate_run

    known = Expectation(("*-legacy",), (Status.PASS,), ("multicast",), "eepro100 writes to 0", ("eepro100",))
    book = _book(trains=(known,))
    verdict = {
        what: gate_run(book, [], [train]).judgements[0].verdict
        for what, train in (
            ("eepro100", _legacy_train(tmp_path, ("eepro100",))),
            ("none", _legacy_train(tmp_path, ())),
            ("pcnet", _legacy_train(tmp_path, ("pcnet",))),
            ("eepro100+pcnet", _legacy_train(tmp_path, ("eepro100", "pcnet"))),
            ("eepro100+ratio", _legacy_train(tmp_path, ("eepro100",), other_failed_check=True)),
        )
    }
    assert verdict == {"eepro100": EXPECTED, "none": EXPECTED, "pcnet": REGRESSION,
                       "eepro100+pcnet": REGRESSION, "eepro100+ratio": REGRESSION}  # fmt: skip


def test_vms_may_fail_is_for_trains_and_needs_a_reason(tmp_path: Path) -> None:
    bad_kind = tmp_path / "a.toml"
    bad_kind.write_text('[[cell]]\nmatch = "*"\nstatus = ["PASS"]\nvms_may_fail = ["e100"]\nreason = "r"\n')
    with pytest.raises(ExpectationsError, match="for \\[\\[train\\]\\] entries only"):
        load_expectations(bad_kind)
    no_reason = tmp_path / "b.toml"
    no_reason.write_text('[[train]]\nmatch = "*"\nstatus = ["PASS"]\nvms_may_fail = ["eepro100"]\n')
    with pytest.raises(ExpectationsError, match="needs a reason"):
        load_expectations(no_reason)


def test_a_vm_whose_evidence_proves_a_known_defect_may_fail_a_train(tmp_path: Path) -> None:
    """iPXE's unknown MTFTP listener (its fallback refused, no MTFTP request of it reached the bridge):
    excused by defects_may_fail, on any NIC; the same NIC failing without that proof is not."""
    from lab.judge.diagnosis import UNKNOWN_LISTENER
    from lab.judge.expectations import gate_run

    known = Expectation(("*-legacy",), (Status.PASS,), ("multicast",), "iPXE's races", ("eepro100",),
                        (UNKNOWN_LISTENER,))  # fmt: skip
    book = _book(trains=(known,))
    proven = _legacy_train(tmp_path, ("ne2k_pci",), defect=UNKNOWN_LISTENER)
    unproven = _legacy_train(tmp_path, ("ne2k_pci",))
    assert gate_run(book, [], [proven]).judgements[0].verdict == EXPECTED
    assert gate_run(book, [], [unproven]).judgements[0].verdict == REGRESSION


def test_a_full_boot_vm_proven_to_carry_a_known_defect_may_fail_and_nothing_else(tmp_path: Path) -> None:
    """A full boot's every-VM check is "booted", not "verified": a VM whose tap proves iPXE's
    stale MTFTP reopen is excused there too; the same VM unproven, or a corrupt boot, is not."""
    from lab.judge.expectations import gate_run
    from lab.judge.stale_reopen import STALE_REOPEN
    from lab.judge.train import BOOT_CORRUPT_CHECK, EVERY_VM_BOOTED_CHECK
    from lab.model.results import TrainCheck, TrainVm

    entry = Expectation(("*-fullboot",), (Status.PASS,), ("booted",), "iPXE's stale reopen",
                        defects_may_fail=(STALE_REOPEN,))  # fmt: skip
    book = _book(trains=(entry,))

    def train(defect: str, *failed: str) -> TrainResult:
        plan = TrainPlan("mtftp", "pyatftpd", "debian", 0, full_boot=True)
        vms = [TrainVm("e1000", "192.0.2.100", tmp_path / "vm0", BootEvidence(Status.FAIL), defect=defect),
               TrainVm("rtl8139", "192.0.2.101", tmp_path / "vm1", BootEvidence(Status.PASS))]  # fmt: skip
        names = (EVERY_VM_BOOTED_CHECK, BOOT_CORRUPT_CHECK)
        checks = [TrainCheck(name, name not in failed, "") for name in names]
        return TrainResult(plan, Status.FAIL, "failed", tmp_path, vms, checks)

    assert gate_run(book, [], [train(STALE_REOPEN, EVERY_VM_BOOTED_CHECK)]).judgements[0].verdict == EXPECTED
    assert gate_run(book, [], [train("", EVERY_VM_BOOTED_CHECK)]).judgements[0].verdict == REGRESSION
    corrupt = train(STALE_REOPEN, EVERY_VM_BOOTED_CHECK, BOOT_CORRUPT_CHECK)
    assert gate_run(book, [], [corrupt]).judgements[0].verdict == REGRESSION


def test_the_unknown_listener_needs_the_refusal_and_a_silent_tap() -> None:
    from lab.judge.diagnosis import UNKNOWN_LISTENER, known_defect

    refusal = {"event": "mtftp_stale_fallback", "client": "192.0.2.102:42156", "quiet_seconds": 0.248,
               "reason": "plain TFTP request 0.25 s after the MTFTP group stream stopped, from a client the "
               "session never heard: an iPXE listener's fallback"}  # fmt: skip
    assert known_defect([refusal], "192.0.2.102", mtftp_request_reached_bridge=False) == UNKNOWN_LISTENER
    assert known_defect([refusal], "192.0.2.102", mtftp_request_reached_bridge=True) == ""  # server lost it
    assert known_defect([refusal], "192.0.2.103", mtftp_request_reached_bridge=False) == ""


def test_checks_may_fail_excuses_only_the_named_efficiency_checks(tmp_path: Path) -> None:
    """A tftm train whose every VM verified but whose stream was re-sent: known, named, not
    fine; a VM that did not verify is still a regression, and the entry cannot say otherwise."""
    from lab.judge.expectations import gate_run
    from lab.model.results import TrainCheck

    ratio, stream = "group bytes <= 1.2 x payload", "late VMs took blocks from the running stream"
    entry = Expectation(("tftm/*",), (Status.PASS,), ("multicast",), "overflow",
                        checks_may_fail=(ratio, stream))  # fmt: skip
    book = _book(trains=(entry,))

    def train(*failed: str) -> TrainResult:
        plan = TrainPlan("tftm", "pyatftpd", "upstream-fix", 4096)
        names = ("every VM verified the bytes", stream, ratio)
        checks = [TrainCheck(name, name not in failed, "") for name in names]
        return TrainResult(plan, Status.FAIL if failed else Status.PASS, "failed", tmp_path, [], checks)

    assert gate_run(book, [], [train(ratio)]).judgements[0].verdict == EXPECTED
    assert gate_run(book, [], [train(ratio, stream)]).judgements[0].verdict == EXPECTED
    unverified = train(ratio, "every VM verified the bytes")
    assert gate_run(book, [], [unverified]).judgements[0].verdict == REGRESSION
    assert gate_run(_book(trains=(Expectation(("tftm/*",), (Status.PASS,), ("multicast",)),)), [],
                    [train(ratio)]).judgements[0].verdict == REGRESSION  # fmt: skip
    bad = tmp_path / "bad.toml"
    bad.write_text('[[train]]\nmatch = "x"\nstatus = ["PASS"]\nreason = "r"\n'
                   'checks_may_fail = ["every VM verified the bytes"]\n')  # fmt: skip
    with pytest.raises(ExpectationsError, match="checks_may_fail cannot name"):
        load_expectations(bad)
