"""``lab matrix``: boot the confirmation matrix and write matrix.md/.json and JUnit XML.

Options mirror the pytest plugin's ``--lab-*`` options so a cell can be rerun either
way.  The exit status is 0 when every cell that ran passed, 1 when a driver failed
(FAIL), 2 when the lab broke (ERROR/MISS); a host that cannot run VMs at all prints
the reason and the fix, writes MISS cells and exits 0 (skipped, never passed).

``--fail-on error`` keeps FAIL cells out of the exit status (they stay in every report,
JUnit included) while ERROR/MISS still fail: CI uses it so that a finding about a
driver or server shows up in the matrix without hiding whether the lab itself worked.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import lab.extra_check  # noqa: F401  (first: exits with the fix when the 'lab' extra is missing)
from lab.container import add_container_commands
from lab.qemu import ACCELS
from lab.report import RunInfo, write_reports
from lab.runner import BootOutcome, CellResult, default_jobs, run_plan
from lab.scenario import DEFAULT_MCAST_SIZE, DEFAULT_SIZES, PROTOCOLS, protocol_plan
from lab.session import vm_support_problem
from lab.status import Status
from lab.tftp import SERVERS
from lab.train import (
    DEFAULT_TRAIN_SIZE,
    FULL_BOOT_CHOICES,
    FULL_BOOT_PROTOCOLS,
    TRAIN_NICS,
    TrainResult,
    run_trains,
    train_plans,
)
from roms.catalog import CATALOG, DESIGN_NICS, nic
from roms.romset import RomSetError, rom_sets


def add_lab_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fail-on",
        choices=("fail", "error"),
        default="fail",
        help="exit non-zero on FAIL cells and lab errors (default), or on lab errors (ERROR/MISS) only",
    )
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
        "--lab-sizes", default=",".join(map(str, DEFAULT_SIZES)),
        help="tftp payload sizes in bytes, e.g. 1,4296",
    )  # fmt: skip
    parser.add_argument(
        "--lab-protocols", default=",".join(PROTOCOLS), help=f"comma-separated, from {','.join(PROTOCOLS)}"
    )
    parser.add_argument(
        "--lab-mcast-size", type=int, default=DEFAULT_MCAST_SIZE,
        help="payload bytes of each tftm/mtftp/x-slam cell (one boot per cell)",
    )  # fmt: skip
    parser.add_argument(
        "--lab-trains", default="mtftp,tftm,x-slam",
        help="protocols of the 4-VM trains (per ROM set and server), or 'none'",
    )  # fmt: skip
    parser.add_argument(
        "--lab-querier-protocols", default="mtftp",
        help="protocols of the extra snoop+querier column (IGMP snooping with an active querier; "
        "pyatftpd), or 'none'",
    )  # fmt: skip
    parser.add_argument("--lab-train-size", type=int, default=DEFAULT_TRAIN_SIZE, help="train payload bytes")
    parser.add_argument(
        "--lab-loss", type=int, default=5,
        help="percent loss each way on one VM's tap in an extra mtftp train (0: no lossy train)",
    )  # fmt: skip
    parser.add_argument(
        "--lab-train-nics", default=",".join(TRAIN_NICS),
        help="comma-separated NIC models of the trains, first to start first (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--lab-legacy-train", action=argparse.BooleanOptionalAction, default=False,
        help="an extra mtftp train of e1000, rtl8139, pcnet, eepro100 (how older drivers take a "
        "stream; off by default since the full boot took its place in the 20-minute budget)",
    )  # fmt: skip
    parser.add_argument(
        "--lab-full-boot", default=",".join(FULL_BOOT_PROTOCOLS),
        help="protocols of the full-boot trains (Debian's kernel and an initramfs to 4 VMs, per ROM "
        f"set, first server), from {','.join(FULL_BOOT_CHOICES)}, or 'none' (default: %(default)s)",
    )  # fmt: skip


def select_nics(spec: str) -> list[str]:
    """Rows of the matrix: booted NICs first, then the checklist NICs QEMU cannot emulate."""
    not_emulated = [m.name for m in CATALOG.values() if not m.emulated]
    if spec == "design":
        # Seed-list drivers QEMU emulates beyond the design five (tulip) stay rows too: without a
        # ROM in a set their cells read "no ROM in set" and cost no boot.
        covered = {d for name in DESIGN_NICS for d in CATALOG[name].etherboot_drivers}
        seed = [
            m.name
            for m in CATALOG.values()
            if m.emulated and m.etherboot_drivers and not set(m.etherboot_drivers) <= covered
        ]
        return list(DESIGN_NICS) + seed + not_emulated
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
    """This repo's commit; ``LAB_COMMIT`` wins (the container image carries no .git)."""
    if os.environ.get("LAB_COMMIT"):
        return os.environ["LAB_COMMIT"]
    try:
        out = subprocess.run(  # the repo of this code, wherever the matrix is run from
            ["git", "-C", str(Path(__file__).resolve().parent.parent), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
    except OSError:
        return "unknown"
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


REFERENCE_SERVERS = ("atftpd",)


def _reference(server: str, status: Status) -> bool:
    return server in REFERENCE_SERVERS and status is Status.FAIL


def train_progress(done: int, total: int, train: TrainResult) -> None:
    ratio = "" if train.group_ratio is None else f" group/payload {train.group_ratio:.3f}"
    failed = "; ".join(c.name for c in train.checks if c.ok is False)
    print(
        f"[train {done}/{total}] {train.status.value:<5} {train.plan.column:<36} {train.outcome}{ratio}"
        + (f" failed: {failed}" if failed else ""),
        file=sys.stderr,
        flush=True,
    )


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
    protocols = tuple(p.strip() for p in args.lab_protocols.split(",") if p.strip())
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        raise SystemExit(f"lab: unknown protocol(s) {', '.join(unknown)}; known: {', '.join(PROTOCOLS)}")
    cells = [
        cell
        for topology in topologies
        for cell in protocol_plan(nics, sets, servers, protocols, sizes, args.lab_mcast_size, topology)
    ]
    querier = tuple(p for p in args.lab_querier_protocols.split(",") if p.strip() and p != "none")
    if querier and "snoop+querier" not in topologies:
        cells += protocol_plan(nics, sets, servers[:1], querier, sizes, args.lab_mcast_size, "snoop+querier")
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = Path(args.lab_artifacts).resolve() / run_id
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = args.lab_jobs or default_jobs()
    boots = sum(len(c.boots) for c in cells)
    train_protocols = tuple(p for p in args.lab_trains.split(",") if p.strip() and p != "none")
    names = [s.name for s in sets]
    size, loss = args.lab_train_size, args.lab_loss
    train_nics = tuple(n.strip() for n in args.lab_train_nics.split(",") if n.strip())
    try:
        absent = [name for name in train_nics if nic(name).qemu_device is None]
    except KeyError as exc:
        print(f"lab: --lab-train-nics: {exc.args[0]}", file=sys.stderr)
        return 2
    if absent:
        names_text = ", ".join(absent)
        print(f"lab: --lab-train-nics: QEMU cannot emulate {names_text}; pick others", file=sys.stderr)
        return 2
    full_boot = tuple(p.strip() for p in args.lab_full_boot.split(",") if p.strip() and p.strip() != "none")
    if unknown_full := [p for p in full_boot if p not in FULL_BOOT_CHOICES]:
        print(f"lab: --lab-full-boot: {', '.join(unknown_full)} cannot carry a kernel and an initrd here; "
              f"pick from {', '.join(FULL_BOOT_CHOICES)}", file=sys.stderr)  # fmt: skip
        return 2
    plans = train_plans(
        train_protocols, servers, names, size, loss, args.lab_legacy_train, train_nics, full_boot
    )
    print(
        f"lab matrix: {len(cells)} cells, {boots} VM boots, {jobs} at a time; {len(plans)} trains of 4 VMs "
        f"-> {out_dir}",
        file=sys.stderr,
    )
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
    trains: list[TrainResult] = []
    if not problem:
        results = run_plan(cells, sets, out_dir, jobs, args.lab_accel, Progress(boots))
        trains = run_trains(plans, sets, out_dir, args.lab_accel, train_progress)
    info = RunInfo(
        run_id=run_id,
        started=started,
        wall_seconds=time.monotonic() - t0,
        jobs=jobs,
        accel=args.lab_accel,
        qemu_version=_qemu_version(),
        commit=_commit(),
        rom_sets={s.name: str(s.directory) for s in sets},
        extra={
            "servers": servers, "sizes": list(sizes), "topologies": topologies, "protocols": list(protocols),
            "mcast_size": args.lab_mcast_size, "train_size": args.lab_train_size,
            "loss_percent": args.lab_loss,
        },  # fmt: skip
    )
    paths = write_reports(results, info, out_dir, trains)
    # The reference server's findings (atftpd's stalls and corrupt late joiners) are reported, not
    # regressions of this project: they do not set the exit status.  Its lab breakage (ERROR) does.
    statuses = {r.status for r in results if not _reference(r.key.server, r.status)}
    statuses |= {t.status for t in trains if not _reference(t.plan.server, t.status)}
    print(f"\nlab matrix: {info.wall_seconds:.1f} s; matrix at {paths['md']}", file=sys.stderr)
    print(paths["md"])
    if problem:
        return 0
    return exit_status(statuses, args.fail_on)


def exit_status(statuses: set[Status], fail_on: str) -> int:
    """2 when the lab broke (ERROR/MISS), 1 for FAIL cells unless ``fail_on`` is "error", else 0."""
    if statuses & {Status.ERROR, Status.MISS}:
        return 2
    if Status.FAIL in statuses and fail_on == "fail":
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab", description="the multicast boot lab")
    sub = parser.add_subparsers(dest="command", required=True)
    matrix = sub.add_parser("matrix", help="boot the confirmation matrix and write its reports")
    add_lab_options(matrix)
    add_container_commands(sub)
    args = parser.parse_args(argv)
    if args.command == "matrix":
        return cmd_matrix(args)
    if args.command == "container":
        return int(args.func(args))
    return 2  # pragma: no cover - argparse rejects other commands


if __name__ == "__main__":
    sys.exit(main())
