"""``lab matrix``: boot the confirmation matrix and write matrix.md/.json and JUnit XML.

Options mirror the pytest plugin's ``--lab-*`` options so a cell can be rerun either
way.  The exit status is 0 when every cell that ran passed, 1 when a driver failed
(FAIL), 2 when the lab broke (ERROR/MISS); a host that cannot run VMs at all prints
the reason and the fix, writes MISS cells and exits 0 (skipped, never passed).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from lab.qemu import ACCELS
from lab.report import RunInfo, write_reports
from lab.runner import BootOutcome, CellResult, default_jobs, run_plan
from lab.scenario import DEFAULT_SIZES, unicast_plan
from lab.session import vm_support_problem
from lab.status import Status
from lab.tftp import SERVERS
from roms.catalog import CATALOG, DESIGN_NICS
from roms.romset import RomSetError, rom_sets


def add_lab_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--lab-nics",
        default="design",
        help="comma-separated NIC names, 'design' (the five design NICs plus the not-emulated "
        "checklist rows) or 'all' (every catalog NIC QEMU emulates, plus the rest as rows)",
    )
    parser.add_argument(
        "--lab-rom-dir", action="append", default=[], metavar="NAME=DIR", help="add a ROM set (repeatable)"
    )
    parser.add_argument("--lab-accel", choices=ACCELS, default="tcg", help="tcg (default) or kvm")
    parser.add_argument("--lab-artifacts", default="lab-artifacts", help="folder for run folders")
    parser.add_argument("--lab-jobs", type=int, default=0, help="parallel VMs (default: one per CPU)")
    parser.add_argument(
        "--lab-server", action="append", choices=SERVERS, default=None,
        help="TFTP server(s) to boot from (repeatable; default pyatftpd)",
    )  # fmt: skip
    parser.add_argument(
        "--lab-topology", action="append", default=None, choices=("flood", "snoop", "snoop+querier"),
        help="bridge multicast settings (repeatable; default flood: no snooping, no querier)",
    )  # fmt: skip
    parser.add_argument(
        "--lab-sizes", default=",".join(map(str, DEFAULT_SIZES)), help="payload sizes in bytes, e.g. 1,4296"
    )


def select_nics(spec: str) -> list[str]:
    """Rows of the matrix: booted NICs first, then the checklist NICs QEMU cannot emulate."""
    not_emulated = [m.name for m in CATALOG.values() if not m.emulated]
    if spec == "design":
        return list(DESIGN_NICS) + not_emulated
    if spec == "all":
        return [m.name for m in CATALOG.values() if m.emulated] + not_emulated
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in CATALOG]
    if unknown:
        raise SystemExit(f"lab: unknown NIC(s) {', '.join(unknown)}; known: {', '.join(sorted(CATALOG))}")
    return names


def _qemu_version() -> str:
    try:
        out = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "QEMU not found"


def _commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or "unknown"


class Progress:
    """One line per finished boot, plus a live counter on a terminal."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.start = time.monotonic()
        self.tty = sys.stderr.isatty()
        self.counts: dict[str, int] = {}

    def __call__(self, done: int, total: int, outcome: BootOutcome) -> None:
        ev = outcome.evidence
        self.counts[ev.status.value] = self.counts.get(ev.status.value, 0) + 1
        first = ev.reason.splitlines()[0][:100] if ev.reason else ""
        where = "" if ev.status is Status.PASS else f" {ev.failed_stage or ''}: {first}"
        key = outcome.plan.key
        line = (
            f"[{done:>3}/{total}] {ev.status.value:<5} {key.nic:<10} {key.column:<24} "
            f"{outcome.plan.size:>8} B {ev.seconds:5.1f} s{where}"
        )
        if self.tty:
            sys.stderr.write("\r\033[K")
        sys.stderr.write(line + "\n")
        if self.tty:
            summary = " ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))
            sys.stderr.write(f"  {summary}  elapsed {time.monotonic() - self.start:.0f} s")
        sys.stderr.flush()


def cmd_matrix(args: argparse.Namespace) -> int:
    try:
        sets = rom_sets(args.lab_rom_dir)
    except RomSetError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 2
    sizes = tuple(int(s) for s in args.lab_sizes.split(",") if s.strip())
    servers = args.lab_server or ["pyatftpd"]
    nics = select_nics(args.lab_nics)
    topologies = args.lab_topology or ["flood"]
    cells = [
        cell
        for topology in topologies
        for server in servers
        for cell in unicast_plan(nics, sets, server, sizes, topology)
    ]
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = Path(args.lab_artifacts).resolve() / run_id
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = args.lab_jobs or default_jobs()
    boots = sum(len(c.boots) for c in cells)
    print(f"lab matrix: {len(cells)} cells, {boots} VM boots, {jobs} at a time -> {out_dir}", file=sys.stderr)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.monotonic()
    problem = vm_support_problem()
    if problem:
        print(f"lab matrix: SKIPPED every VM boot: {problem}", file=sys.stderr)
        results = [
            CellResult(c.key, Status[c.verdict[0]], c.verdict[1])
            if c.verdict
            else CellResult(c.key, Status.MISS, problem)
            for c in cells
        ]
    else:
        results = run_plan(cells, sets, out_dir, jobs, args.lab_accel, Progress(boots))
    info = RunInfo(
        run_id=run_id,
        started=started,
        wall_seconds=time.monotonic() - t0,
        jobs=jobs,
        accel=args.lab_accel,
        qemu_version=_qemu_version(),
        commit=_commit(),
        rom_sets={s.name: str(s.directory) for s in sets},
        extra={"servers": servers, "sizes": list(sizes), "topologies": topologies},
    )
    paths = write_reports(results, info, out_dir)
    statuses = {r.status for r in results}
    print(f"\nlab matrix: {info.wall_seconds:.1f} s; matrix at {paths['md']}", file=sys.stderr)
    print(paths["md"])
    if problem:
        return 0
    if Status.FAIL in statuses:
        return 1
    if statuses & {Status.ERROR, Status.MISS}:
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab", description="the multicast boot lab")
    sub = parser.add_subparsers(dest="command", required=True)
    matrix = sub.add_parser("matrix", help="boot the confirmation matrix and write its reports")
    add_lab_options(matrix)
    args = parser.parse_args(argv)
    if args.command == "matrix":
        return cmd_matrix(args)
    return 2  # pragma: no cover - argparse rejects other commands


if __name__ == "__main__":
    sys.exit(main())
