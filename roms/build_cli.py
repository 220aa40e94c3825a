"""``lab roms build|bisect|show``: ROM sets built from an iPXE tree, and git bisection over one.

Wired into ``lab`` by ``add_roms_commands(subparsers)``; every command sets ``func``, so
the caller runs ``args.func(args)`` and returns its exit status.  Also runnable alone:
``python -m roms.build_cli build ...``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from roms.ipxe_bisect import BisectError, bisect, shell_verdict
from roms.ipxe_build import OPTIONS, BuildError, BuildRequest, Patch, build_romset
from roms.ipxe_tree import TreeError, open_source, uncommitted_changes
from roms.manifest import ManifestError, read_manifest, verify_manifest


def _nics(text: str | None) -> tuple[str, ...] | None:
    return tuple(n.strip() for n in text.split(",") if n.strip()) if text else None


def _add_tree_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--patch",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="apply FILE with patch -p1 in the build copy (repeatable, in order)",
    )
    parser.add_argument(
        "--with",
        dest="options",
        action="append",
        default=[],
        choices=sorted(OPTIONS),
        help="enable a build option in config/local/ (slam: DOWNLOAD_PROTO_SLAM)",
    )
    parser.add_argument("--jobs", "-j", type=int, default=None, help="make -j (default: the number of CPUs)")
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        metavar="DIR",
        help="build cache (default $XDG_CACHE_HOME/netboot-lab/ipxe)",
    )


def add_roms_commands(subparsers: Any) -> None:
    """Add ``roms build``, ``roms bisect`` and ``roms show`` to the ``lab`` CLI's subparsers."""
    roms = subparsers.add_parser(
        "roms", help="build iPXE ROM sets from a tree; bisect one; show a set's manifest"
    )
    sub = roms.add_subparsers(dest="roms_command", required=True)

    build = sub.add_parser(
        "build",
        help="build the lab's ROMs from an iPXE checkout or source archive",
        description="Build bin/<vvvvdddd>.rom for every catalog NIC the tree has a driver for, in a copy "
        "under the cache (never in SRC), and write them with manifest.json into --out.",
    )
    build.add_argument("src", type=Path, metavar="SRC", help="iPXE git checkout or archive (.tar.xz/.tar.gz)")
    build.add_argument("--rev", default=None, help="commit, branch or tag of a checkout (default HEAD)")
    build.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="ROM set folder to write (new, empty, or made by this command)",
    )
    build.add_argument(
        "--nics",
        default=None,
        metavar="A,B",
        help="only these catalog NICs (default: every NIC QEMU emulates)",
    )
    _add_tree_options(build)
    build.set_defaults(func=cmd_build)

    bis = sub.add_parser(
        "bisect",
        help="git bisect over a checkout, one ROM build and one verdict command per step",
        description="Runs git's bisection in a worktree of its own (never SRC's). Each step builds the "
        "candidate, then runs --run CMD in the build copy's tree with LAB_BISECT_COMMIT, LAB_BISECT_ROM_DIR, "
        "LAB_BISECT_TREE and LAB_BISECT_STEP_DIR set: exit 0 good, 1-127 bad, 125 skip. "
        "A commit that does not build is skipped.",
    )
    bis.add_argument("src", type=Path, metavar="SRC", help="iPXE git checkout")
    bis.add_argument("--good", required=True, metavar="REV")
    bis.add_argument("--bad", required=True, metavar="REV")
    bis.add_argument("--run", required=True, metavar="CMD", help="verdict command (sh)")
    bis.add_argument("--nics", default="e1000", metavar="A,B", help="NICs to build per step (default e1000)")
    bis.add_argument("--keep-builds", action="store_true", help="keep each step's build copy in the cache")
    _add_tree_options(bis)
    bis.set_defaults(func=cmd_bisect)

    show = sub.add_parser("show", help="print a built ROM set's manifest and check its ROMs against it")
    show.add_argument("dir", type=Path, metavar="DIR")
    show.set_defaults(func=cmd_show)


def cmd_build(args: argparse.Namespace) -> int:
    try:
        source = open_source(args.src, args.rev)
        if uncommitted_changes(source):
            print(
                f"roms build: note: {source.path} has uncommitted changes; building the commit "
                f"{source.describe} without them (commit them, or pass them as --patch)",
                file=sys.stderr,
            )
        request = BuildRequest(
            source, tuple(Patch.read(p) for p in args.patch), tuple(args.options), _nics(args.nics)
        )
        result = build_romset(request, args.out, args.cache, jobs=args.jobs)
    except (TreeError, BuildError) as exc:
        print(f"roms build: error: {exc}", file=sys.stderr)
        return 1
    for rom in result.manifest.roms:
        print(f"{result.out / rom.file}\t{rom.pci_id}\t{rom.driver}\t{','.join(rom.nics)}")
    for absent in result.manifest.absent:
        print(f"roms build: no ROM for {absent['nic']}: {absent['reason']}", file=sys.stderr)
    return 0


def cmd_bisect(args: argparse.Namespace) -> int:
    try:
        result = bisect(
            args.src,
            args.good,
            args.bad,
            shell_verdict(args.run),
            options=args.options,
            patches=args.patch,
            nics=_nics(args.nics) or ("e1000",),
            cache=args.cache,
            jobs=args.jobs,
            keep_copies=args.keep_builds,
        )
    except (BisectError, TreeError, BuildError) as exc:
        print(f"roms bisect: error: {exc}", file=sys.stderr)
        return 1
    for number, step in enumerate(result.steps, 1):
        print(
            f"step {number}: {step.commit[:12]} {step.verdict:4s} build {step.build_seconds:5.1f} s, "
            f"verdict {step.verdict_seconds:5.1f} s  {step.subject}  [{step.step_dir}]"
        )
    print(result.conclusion())
    print(f"total {result.seconds:.1f} s; steps and log in {result.session}")
    return 0 if result.first_bad else 3


def cmd_show(args: argparse.Namespace) -> int:
    try:
        manifest = read_manifest(args.dir)
    except ManifestError as exc:
        print(f"roms show: error: {exc}", file=sys.stderr)
        return 1
    if manifest is None:
        print(f"roms show: {args.dir} has no manifest.json (not built by `lab roms build`)", file=sys.stderr)
        return 1
    print(f"{manifest.label()}  iPXE {manifest.ipxe_version}")
    for rom in manifest.roms:
        print(f"  {rom.file}  {rom.pci_id}  {rom.driver:12s} {','.join(rom.nics)}  sha256 {rom.sha256[:16]}")
    problems = verify_manifest(args.dir)
    for problem in problems:
        print(f"roms show: {problem}", file=sys.stderr)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab", description="iPXE ROM sets built from a tree")
    add_roms_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
