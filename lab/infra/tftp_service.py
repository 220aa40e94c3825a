"""The TFTP server the VMs boot from: pyatftpd (ours) or Debian's atftpd (reference).

Both run from their real command line inside the lab namespace.  The lab reads
pyatftpd's ``--events`` file; atftpd has none, so its ``Serving FILE to IP:PORT`` log
lines are turned into the same ``request`` events to keep the evidence comparable.
Which server runs, with which options, is the run layer's decision (lab.run.services).
"""

from __future__ import annotations

import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from lab.infra.namespace import Namespace
from lab.infra.process import NamespaceProcess, find_program, udp_listening
from lab.model.errors import LabError, LabUnavailable
from lab.model.network import MTFTP_GROUP, MTFTP_PORT, SERVER_IPV4
from lab.model.train_plan import TRAIN_MAX_WAIT
from netboot.events import ServerEvent, read_events

SERVERS = ("pyatftpd", "atftpd")


@dataclass(frozen=True)
class TftpSpec:
    kind: str  # one of SERVERS
    root: Path
    logfile: Path
    events: Path
    port: int = 69
    address: str = SERVER_IPV4
    #: PXE MTFTP config (lines ``FILE GROUP PORT``); both servers take atftpd's ``--mtftp``.
    mtftp_conf: Path | None = None
    #: pyatftpd only (atftpd has no such option): hold RFC 2090 sessions for this many VMs,
    #: at most ``mcast_max_wait`` seconds.
    mcast_min_clients: int = 1
    mcast_max_wait: float = TRAIN_MAX_WAIT
    #: pyatftpd only: more options from the lab's user (``--lab-pyatftpd-arg``).
    extra_args: tuple[str, ...] = ()


def tftp_argv(spec: TftpSpec) -> list[str]:
    """The server's real command line (atftpd-compatible for both)."""
    # --user root.root: the default drop to nobody.nogroup needs setgroups(), which the user
    # namespace refuses; the namespace's root is an unprivileged user on the host anyway.
    common = ["--daemon", "--no-fork", "--port", str(spec.port), "--bind-address", spec.address]
    common += ["--user", "root.root"]
    if spec.mtftp_conf is not None:
        common += ["--mtftp", str(spec.mtftp_conf), "--mtftp-port", str(MTFTP_PORT)]
    if spec.kind == "pyatftpd":
        files = ["--logfile", str(spec.logfile), "--events", str(spec.events)]
        if spec.mcast_min_clients > 1:
            files += ["--mcast-min-clients", str(spec.mcast_min_clients)]
            files += ["--mcast-max-wait", f"{spec.mcast_max_wait:g}"]
        return [find_program("pyatftpd") or "pyatftpd", *common, *files, *spec.extra_args, str(spec.root)]
    if spec.kind == "atftpd":
        # atftpd's own --logfile stays empty inside the namespace; '-' plus a redirect works.
        return ["atftpd", *common, "--logfile", "-", "--verbose=6", str(spec.root)]
    raise ValueError(f"unknown TFTP server {spec.kind!r}; choose one of {', '.join(SERVERS)}")


def server_problem(kind: str) -> str | None:
    """Why ``kind`` cannot run here (for a skip or a MISS), or None."""
    if kind not in SERVERS:
        return f"unknown TFTP server {kind!r}; choose one of {', '.join(SERVERS)}"
    if find_program(kind) is None:
        fix = "pip install -e . (its console script)" if kind == "pyatftpd" else "apt-get install atftpd"
        return f"'{kind}' is not on PATH; {fix}"
    return None


_ATFTPD_SERVING = re.compile(r"Serving (?P<file>\S+) to (?P<client>[\d.]+:\d+)")


def events_from_atftpd_log(text: str) -> list[ServerEvent]:
    return [
        ServerEvent({"server": "atftpd", "event": "request", "file": m["file"], "client": m["client"]})
        for m in _ATFTPD_SERVING.finditer(text)
    ]


class TftpService:
    """A running TFTP server inside the namespace; ``events()`` is its evidence."""

    def __init__(
        self, ns: Namespace, kind: str, root: Path, directory: Path,
        mtftp_files: tuple[str, ...] = (), mcast_min_clients: int = 1, extra_args: tuple[str, ...] = (),
    ) -> None:  # fmt: skip
        """``mtftp_files``: served by PXE MTFTP (iPXE always uses the same group, so a boot of
        one payload names one file; the full boot names its kernel and initrd, which share
        it).  ``mcast_min_clients`` > 1 (pyatftpd): RFC 2090 sessions wait for that many VMs."""
        problem = server_problem(kind)
        if problem:
            raise LabUnavailable(problem)
        self.ns = ns
        self.kind = kind
        self.mtftp_files = mtftp_files
        self.mcast_min_clients = mcast_min_clients
        conf = None
        if mtftp_files:
            conf = directory / f"{kind}.mtftp.conf"
            conf.write_text("".join(f"{name} {MTFTP_GROUP[0]} {MTFTP_GROUP[1]}\n" for name in mtftp_files))
        self.spec = TftpSpec(
            kind, root, directory / f"{kind}.log", directory / f"{kind}.events.jsonl", mtftp_conf=conf,
            mcast_min_clients=mcast_min_clients, extra_args=extra_args if kind == "pyatftpd" else (),
        )  # fmt: skip
        self.output = directory / f"{kind}.stdout"
        self.process = NamespaceProcess(ns, tftp_argv(self.spec), kind, self.output)
        self.process.wait_ready(self._listening, f"listen on UDP {self.spec.port}")

    @property
    def log_path(self) -> Path:
        return self.spec.logfile if self.kind == "pyatftpd" else self.output

    def alive(self) -> bool:
        return self.process.alive()

    def events(self) -> list[ServerEvent]:
        """The server's events; a restarted server appends to the same file (marks stay valid)."""
        if self.kind == "atftpd":
            return events_from_atftpd_log(self.output.read_text(errors="replace"))
        if not self.spec.events.exists():
            return []
        return read_events(self.spec.events)

    def _listening(self) -> bool:
        return udp_listening(self.ns, self.spec.port)

    def stop(self, timeout: float = 10.0) -> None:
        """End the server and every process of its group (pyatftpd's workers too).

        The port must be free when this returns, or the next server cannot bind it:
        workers can outlive the process that nsenter waits for.
        """
        group = self.process.pid
        self.process.stop()
        deadline = time.monotonic() + timeout
        while self._listening() and time.monotonic() < deadline:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
            time.sleep(0.05)
        if self._listening():
            raise LabError(f"{self.kind} still holds UDP {self.spec.port} {timeout:.0f} s after its stop")
