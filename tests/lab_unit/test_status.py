import itertools

import pytest

from lab.model.errors import DriverFailure, LabError, LabUnavailable, StageTimeout
from lab.model.status import Status, combine

KCIDB_ORDER = [Status.FAIL, Status.ERROR, Status.MISS, Status.PASS]


@pytest.mark.parametrize("worse,better", list(itertools.combinations(KCIDB_ORDER, 2)))
def test_worse_status_wins_in_either_order(worse: Status, better: Status) -> None:
    assert combine([worse, better]) is worse
    assert combine([better, worse]) is worse


def test_every_pair_combines_to_its_worst_member() -> None:
    for a, b in itertools.product(Status, repeat=2):
        assert combine([a, b]) is min((a, b), key=lambda s: s.priority)


def test_a_run_outranks_not_applicable_facts() -> None:
    for fact in (Status.SKIP, Status.UNSUPPORTED, Status.NOT_EMULATED):
        assert combine([fact, Status.PASS]) is Status.PASS


def test_nothing_to_combine_is_skip() -> None:
    assert combine([]) is Status.SKIP


def test_driver_failure_and_lab_error_map_to_different_statuses() -> None:
    assert StageTimeout("payload", 5, ["x"]).status is Status.FAIL
    assert DriverFailure("dhcp", "no lease").status is Status.FAIL
    assert LabError("qemu would not start").status is Status.ERROR
    assert LabUnavailable("no tun").status is Status.MISS
    assert not issubclass(LabError, AssertionError)


def test_stage_timeout_names_the_stage_and_shows_the_console_tail() -> None:
    exc = StageTimeout("dhcp", 60, ["Configuring (net0 52:54:00:1a:00:00)......", "last line"])
    assert "stage 'dhcp'" in str(exc)
    assert "last line" in str(exc)
    assert "60 s" in str(exc)
