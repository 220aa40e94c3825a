"""SLAM benchmark: 5 MiB from pyslamd to 1, 20 and 200 iPXE-faithful clients.

Everything runs in one lab namespace on one veth pair, in one run:

* pyslamd (default settings, and the defaults before 2026-11-28,
  ``--rate 12.5M --start-rate 6.25M --ramp 1``) to N iPXE-faithful SLAM
  clients: time to the last completion, bytes sent / file size (the server's
  ``stats`` event), NACKs handled;
* pyatftpd's RFC 2090 session (``tftm://``) to the same number of iPXE-faithful
  clients: time to the last completion, bytes sent / file size as the clients saw
  them (group packets counted once, plus every unicast DATA);
* the unicast reference for the single-client goal: pyatftpd serving the same file
  by plain TFTP on the same path, to curl (blksize 1428) and to the iPXE-faithful
  ``tftp://`` client (blksize 1432); Debian's atftpd + curl as an extra row.

The goal figures of the issue are printed at the end: one SLAM client's time over
pyatftpd's unicast time, and the bytes ratio at 200 clients.  The single-client goal
is judged **after the first NACK**: iPXE's slam.c sends nothing for its first second
(``slam_open`` only starts the 1 s slave timer; a client is heard of only when that
timer fires), and no server can shorten that wait without streaming to the group
unasked.  The time with that wait is printed beside it.  Asserts only that every
client got the exact bytes; speed is a figure, never an assert.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from lab.infra.namespace import Namespace
from lab.infra.network import make_veth_segment
from tests.mcast_lab import ATFTPD, Served, run_scenario
from tests.slam.session import SERVER_IP, SlamSession, sha256

pytestmark = [pytest.mark.bench, pytest.mark.netns, pytest.mark.timeout(2400)]

SIZE = 5 * 1024 * 1024
COUNTS = [int(n) for n in os.environ.get("SLAM_BENCH_CLIENTS", "1,20,200").split(",")]
#: iPXE sends nothing for its first second (slam.c's slave timer), then NACKs.
IPXE_FIRST_WAIT = 1.0
#: The defaults before 2026-11-28 (100 Mbit/s ceiling, start at half of it, no ramp),
#: beside today's in the same run.
OLD_DEFAULTS = ("--rate", "12.5M", "--start-rate", "6.25M", "--ramp", "1")
REPEATS = 3  # unicast references: median of this many


def _slam_run(
    ns: Namespace,
    root: Path,
    path: Path,
    data: bytes,
    count: int,
    options: tuple[str, ...] = (),
    processes: int = 1,
) -> dict[str, Any]:
    """``processes`` > 1 splits the clients over that many simulator processes, all
    starting at one wall-clock time (a little closer to independent machines)."""
    session = SlamSession(ns, root / f"slam-{count}-{len(options)}-{processes}", make_segment=False)
    try:
        session.start_server(path, *options)
        start_at = time.time() + (1.0 if processes > 1 else 0.0)
        procs = [
            session.start_clients(
                count // processes + (1 if i < count % processes else 0), "--timeout", "600",
                *(["--start-at", str(start_at)] if processes > 1 else []),
            )
            for i in range(processes)
        ]
        per_process = [session.results(proc, timeout=700) for proc in procs]
    finally:
        session.close()  # SIGTERM: pyslamd writes its final "stats" event
    deadline = time.monotonic() + 5  # the namespace wrapper may exit before pyslamd has written it
    while not session.events("stats") and time.monotonic() < deadline:
        time.sleep(0.05)
    [stats] = session.events("stats")
    results = [r for part in per_process for r in part]
    ok = sum(1 for r in results if r["outcome"] == "ok" and r["sha256"] == sha256(data))
    # Seconds from the start of the clients ("started" and "finished" count from each
    # process's own clock; with several processes, all start at the same wall time).
    last = max(max(float(r["finished"]) for r in part) - min(float(r["started"]) for r in part)
               for part in per_process)
    # From the first NACK any client sent (the first moment a server can know of anyone).
    # Clients that join a running stream may never NACK; several processes share one
    # wall-clock start, so their clocks line up.
    first_nacks = [float(r["first_nack"]) for r in results if r.get("first_nack") is not None]
    after_nack = max(float(r["finished"]) for r in results) - min(first_nacks, default=IPXE_FIRST_WAIT)
    label = f"pyslamd{' ' + ' '.join(options) if options else ''} (x-slam)"
    return {
        "what": label + (f", clients in {processes} processes" if processes > 1 else ""),
        "clients": count,
        "ok": ok,
        "last_done_s": round(last, 3),
        "after_first_nack_s": round(after_nack, 3),
        "sent_ratio": round(int(stats["data_bytes"]) / len(data), 3),
        "nacks": stats["nacks"],
    }


def _tftm_run(ns: Namespace, root: Path, served_root: Path, data: bytes, count: int) -> dict[str, Any]:
    workdir = root / f"tftm-{count}"
    workdir.mkdir()
    server = Served(ns, "pyatftpd", served_root, [], workdir)
    try:
        started = time.monotonic()
        result = run_scenario(
            ns, f"tftm://{SERVER_IP}/boot.img", "--count", str(count), "--timeout", "600", timeout=700
        )
        wall = time.monotonic() - started
    finally:
        _stop(ns, server)
    want = hashlib.sha256(data).hexdigest()
    clients = result["clients"]
    done = [c for c in clients if c["ok"] and c["sha256"] == want]
    unicast = sum(c["bytes_unicast"] for c in clients)
    return {
        "what": "pyatftpd RFC 2090 (tftm)",
        "clients": count,
        "ok": len(done),
        "last_done_s": round(max((c["finished_after"] for c in done), default=float("nan")), 3),
        "sent_ratio": round((result["group_bytes_seen"] + unicast) / len(data), 3),
        "wall_s": round(wall, 2),
    }


def _curl_times(ns: Namespace, root: Path, name: str, data: bytes) -> list[float]:
    out = root / "curl.out"
    times = []
    for _ in range(REPEATS):
        out.unlink(missing_ok=True)
        started = time.monotonic()
        ns.run(["curl", "-s", "--max-time", "60", "--tftp-blksize", "1428", "-o", str(out),
                f"tftp://{SERVER_IP}/{name}"])
        times.append(time.monotonic() - started)
        assert out.read_bytes() == data, "curl did not get the exact bytes"
    return times


def _stop(ns: Namespace, server: Served) -> None:
    """Stop a TFTP server and wait until port 69 is free for the next one."""
    server.stop()
    deadline = time.monotonic() + 10
    while ":69 " in ns.run(["ss", "-uln"]).stdout and time.monotonic() < deadline:
        time.sleep(0.05)


def _unicast_rows(ns: Namespace, root: Path, served_root: Path, data: bytes) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    workdir = root / "unicast-pyatftpd"
    workdir.mkdir()
    server = Served(ns, "pyatftpd", served_root, [], workdir)
    try:
        if shutil.which("curl"):
            times = _curl_times(ns, root, "boot.img", data)
            rows.append({"what": f"pyatftpd unicast TFTP, curl blksize 1428 (median of {REPEATS})",
                         "clients": 1, "ok": 1, "last_done_s": round(statistics.median(times), 3)})
        seconds = []
        for _ in range(REPEATS):
            result = run_scenario(ns, f"tftp://{SERVER_IP}/boot.img", "--count", "1", timeout=120)
            [client] = result["clients"]
            assert client["ok"] and client["sha256"] == hashlib.sha256(data).hexdigest()
            seconds.append(client["seconds"])
        rows.append({"what": f"pyatftpd unicast TFTP, iPXE-faithful tftp:// (median of {REPEATS})",
                     "clients": 1, "ok": 1, "last_done_s": round(statistics.median(seconds), 3)})
    finally:
        _stop(ns, server)
    if Path(ATFTPD).exists() and shutil.which("curl"):
        workdir = root / "unicast-atftpd"
        workdir.mkdir()
        server = Served(ns, "atftpd", served_root, [], workdir)
        try:
            times = _curl_times(ns, root, "boot.img", data)
        finally:
            _stop(ns, server)
        rows.append({"what": f"atftpd unicast TFTP, curl blksize 1428 (median of {REPEATS})",
                     "clients": 1, "ok": 1, "last_done_s": round(statistics.median(times), 3)})
    return rows


def _print_table(rows: list[dict[str, Any]]) -> None:
    columns = ["what", "clients", "ok", "last_done_s", "after_first_nack_s", "sent_ratio", "nacks"]
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns))


def _print_goals(rows: list[dict[str, Any]]) -> None:
    references = [r for r in rows if r["what"].startswith("pyatftpd unicast")]
    print("Goals (issue 4):")
    for label in ("pyslamd (x-slam)", f"pyslamd {' '.join(OLD_DEFAULTS)} (x-slam)"):
        single = next((r for r in rows if r["what"] == label and r["clients"] == 1), None)
        for ref in references if single else []:
            base = ref["last_done_s"]
            print(f"  1 client, {label} / {ref['what'].split(', ', 1)[1]} ({base} s): "
                  f"{single['after_first_nack_s'] / base:.2f}x after iPXE's first NACK (goal <= 2x), "
                  f"{single['last_done_s'] / base:.2f}x with its fixed {IPXE_FIRST_WAIT:.0f} s initial wait")
    for r in rows:
        if r["what"].startswith("pyslamd") and r["clients"] == 200:
            print(f"  bytes sent / file size, 200 SLAM clients ({r['what']}): {r['sent_ratio']} "
                  f"(goal <= 1.1), {r['ok']}/200 done")


def test_bench_slam(netns: Namespace, tmp_path: Path) -> None:
    make_veth_segment(netns)
    load_at_start = os.getloadavg()
    data = os.urandom(SIZE)
    served_root = tmp_path / "files"
    served_root.mkdir()
    path = served_root / "boot.img"
    path.write_bytes(data)
    rows = _unicast_rows(netns, tmp_path, served_root, data)
    for count in COUNTS:
        rows.append(_slam_run(netns, tmp_path, path, data, count))
        # before/after in one run: the old defaults
        rows.append(_slam_run(netns, tmp_path, path, data, count, options=OLD_DEFAULTS))
        rows.append(_tftm_run(netns, tmp_path, served_root, data, count))
        if count >= 100:  # one simulator process is the bottleneck here: what two of them do
            rows.append(_slam_run(netns, tmp_path, path, data, count, processes=2))
    load = os.getloadavg()
    print(f"\nSLAM benchmark: {SIZE} bytes over a veth pair in a lab namespace, "
          f"host load at the start {load_at_start[0]:.1f} / {load_at_start[1]:.1f} / {load_at_start[2]:.1f}, "
          f"at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min)")
    _print_table(rows)
    print("after_first_nack_s: from the first NACK any client sent to the last completion; iPXE sends "
          f"nothing for its first {IPXE_FIRST_WAIT:.0f} s (slam.c's slave timer), which no server can "
          "shorten, so the single-client goal is judged on this column")
    _print_goals(rows)
    for r in rows:
        assert r["ok"] == r["clients"], f"not every client got the exact bytes: {r}"
