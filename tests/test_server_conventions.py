"""What admins expect of a daemon: start/stop lines, SIGHUP reopens the log, one log format,
-V, atftpd's ``--verbose 7`` spelling, and client commands that spell the same things the same."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netboot.clients.cli import build_parser as fetch_parser
from netboot.clients.slam_cli import build_parser as slam_fetch_parser
from netboot.serverlog import LogFile, line_format
from netboot.tftp.cli import _rewrite_verbose, _verbosity
from netboot.tftp.cli import build_parser as pyatftpd_parser
from tests.tftp.peers import free_udp_port, raw_fetch, start_server

#: atftpd's shape: "Dec 06 08:43:12 pyatftpd[123]: message".
LINE = r"^[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d {program}\[\d+\]: "


def _wait_for(path: Path, text: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in (content := path.read_text()):
            return content
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never appeared in {path}: {path.read_text() if path.exists() else '-'}")


@pytest.mark.parametrize(
    ("argv", "level", "directory"),
    [
        (["--verbose", "7", "/srv/boot"], 7, "/srv/boot"),
        (["-v", "3", "/srv/boot"], 3, "/srv/boot"),
        (["--verbose", "/srv/boot"], 6, "/srv/boot"),
        (["--verbose=5", "/srv/boot"], 5, "/srv/boot"),
    ],
)
def test_verbose_with_a_separate_level_keeps_the_directory(
    argv: list[str], level: int, directory: str
) -> None:
    args = pyatftpd_parser().parse_args(_rewrite_verbose(argv))
    assert _verbosity(args) == level and args.directory == directory


def test_pyslamd_version() -> None:
    result = subprocess.run([sys.executable, "-m", "netboot.slam.cli", "-V"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("pyslamd ")


def test_pyatftpd_logs_start_and_stop_and_reopens_its_log_on_sighup(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x" * 100)
    log = tmp_path / "pyatftpd.log"
    server = start_server("pyatftpd", tmp_path, extra=["--workers", "2", "--logfile", str(log)])
    try:
        first = _wait_for(log, "serving")
        assert re.search(LINE.replace("{program}", "pyatftpd") + r"pyatftpd .* serving", first, re.M), first
        log.rename(tmp_path / "pyatftpd.log.1")  # logrotate
        os.kill(server.proc.pid, signal.SIGHUP)
        time.sleep(0.5)
        assert server.proc.poll() is None, "SIGHUP ended the server"
        raw_fetch(server.address, "f")  # a worker logs the transfer into the new file
        _wait_for(log, "'f'")
        os.kill(server.proc.pid, signal.SIGTERM)
        assert server.proc.wait(10) == 0
    finally:
        server.stop()
    text = log.read_text()
    assert "SIGTERM received" in text and "pyatftpd terminating" in text


def test_a_file_name_that_is_not_utf8_is_logged_not_lost(tmp_path: Path) -> None:
    """The client's bytes are kept (surrogateescape); the log spells the odd byte ``\\xff``."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "boot\udcff.img").write_bytes(b"x" * 700)
    log = tmp_path / "pyatftpd.log"
    server = start_server("pyatftpd", root, extra=["--logfile", str(log)])
    try:
        assert raw_fetch(server.address, "boot\udcff.img")[0] == b"x" * 700
        _wait_for(log, "boot\\xff.img: done")
        os.kill(server.proc.pid, signal.SIGTERM)
        assert server.proc.wait(10) == 0
    finally:
        server.stop()
    assert "could not be written" not in log.read_text()


def test_a_lone_surrogate_reaches_the_log_file_spelled_out(tmp_path: Path) -> None:
    handler = LogFile(str(tmp_path / "x.log"), "pyatftpd")
    handler.setFormatter(line_format("pyatftpd"))
    for name in ("boot\udcff.img", "half\ud800.img"):
        handler.emit(logging.LogRecord("pyatftpd", logging.INFO, __file__, 1, "%s: done", (name,), None))
    handler.close()
    text = (tmp_path / "x.log").read_text(encoding="utf-8")
    assert handler.failures == 0
    assert "boot\\xff.img: done" in text and "half\\ud800.img: done" in text


def test_pyslamd_logs_in_the_same_format_and_reopens_its_log_on_sighup(tmp_path: Path) -> None:
    (tmp_path / "boot.img").write_bytes(b"x" * 1000)
    log = tmp_path / "pyslamd.log"
    port = free_udp_port()
    # Loopback only, and no client: pyslamd sends nothing to the group.
    proc = subprocess.Popen(
        [sys.executable, "-m", "netboot.slam.cli", str(tmp_path / "boot.img"), "--bind-address", "127.0.0.1",
         "--port", str(port), "--logfile", str(log)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        first = _wait_for(log, "serving")
        assert re.search(LINE.replace("{program}", "pyslamd") + "serving", first, re.M), first
        log.rename(tmp_path / "pyslamd.log.1")
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert proc.poll() is None, "SIGHUP ended pyslamd"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert re.search(LINE.replace("{program}", "pyslamd") + "SIGTERM received", text, re.M), text
    assert "pyslamd terminating" in text


@pytest.mark.parametrize("spelling", ["--bind", "--local-address"])
def test_the_client_commands_spell_the_same_options_the_same(spelling: str) -> None:
    fetch = fetch_parser().parse_args(["tftp://192.0.2.1/f", "-n", "3", spelling, "192.0.2.7", "-o", "out"])
    slam = slam_fetch_parser().parse_args(["x-slam://192.0.2.1", "-n", "3", spelling, "192.0.2.7", "-o", "o"])
    assert (fetch.count, fetch.bind, fetch.output) == (3, "192.0.2.7", "out")
    assert (slam.count, slam.local_address, slam.output) == (3, "192.0.2.7", "o")
    for parser in (fetch_parser(), slam_fetch_parser()):
        assert parser.parse_args([("tftp://h/f" if parser.prog == "netboot-fetch" else "x-slam://h"),
                                  "--count", "2"]).count == 2


def test_netboot_fetch_output_writes_the_first_clients_bytes(tmp_path: Path) -> None:
    data = os.urandom(5000)
    (tmp_path / "img").write_bytes(data)
    server = start_server("pyatftpd", tmp_path, extra=["--workers", "1"])
    try:
        result = subprocess.run(
            [sys.executable, "-m", "netboot.clients.cli", f"tftp://127.0.0.1:{server.port}/img",
             "--output", str(tmp_path / "out"), "--timeout", "30"],
            capture_output=True, text=True, timeout=60,
        )
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out").read_bytes() == data


def test_pyslamd_ignores_signals_while_it_stops(tmp_path: Path) -> None:
    """A supervisor's SIGTERM and a ``kill`` of the group often come together: the late ones
    once ended pyslamd's exit with -15 or an EBADF traceback (netboot/stopping.py)."""
    (tmp_path / "boot.img").write_bytes(b"x" * 1000)
    log = tmp_path / "pyslamd.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "netboot.slam.cli", str(tmp_path / "boot.img"), "--bind-address", "127.0.0.1",
         "--port", str(free_udp_port()), "--logfile", str(log)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        _wait_for(log, "serving")
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.0005)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stderr is not None and b"Traceback" not in proc.stderr.read()
    assert "Traceback" not in log.read_text() and "pyslamd terminating" in log.read_text()
