"""A few boots that show the lab works where it runs (in the runner image, or on a host).

Why its own entry point: ``lab matrix`` needs the whole catalog and minutes; a container
build wants one quick answer with readable lines (``SMOKE boot mtftp e1000 PASS ...``)
that a test can match.  It boots through the same lab as the matrix (:mod:`lab.run`), so
a smoke that passes says the matrix's parts work here.

CLI: ``python -m lab.container.smoke --protocols tftp,mtftp [--fullboot mtftp] [--train N]``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from images.fullboot import FullBootError
from lab.model.errors import LabError
from lab.model.status import Status
from lab.model.train_plan import TrainPlan
from lab.run.boot import launch
from lab.run.fullboot import run_fullboot_train, run_fullboot_vms
from lab.run.lab import Lab, LabConfig
from lab.run.train import run_train
from roms.catalog import nic
from roms.romset import RomSet

#: The design NICs the smoke may boot; a train takes them in turn.
NICS = ("e1000", "rtl8139", "pcnet", "eepro100")
PAYLOAD_SIZE = 256 * 1024


@dataclass(frozen=True)
class SmokeBoot:
    protocol: str
    ok: bool
    seconds: float
    detail: str


def _say(line: str) -> None:
    print(f"SMOKE {line}", flush=True)


def _report(name: str, nic_name: str, ok: bool, seconds: float, detail: str) -> SmokeBoot:
    _say(f"boot {name} {nic_name} {'PASS' if ok else 'FAIL'} {seconds:.1f} s {detail}")
    return SmokeBoot(name, ok, seconds, detail)


def _single(lab: Lab, rom_set: RomSet, protocol: str, nic_name: str, workdir: Path) -> SmokeBoot:
    where = workdir / f"boot-{protocol}"
    evidence = launch(lab, nic(nic_name), rom_set, PAYLOAD_SIZE, 1, where, protocol=protocol).finish()
    if (where / "console.log").is_file():
        shutil.copyfile(where / "console.log", workdir / f"console-{protocol}.log")
    detail = (
        " ".join(f"sha256={p.seen_sha256} bytes={p.seen_bytes}" for p in evidence.payloads) or evidence.reason
    )
    return _report(protocol, nic_name, evidence.status is Status.PASS, evidence.seconds, detail)


def _fullboot(
    lab: Lab, rom_set: RomSet, protocol: str, nic_name: str, server: str, workdir: Path
) -> SmokeBoot:
    where = workdir / f"boot-{protocol}-fullboot"
    payload, (vm,), _, _ = run_fullboot_vms(lab, rom_set, (nic_name,), 0.0, protocol, server, where)
    shutil.copyfile(vm.directory / "console.log", workdir / f"console-{protocol}-fullboot.log")
    detail = vm.detail if vm.status is not Status.PASS else f"{payload.marker} {vm.detail.split(' ', 2)[-1]}"
    return _report(f"{protocol}-fullboot", nic_name, vm.status is Status.PASS, vm.seconds, detail)


def smoke(
    protocols: Sequence[str], nic_name: str, workdir: Path, timeout: float = 180.0,
    fullboot_protocols: Sequence[str] = (), train: int = 0, train_size: int = 8 << 20,
    capture: bool = False, server: str = "atftpd", train_fullboot: bool = False,
) -> list[SmokeBoot]:  # fmt: skip
    """One VM per protocol, one per full boot protocol, then an MTFTP train of ``train`` VMs.

    ``server`` is Debian's ``atftpd`` or this project's drop-in ``pyatftpd``.
    """
    rom_set = RomSet.debian()
    config = LabConfig(workdir / "lab", server=server, capture=capture, timeout_scale=timeout / 180.0)
    results: list[SmokeBoot] = []
    with ExitStack() as stack:
        lab = stack.enter_context(Lab(config))
        _say("namespace ok")
        _say("bridge br0 ok")
        _say(f"dnsmasq + {server} ok")
        for protocol in protocols:
            results.append(_single(lab, rom_set, protocol, nic_name, workdir))
        for protocol in fullboot_protocols:
            results.append(_fullboot(lab, rom_set, protocol, nic_name, server, workdir))
        if train:
            nics = tuple(NICS[k % len(NICS)] for k in range(train))
            plan = TrainPlan("mtftp", server, rom_set.name, train_size, nics=nics, full_boot=train_fullboot)
            runner = run_fullboot_train if train_fullboot else run_train
            outcome = runner(lab, rom_set, plan, workdir / "train")
            for vm in outcome.vms:
                ok, detail = vm.status is Status.PASS, vm.evidence.reason or vm.evidence.outcome
                results.append(_report(f"train-{vm.nic}", vm.nic, ok, vm.evidence.seconds, detail))
            if outcome.timelines:
                _say(f"timeline {' '.join(map(str, outcome.timelines))}")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nic", choices=NICS, default="e1000")
    parser.add_argument("--protocols", default="tftp,mtftp", help="comma-separated: tftp, mtftp")
    parser.add_argument("--fullboot", default="", metavar="PROTOCOLS",
                        help="also boot Debian's kernel + initramfs over these (tftp, mtftp)")  # fmt: skip
    parser.add_argument("--train", type=int, default=0, metavar="N",
                        help="then N VMs of mixed NICs fetch one payload by mtftp, 0.5 s apart")  # fmt: skip
    parser.add_argument("--train-size", type=int, default=8 << 20, help="train payload bytes (default 8 MiB)")
    parser.add_argument("--train-fullboot", action="store_true", help="the train boots Debian's kernel")
    parser.add_argument("--server", choices=("atftpd", "pyatftpd"), default="atftpd",
                        help="TFTP/MTFTP server (pyatftpd also writes its events)")  # fmt: skip
    parser.add_argument("--capture", action="store_true", help="capture br0 and each tap (pcaps and counts)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep logs and consoles here")
    parser.add_argument(
        "--timeout", type=float, default=180.0, help="seconds per boot stage scale (default 180)"
    )
    args = parser.parse_args(argv)
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    full = [p.strip() for p in args.fullboot.split(",") if p.strip()]
    unknown = sorted(set(protocols + full) - {"tftp", "mtftp"})
    if unknown:
        parser.error(f"unknown protocol(s) {', '.join(unknown)}")
    with tempfile.TemporaryDirectory(prefix="lab-smoke-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            results = smoke(protocols, args.nic, workdir, args.timeout, full, args.train, args.train_size,
                            args.capture, args.server, args.train_fullboot)  # fmt: skip
        except (LabError, RuntimeError, OSError, FullBootError) as exc:
            _say(f"ERROR {exc}")
            return 2
    return 0 if results and all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
