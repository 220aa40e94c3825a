"""pyatftpd accepts atftpd 0.8's command line unchanged, and the process plumbing works."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netboot.tftp.cli import _rewrite_verbose, _verbosity, build_parser
from tests.tftp.peers import RunningServer, TftpError, free_udp_port, raw_fetch, rrq, start_server, wait_ready


def parse(*argv: str) -> object:
    return build_parser().parse_args(_rewrite_verbose(list(argv)))


def test_full_atftpd_command_line_parses() -> None:
    args = parse(
        "-t",
        "300",
        "-r",
        "5",
        "-m",
        "100",
        "-v7",
        "--trace",
        "--no-timeout",
        "--no-tsize",
        "--no-blksize",
        "--no-windowsize",
        "--no-multicast",
        "--logfile",
        "-",
        "--pidfile",
        "/run/p",
        "--listen-local",
        "--daemon",
        "--no-fork",
        "--prevent-sas",
        "--user",
        "nobody.nogroup",
        "--group",
        "nogroup",
        "--port",
        "69",
        "--bind-address",
        "192.0.2.1",
        "--mcast-ttl",
        "1",
        "--mcast-addr",
        "239.239.239.0-255",
        "--mcast-port",
        "1758-2000,8000-9000",
        "--pcre",
        "/etc/p",
        "--mtftp",
        "/etc/m",
        "--mtftp-port",
        "1759",
        "--no-source-port-checking",
        "--mcast-switch-client",
        "/srv/tftp",
    )
    assert vars(args)["directory"] == "/srv/tftp" and vars(args)["mcast_port"] == "1758-2000,8000-9000"
    assert (
        vars(args)["no_windowsize"]
        and vars(args)["mtftp_port"] == 1759
        and vars(args)["user"] == "nobody.nogroup"
    )


@pytest.mark.parametrize(
    ("argv", "level", "directory"),
    [
        (["-v", "/srv/x"], 6, "/srv/x"),  # bare -v increments and does not eat the directory
        (["-v", "-v", "/srv/x"], 7, "/srv/x"),
        (["-v3"], 3, "/srv/tftp"),
        (["--verbose=6", "/d"], 6, "/d"),
        (["--verbose", "/d"], 6, "/d"),
        (["--verb", "/d"], 6, "/d"),
        ([], 5, "/srv/tftp"),
        (["--verb=4", "/d"], 4, "/d"),
        (["-v7", "-v"], 7, "/srv/tftp"),  # capped at 7 like atftpd
    ],
)
def test_verbose_takes_an_optional_attached_level(argv: list[str], level: int, directory: str) -> None:
    args = parse(*argv)
    assert _verbosity(args) == level  # type: ignore[arg-type]
    assert vars(args)["directory"] == directory


@pytest.mark.parametrize(
    ("argv", "dest", "value"),
    [
        (["--mcast_ttl", "4"], "mcast_ttl", 4),
        (["--mcast_addr", "239.1.1.1"], "mcast_addr", "239.1.1.1"),
        (["--mcast_port", "3000"], "mcast_port", "3000"),
        (["--mcast-a", "239.2.2.2"], "mcast_addr", "239.2.2.2"),  # getopt_long-style abbreviation
        (["--bind", "10.0.0.1"], "bind_address", "10.0.0.1"),
        (["--max", "7"], "maxthread", 7),
        (["--no-so"], "no_source_port_checking", True),
    ],
)
def test_underscore_aliases_and_abbreviations(argv: list[str], dest: str, value: object) -> None:
    assert vars(parse(*argv))[dest] == value


def test_ambiguous_abbreviation_is_an_error() -> None:
    with pytest.raises(SystemExit):
        parse("--mcast", "1")


def _pyatftpd(*argv: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netboot.tftp.cli", *argv], capture_output=True, text=True, timeout=30, **kw
    )  # type: ignore[call-overload]


def test_version_and_help() -> None:
    version = _pyatftpd("-V")
    assert version.returncode == 0 and "atftp-0.8.0" in version.stdout
    helptext = _pyatftpd("-h")
    assert (
        helptext.returncode == 0 and "--mcast-addr" in helptext.stdout and "--allow-upload" in helptext.stdout
    )


def test_missing_directory_says_what_to_do(tmp_path: Path) -> None:
    result = _pyatftpd("--daemon", "--no-fork", str(tmp_path / "nope"))
    assert result.returncode != 0 and "not a directory" in result.stderr


def test_refuses_inetd_mode_on_a_terminal_like_atftpd(tmp_path: Path) -> None:
    result = _pyatftpd(str(tmp_path), stdin=subprocess.DEVNULL)
    assert result.returncode != 0 and "--daemon" in result.stderr


def test_options_without_effect_are_logged_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    log = tmp_path / "log"
    server = start_server(
        "pyatftpd",
        tmp_path,
        extra=["--mcast-switch-client", "--mtftp-port", "1759", "--prevent-sas"],
        log=log,
    )
    server.stop()
    lines = [line for line in log.read_text().splitlines() if "no effect" in line]
    assert len(lines) == 1
    assert "--mcast-switch-client" in lines[0] and "--mtftp-port" in lines[0] and "--prevent-sas" in lines[0]


def _live_processes_naming(marker: str) -> list[int]:
    """Pids (not zombies) whose command line contains ``marker``: the supervisor and its workers."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def _wait_all_gone(marker: str, seconds: float = 10) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := _live_processes_naming(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def _daemon_args(tmp_path: Path, port: int) -> list[str]:
    return [
        "--daemon",
        "--port",
        str(port),
        "--bind-address",
        "127.0.0.1",
        "--pidfile",
        str(tmp_path / "pid"),
        "--logfile",
        str(tmp_path / "log"),
        "--user",
        "root.root",
        "--workers",
        "4",
        str(tmp_path),
    ]


