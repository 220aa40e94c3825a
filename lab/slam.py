"""pyslamd for ``x-slam://`` boots: one server per file, as mini-slamd.

Why one per file: a SLAM URL names no file (and, for current iPXE, no group: the
inverted ``sock_aton`` check, protocols.md 4.3), so the server on the default
group 239.255.1.1:10000 decides what the client gets.  The lab restarts it when a
boot wants another payload.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from lab.errors import LabError, LabUnavailable
from lab.netns import Namespace, kill_group
from lab.tftp import TRAIN_MAX_WAIT, find_program
from lab.topology import SERVER_IPV4
from netboot.events import read_events

SLAM_PORT = 10000
#: Every port a lab pyslamd uses: the full boot serves its initrd on the next one.  The
#: wire parser must know them all, or the initrd's group bytes count as "other" (a full
#: boot once reported 0.920 x, its initrd missing from the figure).
LAB_SLAM_PORTS = (SLAM_PORT, SLAM_PORT + 1)


class SlamServer:
    """A running pyslamd serving ``path``; ``events()`` is its evidence."""

    def __init__(
        self, ns: Namespace, path: Path, directory: Path, port: int = SLAM_PORT, min_clients: int = 1
    ) -> None:
        """``port``: NACK port and group port (a second file needs its own: docs/pyslamd.md).
        ``min_clients`` > 1 holds the first stream for that many VMs (a train: they boot
        seconds apart, and a pass of a few seconds would be over before the last asks)."""
        program = find_program("pyslamd")
        if program is None:
            raise LabUnavailable("'pyslamd' is not on PATH; pip install -e . (its console script)")
        self.ns = ns
        self.file = path.name
        self.port = port
        self.min_clients = min_clients
        name = "pyslamd" if port == SLAM_PORT else f"pyslamd-{port}"
        self.events_path = directory / f"{name}.events.jsonl"
        self._out = open(directory / f"{name}.stdout", "ab")  # noqa: SIM115 - lives with the process
        argv = [program, str(path), "--bind-address", SERVER_IPV4, "--events", str(self.events_path)]
        if port != SLAM_PORT:
            argv += ["--port", str(port), "--mcast-port", str(port)]
        if min_clients > 1:
            argv += ["--min-clients", str(min_clients), "--max-wait", f"{TRAIN_MAX_WAIT:g}"]
        self.proc = ns.popen(argv, stdout=self._out, stderr=self._out)
        deadline = time.monotonic() + 10.0
        while not self._listening():
            if self.proc.poll() is not None:
                raise LabError(f"pyslamd exited {self.proc.returncode} at start; see {self._out.name}")
            if time.monotonic() > deadline:
                raise LabError(f"pyslamd did not listen on UDP {port} within 10 s")
            time.sleep(0.05)

    def _listening(self) -> bool:
        return bool(self.ns.run(["ss", "-Hlun", f"sport = :{self.port}"], check=False).stdout.strip())

    @property
    def url(self) -> str:
        """The ``x-slam://`` URL for this server.  Current iPXE rejects a group address in
        the path (docs/pyslamd.md), so a second server is named by ports only."""
        if self.port == SLAM_PORT:
            return f"x-slam://{SERVER_IPV4}"
        return f"x-slam://{SERVER_IPV4}:{self.port}/:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def events(self) -> list[dict[str, Any]]:
        return read_events(str(self.events_path)) if self.events_path.exists() else []

    def stop(self) -> None:
        kill_group(self.proc)
        self._out.close()
