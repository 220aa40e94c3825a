"""Make sure the Debian packages the project runs against are installed.

Why a step of its own: the tests use the real parts (QEMU, Debian's iPXE ROMs,
dnsmasq, atftpd, the atftp/tftp-hpa/curl clients), so a missing package must stop
the run at once with the exact fix, not surface later as a confusing skip.

As root, missing packages are installed with apt-get, without recommended packages
(with them QEMU pulled in its GUI, gstreamer and mesa: 183 packages, 493 MB).
Otherwise the step stops with one line naming the exact apt-get command.

Debian's atftpd package enables ``atftpd.socket`` (UDP 69) on the host.  The project
needs only the binary (the tests start it on loopback), and a TFTP server answering
on the host beside a real PXE server would be a hazard, so as root every run
disables and masks what the package enabled (:func:`quiet_commands`); as another
user it names the command.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

# The packages ``lab roms build`` needs (one list, in roms/build_deps.py); checked with
# ``--build`` only, so a machine that never builds ROMs needs none of them.
from roms.build_deps import BUILD_PACKAGES

#: Debian package -> why the project needs it.
PACKAGES: dict[str, str] = {
    "qemu-system-x86": "the lab's virtual machines",
    "ipxe-qemu": "the stock iPXE option ROMs under test",
    "dnsmasq-base": "DHCP inside the lab namespace",
    "iproute2": "bridge, taps and veth links in the namespace",
    "atftpd": "the reference RFC 2090 / MTFTP server",
    "atftp": "a reference TFTP client with RFC 2090 multicast",
    "tftp-hpa": "a reference TFTP client",
    "curl": "a reference TFTP client (tftp://)",
    "gcc": "builds the in-guest verifier kernel",
    "nftables": "loss injection on a tap (this kernel has no netem)",
    "tcpdump": "packet captures for wire evidence (lab.capture falls back to AF_PACKET in a userns)",
    "util-linux": "unshare and nsenter for the sealed namespace",
    "cpio": "packs the full boot initramfs (images/fullboot.py)",
    "chromium": "renders matrix.html headless: the first-screen test (tests/lab_unit/test_report_screen.py)",
}


def missing_packages(names: Sequence[str]) -> list[str]:
    """Packages from ``names`` that dpkg does not report as installed."""
    missing = []
    for name in names:
        result = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", name],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0 or "install ok installed" not in result.stdout:
            missing.append(name)
    return missing


#: systemd units of Debian's packages that would serve TFTP on the host.
TFTP_UNITS = ("atftpd.socket", "atftpd.service")


def install_command(names: Sequence[str]) -> str:
    return "sudo apt-get update && sudo apt-get install -y --no-install-recommends " + " ".join(names)


def install_commands(names: Sequence[str]) -> list[list[str]]:
    """What root runs to install ``names``."""
    return [
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *names],
    ]


def quiet_commands(etc: Path = Path("/etc"), run: Path = Path("/run")) -> list[list[str]]:
    """What root runs so that no TFTP service of Debian's packages listens on the host.

    systemd units are disabled and masked (works without systemd running, e.g. in a
    container, and then nothing can start them later); a running systemd also stops
    them.  The SysV script and an inetd line are disabled where those exist.
    """
    commands: list[list[str]] = []
    if shutil.which("systemctl"):
        if (run / "systemd" / "system").is_dir():
            commands.append(["systemctl", "stop", *TFTP_UNITS])
        commands.append(["systemctl", "disable", "--quiet", *TFTP_UNITS])
        commands.append(["systemctl", "mask", "--quiet", *TFTP_UNITS])
    if (etc / "init.d" / "atftpd").exists() and shutil.which("update-rc.d"):
        commands.append(["update-rc.d", "atftpd", "disable"])
    if (etc / "inetd.conf").exists() and shutil.which("update-inetd"):
        commands.append(["update-inetd", "--disable", "tftp"])
    return commands


def enabled_tftp_units() -> list[str]:
    """The units of :data:`TFTP_UNITS` that systemd would start (empty without systemctl)."""
    if not shutil.which("systemctl"):
        return []
    enabled = []
    for unit in TFTP_UNITS:
        result = subprocess.run(["systemctl", "is-enabled", unit], capture_output=True, text=True)
        if result.stdout.strip() in ("enabled", "enabled-runtime", "indirect", "static", "alias"):
            enabled.append(unit)
    return enabled


def quiet_tftp_services(is_root: bool) -> int:
    """Leave no TFTP service of Debian's packages enabled on the host; returns an exit code."""
    if is_root:
        for command in quiet_commands():
            subprocess.run(command, check=False, capture_output=True)
    left = enabled_tftp_units()
    if left:
        units = " ".join(left)
        print(
            f"provision: {units} would serve TFTP on this host (UDP 69); run: "
            f"sudo systemctl disable --now {units} && sudo systemctl mask {units}",
            file=sys.stderr,
        )
        return 1 if is_root else 0  # root could not quiet it: stop; another user: a warning
    return 0


def provision(names: Sequence[str], is_root: bool) -> int:
    """Install or report missing packages, then quiet TFTP services; returns an exit code."""
    code = _install(names, is_root)
    if code == 0 and "atftpd" in names:
        code = quiet_tftp_services(is_root)
    return code


def _install(names: Sequence[str], is_root: bool) -> int:
    missing = missing_packages(names)
    if not missing:
        return 0
    if not is_root:
        print(
            f"provision: missing Debian packages: {' '.join(missing)}; run: {install_command(missing)}",
            file=sys.stderr,
        )
        return 1
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    print(f"provision: installing {' '.join(missing)}", file=sys.stderr)
    for command in install_commands(missing):
        subprocess.run(command, check=True, env=env)
    still = missing_packages(missing)
    if still:
        print(f"provision: apt-get did not install: {' '.join(still)}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report, never install")
    parser.add_argument("--build", action="store_true", help="also the packages `lab roms build` needs")
    args = parser.parse_args(argv)
    is_root = os.geteuid() == 0 and not args.check
    names = list(PACKAGES) + [p for p in BUILD_PACKAGES if args.build and p not in PACKAGES]
    return provision(names, is_root)


if __name__ == "__main__":
    sys.exit(main())
