"""Make sure the Debian packages the project runs against are installed.

Why a step of its own: the tests use the real parts (QEMU, Debian's iPXE ROMs,
dnsmasq, atftpd, the atftp/tftp-hpa/curl clients), so a missing package must stop
the run at once with the exact fix, not surface later as a confusing skip.

As root, missing packages are installed with apt-get.  Otherwise the step stops
with one line naming the exact apt-get command.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence

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
}


__all__ = ["BUILD_PACKAGES", "PACKAGES", "install_command", "missing_packages", "provision"]


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


def install_command(names: Sequence[str]) -> str:
    return "sudo apt-get update && sudo apt-get install -y " + " ".join(names)


def provision(names: Sequence[str], is_root: bool) -> int:
    """Install or report missing packages; returns a process exit code."""
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
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True, env=env)
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
