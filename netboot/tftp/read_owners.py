"""Which worker serves each running unicast read (``--workers N``), so a repeat reaches it.

Why: the workers share one listening socket and whichever is free reads a request; a
busier worker even steps back for an idle one (workers.WorkerLoad).  So a client's
repeated RRQ (iPXE repeats one unanswered for 0.25 s) usually reached a sibling of the
worker serving it, which started a second transfer: a second file open and
``--maxthread`` slot until that transfer timed out (tests/tftp/test_worker_repeats.py;
docs/pyatftpd.md, "Differences from atftpd, on purpose").  Now a worker claims a read
in a table in shared memory before it starts it; a sibling that reads a repeat finds
the claim and hands the request to the owner (handoff.py), which answers it as a
repeat (``rrq_repeated``), exactly as one worker does.

The table is direct-mapped (one entry per slot, a key's digest picks the slot): a read
whose slot is taken by another running read is not entered, and its repeats may start a
second transfer, as before.  With 4096 slots and ``--maxthread`` 100 that is rare, and
it costs what it cost before, never a wrong answer.  An entry left behind by a worker
that crashed points at its successor, which serves the repeat itself and takes the entry.
"""

from __future__ import annotations

import hashlib
import multiprocessing

from netboot.tftp.handler import RequestContext
from netboot.tftp.handoff import Handoff

#: A read in progress, by client address and request (unicast.UnicastHandler).
ReadKey = tuple[tuple[str, int], str, str, tuple[tuple[str, str], ...]]

SLOTS = 4096


def digest(key: ReadKey) -> int:
    """The same non-zero 64-bit number for the same read in every worker (0 marks a free slot)."""
    text = repr(key).encode()  # repr spells lone surrogates (bytes not UTF-8) out
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big") or 1


class ReadOwners:
    """The shared table: slot -> (digest of the read, index of the worker serving it)."""

    def __init__(self, slots: int = SLOTS) -> None:
        self._digests = multiprocessing.Array("Q", slots)
        self._owners = multiprocessing.Array("i", slots, lock=False)

    def claim(self, key: ReadKey, worker: int) -> int:
        """The worker serving ``key``: ``worker`` itself when nobody was (it now is)."""
        value = digest(key)
        slot = value % len(self._owners)
        with self._digests.get_lock():
            held = self._digests[slot]
            if held == value:
                return int(self._owners[slot])
            if held == 0:
                self._digests[slot] = value
                self._owners[slot] = worker
        return worker

    def release(self, key: ReadKey, worker: int) -> None:
        value = digest(key)
        slot = value % len(self._owners)
        with self._digests.get_lock():
            if self._digests[slot] == value and self._owners[slot] == worker:
                self._digests[slot] = 0


class SharedReads:
    """A worker's part in the table: claim reads, hand repeats to their owners."""

    def __init__(self, owners: ReadOwners, handoff: Handoff) -> None:
        self.owners = owners
        self.handoff = handoff

    def handed_over(self, ctx: RequestContext, key: ReadKey) -> bool:
        """True when a sibling serves ``key`` and took this (repeated) request."""
        owner = self.owners.claim(key, self.handoff.index)
        return owner != self.handoff.index and self.handoff.send(owner, ctx)

    def release(self, key: ReadKey) -> None:
        self.owners.release(key, self.handoff.index)
