"""Packet capture on lab interfaces, kept as pcap files in a test's artifacts.

Why: a cell of the confirmation matrix says "multicast delivered" or "unicast
fallback" from what crossed the wire, not from what a server or a console claims.

tcpdump is tried first, because its pcaps are what everybody trusts.  In the rootless
lab namespace Debian's tcpdump cannot drop privileges (setgroups is denied there) and
exits; the capture then falls back to :mod:`lab.packet_capture`, an AF_PACKET reader
run inside the namespace.  :attr:`CaptureResult.method` says which one ran, and why
the other did not.

Usage::

    with Capture(ns, ["br0", "tap0"], artifacts / "pcap") as cap:
        ...  # run the scenario
    cap.result.files["br0"]  # -> Path of br0.pcap
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lab.infra.namespace import Namespace
from lab.infra.packet_capture import DEFAULT_KEEP_WHOLE, DEFAULT_SNAPLEN
from lab.infra.process import NamespaceProcess

Method = Literal["auto", "tcpdump", "af_packet"]
#: tcpdump's fixed snap length: it cannot keep control frames whole and cut bulk ones,
#: so it keeps enough for a DHCP message type option and typical RRQ/OACK options.
TCPDUMP_SNAPLEN = 342


#: (namespace, holder pid) -> why tcpdump failed there, so later captures skip the attempt.
_TCPDUMP_FAILED: dict[tuple[int, int | None], str] = {}


class CaptureError(RuntimeError):
    """The capture could not start; the message says what to install or change."""


@dataclass
class CaptureResult:
    """What a finished capture produced: one pcap per interface and how it was made."""

    method: str
    files: dict[str, Path]
    #: For af_packet: "tpacket_v3" (a mmap ring) or "recvmsg" (socket queue, drops sooner).
    reader: str | None
    snaplen: int
    keep_whole: int | None
    #: Why tcpdump was not used (None when it was).
    fallback_reason: str | None = None
    #: Per interface: packets written, frames cut to snaplen, kernel drops (af_packet only).
    stats: dict[str, dict[str, int | str]] = field(default_factory=dict)

    def kernel_drops(self, interface: str) -> int:
        return int(self.stats.get(interface, {}).get("kernel_drops", 0) or 0)


def _wait_listening(proc: subprocess.Popen[bytes], expect: int, timeout: float) -> tuple[bool, str]:
    """Read stderr until ``expect`` "listening on" lines, the process exits, or time runs out."""
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    buf = b""
    seen = 0
    deadline = time.monotonic() + timeout
    while seen < expect:
        left = deadline - time.monotonic()
        if left <= 0:
            return False, buf.decode(errors="replace") + f" (no 'listening on' within {timeout:.0f} s)"
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            return False, buf.decode(errors="replace").strip() or f"exited with {proc.wait()}"
        buf += chunk
        seen = buf.count(b"listening on")
    return True, buf.decode(errors="replace")


class Capture:
    """Capture ``interfaces`` of ``ns`` into ``directory/IFNAME.pcap`` while the context is open.

    ``__enter__`` returns only once every interface is really being captured, so
    traffic sent right after it is in the pcap.  ``snaplen``/``keep_whole`` follow the
    rule in docs/evidence.md; ``full=True`` keeps every frame whole (payload hashing).
    Counting what a pcap holds is the wire layer's job (:func:`lab.wire.counts.write_evidence`).
    """

    def __init__(
        self,
        ns: Namespace,
        interfaces: str | Sequence[str],
        directory: Path,
        method: Method = "auto",
        snaplen: int = DEFAULT_SNAPLEN,
        keep_whole: int = DEFAULT_KEEP_WHOLE,
        full: bool = False,
        ring: bool = True,
        start_timeout: float = 10.0,
    ) -> None:
        self.ns = ns
        self.interfaces = [interfaces] if isinstance(interfaces, str) else list(interfaces)
        # Absolute: the reader runs with another working directory.
        self.directory = Path(directory).resolve()
        self.method = method
        self.snaplen = 65535 if full else snaplen
        self.keep_whole = 65535 if full else keep_whole
        self.ring = ring
        self.start_timeout = start_timeout
        self._procs: list[NamespaceProcess] = []
        self._running: str | None = None
        self._fallback_reason: str | None = None
        self.result: CaptureResult | None = None

    def __enter__(self) -> Capture:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def files(self) -> dict[str, Path]:
        return {name: self.directory / f"{name}.pcap" for name in self.interfaces}

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.method in ("auto", "tcpdump"):
            problem = self._start_tcpdump()
            if problem is None:
                self._running = "tcpdump"
                return
            if self.method == "tcpdump":
                raise CaptureError(f"tcpdump cannot capture here: {problem}")
            self._fallback_reason = problem
        problem = self._start_af_packet()
        if problem is not None:
            raise CaptureError(
                f"AF_PACKET capture on {','.join(self.interfaces)} failed: {problem}"
                + (f"; tcpdump also failed: {self._fallback_reason}" if self._fallback_reason else "")
            )
        self._running = "af_packet"

    def _start_tcpdump(self) -> str | None:
        if shutil.which("tcpdump") is None:
            return "tcpdump is not installed (apt-get install -y tcpdump)"
        known = _TCPDUMP_FAILED.get((id(self.ns), self.ns.holder_pid))
        if known is not None and self.method == "auto":
            return known
        reason = self._launch_tcpdump()
        if reason is not None:
            _TCPDUMP_FAILED[(id(self.ns), self.ns.holder_pid)] = reason
        return reason

    def _launch_tcpdump(self) -> str | None:
        snaplen = min(self.snaplen if self.snaplen == 65535 else TCPDUMP_SNAPLEN, 65535)
        for name, path in self.files().items():
            handle = NamespaceProcess(
                self.ns,
                # --immediate-mode: with libpcap's default TPACKET_V3 ring, frames in a block
                # not yet handed over (up to 1 s) are lost when SIGINT ends tcpdump.
                ["tcpdump", "-i", name, "-w", str(path), "-U", "--immediate-mode", "-s", str(snaplen), "-n"],
                "tcpdump",
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            self._procs.append(handle)
            proc = handle.proc
            ok, text = _wait_listening(proc, 1, self.start_timeout)
            # tcpdump drops privileges right after printing "listening on": give it a moment to fail.
            if ok:
                time.sleep(0.2)
                ok = proc.poll() is None
                if not ok:
                    assert proc.stderr is not None
                    text += proc.stderr.read().decode(errors="replace")
            if not ok:
                self._kill_all()
                reason = " ".join(line for line in text.strip().splitlines() if "listening on" not in line)
                if "Couldn't change" in reason:
                    reason += " (tcpdump cannot drop privileges in a rootless user namespace)"
                return reason
        self.snaplen = snaplen
        return None

    def _start_af_packet(self) -> str | None:
        argv = [sys.executable, "-m", "lab.infra.packet_capture", "--out", str(self.directory)]
        for name in self.interfaces:
            argv += ["-i", name]
        argv += ["--snaplen", str(self.snaplen), "--keep-whole", str(self.keep_whole)]
        if not self.ring:
            argv.append("--no-ring")
        handle = NamespaceProcess(
            self.ns,
            argv,
            "packet capture",
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=_package_root(),
        )
        self._procs = [handle]
        ok, text = _wait_listening(handle.proc, 1, self.start_timeout)
        if not ok:
            self._kill_all()
            return text.strip()
        return None

    def _kill_all(self) -> None:
        for handle in self._procs:
            handle.stop()
        self._procs = []

    def stop(self) -> CaptureResult:
        """Stop with SIGINT (pcaps flushed) and return what was captured; safe to call twice."""
        if self.result is not None:
            return self.result
        stats: dict[str, dict[str, int | str]] = {}
        reader: str | None = None
        for handle in self._procs:
            try:
                os.killpg(handle.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            try:
                out, _err = handle.proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                handle.stop()
                out = b""
            if self._running == "af_packet" and out:
                report = json.loads(out.decode().strip().splitlines()[-1])
                reader = report["reader"]
                stats = {name: dict(counts) for name, counts in report["interfaces"].items()}
        self._procs = []
        self.result = CaptureResult(
            method=self._running or "none",
            files=self.files(),
            reader=reader,
            snaplen=self.snaplen,
            keep_whole=self.keep_whole if self._running == "af_packet" else None,
            fallback_reason=self._fallback_reason,
            stats=stats,
        )
        return self.result


def _package_root() -> str:
    """The folder holding the ``lab`` package: ``-m lab.infra.packet_capture`` resolves in the namespace."""
    return str(Path(__file__).resolve().parent.parent.parent)
