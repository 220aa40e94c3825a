"""Command-line parsing of pyslamd and netboot-slam-fetch."""

from __future__ import annotations

import argparse

import pytest

from netboot.clients.slam_cli import parse_slam_uri
from netboot.slam.cli import main, parse_rate


def test_rate_suffixes() -> None:
    assert parse_rate("12.5M") == 12_500_000
    assert parse_rate("800k") == 800_000
    assert parse_rate("1000") == 1000
    with pytest.raises(argparse.ArgumentTypeError, match="bytes per second"):
        parse_rate("fast")
    with pytest.raises(argparse.ArgumentTypeError, match="positive"):
        parse_rate("0")


def test_uri_forms() -> None:
    assert parse_slam_uri("x-slam://192.0.2.1") == (("192.0.2.1", 10000), ("239.255.1.1", 10000), None)
    server, group, _ = parse_slam_uri("x-slam://192.0.2.1:10001/:10002")
    assert (server, group) == (("192.0.2.1", 10001), ("239.255.1.1", 10002))
    server, group, warning = parse_slam_uri("x-slam://192.0.2.1/239.255.1.2:5000")
    assert group == ("239.255.1.2", 5000) and warning and "sock_aton" in warning
    with pytest.raises(ValueError, match="x-slam"):
        parse_slam_uri("tftp://192.0.2.1/file")


def test_pyslamd_refuses_bad_arguments(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["/nonexistent", "--mcast-addr", "192.0.2.9"]) == 2
    assert "not a multicast" in capsys.readouterr().err
    assert main(["/nonexistent", "--block-size", "0"]) == 2
    assert main(["/nonexistent/file", "--port", "10999"]) == 1
    assert "No such file" in capsys.readouterr().err


def test_pyslamd_defaults_and_ramp_options(capsys: pytest.CaptureFixture[str]) -> None:
    from netboot.slam.cli import build_parser

    args = build_parser().parse_args(["file"])
    assert args.rate == 125_000_000 and args.start_rate is None and args.ramp == 1.5
    args = build_parser().parse_args(["file", "--rate", "12.5M", "--start-rate", "6.25M", "--ramp", "1"])
    assert (args.rate, args.start_rate, args.ramp) == (12_500_000, 6_250_000, 1.0)
    assert main(["/nonexistent", "--ramp", "0.5"]) == 2
    assert "--ramp" in capsys.readouterr().err


def test_pyslamd_hold_options(capsys: pytest.CaptureFixture[str]) -> None:
    from netboot.slam.cli import build_parser

    args = build_parser().parse_args(["file"])
    assert (args.min_clients, args.max_wait) == (1, 30.0)
    assert main(["/nonexistent", "--min-clients", "0"]) == 2
    assert "--min-clients" in capsys.readouterr().err
    assert main(["/nonexistent", "--max-wait", "-1"]) == 2
    assert "--max-wait" in capsys.readouterr().err
