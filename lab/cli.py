"""``lab``: boot the confirmation matrix, compare runs, merge shards, build images and ROMs.

``lab matrix`` writes matrix.md, matrix.json, matrix.html and junit.xml into a run folder
and gates the result on the committed expectations (lab/expectations/, docs/matrix.md):

* exit 0: every cell and train as expected;
* exit 1: a regression, an unexpected pass (update the expectations file), or a FAIL no
  entry expected;
* exit 2: the lab broke (ERROR/MISS), or it could not run at all (no namespaces, no
  /dev/net/tun, no QEMU): a matrix that ran nothing is not a pass.

Options mirror the pytest plugin's ``--lab-*`` options so a cell can be rerun either way.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lab.extra_check  # noqa: F401  (first: exits with the fix when the 'lab' extra is missing)
from lab.container.image import add_container_commands
from lab.infra.host import vm_support_problem
from lab.infra.qemu import ACCELS
from lab.judge.expectations import Expectations, ExpectationsError, GateResult, gate_run, load_expectations
from lab.model.matrix_plan import (
    MatrixPlan,
    MatrixRequest,
    cell_id,
    joined,
    plan_matrix,
    select_rows,
    upstream_plan,
)
from lab.model.plan import DEFAULT_MCAST_SIZE, DEFAULT_SIZES, PROTOCOLS, with_cell_loss
from lab.model.results import CellResult, RunInfo, TrainResult
from lab.model.status import Status
from lab.model.train_plan import DEFAULT_TRAIN_SIZE, FULL_BOOT_CHOICES, TRAIN_NICS
from lab.report import write_reports
from lab.report.diff import MatrixDiff, diff, diff_markdown
from lab.report.matrix_json import read_matrix
from lab.report.merge import MergeError, merge_runs
from lab.report.screenshot import screenshot
from lab.report.summary import summarise
from lab.run.bisect import CellTarget, bisect_cell
from lab.run.matrix import default_jobs, run_plan
from lab.run.progress import BootProgress, commit, qemu_version, train_progress
from lab.run.services import TFTP_SERVERS
from lab.run.trains import run_trains
from roms.build_cli import add_roms_commands
from roms.catalog import CATALOG, nic
from roms.ipxe_bisect import BisectError
from roms.ipxe_build import BuildError, stderr_progress
from roms.ipxe_spec import FORM, build_spec, parse_ipxe_src
from roms.ipxe_tree import TreeError
from roms.manifest import read_manifest
from roms.romset import DEBIAN_ROM_DIR, RomSet, RomSetError, rom_sets

EXPECTATIONS_DIR = Path(__file__).resolve().parent / "expectations"
EXIT_CODES = """exit status:
  0  every cell and train as the expectations say (or, without --expect, no FAIL)
  1  a regression, an unexpected pass (update the expectations), or a FAIL no entry expected
  2  the lab broke (ERROR/MISS), or VMs cannot run here at all (the reason is printed)"""


def _csv(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip() and p.strip() != "none")


def add_selection_options(parser: argparse.ArgumentParser) -> None:
    """Which cells run: rows, ROM sets, servers, protocols, sizes, topologies."""
    group = parser.add_argument_group("cells")
    nic_names = ", ".join(m.name for m in CATALOG.values() if m.emulated)
    group.add_argument(
        "--lab-nics",
        default="default",
        help="rows: 'default' (the five design NICs, every NIC a ROM set ships a ROM for (Debian: e1000e, "
        "virtio-net-pci, vmxnet3), tulip, and the not-emulated checklist rows), 'design' (without the "
        f"shipped-ROM NICs), 'all', or a comma-separated list of: {nic_names}",
    )
    group.add_argument(
        "--lab-rom-dir",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="add a ROM set (repeatable); Debian's ROMs are always the first set",
    )
    group.add_argument(
        "--lab-server",
        action="append",
        choices=TFTP_SERVERS,
        default=None,
        help="TFTP server(s) to boot from (repeatable; default pyatftpd)",
    )
    group.add_argument(
        "--lab-protocols",
        default=",".join(PROTOCOLS),
        help="comma-separated, from %(default)s (default: all)",
    )
    group.add_argument(
        "--lab-sizes",
        default=",".join(map(str, DEFAULT_SIZES)),
        help="tftp payload sizes in bytes (default %(default)s)",
    )
    group.add_argument(
        "--lab-mcast-size",
        type=int,
        default=DEFAULT_MCAST_SIZE,
        help="payload bytes of each tftm/mtftp/x-slam cell (default %(default)s)",
    )
    group.add_argument(
        "--lab-topology",
        action="append",
        default=None,
        choices=("flood", "snoop", "snoop+querier"),
        help="bridge multicast settings (repeatable; default flood: no snooping, no querier)",
    )
    group.add_argument(
        "--lab-querier-protocols",
        default="mtftp",
        help="protocols of the extra snoop+querier column (IGMP snooping with an active querier, "
        "first server), or 'none' (default %(default)s)",
    )


def add_firmware_options(parser: argparse.ArgumentParser) -> None:
    """ROM sets built from iPXE source (docs/howto.md, "Test your iPXE branch")."""
    group = parser.add_argument_group("ROM sets built from iPXE source")
    group.add_argument(
        "--lab-ipxe-src",
        action="append",
        default=[],
        metavar="SPEC",
        help=f"build (or reuse) a ROM set from an iPXE checkout or source archive and add it: {FORM}, "
        "e.g. mine=~/src/ipxe@my-branch,patch=fix.patch,with=slam (repeatable)",
    )
    group.add_argument(
        "--lab-upstream-sets",
        default="none",
        metavar="auto|none|DIR",
        help="add the sets 'upstream' and 'upstream-fix' built (with SLAM) from the iPXE archive and "
        "tftm-socket-address.patch in DIR; 'auto' looks in $LAB_IPXE_ARCHIVE_DIR, then ../shared/ipxe/ "
        "beside the checkout, and says in one line when there is none (default %(default)s)",
    )


def add_slice_options(parser: argparse.ArgumentParser) -> None:
    """Which part of the plan this run takes: a few cells (--only) or a shard for CI."""
    group = parser.add_argument_group("a part of the plan")
    group.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="PATTERN",
        help="run only the cells (NIC/column, e.g. e1000/mtftp/debian/pyatftpd) and trains "
        "(column, e.g. mtftp/debian/pyatftpd/train4) matching this shell glob (repeatable)",
    )
    group.add_argument(
        "--shard",
        default="1/1",
        metavar="K/N",
        help="run shard K of N: a deterministic, cost-balanced slice of the plan, every train "
        "whole on one shard; `lab merge` puts the shards together (default %(default)s)",
    )


def add_train_options(parser: argparse.ArgumentParser) -> None:
    """Which trains run: protocols, size, NICs, loss, the legacy and full-boot trains."""
    group = parser.add_argument_group("trains (4 VMs of mixed NICs, 0.5 s apart, one payload)")
    group.add_argument(
        "--lab-trains",
        default="mtftp,tftm,x-slam",
        help="protocols of the trains (per ROM set and server), or 'none': no trains at all, "
        "full boots included unless --lab-full-boot names them (default %(default)s)",
    )
    group.add_argument(
        "--lab-train-size",
        type=int,
        default=DEFAULT_TRAIN_SIZE,
        help="train payload bytes (default %(default)s)",
    )
    group.add_argument(
        "--lab-train-nics",
        default=",".join(TRAIN_NICS),
        help="NIC models of the trains, first to start first (default %(default)s)",
    )
    group.add_argument(
        "--lab-loss",
        type=int,
        default=5,
        help="percent loss each way on one VM's tap in an extra mtftp train (0: none; default 5); "
        "for loss on single VMs see --lab-cell-loss",
    )
    group.add_argument(
        "--lab-legacy-train",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="an extra mtftp train of the older drivers: e1000, pcnet, ne2k_pci, eepro100 (default on)",
    )
    group.add_argument(
        "--lab-full-boot",
        default="auto",
        help="protocols of the full-boot trains (Debian's kernel and an initramfs to the train "
        f"NICs), from {','.join(FULL_BOOT_CHOICES)}, 'none', or 'auto' (default: mtftp when "
        "--lab-trains has it)",
    )


def add_loss_options(parser: argparse.ArgumentParser) -> None:
    """Loss on the cells' VMs: one VM, one protocol, a loss figure, its fetch time."""
    group = parser.add_argument_group("loss on single VMs")
    group.add_argument(
        "--lab-cell-loss",
        type=int,
        default=0,
        metavar="PERCENT",
        help="percent loss each way on every cell VM's tap, on all its UDP but DHCP's (so the "
        "boot script, verifier and payload); the columns get /lossPERCENT and each boot prints "
        "its fetch time (default 0: none)",
    )


