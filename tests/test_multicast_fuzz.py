"""Arbitrary datagrams never raise out of the session core or the client core."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from netboot.clients.ipxe_tftp import IpxeTftpClient
from netboot.tftp.mcast_pool import GroupPort
from netboot.tftp.multicast import MulticastSession

PEERS = [("192.0.2.10", 1000), ("192.0.2.11", 1001), ("192.0.2.99", 9)]
datagram = st.one_of(
    st.binary(max_size=64),
    st.builds(lambda b: struct.pack("!HH", 4, b), st.integers(0, 65535)),
    st.builds(lambda c, m: struct.pack("!HH", 5, c) + m, st.integers(0, 65535), st.binary(max_size=8)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(datagram, st.sampled_from(PEERS), st.floats(0, 0.5)), max_size=40), st.booleans())
def test_session_core_survives_any_datagrams(
    packets: list[tuple[bytes, tuple[str, int], float]], mtftp: bool
) -> None:
    data = bytes(range(256)) * 8
    core = MulticastSession(lambda o, n: data[o : o + n], len(data), 100, GroupPort("239.1.1.1", 1758), 0.0,
                            mtftp=mtftp)
    core.add_request(PEERS[0], [("blksize", "100")], 0.0)
    core.add_request(PEERS[1], [("blksize", "100")], 0.0)
    now = 0.0
    for payload, addr, step in packets:
        now += step
        core.receive_datagram(payload, addr, now)
        core.handle_timer(now)
        for out, _ in core.datagrams_to_send(now):
            assert len(out) >= 4
        while core.next_event() is not None:
            pass
    assert core.master is None or core.master.state == "master"


oack_value = st.text(alphabet="0123456789.,x- ", max_size=24)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=40),
            st.builds(lambda v: b"\0\6multicast\0" + v.encode() + b"\0tsize\0" + b"5000\0", oack_value),
            st.builds(
                lambda b, p: struct.pack("!HH", 3, b) + p, st.integers(0, 65535), st.binary(max_size=1500)
            ),
        ),
        max_size=30,
    ),
    st.sampled_from(["tftm", "mtftp", "tftp"]),
)
def test_client_core_survives_any_datagrams(packets: list[bytes], scheme: str) -> None:
    core = IpxeTftpClient("192.0.2.1", "f", scheme=scheme)
    core.start(0.0)
    core.handle_timer(0.0)
    now = 0.0
    for index, payload in enumerate(packets):
        now += 0.01
        group = ("239.255.1.1", 3001) if index % 3 == 0 else None
        core.receive_datagram(payload, ("192.0.2.1", 40000), now, group)
        core.handle_timer(now)
        core.datagrams_to_send(now)
        while core.next_event() is not None:
            pass
    if core.ok:
        assert len(core.image()) == core.filesize
