"""The full-boot train's verdicts and report column, from console text and events alone (no VM)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lab.judge.fullboot import FullBootVm, full_boot_evidence, judge_full_boot, session_figures
from lab.model.jsonable import to_json
from lab.model.results import TrainResult, TrainVm
from lab.model.status import Status
from lab.model.train_plan import TrainPlan
from lab.report.markdown import matrix_markdown
from lab.report.matrix_json import matrix_json
from lab.report.summary import full_boot_of
from lab.run.fullboot import _watch
from tests.lab_unit.test_report import INFO

HASH = "e" * 64


class _Payload:
    marker = "FULLBOOT OK"
    carried_sha256 = HASH


class _Console:
    def __init__(self, text: str) -> None:
        self.text = text

    def expect(self, success: str, failures: list[str], timeout: float, consume: bool = True) -> Any:
        import re

        from lab.infra.console import Match

        patterns = [(success, False), *[(x, True) for x in failures]]
        hits = [(m, f) for rx, f in patterns if (m := re.search(rx, self.text))]
        if not hits:
            raise TimeoutError()
        m, failed = min(hits, key=lambda h: h[0].start())
        return Match(m.re.pattern, m.group(0), {}, failed, 0.0)


class _Machine:
    def __init__(self, text: str) -> None:
        self.console = _Console(text)
        self.started = 0.0


def _verdict(text: str, protocol: str = "mtftp") -> FullBootVm:
    vm = FullBootVm("e1000", "192.0.2.11", "tap0", Path("."), 0.0)
    _watch(_Machine(text), vm, _Payload(), timeout=1.0, protocol=protocol)  # type: ignore[arg-type]
    return vm


FETCHED = (
    "LAB fetch-start\nmtftp://192.0.2.1/vmlinuz... ok\nmtftp://192.0.2.1/initrd.gz... ok\n"
    "LAB fetched\nLAB booting\n"
)


def test_marker_with_the_carried_hash_is_a_boot() -> None:
    vm = _verdict(FETCHED + f"FULLBOOT OK sha256={HASH} kernel=6.1.0-56-amd64\n")
    assert (vm.status, vm.outcome) == (Status.PASS, "booted")


def test_ok_files_that_do_not_unpack_are_ok_but_corrupt() -> None:
    """What the lab saw when a VM took kernel blocks into its initrd (docs/multicast.md)."""
    vm = _verdict(
        FETCHED + "[ 2.5] Initramfs unpacking failed: uncompression error\n[ 4.0] Kernel panic - x\n"
    )
    assert (vm.status, vm.outcome) == (Status.FAIL, "ok-but-corrupt")
    assert "could not unpack" in vm.detail


def test_a_fetch_error_and_a_wrong_hash_and_silence_fail_with_what_was_seen() -> None:
    failed = _verdict(
        "LAB fetch-start\nmtftp://192.0.2.1/initrd.gz... Connection timed out (http://ipxe.org/4c126035)\n"
        "LAB fetch-failed\n"
    )
    assert (failed.status, failed.outcome) == (Status.FAIL, "failed")
    assert "ipxe.org/4c126035" in failed.detail
    wrong = _verdict(FETCHED + f"FULLBOOT OK sha256={'0' * 64} kernel=x\n")
    assert (wrong.status, wrong.outcome) == (Status.FAIL, "wrong-hash")
    stuck = _verdict("LAB fetch-start\nmtftp://192.0.2.1/vmlinuz...  0%")
    assert stuck.status is Status.FAIL and "stuck fetching" in stuck.detail


def _train(boots: list[FullBootVm], late_blocks: list[int]) -> TrainResult:
    plan = TrainPlan("mtftp", "pyatftpd", "debian", 0, full_boot=True)
    vms = []
    for index, (boot, blocks) in enumerate(zip(boots, late_blocks, strict=True)):
        vm = TrainVm(boot.nic, boot.ip, boot.directory, full_boot_evidence(boot), 0.5 * index)
        vm.heard_before_asking, vm.transfer = blocks, (float(index), 100.0)
        vms.append(vm)
    return TrainResult(plan, Status.MISS, "", Path("fb"), vms, group_bytes=100, group_ratio=1.0)


def _events(ips: list[str]) -> list[dict[str, Any]]:
    return [
        {"event": "request", "file": f, "client": f"{ip}:1"} for ip in ips for f in ("vmlinuz", "initrd.gz")
    ]


def test_full_boot_passes_only_when_every_vm_booted_and_late_ones_shared_the_stream() -> None:
    boots = [
        FullBootVm(n, f"192.0.2.1{i}", f"tap{i}", Path("."), 0.0, Status.PASS, "booted")
        for i, n in enumerate("abcd")
    ]
    train = _train(boots, [0, 10, 10, 10])
    judge_full_boot(train, boots, _events([b.ip for b in boots]), 100)
    assert train.status is Status.PASS and train.outcome == "booted", train.reason
    boots[2].status, boots[2].outcome = Status.FAIL, "ok-but-corrupt"
    train = _train(boots, [0, 10, 10, 10])
    judge_full_boot(train, boots, _events([b.ip for b in boots]), 100)
    assert (train.status, train.outcome) == (Status.FAIL, "ok-but-corrupt")
    boots[2].status, boots[2].outcome = Status.PASS, "booted"
    train = _train(boots, [0, 10, 0, 10])  # one late VM took nothing from the stream
    judge_full_boot(train, boots, _events([b.ip for b in boots]), 100)
    assert train.status is Status.FAIL and "late VMs" in train.reason


def test_a_vm_the_lab_could_not_start_is_an_error_not_a_driver_failure() -> None:
    boots = [FullBootVm("e1000", "192.0.2.11", "tap0", Path("."), 0.0, Status.ERROR, "error", "no ROM")]
    train = _train(boots, [0])
    judge_full_boot(train, boots, [], 100)
    assert train.status is Status.ERROR


def test_session_figures_keep_the_last_end_per_file() -> None:
    events = [
        {"event": "mcast_session_end", "file": "vmlinuz", "group_ratio": 1.5, "done": 1, "clients": 2},
        {"event": "mcast_session_end", "file": "vmlinuz", "group_ratio": 1.0, "done": 4, "clients": 4},
        {"event": "mcast_session_end", "file": "initrd.gz", "group_ratio": 1.0, "done": 4, "clients": 4},
    ]
    figures = session_figures(events)
    assert figures["vmlinuz"]["group_ratio"] == 1.0 and set(figures) == {"vmlinuz", "initrd.gz"}


def test_session_figures_of_pyslamd_come_from_its_idle_counters() -> None:
    events = [
        {"event": "transaction", "file": "/srv/vmlinuz", "bytes": 1000},
        {"event": "idle", "file": "/srv/vmlinuz", "data_bytes": 1064, "passes": 1, "repairs": 30},
    ]
    assert session_figures(events)["vmlinuz"]["group_ratio"] == 1.064


def test_each_train_row_links_its_full_boot(tmp_path: Path) -> None:
    plain = TrainResult(TrainPlan("mtftp", "pyatftpd", "debian", 1), Status.PASS, "multicast", tmp_path / "t")
    other = TrainResult(
        TrainPlan("mtftp", "atftpd", "debian", 1), Status.FAIL, "ok-but-corrupt", tmp_path / "a"
    )
    full_plan = TrainPlan("mtftp", "pyatftpd", "debian", 1, full_boot=True)
    full = TrainResult(full_plan, Status.PASS, "booted", tmp_path / "f")
    lossy_plan = TrainPlan("mtftp", "pyatftpd", "debian", 1, loss_percent=5)
    lossy = TrainResult(lossy_plan, Status.PASS, "multicast", tmp_path / "l")
    legacy_plan = TrainPlan("mtftp", "pyatftpd", "debian", 1, label="legacy")
    legacy = TrainResult(legacy_plan, Status.PASS, "multicast", tmp_path / "g")
    trains = [plain, other, full]
    assert full_boot_of(plain, trains) is full and full_boot_of(other, trains) is None
    assert full_boot_of(lossy, [*trains, lossy]) is None, "a lossy train boots other VMs: no full boot"
    assert full_boot_of(legacy, [*trains, legacy]) is None
    text = matrix_markdown([], INFO, tmp_path, trains)
    assert "| mtftp/debian/pyatftpd/train4 | PASS | multicast | — | [PASS (booted)](f/) |" in text
    assert "| mtftp/debian/atftpd/train4 | FAIL | ok-but-corrupt | — | not run |" in text
    data = matrix_json([], INFO, trains)
    assert [t["full_boot_train"] for t in data["trains"]] == [full.plan.column, None, full.plan.column]


DEBIAN_BANNER = (
    "iPXE 1.0.0+git-20190125.36a4c85-5.1 -- Open Source Network Boot Firmware -- http://ipxe.org\n"
    "Features: DNS HTTP iSCSI NFS TFTP AoE ELF MBOOT PXE bzImage Menu PXEXT\n"
)


def test_a_full_boot_by_a_protocol_the_rom_lacks_is_unsupported_not_failed() -> None:
    failing = (
        DEBIAN_BANNER + "LAB fetch-start\nx-slam://192.0.2.1... Operation not supported\nLAB fetch-failed\n"
    )
    vm = _verdict(failing, protocol="x-slam")
    assert (vm.status, vm.outcome) == (Status.UNSUPPORTED, "unsupported")
    assert "no SLAM" in vm.detail
    assert _verdict(failing, protocol="mtftp").status is Status.FAIL  # TFTP is there: a real failure
    train = _train([vm, _verdict(failing, protocol="x-slam")], [0, 0])
    judge_full_boot(train, [vm, vm], [], 100)
    assert (train.status, train.outcome) == (Status.UNSUPPORTED, "unsupported")


def test_a_full_boot_that_all_fell_back_to_unicast_passes_and_says_so() -> None:
    """Debian's ROMs cannot hear an RFC 2090 group: pyatftpd serves each VM by unicast after
    ``multicast_not_received``; nobody shares a stream, and the train says why."""
    boots = [_verdict(FETCHED + f"FULLBOOT OK sha256={HASH} kernel=x\n") for _ in range(2)]
    boots[1].ip = "192.0.2.12"
    train = _train(boots, [0, 0])
    fallback = [{"event": "multicast_not_received", "client": f"{b.ip}:2000"} for b in boots]
    judge_full_boot(train, boots, _events([b.ip for b in boots]) + fallback, 100)
    assert (train.status, train.outcome) == (Status.PASS, "unicast-fallback")
    late = next(c for c in train.checks if c.name.startswith("late VMs"))
    assert late.ok is None and "multicast_not_received" in late.detail
    train = _train(boots, [0, 0])
    judge_full_boot(train, boots, _events([b.ip for b in boots]) + fallback[:1], 100)
    assert train.status is Status.FAIL  # one VM on the group took nothing from the stream


def test_a_full_boot_vm_carries_its_tap_counters_into_its_evidence(tmp_path: Path) -> None:
    vm = FullBootVm("rtl8139", "192.0.2.101", "tap1", tmp_path, 0.5, Status.PASS, "booted")
    vm.tap_counters = {"tx_packets": 9000, "tx_dropped": 3}
    evidence = full_boot_evidence(vm)
    assert evidence.tap == {"tx_packets": 9000, "tx_dropped": 3}
    assert to_json(evidence)["tap"]["tx_dropped"] == 3
