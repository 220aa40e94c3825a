"""A self-contained boot check for a fresh lab host or container: one tftp and one mtftp boot.

Why: before the matrix runs in a new place (a CI container above all), one command should
prove the whole chain works there: the sealed namespace, a bridge and taps, dnsmasq's
DHCP with router advertisements, QEMU under TCG with a stock Debian iPXE ROM, and the
bytes verified in the guest.  It uses only the reference parts (Debian's atftpd for TFTP
and PXE MTFTP), so it also works before this project's servers are installed, and it
never touches anything outside its own namespace.

``python -m lab.container_smoke [--nic e1000] [--protocols tftp,mtftp] [--workdir DIR]``
prints one ``SMOKE`` line per step and per boot; the exit status is 0 when every boot
verified.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from images.fullboot import FullBoot, FullBootError, build_fullboot, fullboot_script, parse_marker
from images.payload import make_payload
from images.verifier import ISA_DEBUG_EXIT, build_verifier, parse_console
from lab.netns import Namespace, kill_group, make_bridge, namespace_support_problem

SERVER = "192.0.2.1"
ROM_DIR = Path("/usr/lib/ipxe/qemu")
#: iPXE's PXE MTFTP defaults (group 239.255.1.1, client port 3001, server port 1759).
MTFTP_GROUP, MTFTP_CLIENT_PORT, MTFTP_SERVER_PORT = "239.255.1.1", 3001, 1759
#: NIC -> (QEMU device, ROM file) for the design NICs the smoke may use.
NICS = {
    "e1000": ("e1000", "pxe-e1000.rom"),
    "rtl8139": ("rtl8139", "pxe-rtl8139.rom"),
    "pcnet": ("pcnet", "pxe-pcnet.rom"),
    "virtio": ("virtio-net-pci", "pxe-virtio.rom"),
}
PAYLOAD_SIZE = 256 * 1024


@dataclass(frozen=True)
class SmokeBoot:
    protocol: str
    ok: bool
    seconds: float
    detail: str


def _say(line: str) -> None:
    print(f"SMOKE {line}", flush=True)


def _script(protocol: str, sha256: str, size: int) -> str:
    return (
        "#!ipxe\n"
        f"kernel tftp://{SERVER}/verifier.elf expect={sha256} size={size}\n"
        f"module {protocol}://{SERVER}/payload.bin\n"
        "boot\n"
    )


def boot_one(
    ns: Namespace, index: int, protocol: str, nic: str, workdir: Path, timeout: float,
    fullboot: FullBoot | None = None,
) -> SmokeBoot:
    """Boot one VM on tap<index>; its DHCP boot file is ``boot-<name>.ipxe``.

    With ``fullboot`` the VM boots Debian's kernel + the busybox initramfs over ``protocol``
    and passes when the marker shows the carried file's hash; otherwise the verifier checks
    the payload fetched over ``protocol``.
    """
    name = f"{protocol}-fullboot" if fullboot else protocol
    device, rom = NICS[nic]
    tap = f"tap{index}"
    ns.run(["ip", "tuntap", "add", tap, "mode", "tap"])
    ns.run(["ip", "link", "set", tap, "master", "br0", "up"])
    mac = f"52:54:00:00:00:{0x10 + index:02x}"
    argv = ["qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-nodefaults", "-nographic",
            "-serial", "stdio", "-no-reboot", *ISA_DEBUG_EXIT,
            "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
            "-device", f"{device},netdev=n0,mac={mac},romfile={ROM_DIR / rom}", "-boot", "n"]  # fmt: skip
    started = time.monotonic()
    proc = ns.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    out = b""
    try:
        while time.monotonic() - started < timeout and proc.poll() is None:
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                out += chunk  # the guest ends QEMU itself (isa-debug-exit, or poweroff + -no-reboot)
    finally:
        kill_group(proc)
        (workdir / f"console-{name}.log").write_bytes(out)
    console = out.decode("utf-8", "replace")
    tail = " | ".join(line.strip() for line in console.splitlines()[-4:] if line.strip())
    if fullboot is not None:
        marker = parse_marker(console)
        ok = marker is not None and marker[0] == fullboot.carried_sha256
        seen = f"{fullboot.marker} sha256={marker[0]} kernel={marker[1]}" if marker else ""
        detail = seen or f"no marker: {tail}"
        return SmokeBoot(name, ok, time.monotonic() - started, detail)
    report = parse_console(console)
    expected = hashlib.sha256(make_payload(PAYLOAD_SIZE, 1)).hexdigest()
    ok = report.sha256 == expected and report.size == PAYLOAD_SIZE
    detail = f"sha256={report.sha256} bytes={report.size}" if report.sha256 else f"no VERIFY line: {tail}"
    return SmokeBoot(name, ok, time.monotonic() - started, detail)


def smoke(
    protocols: Sequence[str], nic: str, workdir: Path, timeout: float = 180.0,
    fullboot_protocols: Sequence[str] = (),
) -> list[SmokeBoot]:
    problem = namespace_support_problem()
    if problem:
        raise RuntimeError(f"no lab namespace: {problem}")
    for tool in ("qemu-system-x86_64", "dnsmasq", "atftpd"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            raise RuntimeError(f"{tool} is missing: apt-get install qemu-system-x86 dnsmasq-base atftpd")
    root = workdir / "tftp"
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o777)
    shutil.copy(build_verifier(), root / "verifier.elf")
    payload = make_payload(PAYLOAD_SIZE, 1)
    (root / "payload.bin").write_bytes(payload)
    sha = hashlib.sha256(payload).hexdigest()
    fullboot = build_fullboot() if fullboot_protocols else None
    runs: list[tuple[str, FullBoot | None]] = [(p, None) for p in protocols]
    runs += [(p, fullboot) for p in fullboot_protocols]
    mtftp_files = ["payload.bin"]
    if fullboot is not None:
        shutil.copy(fullboot.kernel, root / "vmlinuz")
        shutil.copy(fullboot.initrd, root / "initrd.gz")
        mtftp_files += ["vmlinuz", "initrd.gz"]
    hosts = []
    for index, (protocol, full) in enumerate(runs):
        name = f"{protocol}-fullboot" if full else protocol
        if full:
            url = f"{protocol}://{SERVER}"
            script = fullboot_script(f"{url}/vmlinuz", f"{url}/initrd.gz")
        else:
            script = _script(protocol, sha, len(payload))
        (root / f"boot-{name}.ipxe").write_text(script)
        mac = f"52:54:00:00:00:{0x10 + index:02x}"
        hosts += [f"--dhcp-host={mac},192.0.2.{11 + index},set:b{index}",
                  f"--dhcp-boot=tag:b{index},boot-{name}.ipxe,,{SERVER}"]  # fmt: skip
    # iPXE's mtftp:// always listens on 239.255.1.1:3001, so every file shares that group.
    lines = [f"{name} {MTFTP_GROUP} {MTFTP_CLIENT_PORT}\n" for name in mtftp_files]
    (workdir / "mtftp.conf").write_text("".join(lines))
    results: list[SmokeBoot] = []
    with Namespace() as ns:
        _say("namespace ok")
        make_bridge(ns)
        ns.run(["ip", "-6", "addr", "add", "2001:db8::1/64", "dev", "br0", "nodad"])
        _say("bridge br0 ok")
        dnsmasq = ns.popen(
            ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--interface=br0",
             "--bind-interfaces", "--user=root", "--group=root", "--dhcp-range=192.0.2.10,192.0.2.99",
             "--enable-ra", "--dhcp-range=::,constructor:br0,ra-stateless", "--no-ping",
             f"--dhcp-leasefile={workdir / 'leases'}", "--log-dhcp", *hosts],
            stdout=open(workdir / "dnsmasq.log", "wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        atftpd = ns.popen(
            ["atftpd", "--daemon", "--no-fork", "--logfile", str(workdir / "atftpd.log"), "--user", "root",
             "--group", "root", "--bind-address", SERVER, "--mtftp", str(workdir / "mtftp.conf"),
             "--mtftp-port", str(MTFTP_SERVER_PORT), str(root)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            time.sleep(1.0)
            for name, proc in (("dnsmasq", dnsmasq), ("atftpd", atftpd)):
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}; see its log in {workdir}")
            _say("dnsmasq + atftpd ok")
            for index, (protocol, full) in enumerate(runs):
                boot = boot_one(ns, index, protocol, nic, workdir, timeout, full)
                verdict = "PASS" if boot.ok else "FAIL"
                _say(f"boot {boot.protocol} {nic} {verdict} {boot.seconds:.1f} s {boot.detail}")
                results.append(boot)
        finally:
            kill_group(atftpd)
            kill_group(dnsmasq)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nic", choices=sorted(NICS), default="e1000")
    parser.add_argument("--protocols", default="tftp,mtftp", help="comma-separated: tftp, mtftp")
    parser.add_argument("--fullboot", default="", metavar="PROTOCOLS",
                        help="also boot Debian's kernel + initramfs over these (tftp, mtftp)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep logs and consoles here")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per boot")
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
            results = smoke(protocols, args.nic, workdir, args.timeout, full)
        except (RuntimeError, OSError, FullBootError) as exc:
            _say(f"ERROR {exc}")
            return 2
    return 0 if results and all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
