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
from contextlib import ExitStack
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
    "eepro100": ("i82557b", "pxe-eepro100.rom"),
}
#: Console text after which a VM will never boot (no ROM ran): end it instead of waiting.
DEAD_END = b"No bootable device"
PAYLOAD_SIZE = 256 * 1024


@dataclass(frozen=True)
class SmokeBoot:
    protocol: str
    ok: bool
    seconds: float
    detail: str


def _say(line: str) -> None:
    print(f"SMOKE {line}", flush=True)


def _script(protocol: str, sha256: str, size: int, name: str = "payload.bin") -> str:
    return (
        "#!ipxe\n"
        f"kernel tftp://{SERVER}/verifier.elf expect={sha256} size={size}\n"
        f"module {protocol}://{SERVER}/{name}\n"
        "boot\n"
    )


@dataclass(frozen=True)
class VmSpec:
    """One VM: its slot (tap, MAC, address), NIC, boot file, and what its console must show."""

    index: int
    name: str
    nic: str
    script: str
    #: sha256 the verifier must print, with the size; or None for a full boot (marker check).
    expect: tuple[str, int] | None
    fullboot: FullBoot | None = None

    @property
    def mac(self) -> str:
        return f"52:54:00:00:00:{0x10 + self.index:02x}"

    def dhcp_options(self) -> list[str]:
        return [f"--dhcp-host={self.mac},192.0.2.{11 + self.index},set:b{self.index}",
                f"--dhcp-boot=tag:b{self.index},boot-{self.name}.ipxe,,{SERVER}"]  # fmt: skip

    def judge(self, console: str, seconds: float) -> SmokeBoot:
        tail = " | ".join(line.strip() for line in console.splitlines()[-4:] if line.strip())
        if self.fullboot is not None:
            marker = parse_marker(console)
            ok = marker is not None and marker[0] == self.fullboot.carried_sha256
            seen = f"{self.fullboot.marker} sha256={marker[0]} kernel={marker[1]}" if marker else ""
            return SmokeBoot(self.name, ok, seconds, seen or f"no marker: {tail}")
        report = parse_console(console)
        assert self.expect is not None
        ok = (report.sha256, report.size) == self.expect
        detail = f"sha256={report.sha256} bytes={report.size}" if report.sha256 else f"no VERIFY line: {tail}"
        return SmokeBoot(self.name, ok, seconds, detail)


def run_vms(
    ns: Namespace, specs: Sequence[VmSpec], workdir: Path, timeout: float, stagger: float = 0.0
) -> list[SmokeBoot]:
    """Start the VMs ``stagger`` seconds apart, drain every console, judge each when it ends.

    The guest ends QEMU itself (isa-debug-exit after the verifier, or poweroff with
    -no-reboot after a full boot); a VM still running at ``timeout`` is killed and judged.
    """
    procs: dict[int, subprocess.Popen[bytes]] = {}
    started: dict[int, float] = {}
    ended: dict[int, float] = {}
    out: dict[int, bytes] = {spec.index: b"" for spec in specs}
    t0 = time.monotonic()
    try:
        for spec in specs:
            device, rom = NICS[spec.nic]
            tap = f"tap{spec.index}"
            ns.run(["ip", "tuntap", "add", tap, "mode", "tap"])
            ns.run(["ip", "link", "set", tap, "master", "br0", "up"])
            argv = ["qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-nodefaults", "-nographic",
                    "-serial", "stdio", "-no-reboot", *ISA_DEBUG_EXIT,
                    "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
                    "-device", f"{device},netdev=n0,mac={spec.mac},romfile={ROM_DIR / rom}",
                    "-boot", "n"]  # fmt: skip
            if procs and stagger:
                time.sleep(stagger)
            procs[spec.index] = ns.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            started[spec.index] = time.monotonic()
        while len(ended) < len(procs) and time.monotonic() - t0 < timeout:
            streams = {p.stdout.fileno(): i for i, p in procs.items() if i not in ended and p.stdout}
            ready, _, _ = select.select(list(streams), [], [], 0.5)
            for fd in ready:
                chunk = os.read(fd, 65536)
                if chunk:
                    out[streams[fd]] += chunk
                    if DEAD_END in out[streams[fd]]:
                        ended[streams[fd]] = time.monotonic()
                else:
                    ended[streams[fd]] = time.monotonic()
            for index, proc in procs.items():
                if index not in ended and proc.poll() is not None and not ready:
                    ended[index] = time.monotonic()
    finally:
        for proc in procs.values():
            kill_group(proc)
    results = []
    for spec in specs:
        (workdir / f"console-{spec.name}.log").write_bytes(out[spec.index])
        seconds = ended.get(spec.index, time.monotonic()) - started.get(spec.index, t0)
        results.append(spec.judge(out[spec.index].decode("utf-8", "replace"), seconds))
    return results


