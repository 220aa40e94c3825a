"""A sealed, rootless network namespace that dies with the process that made it.

Why this shape: the lab must never touch the host network and must leave nothing
behind even after ``kill -9``.  We get that from the kernel rather than from
cleanup code:

* ``unshare --user --map-root-user --net --pid --fork`` makes a holder process that
  is PID 1 of its own PID namespace.  When PID 1 dies the kernel kills every other
  process in that PID namespace (dnsmasq, QEMU, servers), and when the last process
  leaves the network namespace its bridge and taps disappear.
* The ``unshare`` process gets ``PR_SET_PDEATHSIG=SIGKILL`` from us, and passes the
  same to the holder with ``--kill-child``.  So if the Python process that owns the
  namespace is killed, the whole chain goes with it.

Processes are started inside with ``nsenter`` so that they are children of the
holder's PID namespace as well.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

PR_SET_PDEATHSIG = 1

#: The holder waits on stdin; EOF (our end closed, or we died) ends the namespace.
_HOLDER_CODE = "import sys; sys.stdin.read()"


class NamespaceUnavailable(RuntimeError):
    """The kernel or sandbox refuses user or network namespaces.

    Tests turn this into a skip that names the reason and the fix, never a failure.
    """


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def namespace_support_problem() -> str | None:
    """Return why a lab namespace cannot be made here, or None when it can."""
    for tool in ("unshare", "nsenter", "ip"):
        if shutil.which(tool) is None:
            return f"'{tool}' is missing; run: apt-get install -y util-linux iproute2"
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--net", "--pid", "--fork", "true"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return (
            "user+network namespaces are not allowed here "
            f"({probe.stderr.strip() or 'unshare failed'}); "
            "enable them with 'sysctl -w kernel.unprivileged_userns_clone=1' "
            "or run in a container with --security-opt seccomp=unconfined"
        )
    return None


def _holder_ready(pid: int) -> bool:
    try:
        mapped = Path(f"/proc/{pid}/uid_map").read_text().strip()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return bool(mapped) and _HOLDER_CODE.encode() in cmdline


class Namespace:
    """One user+net+pid namespace, alive while this object's holder process lives."""

    def __init__(self) -> None:
        self._unshare: subprocess.Popen[bytes] | None = None
        self.holder_pid: int | None = None

    def __enter__(self) -> Namespace:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        problem = namespace_support_problem()
        if problem:
            raise NamespaceUnavailable(problem)
        # setpriv sets the death signal and execs unshare: no preexec_fn, which is unsafe
        # when other threads run (parallel labs, console drains).  The signal fires when
        # the *thread* that started us ends, so a namespace lives in the thread that made it.
        launcher = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []
        self._unshare = subprocess.Popen(
            [
                *launcher,
                "unshare",
                "--user",
                "--map-root-user",
                "--net",
                "--pid",
                "--fork",
                "--kill-child",
                sys.executable,
                "-c",
                _HOLDER_CODE,
            ],
            stdin=subprocess.PIPE,
            preexec_fn=None if launcher else _die_with_parent,
        )
        self.holder_pid = self._find_holder(self._unshare.pid)
        self.run(["ip", "link", "set", "lo", "up"])

    @staticmethod
    def _find_holder(unshare_pid: int, timeout: float = 5.0) -> int:
        children = Path(f"/proc/{unshare_pid}/task/{unshare_pid}/children")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                pids = children.read_text().split()
            except FileNotFoundError:
                raise NamespaceUnavailable("unshare exited before the namespace was ready") from None
            # unshare forks the holder first and only then writes its uid map and execs
            # Python: entering it earlier gives a process without capabilities (EPERM).
            if pids and _holder_ready(int(pids[0])):
                return int(pids[0])
            time.sleep(0.01)
        raise NamespaceUnavailable("unshare did not start its holder process within 5 s")

    def enter_argv(self, argv: Sequence[str]) -> list[str]:
        """The argv that runs ``argv`` inside the namespace (for logs and manual reproduction)."""
        if self.holder_pid is None:
            raise RuntimeError("namespace not started")
        return [
            "nsenter",
            f"--target={self.holder_pid}",
            "--user",
            "--net",
            "--pid",
            "--preserve-credentials",
            "--",
            *argv,
        ]

    def run(self, argv: Sequence[str], check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace and wait for it."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        result: subprocess.CompletedProcess[str] = subprocess.run(self.enter_argv(argv), **kwargs)
        if check and result.returncode != 0:
            raise RuntimeError(
                f"in lab namespace: {' '.join(argv)} exited {result.returncode}: "
                f"{(result.stderr or '').strip()}"
            )
        return result

    def popen(
        self,
        argv: Sequence[str],
        stdout: int | IO[Any] | None = None,
        stderr: int | IO[Any] | None = None,
        stdin: int | IO[Any] | None = subprocess.DEVNULL,
        new_group: bool = True,
        **kwargs: Any,
    ) -> subprocess.Popen[bytes]:
        """Start a process inside the namespace, in its own process group.

        Ending the group (see :func:`kill_group`) ends nsenter and what it started;
        the PID namespace guarantees the rest if we are killed.
        """
        return subprocess.Popen(
            self.enter_argv(argv),
            stdout=stdout,
            stderr=stderr,
            stdin=stdin,
            start_new_session=new_group,
            **kwargs,
        )

    def close(self) -> None:
        if self._unshare is None:
            return
        if self._unshare.stdin:
            self._unshare.stdin.close()
        try:
            self._unshare.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._unshare.kill()
            self._unshare.wait()
        self._unshare = None
        self.holder_pid = None


def kill_group(proc: subprocess.Popen[Any], grace: float = 3.0) -> None:
    """End a process started with ``new_group=True`` and everything in its group."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