def add_lab_options(parser: argparse.ArgumentParser) -> None:
    add_selection_options(parser)
    add_firmware_options(parser)
    add_slice_options(parser)
    add_train_options(parser)
    add_loss_options(parser)
    gate = parser.add_argument_group("gate and reports")
    gate.add_argument(
        "--expect",
        action="append",
        default=[],
        metavar="FILE",
        help="expectations to gate on (repeatable); 'auto' takes lab/expectations/SET.toml for "
        "each ROM set; without --expect every FAIL fails the run",
    )
    gate.add_argument(
        "--baseline",
        type=Path,
        default=None,
        metavar="OLD",
        help="an earlier run folder or matrix.json: changed cells are marked ('was PASS multicast')",
    )
    run = parser.add_argument_group("running")
    run.add_argument("--lab-accel", choices=ACCELS, default="tcg", help="tcg (default) or kvm (hangs here)")
    run.add_argument(
        "--lab-artifacts", default="lab-artifacts", help="folder for run folders (default %(default)s)"
    )
    run.add_argument("--lab-jobs", type=int, default=0, help="parallel VMs (default: one per CPU)")
    run.add_argument(
        "--lab-pyatftpd-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="one more pyatftpd option for every lab of the run, e.g. --lab-pyatftpd-arg=--mcast-window=8 "
        "(repeatable; recorded in the reports)",
    )


