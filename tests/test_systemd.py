"""systemd units of both servers: they verify, read Debian's atftpd options line, and the
socket-activated path (LISTEN_FDS, fd 3) serves and reports readiness (sd_notify)."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from netboot.manpages import FOLDER as MAN_FOLDER
from netboot.tftp.cli import _rewrite_verbose, _verbosity
from netboot.tftp.cli import build_parser as pyatftpd_parser
from tests.tftp.peers import free_udp_port, raw_fetch

UNITS = Path(__file__).resolve().parents[1] / "netboot" / "data" / "systemd"
#: Debian 12's /etc/default/atftpd, as the atftpd package installs it.
DEBIAN_OPTIONS = (
    "--port 69 --tftpd-timeout 300 --retry-timeout 5 --mcast-port 1758 --mcast-addr 239.239.239.0-255 "
    "--mcast-ttl 1 --maxthread 100 --verbose=5 /srv/tftp"
)


def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = []
            continue
        key, _, value = line.partition("=")
        sections[current].append((key.strip(), value.strip()))
    return sections


def values(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def test_the_units_say_what_the_servers_need() -> None:
    service = parse_unit(UNITS / "pyatftpd.service")
    assert values(service, "Service", "Type") == ["notify"]
    assert values(service, "Service", "EnvironmentFile") == ["-/etc/default/atftpd", "-/etc/default/pyatftpd"]
    [start] = values(service, "Service", "ExecStart")
    assert start.startswith("pyatftpd --daemon --no-fork") and start.endswith("$OPTIONS")
    assert "atftpd.socket" in values(service, "Unit", "Conflicts")[0]
    sock = parse_unit(UNITS / "pyatftpd.socket")
    assert values(sock, "Socket", "ListenDatagram") == ["69"]
    slam = parse_unit(UNITS / "pyslamd@.service")
    assert values(slam, "Service", "Type") == ["notify"]
    assert values(slam, "Service", "EnvironmentFile") == ["/etc/default/pyslamd-%i"]


def test_debians_atftpd_options_line_means_the_same_to_pyatftpd() -> None:
    line = DEBIAN_OPTIONS
    if Path("/etc/default/atftpd").exists():  # the installed one, when Debian's atftpd is here
        for text in Path("/etc/default/atftpd").read_text().splitlines():
            if text.startswith("OPTIONS="):
                line = shlex.split(text.partition("=")[2])[0]
    args = pyatftpd_parser().parse_args(_rewrite_verbose(["--daemon", "--no-fork", *shlex.split(line)]))
    assert args.directory.startswith("/") and _verbosity(args) == 5 and args.maxthread == 100


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze (package systemd)")
def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    """The units name the commands as installed (PATH lookup); here they point at this install."""
    bindir = Path(sys.executable).parent
    for name in ("pyatftpd", "pyslamd"):
        assert (bindir / name).exists(), f"{name} is not installed next to {sys.executable}"
    for unit in UNITS.iterdir():
        text = unit.read_text().replace("ExecStart=pyatftpd", f"ExecStart={bindir}/pyatftpd")
        text = text.replace("ExecStart=pyslamd", f"ExecStart={bindir}/pyslamd")
        target = tmp_path / unit.name.replace("@.service", "@boot.service")
        target.write_text(text)
    (tmp_path / "etc").mkdir()
    mandir = tmp_path / "man"
    for page in MAN_FOLDER.iterdir():
        (mandir / f"man{page.suffix[1:]}").mkdir(parents=True, exist_ok=True)
        (mandir / f"man{page.suffix[1:]}" / page.name).symlink_to(page)
    result = subprocess.run(
        ["systemd-analyze", "verify", *sorted(str(p) for p in tmp_path.glob("*.s*"))],
        capture_output=True, text=True, timeout=120, env={**os.environ, "MANPATH": f"{mandir}:"},
    )
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stdout + result.stderr


#: systemd's part: the socket onto fd 3, the variables, then exec (same pid) the server.
ACTIVATE = (
    "import os, sys; os.dup2({fd}, 3); os.environ.update(LISTEN_FDS='1', LISTEN_PID=str(os.getpid())); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


def _notify_socket(tmp_path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(15)
    return sock


def test_the_socket_activated_path_serves_the_passed_socket_and_reports_readiness(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "boot.img").write_bytes(os.urandom(10_000))
    listening = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listening.bind(("127.0.0.1", free_udp_port()))
    notify = _notify_socket(tmp_path)
    fd = listening.fileno()
    # As systemd does: the socket on fd 3, LISTEN_FDS=1 and LISTEN_PID naming the server itself.
    options = DEBIAN_OPTIONS.replace("/srv/tftp", str(root)).replace("--port 69", "--port 1")
    argv = [
        sys.executable, "-c", ACTIVATE.format(fd=fd), "-m", "netboot.tftp.cli", "--daemon", "--no-fork",
        "--user", "root.root", "--workers", "2", "--logfile", str(tmp_path / "log"), *shlex.split(options),
    ]
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify")}
    proc = subprocess.Popen(argv, pass_fds=(fd,), env=env)
    try:
        ready = notify.recv(4096).decode()
        assert ready.startswith("READY=1"), ready
        address = listening.getsockname()
        listening.close()  # only the server holds the socket now
        assert raw_fetch(address, "boot.img")[0] == (root / "boot.img").read_bytes()
        proc.send_signal(signal.SIGTERM)
        assert notify.recv(4096) == b"STOPPING=1"
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()
    log = (tmp_path / "log").read_text()
    assert "serving the socket systemd passed" in log, log


def test_pyslamd_reports_readiness(tmp_path: Path) -> None:
    (tmp_path / "boot.img").write_bytes(b"x" * 1000)
    notify = _notify_socket(tmp_path)
    # Loopback and no client: nothing goes to the group.
    proc = subprocess.Popen(
        [sys.executable, "-m", "netboot.slam.cli", str(tmp_path / "boot.img"), "--bind-address", "127.0.0.1",
         "--port", str(free_udp_port())],
        env={**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify")}, stderr=subprocess.DEVNULL,
    )
    try:
        assert notify.recv(4096).decode().startswith("READY=1")
        proc.send_signal(signal.SIGTERM)
        assert notify.recv(4096) == b"STOPPING=1"
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()
