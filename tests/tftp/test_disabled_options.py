"""``--no-tsize`` and friends stop a live server from acknowledging those options (both servers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tftp.peers import RunningServer, atftpd_problem, raw_fetch, start_server


@pytest.fixture(scope="module", params=["pyatftpd", "atftpd"])
def restricted(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    if request.param == "atftpd" and (problem := atftpd_problem()):
        pytest.skip(problem)
    root = tmp_path_factory.mktemp("noopts")
    (root / "f").write_bytes(bytes(range(256)) * 10)
    server = start_server(request.param, root, extra=["--no-tsize", "--no-windowsize"])
    yield server
    server.stop()


def test_disabled_options_are_left_out_of_the_oack(restricted: RunningServer) -> None:
    data, oack = raw_fetch(
        restricted.address, "f", options=[("tsize", "0"), ("blksize", "1024"), ("windowsize", "4")]
    )
    assert oack == {"blksize": "1024"}
    assert data == (restricted.root / "f").read_bytes()


def test_only_disabled_options_means_no_oack_at_all(restricted: RunningServer) -> None:
    data, oack = raw_fetch(restricted.address, "f", options=[("tsize", "0")])
    assert oack == {}
    assert data == (restricted.root / "f").read_bytes()


def test_unknown_options_are_ignored(restricted: RunningServer, tmp_path: Path) -> None:
    del tmp_path
    data, oack = raw_fetch(restricted.address, "f", options=[("frobnicate", "yes"), ("blksize", "600")])
    assert oack == {"blksize": "600"}
    assert data == (restricted.root / "f").read_bytes()
