"""--mcast-* and --mtftp* checking at start-up (before the server daemonizes)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from netboot.tftp.cli import build_parser
from netboot.tftp.mcast_cli import multicast_setup
from netboot.tftp.mtftp import MtftpConfigError, parse_mtftp_config


def args_for(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args([*argv, "/tmp"])


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--mcast-addr", "10.0.0.1"], "not a multicast address"),
        (["--mcast_addr", "239.0.0.300"], "above 255"),
        (["--mcast-port", "0"], "outside 1..65535"),
        (["--mcast-port", "2000-1000"], "below its start"),
        (["--mcast-ttl", "300"], "outside 0..255"),
        (["--mcast-min-clients", "0"], "--mcast-min-clients must be at least 1"),
        (["--mcast-max-wait", "-1"], "--mcast-max-wait must not be negative"),
        (["--mcast-window", "0"], "--mcast-window 0: it must be at least 1"),
    ],
)
def test_bad_multicast_options_stop_the_server_with_the_reason(argv: list[str], fragment: str) -> None:
    with pytest.raises(SystemExit, match=fragment):
        multicast_setup(args_for(*argv))


def test_atftpd_defaults_are_accepted() -> None:
    args = args_for()
    assert (args.mcast_addr, args.mcast_port, args.mcast_ttl, args.mtftp_port) == (
        "239.255.0.0-255", "1758", 1, 75,
    )
    assert (args.mcast_min_clients, args.mcast_max_wait) == (1, 30.0)  # no hold unless asked
    assert callable(multicast_setup(args))


def test_mtftp_config_lines() -> None:
    entries = parse_mtftp_config("# comment\n\nlinux 239.255.1.1 3001\nboot.img 239.255.1.2 3002  # x\n")
    assert entries["linux"].group.group == "239.255.1.1" and entries["linux"].group.port == 3001
    assert entries["boot.img"].group.port == 3002


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("linux 239.255.1.1\n", "expected 'filename group port'"),
        ("linux 10.1.1.1 3001\n", "not a multicast address"),
        ("linux 239.255.1.1 70000\n", "not in 1..65535"),
        ("linux nowhere 3001\n", "not an IPv4 address"),
        ("a 239.255.1.1 3001\na 239.255.1.1 3001\n", "listed twice"),
    ],
)
def test_mtftp_config_errors_name_the_line(text: str, fragment: str, tmp_path: Path) -> None:
    with pytest.raises(MtftpConfigError, match=fragment):
        parse_mtftp_config(text, "conf")
    conf = tmp_path / "mtftp.conf"
    conf.write_text(text)
    with pytest.raises(SystemExit, match="line"):
        multicast_setup(args_for("--daemon", "--mtftp", str(conf), "--mtftp-port", "0"))
