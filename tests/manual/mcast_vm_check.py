"""Manual check with real VMs: stock Debian iPXE ROMs fetch a blob by mtftp:// or tftm://.

Not a pytest test (the lab's fixtures will own VM tests); run by hand, it prints each
VM's verdict from the in-guest verifier (images/ on the ``fullboot`` branch, built into
``~/.cache/netboot-lab/verifier-*/verifier.elf``)::

    python -m tests.manual.mcast_vm_check --server atftpd --scheme mtftp --vms 3 --gap 1
    python -m tests.manual.mcast_vm_check --server pyatftpd --scheme mtftp --vms 3 --gap 1
    python -m tests.manual.mcast_vm_check --server pyatftpd --scheme tftm --vms 2

Everything runs in a sealed namespace (bridge br0 192.0.2.1, taps, dnsmasq with
router advertisements so the stock ROMs do not wait 13 s for IPv6), QEMU under TCG,
each VM in its own process group.  Results are recorded in docs/multicast.md.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import random
import re
import subprocess
import sys
import time
from pathlib import Path

from lab.infra.namespace import Namespace, kill_group
from lab.infra.network import make_bridge

ROM_DIR = Path("/usr/lib/ipxe/qemu")
QEMU = "qemu-system-x86_64"


def verifier_elf() -> Path:
    found = sorted(glob.glob(str(Path.home() / ".cache/netboot-lab/verifier-*/verifier.elf")))
    if not found:
        raise SystemExit("no verifier.elf: build it from the fullboot branch (images/verifier.py)")
    return Path(found[-1])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", choices=["pyatftpd", "atftpd"], default="pyatftpd")
    parser.add_argument("--scheme", choices=["mtftp", "tftm"], default="mtftp")
    parser.add_argument("--vms", type=int, default=3)
    parser.add_argument("--gap", type=float, default=1.0, help="seconds between VM starts")
    parser.add_argument("--size", type=int, default=2 << 20)
    parser.add_argument("--nic", default="rtl8139")
    parser.add_argument("--timeout", type=float, default=240.0)
    parser.add_argument("--work", default="/tmp/mcast-vm-check")
    args = parser.parse_args()

    work = Path(args.work) / f"{args.server}-{args.scheme}"
    root = work / "root"
    root.mkdir(parents=True, exist_ok=True)
    blob = random.Random(11).randbytes(args.size)
    (root / "blob").write_bytes(blob)
    (root / "verifier.elf").write_bytes(verifier_elf().read_bytes())
    sha = hashlib.sha256(blob).hexdigest()
    (root / "boot.ipxe").write_text(
        "#!ipxe\n"
        f"kernel tftp://192.0.2.1/verifier.elf expect={sha} size={len(blob)}\n"
        f"module {args.scheme}://192.0.2.1/blob\n"
        "boot\n"
    )
    conf = work / "mtftp.conf"
    conf.write_text("blob 239.255.1.1 3001\n")

    results = []
    with Namespace() as ns:
        make_bridge(ns, snooping=False, querier=False)
        ns.run(["ip", "-6", "addr", "add", "2001:db8::1/64", "dev", "br0"])
        for i in range(args.vms):
            ns.run(["ip", "tuntap", "add", f"tap{i}", "mode", "tap"])
            ns.run(["ip", "link", "set", f"tap{i}", "master", "br0"])
            ns.run(["ip", "link", "set", f"tap{i}", "up"])
        common = ["--daemon", "--no-fork", "--logfile", "-", "--user", "root",
                  "--mtftp", str(conf), "--mtftp-port", "1759"]
        if args.server == "pyatftpd":
            argv = [sys.executable, "-m", "netboot.tftp.cli", *common, "--events", str(work / "events.jsonl")]
        else:
            argv = ["/usr/sbin/atftpd", *common, "--group", "root", "--verbose=6"]
        server = ns.popen([*argv, str(root)], stdout=open(work / "server.log", "w"), stderr=subprocess.STDOUT)
        dnsmasq = ns.popen(
            ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--user=root",
             "--interface=br0", "--bind-interfaces", "--dhcp-range=192.0.2.100,192.0.2.199,1h",
             "--dhcp-boot=boot.ipxe,,192.0.2.1", "--enable-ra",
             "--dhcp-range=::,constructor:br0,ra-stateless",
             f"--dhcp-leasefile={work / 'leases'}", "--pid-file="],
            stdout=open(work / "dnsmasq.log", "w"), stderr=subprocess.STDOUT,
        )
        time.sleep(1.0)
        vms = []
        started = time.monotonic()
        for i in range(args.vms):
            console = work / f"vm{i}.log"
            console.unlink(missing_ok=True)
            qemu = ns.popen(
                [QEMU, "-accel", "tcg", "-m", "256", "-nodefaults", "-nographic", "-serial", "stdio",
                 "-no-reboot", "-boot", "n",
                 "-netdev", f"tap,id=n0,ifname=tap{i},script=no,downscript=no",
                 "-device", f"{args.nic},netdev=n0,mac=52:54:00:12:34:{0x10 + i:02x},"
                            f"romfile={ROM_DIR / f'pxe-{args.nic}.rom'}",
                 "-device", "isa-debug-exit,iobase=0xf4,iosize=4"],
                stdout=open(console, "wb"), stderr=subprocess.STDOUT,
            )
            vms.append((i, qemu, console, time.monotonic()))
            time.sleep(args.gap)
        for i, qemu, console, t0 in vms:
            try:
                status = qemu.wait(timeout=max(1.0, args.timeout - (time.monotonic() - started)))
            except subprocess.TimeoutExpired:
                status = None
            kill_group(qemu)
            text = console.read_bytes().decode("latin-1")
            got = re.search(r"VERIFY sha256=([0-9a-f]{64}) bytes=(\d+)", text)
            verdict = re.search(r"VERIFY (PASS|FAIL|NOEXPECT|ERROR)", text)
            results.append({
                "vm": i,
                "qemu_status": status,
                "verdict": verdict.group(1) if verdict else None,
                "sha256_ok": bool(got and got.group(1) == sha),
                "ipxe_ok_lines": text.count(" ok"),
                "seconds": round(time.monotonic() - t0, 1),
                "tail": text[-300:].replace("\r", ""),
            })
        kill_group(dnsmasq)
        kill_group(server)
    print(json.dumps({"server": args.server, "scheme": args.scheme, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