def _wait_pidfile(pidfile: Path) -> int:
    deadline = time.monotonic() + 10
    while not pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return int(pidfile.read_text())


def test_daemon_detaches_and_writes_the_pidfile(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"daemonized\n")
    port = free_udp_port()
    started = time.monotonic()
    result = _pyatftpd(*_daemon_args(tmp_path, port))
    assert result.returncode == 0 and time.monotonic() - started < 20
    pid = _wait_pidfile(tmp_path / "pid")
    try:
        # A new session (detached from ours) in which it is not the leader (cannot regain a terminal).
        assert os.getsid(pid) != os.getsid(0) and os.getsid(pid) != pid
        assert raw_fetch(("127.0.0.1", port), "f")[0] == b"daemonized\n"
    finally:
        os.kill(pid, signal.SIGTERM)
    assert _wait_all_gone(str(tmp_path)) == [], "the daemon or one of its workers outlived SIGTERM"


def test_sigterm_while_the_workers_start_stops_every_worker(tmp_path: Path) -> None:
    """A SIGTERM that arrives before the supervisor has forked all workers still stops them all.

    (It used to kill the supervisor outright and leave the forked workers serving with no parent.)
    """
    for attempt in range(5):
        here = tmp_path / str(attempt)
        here.mkdir()
        assert _pyatftpd(*_daemon_args(here, free_udp_port())).returncode == 0
        supervisor = _wait_pidfile(here / "pid")
        deadline = time.monotonic() + 10
        while len(_live_processes_naming(str(here))) < 2 and time.monotonic() < deadline:
            time.sleep(0.001)  # the first worker is forked: the supervisor is inside its fork loop
        os.kill(supervisor, signal.SIGTERM)
        assert _wait_all_gone(str(here)) == [], f"attempt {attempt}: processes left after an early SIGTERM"


