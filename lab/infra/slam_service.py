"""pyslamd for ``x-slam://`` boots: one server per file, as mini-slamd.

Why one per file: a SLAM URL names no file (and, for current iPXE, no group either: it
rejects a group in the path, docs/pyslamd.md), so the server on the default group
239.255.1.1:10000 decides what the client gets.  A second file (a full boot's initrd)
gets a server of its own on the next port, named by ports only.
"""

from __future__ import annotations

from pathlib import Path

from lab.infra.namespace import Namespace
from lab.infra.process import NamespaceProcess, find_program, udp_listening
from lab.model.errors import LabUnavailable
from lab.model.network import SERVER_IPV4, SLAM_PORT
from lab.model.train_plan import TRAIN_MAX_WAIT
from netboot.events import ServerEvent, read_events


def slam_url(port: int = SLAM_PORT) -> str:
    """The ``x-slam://`` URL of the lab's server on ``port``."""
    if port == SLAM_PORT:
        return f"x-slam://{SERVER_IPV4}"
    return f"x-slam://{SERVER_IPV4}:{port}/:{port}"


class SlamService:
    """A running pyslamd serving ``path``; ``events()`` is its evidence."""

    def __init__(
        self, ns: Namespace, path: Path, directory: Path, port: int = SLAM_PORT, min_clients: int = 1,
        max_wait: float = TRAIN_MAX_WAIT,
    ) -> None:  # fmt: skip
        """``port``: NACK port and group port (a second file needs its own).  ``min_clients`` > 1
        holds the first stream for that many VMs, at most ``max_wait`` seconds."""
        program = find_program("pyslamd")
        if program is None:
            raise LabUnavailable("'pyslamd' is not on PATH; pip install -e . (its console script)")
        self.ns = ns
        self.file = path.name
        self.port = port
        self.min_clients = min_clients
        name = "pyslamd" if port == SLAM_PORT else f"pyslamd-{port}"
        self.events_path = directory / f"{name}.events.jsonl"
        argv = [program, str(path), "--bind-address", SERVER_IPV4, "--events", str(self.events_path)]
        if port != SLAM_PORT:
            argv += ["--port", str(port), "--mcast-port", str(port)]
        if min_clients > 1:
            argv += ["--min-clients", str(min_clients), "--max-wait", f"{max_wait:g}"]
        self.process = NamespaceProcess(ns, argv, name, directory / f"{name}.stdout")
        self.process.wait_ready(lambda: udp_listening(ns, port), f"listen on UDP {port}")

    @property
    def url(self) -> str:
        return slam_url(self.port)

    def alive(self) -> bool:
        return self.process.alive()

    def events(self) -> list[ServerEvent]:
        return read_events(self.events_path) if self.events_path.exists() else []

    def stop(self) -> None:
        self.process.stop()
