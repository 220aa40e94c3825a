"""The TFTP server the VMs boot from: pyatftpd (ours) or Debian's atftpd (reference).

Both run from their real command line inside the lab namespace.  The lab reads
pyatftpd's ``--events`` file; atftpd has none, so its ``Serving FILE to IP:PORT`` log
lines are turned into the same ``request`` events to keep the evidence comparable.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.errors import LabError, LabUnavailable
from lab.netns import Namespace, kill_group
from lab.topology import SERVER_IPV4
from netboot.events import read_events

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
    #: pyatftpd only (atftpd has no such option): hold RFC 2090 sessions for this many VMs.
    mcast_min_clients: int = 1


#: How long a held server (pyslamd, or pyatftpd's RFC 2090 sessions) waits for a train's
#: last VM after its first asked.  TCG VMs that start 0.5 s apart ask up to about 10 s
#: apart here (vmxnet3 boots slowest), and a VM that never comes costs the train only
#: this wait: the others are served then.
TRAIN_MAX_WAIT = 45.0

#: iPXE's ``mtftp://`` asks port 1759 and listens on 239.255.1.1:3001 (protocols.md 3.7).
MTFTP_PORT = 1759
MTFTP_GROUP = ("239.255.1.1", 3001)


def find_program(name: str) -> str | None:
    """``name`` on PATH, or beside this Python (a venv's console scripts when PATH lacks them)."""
    beside = os.path.dirname(sys.executable)
    return shutil.which(name) or shutil.which(name, path=beside)


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
            files += ["--mcast-max-wait", f"{TRAIN_MAX_WAIT:g}"]
        return [find_program("pyatftpd") or "pyatftpd", *common, *files, str(spec.root)]
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


def events_from_atftpd_log(text: str) -> list[dict[str, Any]]:
    return [
        {"server": "atftpd", "event": "request", "file": m["file"], "client": m["client"]}
        for m in _ATFTPD_SERVING.finditer(text)
    ]


class TftpServer:
    """A running TFTP server inside the namespace; ``events()`` is its evidence."""

    def __init__(
        self, ns: Namespace, kind: str, root: Path, directory: Path,
        mtftp_file: str | tuple[str, ...] | None = None, mcast_min_clients: int = 1,
    ) -> None:  # fmt: skip
        """``mcast_min_clients`` > 1 (pyatftpd): RFC 2090 sessions wait for that many VMs
        (a train's VMs ask seconds apart; each late one would need a pass of its own)."""
        problem = server_problem(kind)
        if problem:
            raise LabUnavailable(problem)
        self.ns = ns
        self.kind = kind
        #: The file(s) served by PXE MTFTP.  iPXE always uses the same group, so a boot of one
        #: payload names one file; the full boot names its kernel and initrd, which share it.
        self.mtftp_file = mtftp_file
        conf = None
        if mtftp_file is not None:
            names = (mtftp_file,) if isinstance(mtftp_file, str) else mtftp_file
            conf = directory / f"{kind}.mtftp.conf"
            conf.write_text("".join(f"{name} {MTFTP_GROUP[0]} {MTFTP_GROUP[1]}\n" for name in names))
        self.spec = TftpSpec(
            kind, root, directory / f"{kind}.log", directory / f"{kind}.events.jsonl", mtftp_conf=conf,
            mcast_min_clients=mcast_min_clients,
        )  # fmt: skip
        self._out = open(directory / f"{kind}.stdout", "ab")  # noqa: SIM115 - lives with the process
        self.proc = ns.popen(tftp_argv(self.spec), stdout=self._out, stderr=self._out)
        self._wait_listening()

    @property
    def log_path(self) -> Path:
        return self.spec.logfile if self.kind == "pyatftpd" else Path(self._out.name)

    def _wait_listening(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise LabError(f"{self.kind} exited {self.proc.returncode} at start; see {self._out.name}")
            ss = self.ns.run(["ss", "-Hlun", f"sport = :{self.spec.port}"], check=False)
            if ss.stdout.strip():
                return
            time.sleep(0.05)
        raise LabError(f"{self.kind} did not listen on UDP {self.spec.port} within {timeout} s")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def events(self) -> list[dict[str, Any]]:
        """The server's events; a restarted server appends to the same file (marks stay valid)."""
        if self.kind == "atftpd":
            return events_from_atftpd_log(Path(self._out.name).read_text(errors="replace"))
        if not self.spec.events.exists():
            return []
        return read_events(str(self.spec.events))

    def _listening(self) -> bool:
        return bool(self.ns.run(["ss", "-Hlun", f"sport = :{self.spec.port}"], check=False).stdout.strip())

    def stop(self, timeout: float = 10.0) -> None:
        """End the server and every process of its group (pyatftpd's workers too).

        The port must be free when this returns, or the next server cannot bind it:
        workers can outlive the process that nsenter waits for.
        """
        group = self.proc.pid
        kill_group(self.proc)
        deadline = time.monotonic() + timeout
        while self._listening() and time.monotonic() < deadline:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
            time.sleep(0.05)
        self._out.close()
        if self._listening():
            raise LabError(f"{self.kind} still holds UDP {self.spec.port} {timeout:.0f} s after its stop")