@pytest.mark.parametrize("workers", ["4", "1"])
@pytest.mark.parametrize("inherited", ["default", "ignored"])
def test_sigterm_once_the_pidfile_exists_stops_the_server_cleanly(
    tmp_path: Path, inherited: str, workers: str
) -> None:
    """The pidfile says "signal me": a SIGTERM from then on stops the server and removes the pidfile.

    Why "ignored": a daemon started from a shell or a CI runner that ignores SIGTERM inherits that.
    Such a SIGTERM, sent before the supervisor had its handlers, used to be lost and left the
    supervisor and its four workers serving (one CI failure of the test above); with the default
    action it killed the supervisor before it could remove its pidfile.
    """

    def start_with_sigterm(disposition: signal.Handlers) -> None:
        signal.signal(signal.SIGTERM, disposition)

    disposition = signal.SIG_IGN if inherited == "ignored" else signal.SIG_DFL
    for attempt in range(3):
        here = tmp_path / str(attempt)
        here.mkdir()
        pidfile = here / "pid"
        argv = _daemon_args(here, free_udp_port())
        argv[argv.index("--workers") + 1] = workers
        assert _pyatftpd(*argv, preexec_fn=lambda: start_with_sigterm(disposition)).returncode == 0
        deadline = time.monotonic() + 10
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.0005)
        os.kill(int(pidfile.read_text()), signal.SIGTERM)
        assert _wait_all_gone(str(here)) == [], f"attempt {attempt}: processes left after a SIGTERM at once"
        assert not pidfile.exists(), f"attempt {attempt}: the pidfile outlived the server"


@pytest.mark.parametrize("lane", ["native", "python"])
def test_the_default_is_one_process_with_the_c_lane_and_two_workers_per_cpu_without(
    tmp_path: Path, lane: str
) -> None:
    """One process like atftpd where the C lane serves; the Python lane needs the cores."""
    from netboot.tftp import native_lane
    from netboot.tftp.cli import DEFAULT_WORKERS, PYTHON_LANE_WORKERS

    if lane == "native" and native_lane.library() is None:
        pytest.fail("the C lane is not built in this environment: pip install -e . builds it")
    argv = _daemon_args(tmp_path, free_udp_port())
    at = argv.index("--workers")
    del argv[at : at + 2]
    env = dict(os.environ, PYATFTPD_NATIVE="0" if lane == "python" else "1")
    assert _pyatftpd(*argv, env=env).returncode == 0
    supervisor = _wait_pidfile(tmp_path / "pid")
    try:
        wanted = DEFAULT_WORKERS if lane == "native" else PYTHON_LANE_WORKERS
        processes = wanted + 1 if wanted > 1 else 1
        deadline = time.monotonic() + 10
        while len(_live_processes_naming(str(tmp_path))) < processes and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # no more than that either
        assert len(_live_processes_naming(str(tmp_path))) == processes
        assert f"({wanted} worker" in (tmp_path / "log").read_text()
    finally:
        os.kill(supervisor, signal.SIGTERM)
    assert _wait_all_gone(str(tmp_path)) == []


def test_a_worker_that_dies_is_replaced_and_sigterm_still_stops_everything(tmp_path: Path) -> None:
    """The supervisor reaps a dead worker (SIGCHLD, taken like the stop signals) and forks a new one."""
    (tmp_path / "f").write_bytes(b"again\n")
    port = free_udp_port()
    assert _pyatftpd(*_daemon_args(tmp_path, port)).returncode == 0
    supervisor = _wait_pidfile(tmp_path / "pid")
    try:
        deadline = time.monotonic() + 10
        while len(_live_processes_naming(str(tmp_path))) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = [pid for pid in _live_processes_naming(str(tmp_path)) if pid != supervisor]
        assert len(workers) == 4
        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            now = [pid for pid in _live_processes_naming(str(tmp_path)) if pid != supervisor]
            if len(now) == 4 and workers[0] not in now:
                break
            time.sleep(0.05)
        assert len(now) == 4 and workers[0] not in now, now
        assert "starting a new one" in (tmp_path / "log").read_text()
        assert raw_fetch(("127.0.0.1", port), "f")[0] == b"again\n"
    finally:
        os.kill(supervisor, signal.SIGTERM)
    assert _wait_all_gone(str(tmp_path)) == []
    assert not (tmp_path / "pid").exists()


