"""What a silent, spoofable requester gets from the request port and a unicast read (issue 20).

Measured on today's code before the change (tests/bench/test_bench_robustness.py, 50 s):
a 17-byte plain RRQ drew six full DATA and an ERROR (184 x; atftpd 31 x: one DATA), a
1-byte datagram a 69-byte ERROR (atftpd 27 bytes).
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest

from netboot.tftp.handler import Listener
from netboot.tftp.router import TERSE_LIMIT, RequestRouter
from netboot.tftp.unicast import UnicastHandler
from tests.tftp.core_helpers import ack
from tests.tftp.fake_services import CLIENT, FakeServices, read_request

#: atftpd 0.8's answer to junk: ERROR 4 "Illegal TFTP operation".
ATFTPD_JUNK_REPLY = 27


def _dispatch(services: FakeServices, datagram: bytes) -> list[int]:
    """Send ``datagram`` to a router; the lengths of the ERROR datagrams it answers with."""
    router = RequestRouter(UnicastHandler())
    router.dispatch(services, cast(Listener, None), datagram, CLIENT, "127.0.0.1", 0.0)
    replies = [4 + len(message) + 1 for _, _, message in services.errors]
    services.errors.clear()
    return replies


@pytest.mark.parametrize(
    "datagram",
    [
        b"", b"x", b"\0", b"\0\x09", b"\0\1f", b"\0\4\0\1", b"\0\3\0\1data", b"\0\1f\0binary\0",
    ],
)
def test_junk_is_answered_with_no_more_bytes_than_atftpd_sends(tmp_path: Path, datagram: bytes) -> None:
    services = FakeServices(str(tmp_path))
    (length,) = _dispatch(services, datagram)
    assert length <= max(len(datagram), TERSE_LIMIT) <= max(len(datagram), ATFTPD_JUNK_REPLY)


def test_the_log_keeps_the_whole_reason(tmp_path: Path) -> None:
    services = FakeServices(str(tmp_path))
    router = RequestRouter(UnicastHandler())
    router.dispatch(services, cast(Listener, None), b"x", CLIENT, "127.0.0.1", 0.0)
    ((_, code, message),) = services.errors
    assert code == 4 and message == "malformed request"


def test_a_repeated_request_of_an_unanswered_read_gets_the_first_datagram_again(tmp_path: Path) -> None:
    """iPXE repeats an unanswered RRQ after 0.25 s: each repeat is answered once, nothing else is."""
    (tmp_path / "f").write_bytes(b"a" * 5000)
    services = FakeServices(str(tmp_path))
    services.handle(read_request("f"))
    (core,) = services.cores
    ((first, _),) = core.datagrams_to_send(0.0)
    services.handle(read_request("f"), now=0.25)
    services.handle(read_request("f"), now=0.75)
    assert services.sent_aside == [(first, CLIENT), (first, CLIENT)]
    core.receive_datagram(ack(1), CLIENT, 0.8)  # now it has answered: a repeat is a stale copy
    services.handle(read_request("f"), now=0.9)
    assert len(services.sent_aside) == 2
    repeats = [e.get("answered") for e in services.emitted if e["event"] == "rrq_repeated"]
    assert repeats == [True, True, False]
    services.close_all()


def test_a_refused_request_never_takes_a_maxthread_slot(tmp_path: Path) -> None:
    """Before, a burst of refused requests (slow first requests in fresh workers) read
    "server busy" to the next client: the slot was taken before the file was opened."""
    (tmp_path / "f").write_bytes(b"a" * 5000)
    services = FakeServices(str(tmp_path), max_transfers=1)
    taken = []

    def acquire() -> bool:
        taken.append(True)
        return True

    services.slots.acquire = acquire  # type: ignore[method-assign]
    services.handle(read_request("missing"))
    services.handle(read_request("../f"))
    services.handle(read_request("f", options=(("blksize", "0"),)))
    assert [code for _, code, _ in services.errors] == [1, 2, 8] and taken == []
    services.handle(read_request("f"))
    assert taken == [True]
    services.close_all()
