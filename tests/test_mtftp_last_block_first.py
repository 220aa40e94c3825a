"""``--mtftp-last-block-first``: the size first, and nothing else changes (docs/multicast.md,
"The last block first").

MTFTP has no tsize option, so iPXE learns the file's size from the blocks it gets and
grows its buffer block by block; a pass that opens with the last block sizes it at once.
What must hold: the first group datagram of a pass is the last block, every client still
gets the exact bytes (iPXE places a block by its number, which never wraps in a session),
and a lone pass carries no more: the master, holding the last block, never asks for it.
"""

from __future__ import annotations

import random
import struct

import pytest

from netboot.tftp.mcast_pool import GroupPort
from netboot.tftp.multicast import MulticastSession, Tuning
from tests.tftm_sim import SimClient, TftmSim

PAYLOAD = random.Random(1759).randbytes(300 * 512 + 77)
BLOCKS = 301
TO_GROUP = ("239.255.0.0", 1758)
GROUP = GroupPort("239.255.0.0", 1758)


def _first_datagrams(tuning: Tuning) -> list[tuple[int, tuple[str, int]]]:
    session = MulticastSession(
        lambda off, n: PAYLOAD[off : off + n], len(PAYLOAD), 512, GROUP, 0.0, mtftp=True, tuning=tuning
    )
    session.add_request(("192.0.2.10", 2000), [], 0.0)
    return [(struct.unpack_from("!H", d, 2)[0], addr) for d, addr in session.datagrams_to_send(0.0)]


def test_the_pass_opens_with_the_last_block_only_when_asked() -> None:
    assert _first_datagrams(Tuning(last_block_first=True)) == [
        (BLOCKS, TO_GROUP), (1, TO_GROUP), (1, ("192.0.2.10", 2000)),
    ]  # fmt: skip
    assert (BLOCKS, TO_GROUP) not in _first_datagrams(Tuning())


@pytest.mark.parametrize("starts", [[0.0], [0.0, 0.05, 0.3, 0.9]])
def test_every_client_gets_the_exact_bytes(starts: list[float]) -> None:
    def run(tuning: Tuning) -> TftmSim:
        sim = TftmSim(PAYLOAD, [SimClient(t) for t in starts], scheme="mtftp", tuning=tuning)
        sim.run(limit=120.0)
        for client in sim.clients:
            assert client.core is not None, "never ran"
            assert client.core.ok, client.core.error
            assert client.core.image() == PAYLOAD
        return sim

    plain, first = run(Tuning()), run(Tuning(last_block_first=True))
    if len(starts) == 1:  # a master that has the last block never asks for it again
        assert first.group_bytes == plain.group_bytes
