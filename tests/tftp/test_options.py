"""Option negotiation (RFC 2347/2348/2349/7440) and the CVE-2021-41054 rule."""

from __future__ import annotations

import pytest

from netboot.tftp.options import OptionPolicy, OptionRefused, negotiate
from netboot.tftp.packets import ErrorCode

ALL = OptionPolicy()


def test_only_requested_options_are_acknowledged_in_client_order() -> None:
    result = negotiate((("tsize", "0"), ("blksize", "1428")), 9999, ALL)
    assert result.acknowledged == [("tsize", "9999"), ("blksize", "1428")]
    assert result.blksize == 1428 and result.tsize == 9999


def test_no_options_means_no_oack() -> None:
    result = negotiate((), 10, ALL)
    assert not result.needs_oack and result.blksize == 512 and result.windowsize == 1


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("blksize", "8"),
        ("blksize", "65464"),
        ("timeout", "1"),
        ("timeout", "255"),
        ("windowsize", "1"),
        ("windowsize", "65535"),
    ],
)
def test_range_edges_are_accepted(name: str, value: str) -> None:
    assert negotiate(((name, value),), 0, ALL).acknowledged == [(name, value)]


def test_blksize_above_the_maximum_is_lowered_not_refused() -> None:
    assert negotiate((("blksize", "70000"),), 0, ALL).acknowledged == [("blksize", "65464")]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("blksize", "7"),
        ("blksize", "0"),
        ("blksize", "-1"),
        ("blksize", "abc"),
        ("blksize", ""),
        ("timeout", "0"),
        ("timeout", "256"),
        ("windowsize", "0"),
        ("windowsize", "65536"),
        ("tsize", "x"),
        ("blksize", "１２"),
        ("blksize", " 512x"),
    ],
)
def test_bad_values_are_refused_with_error_8_naming_the_option(name: str, value: str) -> None:
    with pytest.raises(OptionRefused) as info:
        negotiate(((name, value),), 0, ALL)
    assert info.value.code == ErrorCode.OPTION_REFUSED and name in str(info.value)


def test_duplicate_option_in_any_case_is_refused() -> None:
    with pytest.raises(OptionRefused, match="twice"):
        negotiate((("blksize", "512"), ("BLKSIZE", "1024")), 0, ALL)


@pytest.mark.parametrize("name", ["blksize", "timeout", "tsize", "windowsize"])
def test_disabled_option_is_not_acknowledged(name: str) -> None:
    policy = OptionPolicy(**{name: False})  # type: ignore[arg-type]
    value = "0" if name == "tsize" else "8"
    result = negotiate(((name, value),), 100, policy)
    assert result.acknowledged == []


def test_unknown_options_are_left_out_and_handed_back() -> None:
    result = negotiate((("multicast", ""), ("blksize", "512")), 0, ALL)
    assert result.acknowledged == [("blksize", "512")] and result.other == {"multicast": ""}


def test_cve_2021_41054_tiny_blksize_with_many_options_is_refused() -> None:
    options = (("blksize", "8"), ("tsize", "0"), ("timeout", "5"), ("windowsize", "4"))
    with pytest.raises(OptionRefused, match="smaller than"):
        negotiate(options, 123456, ALL)


def test_tiny_blksize_alone_still_fits() -> None:
    assert negotiate((("blksize", "8"),), 0, ALL).blksize == 8


def test_write_echoes_the_clients_tsize() -> None:
    assert negotiate((("tsize", "777"),), None, ALL, is_read=False).acknowledged == [("tsize", "777")]
