"""Benchmark: pyatftpd vs Debian's atftpd over loopback with curl (``tox -e bench``).

Figures, not asserts: one run interleaves the servers round by round (so machine
load hits both alike) and prints the median MB/s (10^6 bytes/s), the ratio and
the server's CPU seconds (user+system of its whole process group, from
/proc/<pid>/stat).  Pinned rows run server and client on CPU 0 (``taskset -c 0``):
unpinned single transfers are limited by cross-CPU wake-ups (docs/pyatftpd.md,
"Performance notes" and "Before the native lane": ~10 MB/s unpinned, 40-50 MB/s pinned).

``BENCH_ROUNDS`` (default 3) sets the rounds per scenario.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from netboot.tftp.cli import DEFAULT_WORKERS, PYTHON_LANE_WORKERS
from tests.tftp.peers import RunningServer, atftpd_problem, start_server

pytestmark = pytest.mark.bench

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
MIB = 1024 * 1024
OLD_DEFAULT_WORKERS = PYTHON_LANE_WORKERS  # the default for every lane until 2026-12-06


@dataclass(frozen=True)
class Scenario:
    label: str
    file: str
    size: int
    blksize: int
    clients: int = 1
    pinned: bool = False


SCENARIOS = [
    Scenario("64 MiB, blksize 512", "f64m", 64 * MIB, 512),
    Scenario("64 MiB, blksize 1428", "f64m", 64 * MIB, 1428),
    Scenario("64 MiB, blksize 8192", "f64m", 64 * MIB, 8192),
    Scenario("8 x 16 MiB, blksize 1428", "f16m", 16 * MIB, 1428, clients=8),
    Scenario("64 MiB, blksize 1428, pinned", "f64m", 64 * MIB, 1428, pinned=True),
    Scenario("64 MiB, blksize 512, pinned", "f64m", 64 * MIB, 512, pinned=True),
]

#: (column name, server program, extra arguments, environment)
SERVERS: list[tuple[str, str, list[str], dict[str, str]]] = [
    ("atftpd", "atftpd", [], {}),
    (f"pyatftpd -w{DEFAULT_WORKERS}", "pyatftpd", [], {}),  # the default with the C lane
    # the default until 2026-12-06 (two per CPU): what more processes add
    (f"pyatftpd -w{OLD_DEFAULT_WORKERS}", "pyatftpd", ["--workers", str(OLD_DEFAULT_WORKERS)], {}),
    # the Python lane alone (netboot/tftp/native_lane.py), with its default of 2 workers per CPU
    (f"pyatftpd -w{PYTHON_LANE_WORKERS} no C", "pyatftpd", [], {"PYATFTPD_NATIVE": "0"}),
]


@dataclass
class Sample:
    mbps: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bench")
    (root / "f64m").write_bytes(os.urandom(64 * MIB))
    (root / "f16m").write_bytes(os.urandom(16 * MIB))
    return root


def _run_once(server: RunningServer, scenario: Scenario, out_dir: Path) -> tuple[float, float]:
    prefix = ["taskset", "-c", "0"] if scenario.pinned else []
    argv = [*prefix, "curl", "-sS", "--tftp-blksize", str(scenario.blksize)]
    outputs = [out_dir / f"out{n}" for n in range(scenario.clients)]
    cpu_before = server.cpu_seconds()
    started = time.perf_counter()
    procs = [
        subprocess.Popen([*argv, "-o", str(out), f"tftp://127.0.0.1:{server.port}/{scenario.file}"])
        for out in outputs
    ]
    codes = [proc.wait(timeout=600) for proc in procs]
    elapsed = time.perf_counter() - started
    cpu = server.cpu_seconds() - cpu_before
    assert codes == [0] * len(codes), f"curl failed against {server.name}: {codes}"
    assert all(out.stat().st_size == scenario.size for out in outputs), "short download"
    for out in outputs:
        out.unlink()
    return scenario.size * scenario.clients / elapsed / 1e6, cpu


@pytest.fixture(scope="module")
def servers(bench_dir: Path) -> Iterator[dict[tuple[str, bool], RunningServer]]:
    if problem := atftpd_problem():
        pytest.skip(problem)
    if shutil.which("curl") is None:
        pytest.skip("curl is missing; install it with: apt-get install -y curl")
    running: dict[tuple[str, bool], RunningServer] = {}
    try:
        for pinned in (False, True):
            for column, program, extra, env in SERVERS:
                running[(column, pinned)] = start_server(
                    program,
                    bench_dir,
                    extra=["--logfile", "/dev/null", *extra],
                    taskset="0" if pinned else None,
                    env=env,
                )
        yield running
    finally:
        for server in running.values():
            server.stop()


def test_bench_loopback_curl(servers: dict[tuple[str, bool], RunningServer], tmp_path: Path) -> None:
    results: dict[tuple[str, str], Sample] = {}
    for scenario in SCENARIOS:
        for round_index in range(ROUNDS):
            order = SERVERS if round_index % 2 == 0 else list(reversed(SERVERS))
            for column, _, _, _ in order:
                server = servers[(column, scenario.pinned)]
                mbps, cpu = _run_once(server, scenario, tmp_path)
                sample = results.setdefault((scenario.label, column), Sample())
                sample.mbps.append(mbps)
                sample.cpu.append(cpu)
    columns = [column for column, _, _, _ in SERVERS]
    header = f"{'scenario':32} " + " ".join(f"{c + ' MB/s':>22}" for c in columns)
    header += " " + " ".join(f"{'ratio ' + c:>24}" for c in columns[1:])
    header += " " + " ".join(f"{'CPU s ' + c:>24}" for c in columns)
    lines = [
        f"loopback TFTP with curl, median of {ROUNDS} rounds (MB = 10^6 bytes); CPU = server user+sys",
        header,
        "-" * len(header),
    ]
    for scenario in SCENARIOS:
        medians = {c: statistics.median(results[(scenario.label, c)].mbps) for c in columns}
        cpus = {c: statistics.median(results[(scenario.label, c)].cpu) for c in columns}
        row = f"{scenario.label:32} " + " ".join(f"{medians[c]:22.1f}" for c in columns)
        row += " " + " ".join(f"{medians[c] / medians['atftpd']:23.2f}x" for c in columns[1:])
        row += " " + " ".join(f"{cpus[c]:24.2f}" for c in columns)
        lines.append(row)
    table = "\n".join(lines)
    print("\n" + table)
    report = os.environ.get("BENCH_REPORT")
    if report:
        Path(report).write_text(table + "\n")
