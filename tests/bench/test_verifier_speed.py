"""Verifier boot time and SHA-256 speed under TCG (direct multiboot boot, no network).

Prints a table; asserts only that every boot verified (speed is a figure, not a pass mark).
"""

from __future__ import annotations

import hashlib
import resource
import shutil
import statistics
from pathlib import Path

import pytest

from images.payload import make_payload
from images.verifier import build_verifier
from lab.infra.direct_boot import run_direct

pytestmark = [
    pytest.mark.bench,
    pytest.mark.skipif(
        shutil.which("qemu-system-x86_64") is None, reason="fix: apt-get install qemu-system-x86"
    ),
]

SIZES_MIB = (0, 5, 24, 64)
REPEATS = 3


def test_verifier_hash_speed_under_tcg(tmp_path: Path) -> None:
    elf = build_verifier()
    rows = []
    for mib in SIZES_MIB:
        size = max(1, mib * 1024 * 1024)
        data = make_payload(size, 1)
        module = tmp_path / f"m{mib}.bin"
        module.write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        times, cpu = [], []
        for _ in range(REPEATS):
            before = _children_cpu()
            run = run_direct(elf, [module], f"expect={digest} size={size}", memory_mb=256, timeout=300)
            cpu.append(_children_cpu() - before)
            assert run.report.verdict == "PASS" and run.exit_verdict == "PASS", run.console[-1000:]
            times.append(run.seconds)
        rows.append((size, statistics.median(times), statistics.median(cpu)))
    base_wall, base_cpu = rows[0][1], rows[0][2]
    print(f"\nverifier under TCG, median of {REPEATS} boots (QEMU start to exit; CPU = QEMU user+sys):")
    print(f"{'module bytes':>14} {'wall s':>7} {'CPU s':>7} {'MB/s wall':>10} {'MB/s CPU':>9}")
    for size, wall, used in rows:
        rates = f"{_rate(size, wall - base_wall):>10} {_rate(size, used - base_cpu):>9}"
        print(f"{size:>14} {wall:>7.2f} {used:>7.2f} {rates}")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _rate(size: int, seconds: float) -> str:
    return f"{size / seconds / 1e6:.1f}" if size > 1 and seconds > 0 else "-"
