"""Fixtures for the loopback integration tests: a served directory and both servers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tftp.peers import RunningServer, atftpd_problem, start_server

#: name -> size.  "mult" sizes are exact multiples of the blksize used with them.
SMALL_FILES = {
    "size0": 0,
    "size1": 1,
    "size511": 511,
    "size512": 512,
    "size513": 513,
    "mult512": 512 * 8,
    "mult1428": 1428 * 3,
}
BIG_FILE = ("big40m", 40 * 1024 * 1024)
TEXT = b"first line\nsecond line\r\nbare\rcarriage\n" * 200 + b"no newline at the end"


def _pattern(size: int, seed: int) -> bytes:
    block = os.urandom(4096) if size else b""
    return (block * (size // 4096 + 1))[:size] if size else b""


@pytest.fixture(scope="session")
def served_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tftproot")
    for seed, (name, size) in enumerate(SMALL_FILES.items()):
        (root / name).write_bytes(os.urandom(size))
        del seed
    (root / "conc1m").write_bytes(os.urandom(1 << 20))
    (root / "text.txt").write_bytes(TEXT)
    name, size = BIG_FILE
    (root / name).write_bytes(os.urandom(size))
    (root / "sub").mkdir()
    (root / "sub" / "nested.bin").write_bytes(os.urandom(3000))
    return root


@pytest.fixture(scope="module", params=["pyatftpd", "atftpd"])
def server(
    request: pytest.FixtureRequest,
    served_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningServer]:
    name = request.param
    if name == "atftpd" and (problem := atftpd_problem()):
        pytest.skip(problem)
    logs = tmp_path_factory.mktemp(f"{name}-log")
    running = start_server(name, served_dir, events=logs / "events.jsonl", log=logs / "server.log")
    yield running
    running.stop()
