"""Manual check with a real VM: why eepro100 stops under a SLAM stream (docs/findings.md).

Not a pytest test (it boots a VM and needs a ROM set with SLAM, which Debian's has not);
run by hand under the machine's VM lock::

    flock /tmp/netboot-vm.lock python -m tests.manual.eepro100_ivt_probe \\
        --rom-dir upstream=~/.cache/netboot-lab/ipxe/sets/upstream-<key> --tries 3
    python -m tests.manual.eepro100_ivt_probe --store-order-only --rom-dir upstream=DIR

One eepro100 (QEMU's i82557b) VM fetches 1 MiB by ``x-slam://`` from pyslamd, exactly as
the matrix cell does, but QEMU also gets a QMP socket.  When the fetch has not finished
12 s after it began, the probe reads the guest's CPU state and low memory and says what
it found: whether the CPU runs in real mode through zero-filled memory, and whether
physical address 0 (the real-mode interrupt vector table) holds a receive descriptor
the NIC completed (status C and OK bits, the frame's length at 0x0C) with a frame of the
SLAM group (destination 01:00:5e:7f:01:01, IPv4) at 0x10.

``--flood`` asks whether the older-driver train's eepro100 stops for the same reason: a
VM with the set's eepro100 ROM (Debian's by default) fetches the verifier and 4 MiB by plain
``tftp://`` while the namespace floods the MTFTP group 239.255.1.1 at about 800 frames a
second, as the other VMs' stream does in a train; the same state is read when the fetch
has not finished 30 s after the script began (the group MAC is then 01:00:5e:7f:01:01 too).

``--store-order-only`` needs no VM: it unpacks the eepro100 ROM of the set and of
Debian's set and says in which order the receive-ring refill stores a descriptor's
command word and its link (the race the VM shows depends on that order).
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lab.infra.qemu import QemuSpec
from lab.infra.vm import Vm
from lab.model.network import Slot
from lab.run.boot import launch
from lab.run.lab import Lab, LabConfig
from roms.catalog import NicModel, nic
from roms.payload import unpacked_bodies
from roms.romset import RomSet

#: ``movw $0, 2(%reg)`` (the RFD's command word) then, within 16 bytes, ``mov %reg, 4(%reg)`` (its link).
_COMMAND_THEN_LINK = re.compile(rb"\x66\xc7[\x40-\x47]\x02\x00\x00[\s\S]{0,16}?\x89[\x40-\x7f]\x04")
_GROUP_MAC = bytes.fromhex("01005e7f0101")


class ProbeLab(Lab):
    """A lab whose VMs also listen on a QMP socket (the matrix's VMs have no monitor)."""

    def __init__(self, config: LabConfig, qmp: Path) -> None:
        super().__init__(config)
        self.qmp = qmp

    def start_vm(self, model: NicModel, rom: Path, slot: Slot, directory: Path, pcap: bool = True) -> Vm:
        assert model.qemu_device is not None
        spec = QemuSpec(
            model.qemu_device, slot.mac, rom, slot.tap, accel=self.config.accel,
            pcap=directory / "nic.pcap" if pcap else None,
            extra=("-qmp", f"unix:{self.qmp},server=on,wait=off"),
        )  # fmt: skip
        return Vm(self.ns, spec, directory)


def hmp(path: Path, command: str) -> str:
    """One human-monitor command through QMP."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(path))
        stream = sock.makefile("rw")
        stream.readline()
        requests = (
            {"execute": "qmp_capabilities"},
            {"execute": "human-monitor-command", "arguments": {"command-line": command}},
        )
        for request in requests:
            stream.write(json.dumps(request) + "\n")
            stream.flush()
            while True:
                reply = json.loads(stream.readline())
                if "return" in reply or "error" in reply:
                    break
        return str(reply.get("return", reply))


def read_memory(path: Path, address: int, size: int) -> bytes:
    text = hmp(path, f"xp /{size}xb {address}")
    return bytes(int(b, 16) for line in text.splitlines() for b in line.split(":", 1)[1].split())


def guest_state(qmp: Path) -> dict[str, Any]:
    """What the hung guest is doing, read twice 0.5 s apart."""
    samples: list[dict[str, Any]] = []
    for _ in range(2):
        regs = hmp(qmp, "info registers")
        cs = int(re.search(r"CS =\w+ (\w+)", regs).group(1), 16)  # type: ignore[union-attr]
        eip = int(re.search(r"EIP=(\w+)", regs).group(1), 16)  # type: ignore[union-attr]
        cr0 = int(re.search(r"CR0=(\w+)", regs).group(1), 16)  # type: ignore[union-attr]
        samples.append({"cs_base": cs, "eip": eip, "real_mode": not cr0 & 1, "gprs": regs.splitlines()[:2]})
        time.sleep(0.5)
    segment = read_memory(qmp, samples[-1]["cs_base"], 65536)
    low = read_memory(qmp, 0, 0x30)
    status = int.from_bytes(low[0:2], "little")
    return {
        "real_mode": all(s["real_mode"] for s in samples),
        "eip": [hex(s["eip"]) for s in samples],
        "registers_unchanged": samples[0]["gprs"] == samples[1]["gprs"],
        "code_segment_nonzero_bytes": sum(1 for b in segment if b),
        "address_0_rfd_status": hex(status),
        "rfd_complete_ok": status & 0xA000 == 0xA000,
        "rfd_count_at_0x0c": int.from_bytes(low[0x0C:0x0E], "little") & 0x3FFF,
        "frame_at_0x10_to_the_slam_group": low[0x10:0x16] == _GROUP_MAC and low[0x1C:0x1E] == b"\x08\x00",
        "low_memory": low.hex(),
    }


#: The train's group stream, imitated: 1400-byte datagrams to iPXE's MTFTP group, ~800/s.
_FLOOD = (
    "import socket,time\n"
    "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
    "s.setsockopt(socket.IPPROTO_IP,socket.IP_MULTICAST_IF,socket.inet_aton('192.0.2.1'))\n"
    "end=time.time()+120\n"
    "while time.time()<end:\n"
    " [s.sendto(b'x'*1400,('239.255.1.1',3001)) for _ in range(8)]\n"
    " time.sleep(0.01)\n"
)


def one_boot(rom_set: RomSet, work: Path, attempt: int, flood: bool = False) -> dict[str, Any]:
    qmp = work / f"qmp-{attempt}.sock"
    protocol, size, start, wait = (
        ("tftp", 4 << 20, r"LAB fetch-start", 30) if flood else ("x-slam", 1 << 20, r"x-slam://", 12)
    )
    with ProbeLab(LabConfig(work / f"lab{attempt}", index=210 + attempt, capture=False), qmp) as lab:
        run = launch(lab, nic("eepro100"), rom_set, size, 1, work / f"vm{attempt}", protocol=protocol)
        if run.vm is None:
            return {"attempt": attempt, "error": run.evidence.reason}
        flooder = lab.ns.popen([sys.executable, "-c", _FLOOD]) if flood else None
        try:
            try:
                run.vm.console.expect(start, [], 90, consume=False)
                run.vm.console.expect(r"LAB fetche", [], wait, consume=False)
                return {"attempt": attempt, "fetched": True}
            except TimeoutError:  # before the fetch began, too: a flood can stop it in DHCP
                return {"attempt": attempt, "fetched": False, "console": run.vm.console.tail(1),
                        **guest_state(qmp)}  # fmt: skip
        finally:
            if flooder is not None:
                flooder.kill()
                flooder.wait()
            run.vm.stop()


def store_order(rom: Path) -> str:
    bodies = unpacked_bodies(rom.read_bytes())
    found = any(_COMMAND_THEN_LINK.search(body) for body in bodies)
    return "command word cleared before the link is written" if found else "pattern not found (check by hand)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rom-dir", help="NAME=DIR of a ROM set built with SLAM (--flood: default Debian's)")
    parser.add_argument("--flood", action="store_true", help="plain tftp under a flood of the MTFTP group")
    parser.add_argument("--tries", type=int, default=3, help="boots at most; stops at the first hang")
    parser.add_argument("--store-order-only", action="store_true", help="read the ROMs, boot nothing")
    args = parser.parse_args(argv)
    if not args.rom_dir and not args.flood:
        parser.error("--rom-dir is needed (a set with SLAM), except with --flood")
    rom_set = RomSet.parse(args.rom_dir) if args.rom_dir else RomSet.debian()
    for label, rs in (("debian", RomSet.debian()), (rom_set.name, rom_set)):
        print(json.dumps({"rom_set": label, "refill": store_order(rs.source_rom(nic("eepro100")))}))
    if args.store_order_only:
        return 0
    work = Path(tempfile.mkdtemp(prefix="eepro100-probe-"))
    for attempt in range(1, args.tries + 1):
        result = one_boot(rom_set, work, attempt, args.flood)
        print(json.dumps(result), flush=True)
        if result.get("fetched") is False:
            return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
