"""One QEMU VM inside the lab namespace: process group, drained console, reproduction file.

Why its own process group: QEMU outlives a killed wrapper (nsenter, a shell) and keeps
its tap busy, so the VM is always ended as a group (docs/lab.md).  The exact
``nsenter ... qemu-system-x86_64 ...`` command goes into ``qemu.cmdline`` so anyone
can rerun the VM by hand while the lab namespace is alive.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path

from lab.infra.console import Console
from lab.infra.namespace import Namespace
from lab.infra.process import NamespaceProcess
from lab.infra.qemu import QemuSpec, qemu_argv

#: iPXE's "Press Ctrl-B" prompts wait for a key (about 2 s for the shell prompt with
#: Debian's ROMs, most of a boot's DHCP stage); any other key ends the wait at once.  A
#: space cannot start a shell or pick a menu entry, so the lab types one at each prompt.
PROMPT_ANSWERS: tuple[tuple[str, bytes], ...] = (
    (r"Press Ctrl-B to configure iPXE", b" "),
    (r"Press Ctrl-B for the iPXE command line", b" "),
)


class Vm:
    def __init__(self, ns: Namespace, spec: QemuSpec, directory: Path) -> None:
        self.spec = spec
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.argv = qemu_argv(spec)
        self.cmdline_path = directory / "qemu.cmdline"
        self.cmdline_path.write_text(
            "# run inside the lab namespace (alive while the lab runs):\n"
            + shlex.join(ns.enter_argv(self.argv))
            + "\n# the QEMU argv alone:\n"
            + shlex.join(self.argv)
            + "\n"
        )
        self.process = NamespaceProcess(
            ns, self.argv, "QEMU", directory / "qemu.stderr", stdout=subprocess.PIPE, stdin=subprocess.PIPE
        )
        self.proc = self.process.proc
        self.started = time.monotonic()
        assert self.proc.stdout is not None
        self.console = Console(self.proc.stdout, directory / "console.log", PROMPT_ANSWERS, self.type_keys)

    def type_keys(self, keys: bytes) -> None:
        """Type on the serial console (SeaBIOS passes serial input to the BIOS keyboard)."""
        if self.proc.stdin is not None and self.proc.poll() is None:
            try:
                self.proc.stdin.write(keys)
                self.proc.stdin.flush()
            except OSError:
                pass

    def stop(self) -> None:
        self.process.stop()
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.console.wait_closed(5.0)
