"""Benchmark: what a silent (spoofable) requester costs, and RSS, pyatftpd beside atftpd.

One run, one namespace per server (``tests/tftp/robustness_probe.py`` does the
talking inside it).  Figures, not asserts about speed:

* amplification: UDP payload bytes the server sent (to the requesters and to the
  groups) per byte of request, over ``BENCH_AMP_SECONDS`` (default 50) s:
  one plain RRQ; one 1-byte datagram; 30 silent ``tftm://`` RRQs for one file;
  500 silent MTFTP RRQs;
* the fetch time of a real iPXE-faithful ``tftm://`` client alone, and while 30
  silent requesters wait in its session;
* RSS of the server's processes (sum over its process group) idle, and the peak
  while 200 iPXE-faithful ``tftp://`` clients download at once.

Issue 20's bar: pyatftpd at or below atftpd on every amplification row, and the
real client delayed by under 1 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from lab.infra.namespace import Namespace
from tests.mcast_lab import ATFTPD, REPO, Served, collect_scenario, make_file, segment
from tests.tftp.peers import group_processes

pytestmark = [pytest.mark.bench, pytest.mark.netns]

SECONDS = float(os.environ.get("BENCH_AMP_SECONDS", "50"))
SIZE = 1 << 20


def group_rss_kib(pgid: int) -> int:
    """Resident KiB of every process in process group ``pgid`` (host /proc)."""
    total = 0
    for pid, _ in group_processes(pgid):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total


def probe(ns: Namespace, *args: str, timeout: float) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = ns.popen(
        [sys.executable, "-m", "tests.tftp.robustness_probe", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(REPO), env=env,
    )
    return collect_scenario(proc, timeout)


def _peak_rss(pgid: int, done: threading.Event, peak: list[int]) -> None:
    while not done.is_set():
        peak[0] = max(peak[0], group_rss_kib(pgid))
        time.sleep(0.1)


def measure(kind: str, tmp: Path) -> dict[str, Any]:
    """Each phase in a namespace of its own: a server that outlives its stop (atftpd with
    ``--no-fork`` leaves its process group) dies with its namespace, not in the next phase."""
    root = tmp / "root"
    make_file(root, "boot.img", SIZE)
    make_file(root, "plain.img", SIZE, seed=8)
    conf = tmp / "mtftp.conf"
    conf.write_text("boot.img 239.255.1.1 3001\n")
    extra = ["--mtftp", str(conf), "--mtftp-port", "1759", "--maxthread", "250"]
    figures: dict[str, Any] = {}
    with Namespace() as ns:
        segment(ns)
        server = Served(ns, kind, root, extra, tmp)
        try:
            time.sleep(1.0)
            figures["rss_idle_kib"] = group_rss_kib(server.proc.pid)
            figures["amplification"] = probe(ns, "amplification", "--seconds", str(SECONDS),
                                             timeout=SECONDS + 60)
        finally:
            server.stop()
    with Namespace() as ns:
        segment(ns)
        server = Served(ns, kind, root, extra, tmp)
        try:
            figures["delay"] = probe(ns, "delay", "--seconds", "60", timeout=200)
        finally:
            server.stop()
    with Namespace() as ns:
        segment(ns)
        server = Served(ns, kind, root, extra, tmp)
        peak = [0]
        done = threading.Event()
        sampler = threading.Thread(target=_peak_rss, args=(server.proc.pid, done, peak), daemon=True)
        sampler.start()
        try:
            figures["downloads"] = probe(ns, "downloads", "--count", "200", timeout=300)
        finally:
            done.set()
            sampler.join()
            server.stop()
        figures["rss_peak_kib"] = peak[0]
    return figures


ROWS = (
    ("plain RRQ", "rrq"),
    ("1-byte datagram", "junk"),
    ("30 silent tftm RRQs", "mcast"),
    ("500 silent MTFTP RRQs", "mtftp"),
)


def _row_text(figures: dict[str, Any], key: str) -> str:
    row = figures["amplification"][key]
    packets = ", ".join(f"{n} {name}" for name, n in sorted(row["packets"].items()))
    return f"{row['amplification']:>8}x  {row['received']:>9} B  ({packets or 'nothing'})"


@pytest.mark.timeout(1800)
def test_bench_robustness(tmp_path: Path) -> None:
    kinds = ["pyatftpd"] + (["atftpd"] if Path(ATFTPD).exists() else [])
    results = {kind: measure(kind, tmp_path / kind) for kind in kinds}
    print()
    print(f"silent requesters: bytes sent per request byte over {SECONDS:g} s (group traffic "
          "listed apart); one namespace per server, 1 MiB file")
    for label, key in ROWS:
        for kind in kinds:
            print(f"  {label:<24}{kind:<10}{_row_text(results[kind], key)}")
    for kind in kinds:
        groups = results[kind]["amplification"]["groups"]
        print(f"  {'group traffic (all rows)':<24}{kind:<10}{groups['received']:>9} B  {groups['packets']}")
    print("real tftm:// client, alone and with 30 silent requesters in its session (s):")
    for kind in kinds:
        d = results[kind]["delay"]
        alone, crowded = d["alone"], d["with_silent"]
        print(f"  {kind:<10} alone {alone['seconds']:.2f} ({'ok' if alone['ok'] else alone['error']})"
              f"  with 30 silent {crowded['seconds']:.2f} ({'ok' if crowded['ok'] else crowded['error']})")
    print("RSS of the server's processes (MiB):")
    for kind in kinds:
        f = results[kind]
        dl = f["downloads"]
        print(f"  {kind:<10} idle {f['rss_idle_kib'] / 1024:.1f}   peak with {dl['clients']} downloads "
              f"{f['rss_peak_kib'] / 1024:.1f}   ({dl['ok']} ok in {dl['seconds']} s)")
    report = os.environ.get("BENCH_REPORT")
    if report:
        Path(report).write_text(json.dumps(results, indent=1) + "\n")
    assert results  # figures only
