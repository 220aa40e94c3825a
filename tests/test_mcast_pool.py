"""atftpd's --mcast-addr/--mcast-port syntax, ordering and first-fit allocation."""

from __future__ import annotations

import pytest

from netboot.tftp.mcast_pool import (
    GroupPort,
    McastPool,
    PoolSyntaxError,
    parse_addresses,
    parse_ports,
    parse_ttl,
)


def test_default_pool_is_256_groups_on_1758_address_major() -> None:
    pool = McastPool()
    assert len(pool) == 256
    assert pool.entries[0] == GroupPort("239.255.0.0", 1758)
    assert pool.entries[-1] == GroupPort("239.255.0.255", 1758)


def test_lists_ranges_and_bare_numbers_reuse_the_previous_prefix() -> None:
    assert parse_addresses("239.1.2.3,5,10-11,239.9.9.9") == [
        "239.1.2.3", "239.1.2.5", "239.1.2.10", "239.1.2.11", "239.9.9.9",
    ]
    assert parse_ports("1758-1760,8000") == [1758, 1759, 1760, 8000]


def test_order_is_address_major_port_minor_and_first_fit() -> None:
    pool = McastPool("239.0.0.1-2", "1758,1759")
    assert [(e.group, e.port) for e in pool.entries] == [
        ("239.0.0.1", 1758), ("239.0.0.1", 1759), ("239.0.0.2", 1758), ("239.0.0.2", 1759),
    ]
    a, b = pool.allocate(), pool.allocate()
    assert (a, b) == (pool.entries[0], pool.entries[1])
    assert a is not None
    pool.release(a)
    assert pool.allocate() == pool.entries[0]
    pool.allocate()
    pool.allocate()
    assert pool.free == 0
    assert pool.allocate() is None


def test_release_of_a_pair_not_held_is_an_error() -> None:
    pool = McastPool("239.0.0.1", "1758")
    with pytest.raises(ValueError):
        pool.release(GroupPort("239.0.0.1", 1758))


@pytest.mark.parametrize(
    ("addr", "port", "fragment"),
    [
        ("239.0.0.300", "1758", "above 255"),
        ("239.0.0.5-2", "1758", "below its start"),
        ("10.0.0.1", "1758", "not a multicast"),
        ("5", "1758", "no full address"),
        ("239.0.0.1,,2", "1758", "empty element"),
        ("239.0.x.1", "1758", "not a decimal"),
        ("239.0.0.1", "0", "outside 1..65535"),
        ("239.0.0.1", "65536", "outside 1..65535"),
        ("239.0.0.1", "2000-1000", "below its start"),
        ("239.0.0.1", "abc", "not a decimal"),
    ],
)
def test_bad_values_are_refused_with_a_reason(addr: str, port: str, fragment: str) -> None:
    with pytest.raises(PoolSyntaxError, match=fragment):
        McastPool(addr, port)


def test_oack_value_is_plain_decimal_with_two_commas() -> None:
    assert GroupPort("239.255.0.7", 40000).oack_value(True) == "239.255.0.7,40000,1"
    assert GroupPort("239.255.0.7", 1758).oack_value(False) == "239.255.0.7,1758,0"


def test_ttl() -> None:
    assert parse_ttl("1") == 1
    with pytest.raises(PoolSyntaxError):
        parse_ttl("300")
    with pytest.raises(PoolSyntaxError):
        parse_ttl("x")
