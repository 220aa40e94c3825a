"""Start and probe the TFTP servers under test (pyatftpd and Debian's atftpd) on loopback.

Why one helper for both: the same integration tests run against both servers
(fixture parameter), so a difference in results is a difference in the servers,
never in how the tests started them.  Both get the identical atftpd command line.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ATFTPD = "/usr/sbin/atftpd"
LOOPBACK = "127.0.0.1"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    name: str
    port: int
    root: Path
    proc: subprocess.Popen[bytes]
    events: Path | None = None
    log: Path | None = None
    extra: list[str] = field(default_factory=list)
    host: str = LOOPBACK

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)

    def cpu_seconds(self) -> float:
        """User+system CPU of every live process in the server's process group."""
        ticks = os.sysconf("SC_CLK_TCK")
        return sum(int(fields[11]) + int(fields[12]) for _, fields in group_processes(self.proc.pid)) / ticks


def group_processes(pgid: int) -> Iterator[tuple[str, list[str]]]:
    """``(pid, /proc/PID/stat fields after the command name)`` of each live process in group ``pgid``."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:  # pgrp
            yield entry, fields


def server_argv(
    name: str,
    root: Path,
    port: int,
    extra: list[str] | None = None,
    python: list[str] | None = None,
    host: str = LOOPBACK,
) -> list[str]:
    common = [
        "--daemon",
        "--no-fork",
        "--port",
        str(port),
        "--bind-address",
        host,
        "--logfile",
        "-",
        "--user",
        "root.root",
        *(extra or []),
    ]
    if name == "atftpd":
        return [ATFTPD, *common, str(root)]
    return [*(python or [sys.executable]), "-m", "netboot.tftp.cli", *common, str(root)]


def atftpd_problem() -> str | None:
    if not os.path.exists(ATFTPD):
        return "Debian's atftpd is missing; install it with: apt-get install -y atftpd"
    return None


def start_server(
    name: str,
    root: Path,
    *,
    extra: list[str] | None = None,
    events: Path | None = None,
    log: Path | None = None,
    taskset: str | None = None,
    env: dict[str, str] | None = None,
    python: list[str] | None = None,
    host: str = LOOPBACK,
) -> RunningServer:
    """``python``: the interpreter command for pyatftpd (default: this one); ``host``: ``::1`` for IPv6."""
    extra = list(extra or [])
    if events is not None and name == "pyatftpd":
        extra += ["--events", str(events)]
    port = free_udp_port()
    argv = server_argv(name, root, port, extra, python, host)
    if taskset:
        argv = ["taskset", "-c", taskset, *argv]
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        argv,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, **env} if env else None,
    )
    server = RunningServer(name, port, root, proc, events, log, extra, host)
    try:
        wait_ready(server)
    except Exception:
        server.stop()
        raise
    return server


def wait_ready(server: RunningServer, timeout: float = 10.0) -> None:
    """Both servers answer a request for a missing file with ERROR 1: that is our probe."""
    deadline = time.monotonic() + timeout
    probe = b"\0\1__probe_missing__\0octet\0"
    family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                raise RuntimeError(f"{server.name} exited with {server.proc.returncode} before serving")
            sock.sendto(probe, server.address)
            try:
                data, _ = sock.recvfrom(1024)
            except TimeoutError:
                continue
            if data[:2] == b"\0\5":
                return
    raise RuntimeError(f"{server.name} did not answer on port {server.port} within {timeout} s")


# -- a minimal raw client for protocol-level tests -----------------------------------------------
def rrq(filename: str, mode: str = "octet", options: list[tuple[str, str]] | None = None) -> bytes:
    """``filename`` may carry bytes that are not UTF-8 as ``surrogateescape`` (as the server keeps them)."""
    parts = [filename, mode] + [s for pair in options or [] for s in pair]
    return b"\0\1" + b"".join(p.encode("utf-8", "surrogateescape") + b"\0" for p in parts)


def raw_fetch(
    address: tuple[str, int],
    filename: str,
    *,
    mode: str = "octet",
    options: list[tuple[str, str]] | None = None,
    timeout: float = 3.0,
) -> tuple[bytes, dict[str, str]]:
    """Download with plain lock-step ACKs; return (payload bytes as on the wire, OACK options)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(rrq(filename, mode, options), address)
        chunks: list[bytes] = []
        oack: dict[str, str] = {}
        blksize = 512
        expected = 1
        while True:
            data, peer = sock.recvfrom(70000)
            opcode = struct.unpack_from("!H", data)[0]
            if opcode == 5:
                code = struct.unpack_from("!H", data, 2)[0]
                raise TftpError(code, data[4:].rstrip(b"\0").decode(errors="replace"))
            if opcode == 6:
                items = data[2:].rstrip(b"\0").split(b"\0")
                oack = {items[i].decode().lower(): items[i + 1].decode() for i in range(0, len(items) - 1, 2)}
                blksize = int(oack.get("blksize", blksize))
                sock.sendto(b"\0\4\0\0", peer)
                continue
            block = struct.unpack_from("!H", data, 2)[0]
            if block == expected & 0xFFFF:
                chunks.append(data[4:])
                expected += 1
            sock.sendto(struct.pack("!HH", 4, block), peer)
            if block == (expected - 1) & 0xFFFF and len(data) - 4 < blksize:
                return b"".join(chunks), oack


class TftpError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"ERROR {code}: {message}")
        self.code = code
        self.message = message


def wait_for_events(
    path: Path, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 20.0
) -> list[dict[str, Any]]:
    """Poll an events file until ``predicate(events)`` holds (the server writes asynchronously)."""
    from netboot.events import read_events

    deadline = time.monotonic() + timeout
    events: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        events = read_events(str(path)) if path.exists() else []
        if predicate(events):
            return events
        time.sleep(0.05)
    raise AssertionError(f"events in {path} never matched; last: {events[-5:]}")


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def raw_upload(
    address: tuple[str, int],
    filename: str,
    data: bytes,
    *,
    mode: str = "octet",
    blksize: int = 512,
    timeout: float = 3.0,
) -> None:
    """Upload ``data`` (as it goes on the wire) with lock-step DATA; raise TftpError on an ERROR.

    Returns only after the ACK of the last block: that ACK is the server's word that
    the upload is stored.
    """
    options = [("blksize", str(blksize))] if blksize != 512 else []
    request = b"\0\2" + rrq(filename, mode, options)[2:]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(request, address)
        block = 0
        peer = address
        while True:
            try:
                reply, peer = sock.recvfrom(70000)
            except TimeoutError:
                raise TftpError(-1, f"no answer to block {block}") from None
            opcode = struct.unpack_from("!H", reply)[0]
            if opcode == 5:
                code = struct.unpack_from("!H", reply, 2)[0]
                raise TftpError(code, reply[4:].rstrip(b"\0").decode(errors="replace"))
            acked = 0 if opcode == 6 else struct.unpack_from("!H", reply, 2)[0]
            if acked != block & 0xFFFF:
                continue
            if block * blksize > len(data):
                return
            piece = data[block * blksize : (block + 1) * blksize]
            block += 1
            sock.sendto(struct.pack("!HH", 3, block & 0xFFFF) + piece, peer)