def smoke(
    protocols: Sequence[str], nic: str, workdir: Path, timeout: float = 180.0,
    fullboot_protocols: Sequence[str] = (), train: int = 0, train_size: int = 8 << 20,
    capture: bool = False, server: str = "atftpd", train_fullboot: bool = False,
) -> list[SmokeBoot]:
    """One VM per protocol, one per full boot protocol, then an MTFTP train of ``train`` VMs.

    ``server`` is Debian's ``atftpd`` or this project's drop-in ``pyatftpd`` (same flags, plus
    ``--events``); ``train_fullboot`` makes the train boot Debian's kernel instead of the verifier.
    """
    server_argv = _server_argv(server)
    problem = namespace_support_problem()
    if problem:
        raise RuntimeError(f"no lab namespace: {problem}")
    for tool in ("qemu-system-x86_64", "dnsmasq"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            raise RuntimeError(f"{tool} is missing: apt-get install qemu-system-x86 dnsmasq-base atftpd")
    root = workdir / "tftp"
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o777)
    shutil.copy(build_verifier(), root / "verifier.elf")
    payload = make_payload(PAYLOAD_SIZE, 1)
    (root / "payload.bin").write_bytes(payload)
    expect = (hashlib.sha256(payload).hexdigest(), len(payload))
    mtftp_files = ["payload.bin"]
    singles = [VmSpec(i, p, nic, _script(p, *expect), expect) for i, p in enumerate(protocols)]
    fullboot = build_fullboot() if fullboot_protocols or (train and train_fullboot) else None
    if fullboot is not None:
        shutil.copy(fullboot.kernel, root / "vmlinuz")
        shutil.copy(fullboot.initrd, root / "initrd.gz")
        mtftp_files += ["vmlinuz", "initrd.gz"]
        for protocol in fullboot_protocols:
            url = f"{protocol}://{SERVER}"
            script = fullboot_script(f"{url}/vmlinuz", f"{url}/initrd.gz")
            singles.append(VmSpec(len(singles), f"{protocol}-fullboot", nic, script, None, fullboot))
    trains: list[VmSpec] = []
    if train:
        big = make_payload(train_size, 2)
        (root / "train.bin").write_bytes(big)
        mtftp_files.append("train.bin")
        big_expect = (hashlib.sha256(big).hexdigest(), len(big))
        models = list(NICS)
        script = _script("mtftp", *big_expect, name="train.bin")
        if train_fullboot:
            script = fullboot_script(f"mtftp://{SERVER}/vmlinuz", f"mtftp://{SERVER}/initrd.gz")
        for k in range(train):
            model = models[k % len(models)]
            if train_fullboot:
                trains.append(VmSpec(len(singles) + k, f"train{k}-{model}", model, script, None, fullboot))
            else:
                trains.append(VmSpec(len(singles) + k, f"train{k}-{model}", model, script, big_expect))
    hosts: list[str] = []
    for spec in [*singles, *trains]:
        (root / f"boot-{spec.name}.ipxe").write_text(spec.script)
        hosts += spec.dhcp_options()
    # iPXE's mtftp:// always listens on 239.255.1.1:3001, so every file shares that group.
    lines = [f"{name} {MTFTP_GROUP} {MTFTP_CLIENT_PORT}\n" for name in mtftp_files]
    (workdir / "mtftp.conf").write_text("".join(lines))
    results: list[SmokeBoot] = []
    with Namespace() as ns, ExitStack() as stack:
        _say("namespace ok")
        make_bridge(ns)
        ns.run(["ip", "-6", "addr", "add", "2001:db8::1/64", "dev", "br0", "nodad"])
        _say("bridge br0 ok")
        if capture:
            from lab.capture import Capture

            cap = stack.enter_context(Capture(ns, ["br0"], workdir / "pcap"))
        dnsmasq = ns.popen(
            ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--interface=br0",
             "--bind-interfaces", "--user=root", "--group=root", "--dhcp-range=192.0.2.10,192.0.2.99",
             "--enable-ra", "--dhcp-range=::,constructor:br0,ra-stateless", "--no-ping",
             f"--dhcp-leasefile={workdir / 'leases'}", "--log-dhcp", *hosts],
            stdout=open(workdir / "dnsmasq.log", "wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        events = workdir / "events.jsonl" if server == "pyatftpd" else None
        atftpd = ns.popen(
            [*server_argv, *(["--events", str(events)] if events else []), "--daemon", "--no-fork",
             "--logfile", str(workdir / f"{server}.log"), "--user", "root",
             "--group", "root", "--bind-address", SERVER, "--mtftp", str(workdir / "mtftp.conf"),
             "--mtftp-port", str(MTFTP_SERVER_PORT), str(root)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            time.sleep(1.0)
            for name, proc in (("dnsmasq", dnsmasq), (server, atftpd)):
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}; see its log in {workdir}")
            _say(f"dnsmasq + {server} ok")
            for spec in singles:
                results += _report(run_vms(ns, [spec], workdir, timeout), spec.nic)
            if trains:
                boots = run_vms(ns, trains, workdir, timeout, stagger=0.5)
                results += [_report([b], t.nic)[0] for b, t in zip(boots, trains, strict=True)]
        finally:
            kill_group(atftpd)
            kill_group(dnsmasq)
    if capture:
        pcap = cap.result.files["br0"] if cap.result else None
        if pcap is not None and pcap.is_file():
            from lab.timeline import timeline_for_artifacts, write_timeline

            pictures = timeline_for_artifacts(workdir)  # one per session, from events + pcap
            if not pictures:  # atftpd writes no events: the capture alone
                write_timeline(None, pcap, workdir / "timeline.png")
                pictures = [workdir / "timeline.png"]
            _say(f"timeline {' '.join(map(str, pictures))}")
    return results


def _server_argv(server: str) -> list[str]:
    if server == "atftpd":
        if shutil.which("atftpd") is None and not Path("/usr/sbin/atftpd").exists():
            raise RuntimeError("atftpd is missing: apt-get install atftpd")
        return ["atftpd"]
    if server == "pyatftpd":
        import importlib.util

        if importlib.util.find_spec("netboot.tftp.cli") is None:
            raise RuntimeError("pyatftpd (netboot.tftp.cli) is not in this checkout: merge the mcast work")
        return [sys.executable, "-m", "netboot.tftp.cli"]
    raise RuntimeError(f"unknown server {server!r}: atftpd or pyatftpd")


def _report(boots: list[SmokeBoot], nic: str) -> list[SmokeBoot]:
    for boot in boots:
        verdict = "PASS" if boot.ok else "FAIL"
        _say(f"boot {boot.protocol} {nic} {verdict} {boot.seconds:.1f} s {boot.detail}")
    return boots


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nic", choices=sorted(NICS), default="e1000")
    parser.add_argument("--protocols", default="tftp,mtftp", help="comma-separated: tftp, mtftp")
    parser.add_argument("--fullboot", default="", metavar="PROTOCOLS",
                        help="also boot Debian's kernel + initramfs over these (tftp, mtftp)")
    parser.add_argument("--train", type=int, default=0, metavar="N",
                        help="then N VMs of mixed NICs fetch one payload by mtftp, 0.5 s apart")
    parser.add_argument("--train-size", type=int, default=8 << 20, help="train payload bytes (default 8 MiB)")
    parser.add_argument("--train-fullboot", action="store_true", help="the train boots Debian's kernel")
    parser.add_argument("--server", choices=("atftpd", "pyatftpd"), default="atftpd",
                        help="TFTP/MTFTP server (pyatftpd also writes events.jsonl)")
    parser.add_argument("--capture", action="store_true", help="capture br0 and draw timeline.png")
    parser.add_argument("--workdir", type=Path, default=None, help="keep logs and consoles here")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per boot (or train)")
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
                            args.capture, args.server, args.train_fullboot)
        except (RuntimeError, OSError, FullBootError) as exc:
            _say(f"ERROR {exc}")
            return 2
    return 0 if results and all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