def test_workers_exit_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    """kill -9 of the supervisor cannot be forwarded; the kernel's parent-death signal ends the workers."""
    (tmp_path / "f").write_bytes(b"orphan?\n")
    port = free_udp_port()
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "netboot.tftp.cli", "--no-fork", *_daemon_args(tmp_path, port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(RunningServer("pyatftpd", port, tmp_path, supervisor))
        assert raw_fetch(("127.0.0.1", port), "f")[0] == b"orphan?\n"
        deadline = time.monotonic() + 10
        while len(_live_processes_naming(str(tmp_path))) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(_live_processes_naming(str(tmp_path))) == 5  # the supervisor and 4 workers
        supervisor.kill()
        supervisor.wait(timeout=10)
        assert _wait_all_gone(str(tmp_path)) == [], "workers outlived a killed supervisor"
    finally:
        supervisor.kill()
        for pid in _live_processes_naming(str(tmp_path)):
            os.kill(pid, signal.SIGKILL)


def test_inetd_mode_serves_the_socket_on_stdin_and_exits_when_idle(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"inetd\n")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    address = sock.getsockname()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "netboot.tftp.cli",
            "-t",
            "2",
            "--logfile",
            "-",
            "--user",
            "root.root",
            str(tmp_path),
        ],
        stdin=sock.fileno(),
        stdout=subprocess.PIPE,
    )
    sock.close()
    try:
        assert raw_fetch(address, "f")[0] == b"inetd\n"
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_workers_share_the_port_and_the_maxthread_limit(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(os.urandom(5000))
    server = start_server("pyatftpd", tmp_path, extra=["--workers", "2", "--maxthread", "2", "-r", "1"])
    try:
        holders = []
        for _ in range(2):
            holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            holder.settimeout(2)
            holder.sendto(rrq("f"), server.address)
            holder.recvfrom(2048)
            holders.append(holder)
        busy = []
        for _ in range(4):  # whichever worker takes it, the shared limit says no
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.settimeout(2)
                probe.sendto(rrq("f"), server.address)
                busy.append(probe.recvfrom(2048)[0][:4])
        assert busy == [b"\0\5\0\0"] * 4
        for holder in holders:
            holder.close()
        # The held transfers give up after 1 s x 5 retries; then the slots are free again.
        deadline = time.monotonic() + 30
        while True:
            try:
                assert raw_fetch(server.address, "f")[0] == (tmp_path / "f").read_bytes()
                break
            except TftpError:
                assert time.monotonic() < deadline, "the slots were never released"
                time.sleep(0.5)
        pids = _group_pids(server)
        assert len(pids) >= 3  # supervisor + 2 workers
    finally:
        server.stop()


def _group_pids(server: RunningServer) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == server.proc.pid:
                pids.append(int(entry))
    return pids


def test_start_server_probe_sees_pyatftpd(tmp_path: Path) -> None:
    server = start_server("pyatftpd", tmp_path)
    try:
        wait_ready(server)
    finally:
        server.stop()
    assert server.proc.returncode is not None


def test_retransmission_adapts_by_default_and_is_fixed_with_retry_timeout() -> None:
    from netboot.tftp.cli import _config

    default = _config(parse("--daemon", "/srv"))  # type: ignore[arg-type]
    assert (default.retry_timeout, default.adaptive_rto) == (5.0, True)
    fixed = _config(parse("--daemon", "--retry-timeout", "7", "/srv"))  # type: ignore[arg-type]
    assert (fixed.retry_timeout, fixed.adaptive_rto, fixed.first_retry) == (7.0, False, None)