def request_from(args: argparse.Namespace, sets: list[RomSet]) -> MatrixRequest:
    """The matrix the options ask for; ValueError names an option that cannot be met."""
    protocols = _csv(args.lab_protocols)
    if unknown := [p for p in protocols if p not in PROTOCOLS]:
        raise ValueError(f"--lab-protocols: unknown {', '.join(unknown)}; known: {', '.join(PROTOCOLS)}")
    train_nics = _csv(args.lab_train_nics)
    if unknown := [n for n in train_nics if n not in CATALOG]:
        raise ValueError(f"--lab-train-nics: unknown NIC model {unknown[0]!r}")
    if absent := [n for n in train_nics if nic(n).qemu_device is None]:
        raise ValueError(f"--lab-train-nics: QEMU cannot emulate {', '.join(absent)}; pick others")
    for option, percent in (("--lab-loss", args.lab_loss), ("--lab-cell-loss", args.lab_cell_loss)):
        if not 0 <= percent < 100:
            raise ValueError(f"{option} {percent}: give a percent from 0 to 99")
    full_boot = None if args.lab_full_boot == "auto" else _csv(args.lab_full_boot)
    if full_boot and (bad := [p for p in full_boot if p not in FULL_BOOT_CHOICES]):
        raise ValueError(
            f"--lab-full-boot: {', '.join(bad)} cannot carry a kernel and an initrd here; "
            f"pick from {', '.join(FULL_BOOT_CHOICES)}"
        )
    return MatrixRequest(
        nics=tuple(select_rows(args.lab_nics, sets)),
        servers=tuple(args.lab_server or ["pyatftpd"]),
        protocols=protocols,
        sizes=tuple(int(s) for s in _csv(args.lab_sizes)),
        mcast_size=args.lab_mcast_size,
        topologies=tuple(args.lab_topology or ["flood"]),
        querier_protocols=_csv(args.lab_querier_protocols),
        trains=_csv(args.lab_trains),
        train_size=args.lab_train_size,
        train_nics=train_nics,
        loss_percent=args.lab_loss,
        cell_loss_percent=args.lab_cell_loss,
        legacy_train=args.lab_legacy_train,
        full_boot=full_boot,
    )


def load_gate(specs: list[str], sets: list[RomSet]) -> Expectations | None:
    """The expectations of ``--expect`` (several files read as one, in order)."""
    paths: list[Path] = []
    for spec in specs:
        if spec == "auto":
            paths += [p for s in sets if (p := EXPECTATIONS_DIR / f"{s.name}.toml").is_file()]
        else:
            paths.append(Path(spec))
    if not paths:
        return None
    books = [load_expectations(p) for p in paths]
    merged = Expectations(Path(", ".join(_shown(p) for p in paths)))
    for book in books:
        merged.cells += book.cells
        merged.trains += book.trains
    return merged


