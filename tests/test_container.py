"""The lab in a container.

Fast checks of the run options, CLI and build context run everywhere.  The tests marked
``container`` build the image with a real Docker engine (a private dockerd is started
when none runs and we are root) and boot VMs inside it; the first build takes minutes
(debootstrap + apt + pip), so they run only in ``tox -e container`` / ``pytest -m container``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.container import image as container
from lab.container.image import (
    ARTIFACTS_IN_CONTAINER,
    DEFAULT_BASE,
    DOCKERFILE,
    Engine,
    add_container_commands,
    matrix_command,
    run_options,
)


def test_run_options_are_the_least_the_lab_needs() -> None:
    options = run_options()
    assert options["privileged"] is False
    assert options["cap_add"] == [], "the lab's own user namespace gives it NET_ADMIN over its network"
    assert run_options(cap_add=["NET_RAW"])["cap_add"] == ["NET_RAW"]
    assert options["devices"] == ["/dev/net/tun:/dev/net/tun:rwm"]
    assert options["security_opt"] == ["seccomp=unconfined"]
    assert options["network_mode"] == "none", "the lab needs no network outside its own namespace"
    assert run_options(kvm=True)["devices"] == ["/dev/net/tun:/dev/net/tun:rwm", "/dev/kvm:/dev/kvm:rwm"]


def test_matrix_command_points_artifacts_at_the_mount() -> None:
    assert matrix_command(["--", "--lab-nics", "e1000"]) == [
        "matrix", "--lab-nics", "e1000", "--lab-artifacts", ARTIFACTS_IN_CONTAINER,
    ]  # fmt: skip
    assert matrix_command(["--lab-artifacts=/x"]) == ["matrix", "--lab-artifacts=/x"]
    assert matrix_command([]) == ["matrix", "--lab-artifacts", ARTIFACTS_IN_CONTAINER]


def test_cli_wiring_parses_build_and_run() -> None:
    parser = argparse.ArgumentParser(prog="lab")
    add_container_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["container", "run", "--kvm", "--", "--lab-nics", "e1000", "--lab-sizes", "1"])
    assert args.command == "container" and args.container_command == "run" and args.kvm
    assert args.cap_add == []
    assert matrix_command(args.args)[:5] == ["matrix", "--lab-nics", "e1000", "--lab-sizes", "1"]
    assert args.func is container.cmd_container
    args = parser.parse_args(["container", "build", "--base", "debian:bookworm"])
    assert args.base == "debian:bookworm" and args.tag == container.DEFAULT_IMAGE


def test_dockerfile_takes_its_base_as_an_argument() -> None:
    text = DOCKERFILE.read_text()
    assert f"ARG BASE={DEFAULT_BASE}" in text
    assert re.search(r"^FROM \$\{BASE\}$", text, re.M)
    for package in ("qemu-system-x86", "ipxe-qemu", "dnsmasq-base", "atftpd", "atftp", "tftp-hpa", "curl",
                    "gcc", "nftables", "tcpdump", "iproute2", "python3"):  # fmt: skip
        assert re.search(rf"\s{re.escape(package)}\s", text), package
    instructions = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "tftpd-hpa" not in instructions, "tftpd-hpa would remove atftpd"


def test_build_context_leaves_out_local_state(tmp_path: Path) -> None:
    files = container._project_files()
    assert "images/Dockerfile" in files and "lab/container/image.py" in files and "pyproject.toml" in files
    assert not [f for f in files if f.startswith((".git/", ".venv/", ".tox/")) or "__pycache__" in f]
    container.prepare_context(tmp_path, wheels=False)
    assert (tmp_path / "images" / "Dockerfile").is_file()
    assert not (tmp_path / "wheels").exists()


# --- with a Docker engine ------------------------------------------------------------------


@pytest.fixture(scope="module")
def runner() -> Iterator[tuple[Engine, container.BuildResult]]:
    problem = container.engine_problem()
    if problem:
        pytest.skip(f"no Docker engine: {problem}")
    handle = container.connect()
    try:
        result = container.build_image(handle, log=print)
        base = f" (base {result.base_seconds:.0f} s)" if result.base_seconds is not None else ""
        print(f"image {result.tag}: {result.size_bytes / 1e6:.0f} MB, built in {result.seconds:.0f} s{base}")
        yield handle, result
    finally:
        handle.close()


@pytest.mark.container
def test_image_holds_the_real_parts(runner: tuple[Engine, container.BuildResult], tmp_path: Path) -> None:
    handle, result = runner
    script = (
        "set -e; qemu-system-x86_64 --version | head -1; ls /usr/lib/ipxe/qemu/pxe-e1000.rom; "
        "command -v atftpd atftp tftp curl dnsmasq nft tcpdump gcc unshare; "
        "python -c 'import netboot, lab, images, roms; print(\"project ok\")'; cat /etc/debian_version"
    )
    status, out = container.run_in_container(handle, ["-c", script], tmp_path, entrypoint=["sh"], log=None)
    assert status == 0, out
    assert "QEMU emulator version 7.2" in out and "project ok" in out
    assert re.search(r"^12\.", out, re.M), "Debian 12"


@pytest.mark.container
def test_tftp_and_mtftp_boot_inside_the_container(
    runner: tuple[Engine, container.BuildResult], tmp_path: Path
) -> None:
    """A unicast and a PXE MTFTP boot, bytes verified in the guest, with only the tun device added."""
    handle, _ = runner
    workdir = f"{ARTIFACTS_IN_CONTAINER}/smoke"
    command = ["-m", "lab.container.smoke", "--protocols", "tftp,mtftp", "--workdir", workdir]
    status, out = container.run_in_container(handle, command, tmp_path, entrypoint=["python"], log=print)
    assert "SMOKE namespace ok" in out, out
    assert re.search(r"SMOKE boot tftp \S+ PASS", out), out
    assert re.search(r"SMOKE boot mtftp \S+ PASS", out), out
    assert status == 0
    assert (tmp_path / "smoke" / "console-mtftp.log").is_file(), "artifacts come back through the mount"


@pytest.mark.container
def test_debian_kernel_boots_over_mtftp_inside_the_container(
    runner: tuple[Engine, container.BuildResult], tmp_path: Path
) -> None:
    """The full boot in the container, from the host's cache (the container has no network)."""
    from images.fullboot import FullBootError, build_fullboot
    from images.verifier import default_cache_root

    try:
        build_fullboot()  # fills the host cache the container reuses
    except FullBootError as exc:
        pytest.skip(f"full boot payload unavailable on the host: {exc}")
    handle, _ = runner
    command = ["-m", "lab.container.smoke", "--protocols", "", "--fullboot", "mtftp", "--timeout", "400",
               "--workdir", f"{ARTIFACTS_IN_CONTAINER}/full"]  # fmt: skip
    status, out = container.run_in_container(handle, command, tmp_path, entrypoint=["python"], log=print,
                                             cache=default_cache_root())  # fmt: skip
    assert re.search(r"SMOKE boot mtftp-fullboot \S+ PASS .*FULLBOOT OK sha256=[0-9a-f]{64}", out), out
    assert status == 0


