"""SLAM benchmark: 5 MiB from pyslamd to 1, 20 and 200 iPXE-faithful clients.

Everything runs in one lab namespace on one veth pair, in one run:

* pyslamd (default settings, and ``--pacing rate``, the pacing before
  2026-12-06) to N iPXE-faithful SLAM clients: time to the last completion,
  bytes sent / file size (the server's ``stats`` event), NACKs handled;
* pyatftpd's RFC 2090 session (``tftm://``) to the same number of iPXE-faithful
  clients: time to the last completion, bytes sent / file size as the clients saw
  them (group packets counted once, plus every unicast DATA);
* the unicast reference for the single-client goal: pyatftpd serving the same file
  by plain TFTP on the same path, to curl (blksize 1428) and to the iPXE-faithful
  ``tftp://`` client (blksize 1432); Debian's atftpd + curl as an extra row.

A second table runs the same server core against TCG-like guests in virtual time
(tests/slam/guest.py: a receive ring, a cost per frame, descheduling pauses), which the
Python clients on a veth pair cannot stand for: one guest alone (the lone-listener goal)
and the lab train's four NICs on a shared and a starved host (the wave goal), each with
flow windows and with ``--pacing rate``.

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
from netboot.slam.server import Content, ServerConfig
from tests.mcast_lab import ATFTPD, Served, run_scenario
from tests.slam.guest import SHARED, STARVED, Guest, Host, train_guests
from tests.slam.session import SERVER_IP, SlamSession, sha256
from tests.slam.sim import Sim, SimClient

pytestmark = [pytest.mark.bench, pytest.mark.netns, pytest.mark.timeout(2400)]

SIZE = 5 * 1024 * 1024
COUNTS = [int(n) for n in os.environ.get("SLAM_BENCH_CLIENTS", "1,20,200").split(",")]
#: iPXE sends nothing for its first second (slam.c's slave timer), then NACKs.
IPXE_FIRST_WAIT = 1.0
#: The pacing before 2026-12-06 (rate rules alone, no flow windows), beside today's in
#: the same run.
PREVIOUS = ("--pacing", "rate")
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
    for label in ("pyslamd (x-slam)", f"pyslamd {' '.join(PREVIOUS)} (x-slam)"):
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


#: The lab train's VMs ask 1.3-5.6 s apart; the hold gathers them.
TRAIN_STARTS = (0.0, 1.3, 2.6, 5.0)
TRAIN_SIZE = 6 * 1024 * 1024
VIRTUAL_SEEDS = range(1, 11)


def _pacing(flow_windows: bool) -> str:
    return "windows" if flow_windows else "--pacing rate"


def _virtual_lone(per_frame: float, backlog: int, flow_windows: bool) -> dict[str, Any]:
    data = os.urandom(SIZE)
    guest: Guest[tuple[str, bytes]] = Guest(ring=8, backlog=backlog, per_frame=per_frame)
    sim = Sim(Content(1, data), [SimClient(guest=guest)], ServerConfig(flow_windows=flow_windows))
    server = sim.run(limit=120)
    core = sim.clients[0].core
    assert core is not None and core.data() == data
    assert core.finished_at is not None and core.first_nack_at is not None
    nic = "ring 8, host queue" if backlog else "ring 8, drops"
    return {
        "case": f"1 guest, {per_frame * 1e6:.0f} us/frame, {nic}",
        "pacing": _pacing(flow_windows),
        "after_first_nack_s": round(core.finished_at - core.first_nack_at, 3),
        "floor_s": round(-(-SIZE // 1451) * per_frame, 3),
        "sent_ratio": round(server.stats.data_bytes / len(data), 3),
    }


def _virtual_wave(host: Host, name: str, flow_windows: bool) -> dict[str, Any]:
    ratios, seconds = [], []
    for seed in VIRTUAL_SEEDS:
        data = os.urandom(TRAIN_SIZE)
        guests = train_guests(host, seed)
        clients = [SimClient(start=t, guest=g) for t, g in zip(TRAIN_STARTS, guests, strict=True)]
        config = ServerConfig(min_clients=4, max_wait=45.0, flow_windows=flow_windows)
        sim = Sim(Content(1, data), clients, config, seed=seed)
        server = sim.run(limit=400)
        assert all(c.core is not None and c.core.data() == data for c in clients)
        held = next(t for t, name_, _ in sim.log if name_ == "gather_end")
        seconds.append(max(c.core.finished_at or 0.0 for c in clients if c.core) - held)
        ratios.append(server.stats.data_bytes / len(data))
    within = sum(1 for r in ratios if r <= 1.2)
    return {
        "case": f"4 train guests, {name} host, 6 MiB, {len(ratios)} seeds",
        "pacing": _pacing(flow_windows),
        "sent_ratio": f"{min(ratios):.3f}-{max(ratios):.3f} ({within}/{len(ratios)} <= 1.2)",
        "pass_s": f"{min(seconds):.1f}-{max(seconds):.1f}",
    }


def _virtual_rows() -> list[dict[str, Any]]:
    rows = []
    for per_frame in (0.0002, 0.0001, 0.00005):
        for backlog in (1000, 0):
            rows += [_virtual_lone(per_frame, backlog, fw) for fw in (True, False)]
    for host, name in ((SHARED, "shared"), (STARVED, "starved")):
        rows += [_virtual_wave(host, name, fw) for fw in (True, False)]
    return rows


def _print_rows(rows: list[dict[str, Any]], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns))


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
        # before/after in one run: the previous pacing
        rows.append(_slam_run(netns, tmp_path, path, data, count, options=PREVIOUS))
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
    print("\nVirtual time, TCG-like guests (tests/slam/guest.py); floor_s: the guest's own cost for the file")
    _print_rows(_virtual_rows(), ["case", "pacing", "after_first_nack_s", "floor_s", "sent_ratio", "pass_s"])
    for r in rows:
        assert r["ok"] == r["clients"], f"not every client got the exact bytes: {r}"