def built_sets(specs: list[str]) -> list[RomSet]:
    """The ROM sets of ``--lab-ipxe-src``, built now or found in the cache."""
    out = []
    for text in specs:
        spec = parse_ipxe_src(text)
        result = build_spec(spec, progress=stderr_progress(f"roms build {spec.name}"))
        out.append(RomSet(spec.name, result.out))
    return out


def archive_dir(choice: str) -> Path | None:
    """Where ``--lab-upstream-sets`` finds the iPXE archive (None: nowhere)."""
    if choice == "none":
        return None
    if choice != "auto":
        return Path(choice).expanduser()
    env = os.environ.get("LAB_IPXE_ARCHIVE_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "ipxe"


def upstream_sets(choice: str) -> list[RomSet]:
    """The 'upstream' and 'upstream-fix' sets (SLAM on; the fix as the patch), or [] with one line why."""
    folder = archive_dir(choice)
    if folder is None:
        return []
    archives = sorted(folder.glob("ipxe-*.tar.*")) if folder.is_dir() else []
    patch = folder / "tftm-socket-address.patch"
    if not archives or not patch.is_file():
        print(
            f"lab: no upstream iPXE columns: no ipxe-*.tar.* and tftm-socket-address.patch in {folder} "
            "(set LAB_IPXE_ARCHIVE_DIR or --lab-upstream-sets DIR)",
            file=sys.stderr,
        )
        return []
    archive = archives[-1]
    return built_sets([f"upstream={archive},with=slam", f"upstream-fix={archive},patch={patch},with=slam"])


def _shown(path: Path) -> str:
    """A file as a report names it: relative to the repository, never the machine's full path."""
    resolved = path.resolve()
    root = EXPECTATIONS_DIR.parent.parent
    return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else path.name


def _shard(text: str) -> tuple[int, int]:
    index, sep, count = text.partition("/")
    if not sep or not index.isdigit() or not count.isdigit() or not 1 <= int(index) <= int(count):
        raise ValueError(f"--shard {text!r}: give K/N with 1 <= K <= N, e.g. --shard 2/4")
    return int(index), int(count)


def rerun_argv(argv: list[str]) -> list[str]:
    """The command line minus what picks a slice or a folder: the base of every "re-run" hint."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--only", "--shard", "--baseline", "--lab-artifacts"):
            skip = True
            continue
        if arg.startswith(("--only=", "--shard=", "--baseline=", "--lab-artifacts=")):
            continue
        out.append(arg)
    return ["lab", "matrix", *out]


def cmd_matrix(args: argparse.Namespace, argv: list[str]) -> int:
    try:
        sets = rom_sets(args.lab_rom_dir) + built_sets(args.lab_ipxe_src)
        upstream = upstream_sets(args.lab_upstream_sets)
        request = request_from(args, sets)
        expectations = load_gate(args.expect, sets + upstream)
        shard = _shard(args.shard)
    except (RomSetError, ValueError, ExpectationsError, BuildError, TreeError) as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 2
    extra = (
        upstream_plan(request.nics, upstream, request.mcast_size, request.train_size)
        if upstream
        else MatrixPlan()
    )
    extra.cells = with_cell_loss(extra.cells, request.cell_loss_percent)
    sets += upstream
    whole = joined(plan_matrix(request, sets[: len(sets) - len(upstream)]), extra).select(tuple(args.only))
    plan = whole.shard(*shard)
    if args.only and not plan.ids:
        print(f"lab: --only {' '.join(args.only)} matches no cell or train of this plan", file=sys.stderr)
        return 2
    problem = vm_support_problem()
    if problem and (plan.boots() or plan.trains):
        print(f"lab matrix: cannot run VMs here, so nothing was run: {problem}", file=sys.stderr)
        return 2
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = Path(args.lab_artifacts).resolve() / run_id
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = args.lab_jobs or default_jobs()
    print(
        f"lab matrix: {len(plan.cells)} cells, {plan.boots()} VM boots, {jobs} at a time; "
        f"{len(plan.trains)} trains; shard {args.shard} -> {out_dir}",
        file=sys.stderr,
    )
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.monotonic()
    more = tuple(args.lab_pyatftpd_arg)
    results = run_plan(plan.cells, sets, out_dir, jobs, args.lab_accel, BootProgress(plan.boots()), more)
    trains = run_trains(plan.trains, sets, out_dir, args.lab_accel, train_progress, more)
    info = _run_info(args, run_id, started, time.monotonic() - t0, jobs, sets, request, whole, argv)
    return finish(results, trains, info, out_dir, expectations, args.baseline)


def rom_set_origin(rom_set: RomSet) -> str:
    """Where a ROM set came from, in words without the machine's paths: the iPXE tree and its
    patches for a set the lab built (its manifest), the package for Debian's."""
    if rom_set.directory == DEBIAN_ROM_DIR:
        return "Debian's ipxe-qemu package"
    manifest = read_manifest(rom_set.directory)
    if manifest is not None:
        return f"built from {manifest.label()}"
    return f"--lab-rom-dir {rom_set.name}=.../{rom_set.directory.name}"


def _run_info(
    args: argparse.Namespace,
    run_id: str,
    started: str,
    seconds: float,
    jobs: int,
    sets: list[RomSet],
    request: MatrixRequest,
    whole: MatrixPlan,
    argv: list[str],
) -> RunInfo:
    plan = {
        "fingerprint": whole.fingerprint(),
        "cells": [cell_id(c) for c in whole.cells],
        "trains": [t.column for t in whole.trains],
    }
    return RunInfo(
        run_id=run_id,
        started=started,
        wall_seconds=seconds,
        jobs=jobs,
        accel=args.lab_accel,
        qemu_version=qemu_version(),
        commit=commit(),
        rom_sets={s.name: rom_set_origin(s) for s in sets},
        extra={
            "servers": list(request.servers),
            "sizes": list(request.sizes),
            "topologies": list(request.topologies),
            "protocols": list(request.protocols),
            "mcast_size": request.mcast_size,
            "train_size": request.train_size,
            "loss_percent": request.loss_percent,
            "cell_loss_percent": request.cell_loss_percent,
            "pyatftpd_args": list(args.lab_pyatftpd_arg),
            "shard": args.shard,
            "only": list(args.only),
            "plan": plan,
            "rerun": shlex.join(rerun_argv(argv)),
        },
    )


def finish(
    results: list[CellResult],
    trains: list[TrainResult],
    info: RunInfo,
    out_dir: Path,
    expectations: Expectations | None,
    baseline: Path | None,
) -> int:
    """Gate, compare with the baseline, write the reports, say what happened; the exit status."""
    verdicts = gate_run(expectations, results, trains)
    changes: MatrixDiff | None = None
    paths = write_reports(results, info, out_dir, trains, verdicts)
    if baseline is not None:
        changes = diff(read_matrix(baseline), read_matrix(paths["json"]))
        paths = write_reports(results, info, out_dir, trains, verdicts, changes.was_text())
    summary = summarise(results, trains, verdicts.counts() if expectations else None)
    print(f"\nlab matrix: {info.wall_seconds:.1f} s. {summary.line()}", file=sys.stderr)
    _say_gate(verdicts, str(info.extra.get("rerun", "lab matrix")))
    shot = screenshot(paths["html"], out_dir / "matrix.png")
    files = "matrix.md, matrix.html, " + ("" if shot else "matrix.png, ") + "matrix.json, junit.xml"
    print(f"lab matrix: reports in {out_dir} ({files})" + (f"; {shot}" if shot else ""), file=sys.stderr)
    print(paths["md"])
    status = verdicts.exit_status()
    print(f"lab matrix: exit {status} ({EXIT_CODES.splitlines()[status + 1].strip()[3:]})", file=sys.stderr)
    return status


def _say_gate(verdicts: GateResult, rerun: str) -> None:
    for judgement in verdicts.judgements:
        if not judgement.fails_gate and judgement.status not in (Status.ERROR, Status.MISS):
            continue
        expected = f", expected {judgement.expected}" if judgement.expected else ", no expectation"
        print(
            f"  {judgement.verdict.upper()}: {judgement.kind} {judgement.name}: {judgement.status.value} "
            f"{judgement.outcome}{expected}; re-run: {rerun} --only {shlex.quote(judgement.name)}",
            file=sys.stderr,
        )


def cmd_diff(args: argparse.Namespace) -> int:
    try:
        result = diff(read_matrix(args.old), read_matrix(args.new))
    except (OSError, ValueError, KeyError) as exc:
        print(f"lab diff: {exc}", file=sys.stderr)
        return 2
    if args.json:
        import json

        print(json.dumps(result.to_json(), indent=2))
    else:
        print(diff_markdown(result), end="")
    return 1 if result.of("regression") else 0


def cmd_merge(args: argparse.Namespace) -> int:
    try:
        merged = merge_runs(args.runs, args.out.resolve())
        sets = [RomSet(name, Path(folder)) for name, folder in merged.info.rom_sets.items()]
        expectations = load_gate(args.expect, sets)
    except (OSError, ValueError, MergeError, ExpectationsError) as exc:
        print(f"lab merge: {exc}", file=sys.stderr)
        return 2
    return finish(merged.cells, merged.trains, merged.info, args.out.resolve(), expectations, args.baseline)


def add_bisect_command(sub: Any) -> None:
    bisect = sub.add_parser(
        "bisect",
        help="the first iPXE commit that broke a cell: git bisect, one build and one boot per step",
        epilog="exit status: 0 the first bad commit was found, 3 skipped commits hide it, 2 it could not run",
    )
    bisect.add_argument("src", type=Path, metavar="SRC", help="an iPXE git checkout (never changed)")
    bisect.add_argument("--good", required=True, metavar="REV", help="a commit where the cell passes")
    bisect.add_argument("--bad", required=True, metavar="REV", help="a commit where it fails")
    bisect.add_argument("--cell", required=True, metavar="NIC/PROTOCOL", help="e.g. e1000/tftm")
    bisect.add_argument(
        "--server", default="pyatftpd", choices=TFTP_SERVERS, help="TFTP server (default pyatftpd)"
    )
    bisect.add_argument(
        "--patch", action="append", default=[], type=Path, help="apply to every step (repeatable)"
    )
    bisect.add_argument(
        "--with",
        dest="with_",
        action="append",
        default=[],
        choices=("slam",),
        help="build option (x-slam cells get slam anyway)",
    )
    bisect.add_argument("--lab-artifacts", default="lab-artifacts", help="where each step's evidence goes")
    bisect.add_argument("--lab-accel", choices=ACCELS, default="tcg")


def cmd_bisect(args: argparse.Namespace) -> int:
    started = time.monotonic()
    try:
        target = CellTarget.parse(args.cell, args.server)
        artifacts = (
            Path(args.lab_artifacts).resolve() / f"bisect-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
        )
        result = bisect_cell(
            args.src,
            args.good,
            args.bad,
            target,
            artifacts,
            tuple(args.with_),
            tuple(args.patch),
            args.lab_accel,
        )
    except (ValueError, BisectError, BuildError, TreeError) as exc:
        print(f"lab bisect: {exc}", file=sys.stderr)
        return 2
    for number, step in enumerate(result.steps, 1):
        print(
            f"step {number}: {step.commit[:12]} {step.verdict:4s} (build {step.build_seconds:.0f} s, boot "
            f"{step.verdict_seconds:.0f} s) {step.subject}; evidence: {artifacts / step.commit[:12]}"
        )
    print(result.conclusion())
    print(f"total {time.monotonic() - started:.0f} s")
    return 0 if result.first_bad else 3


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="lab", description="the multicast boot lab")
    sub = parser.add_subparsers(dest="command", required=True)
    matrix = sub.add_parser(
        "matrix",
        help="boot the confirmation matrix, write its reports, gate it",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_lab_options(matrix)
    compare = sub.add_parser(
        "diff",
        help="what changed between two runs (regressions, fixes, figures)",
        epilog="exit status: 1 when NEW has regressions against OLD, 2 on unreadable input",
    )
    compare.add_argument("old", type=Path, help="run folder or matrix.json")
    compare.add_argument("new", type=Path, help="run folder or matrix.json")
    compare.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    merge = sub.add_parser(
        "merge",
        help="one matrix from the shards of `lab matrix --shard K/N`",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    merge.add_argument("runs", type=Path, nargs="+", help="the shards' run folders (or their matrix.json)")
    merge.add_argument("--out", type=Path, required=True, help="folder for the merged matrix")
    merge.add_argument("--expect", action="append", default=[], metavar="FILE", help="as for lab matrix")
    merge.add_argument("--baseline", type=Path, default=None, metavar="OLD", help="as for lab matrix")
    add_bisect_command(sub)
    add_container_commands(sub)
    add_roms_commands(sub)
    args = parser.parse_args(argv)
    if args.command == "matrix":
        return cmd_matrix(args, argv[1:])
    if args.command == "diff":
        return cmd_diff(args)
    if args.command == "merge":
        return cmd_merge(args)
    if args.command == "bisect":
        return cmd_bisect(args)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
