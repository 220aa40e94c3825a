import os
from pathlib import Path

import pytest

from lab.infra.console import Console, ConsoleClosed, clean
from tests.lab_unit.fakes import console_with


def test_ansi_and_carriage_returns_are_stripped() -> None:
    assert clean(b"\x1b[2J\x1b[01;01HiPXE\r\n\x1b[?7l ok\r\n") == "iPXE\n ok\n"


def test_everything_read_is_drained_into_console_log(tmp_path: Path) -> None:
    console, _ = console_with("SeaBIOS\r\nline two\r\n", tmp_path)
    assert console.wait_closed(5)
    assert (tmp_path / "console.log").read_bytes() == b"SeaBIOS\r\nline two\r\n"


def test_expect_returns_named_groups_and_moves_the_cursor(tmp_path: Path) -> None:
    console, _ = console_with("a LAB x=1\nb LAB x=2\n", tmp_path)
    first = console.expect(r"LAB x=(?P<x>\d)", [], 5)
    second = console.expect(r"LAB x=(?P<x>\d)", [], 5)
    assert (first.groups["x"], second.groups["x"]) == ("1", "2")


def test_a_failure_pattern_before_success_wins(tmp_path: Path) -> None:
    console, _ = console_with("Connection timed out (http://ipxe.org/4c106035)\nLAB fetched\n", tmp_path)
    match = console.expect("LAB fetched", [r"ipxe\.org/[0-9a-f]{8}"], 5)
    assert match.failed


def test_timeout_and_closed_are_distinct(tmp_path: Path) -> None:
    console, write_fd = console_with("nothing yet\n", tmp_path, close=False)
    with pytest.raises(TimeoutError):
        console.expect("never", [], 0.2)
    os.close(write_fd)
    with pytest.raises(ConsoleClosed):
        console.expect("never", [], 5)


def test_wrapped_banner_still_matches(tmp_path: Path) -> None:
    from lab.judge.ladder import BOOT_LADDER

    text = (
        "iPXE 1.0.0+git-20190125.36a4c85-5.1 -- Open Source Network Boot Firmware -- http\r\n"
        "://ipxe.org\r\nFeatures: DNS HTTP iSCSI NFS TFTP AoE ELF MBOOT PXE bzImage Menu PXEXT\r\n"
    )
    console: Console = console_with(text, tmp_path)[0]
    match = console.expect(BOOT_LADDER[0].success, [], 5)
    assert match.groups["version"] == "1.0.0+git-20190125.36a4c85-5.1"
    assert match.groups["features"].split()[-1] == "PXEXT"


def test_watching_without_consuming_leaves_text_for_the_ladder(tmp_path: Path) -> None:
    console, _ = console_with("iPXE banner\nmore\n", tmp_path)
    console.expect("banner", [], 5, consume=False)
    assert console.expect("iPXE", [], 5).text == "iPXE"


def test_prompts_are_answered_once_each_and_logged(tmp_path: Path) -> None:
    typed: list[bytes] = []
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"Press Ctrl-B to configure iPXE (PCI 00:02.0)...\r\n")
    os.write(write_fd, b"iPXE 1.0 -- Open Source\r\nPress Ctrl-B for the iPXE command line...")
    os.close(write_fd)
    answers = [(r"Press Ctrl-B to configure iPXE", b" "), (r"Press Ctrl-B for the iPXE command line", b"x")]
    console = Console(os.fdopen(read_fd, "rb"), tmp_path / "console.log", answers, typed.append)
    assert console.wait_closed(5)
    assert typed == [b" ", b"x"]
    assert len((tmp_path / "answers.log").read_text().splitlines()) == 2
