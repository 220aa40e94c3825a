"""Helper for test_cleanup: start a lab and a VM, report what exists, then wait to be killed."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from lab.run.boot import launch
from lab.run.lab import Lab, LabConfig
from roms.catalog import nic
from roms.romset import RomSet


def main() -> None:
    directory = Path(sys.argv[1])
    server = sys.argv[2]
    lab = Lab(LabConfig(directory, index=200, server=server))
    lab.start()  # never closed: the test kills this process and checks the kernel cleaned up
    run = launch(lab, nic("rtl8139"), RomSet.debian(), 5 * 1024 * 1024, 3, directory / "vm")
    assert run.vm is not None
    run.vm.console.expect(r"Configuring \(net0", [], 120, consume=False)  # the ROM runs and the tap is in use
    holder = lab.ns.holder_pid
    assert holder is not None
    print(json.dumps({"holder": holder, "netns": os.readlink(f"/proc/{holder}/ns/net")}), flush=True)
    time.sleep(600)


if __name__ == "__main__":
    main()