def _matrix_help(handle: Engine, tmp_path: Path) -> str:
    status, out = container.run_in_container(handle, ["matrix", "--help"], tmp_path, log=None)
    if status != 0:
        tail = out.strip().splitlines()[-1:]
        pytest.skip(f"`lab matrix` is not in this checkout (exit {status}: {tail}): merge the lab branch")
    return out


#: One scenario each, as the issue asks: no trains, no full boot, no extra columns (those
#: are the matrix's job, minutes each, and `lab container run` runs them all).
ONLY_CELLS = [
    "--lab-trains",
    "none",
    "--lab-full-boot",
    "none",
    "--lab-loss",
    "0",
    "--lab-querier-protocols",
    "none",
]


def _one_cell(handle: Engine, protocol: str, tmp_path: Path) -> tuple[int | None, dict[str, object]]:
    """Run one e1000 cell of ``protocol`` in the container; its exit status and matrix.json."""
    args = ["--lab-nics", "e1000", "--lab-sizes", "1", "--lab-jobs", "1", "--lab-protocols", protocol]
    command = matrix_command([*args, *ONLY_CELLS])
    status, out = container.run_in_container(handle, command, tmp_path, log=print)
    reports = list(tmp_path.rglob("matrix.json"))
    assert reports, f"no matrix.json in the mounted artifacts; exit {status}: {out[-1500:]}"
    return status, json.loads(reports[0].read_text())


@pytest.mark.container
def test_unicast_matrix_cell_in_container(
    runner: tuple[Engine, container.BuildResult], tmp_path: Path
) -> None:
    handle, _ = runner
    _matrix_help(handle, tmp_path)
    status, report = _one_cell(handle, "tftp", tmp_path)
    assert '"PASS"' in json.dumps(report), report
    assert status == 0


@pytest.mark.container
def test_mtftp_matrix_cell_in_container(runner: tuple[Engine, container.BuildResult], tmp_path: Path) -> None:
    handle, _ = runner
    help_text = _matrix_help(handle, tmp_path)
    if "mtftp" not in help_text:
        pytest.skip("`lab matrix` here has no protocol selection with mtftp yet (issue 6, branch lab)")
    _, report = _one_cell(handle, "mtftp", tmp_path)
    assert "mtftp" in json.dumps(report)


def test_no_engine_and_not_root_says_how_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(container, "_try_client", lambda url: None)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    problem = container.engine_problem()
    assert problem is not None and "start dockerd" in problem
    with pytest.raises(container.ContainerError, match="systemctl start docker"):
        container.connect()
