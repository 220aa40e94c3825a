"""What a NACK proves a client took, beyond the first copy of the block before its gap.

Why: with flow windows the server confirms what a client took from its answers, and the
surest part of an answer is its first gap: the client holds every block before it, so it
has taken (or lost) every datagram up to that block's first copy (``SlamServer._floor``).
While a client walks an old gap, by repairs, that floor stays where the gap began: the
first copies of the blocks it now fills went out long ago.  The ping ledger's rules for
lost pings (``pings.py``) need the floor to move; while it does not, every ping a small
ring drops stays in the ledger for a second, later answers are taken for older pings,
and the window waits for answers that already came.

A block the client named missing, with no copy of it on its way then, and held in a
later answer, was filled by a copy sent after it named it, the first such copy at the
earliest: every datagram up to that copy has reached the client (taken or lost), because
the group's datagrams arrive in the order they were sent.  That bound needs no ping, so
no lost ping can hold it back.  The server finds lost pings with it, and confirms
windows with the floor alone (docs/pyslamd.md, "Lost pings", says why).
"""

from __future__ import annotations

from collections.abc import Sequence

Address = tuple[str, int]

#: Blocks watched per answer: iPXE names at most four; an Etherboot run-length NACK may
#: name thousands, and the first few suffice to move the bound.
WATCH_PER_ANSWER = 8


class CopyWatch:
    """For each client, the blocks it named missing and the first copy of each sent since."""

    def __init__(self) -> None:
        #: block -> clients waiting for its next copy.
        self._waiting: dict[int, set[Address]] = {}
        #: client -> block -> sequence number of the first copy sent after it named the
        #: block missing (0: none sent yet).
        self._proofs: dict[Address, dict[int, int]] = {}

    def sent(self, block: int, seq: int) -> None:
        """Data datagram ``seq`` carried ``block``."""
        for addr in self._waiting.pop(block, ()):
            proofs = self._proofs.get(addr)
            if proofs is not None and proofs.get(block) == 0:
                proofs[block] = seq

    def proven(self, addr: Address, first_gap: int) -> int:
        """The latest datagram this answer proves reached the client (0: none): it holds
        every block before ``first_gap``, the watched ones among them by a copy sent after
        it named them."""
        proofs = self._proofs.get(addr)
        if not proofs:
            return 0
        held = [block for block in proofs if block < first_gap]
        return max((proofs.pop(block) for block in held), default=0)

    def named(
        self, addr: Address, ranges: Sequence[tuple[int, int]], taken: int, last_sent_seq: Sequence[int]
    ) -> None:
        """The client's answer named ``ranges`` missing, after it had taken every datagram up
        to ``taken``; a block none of whose copies went out after that has no copy on its
        way, so the next copy sent is the first that can fill it."""
        proofs = self._proofs.setdefault(addr, {})
        watched = 0
        for first, count in ranges:
            for block in range(first, first + count):
                if watched >= WATCH_PER_ANSWER:
                    return
                watched += 1
                if block not in proofs and last_sent_seq[block] <= taken:
                    proofs[block] = 0
                    self._waiting.setdefault(block, set()).add(addr)

    def forget(self, addr: Address) -> None:
        self._proofs.pop(addr, None)
