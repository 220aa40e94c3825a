"""Flow windows: how many data datagrams each listener of the pace set may have unconfirmed.

Why: a rate, however well chosen, keeps sending while a receiver is not running.  A TCG
guest descheduled for 20 ms behind an emulated NIC whose ring holds 8 frames (iPXE's
vmxnet3 and intel drivers keep 8 buffers posted, QEMU's vmxnet3 drops what does not fit)
loses everything past the 8th frame at any rate above 400 datagrams/s, and the lab's
four guests on two cores are descheduled all the time: every VM verified, but the
repairs put up to 1.4 x the file on the group.  A window bounds what can be in a
receiver's queue, whatever its CPU does: the stream waits for the answer to a ping sent
behind the data before it sends more than ``window`` beyond it (TCP's ACK clock, with
iPXE's answer to a ping as the ACK: iPXE answers a ping only once it has taken every
frame queued before it; the server also counts what the NACK shows the client holds).
A receiver that runs is not slowed: the window grows while its answers show no loss
(doubling per round trip up to ``ssthresh``, then by one datagram per window).

A loss in a window halves it (once per window: the losses of one overflow arrive in
several answers), and near the window of the last loss it grows only slowly: a ring's
size does not change.  A listener that has not answered for ``stall_after`` while a
ping is out (a guest switched off, a listener gone) is out of the gate until it
answers again (``stalled``), so one dead listener never stops the wave.  docs/pyslamd.md
("Flow windows") has the lab's figures.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Windows start here: two pings and a few datagrams fit the smallest ring seen (realtek's
#: 8 KiB buffer holds five 1.5 KB frames).
INITIAL_WINDOW = 4.0
MIN_WINDOW = 2.0
#: Past this share of the window a loss was last seen at, the window grows ``CREEP``
#: times slower.
NEAR_LOSS = 0.8
CREEP = 32.0


@dataclass
class Flow:
    """One listener's window and where its confirmations stand, in data sequence numbers.

    Pings and their answers are matched in order by the server (``Peer.pings``): iPXE
    answers every ping, in the order they came, once it has taken what came before."""

    window: float = INITIAL_WINDOW
    #: Every data datagram up to this one was taken by the listener (its answer to a ping
    #: sent after it came back).
    confirmed: int = 0
    #: The data sequence number the latest ping to this listener followed.
    pinged: int = 0
    slow_start: bool = True
    #: Losses of data sent before this sequence number have already halved the window.
    cut_before: int = 0
    #: The data sequence number this flow began at: what a listener lacks from before (a
    #: late joiner's head) says nothing about how it keeps up.
    origin: int = 0
    #: Out of the gate after ``stall_after`` with a ping out and no answer; back on its next answer.
    stalled: bool = False
    max_window: float = 512.0
    #: The window the last loss was seen at: a receiver's ring does not change, so the
    #: window grows back quickly to just below it and only creeps on from there.
    lost_at: float | None = None
    #: The doubling stops here (TCP's initial ssthresh): 64 datagrams in flight already
    #: keep a guest that takes one frame per 0.1 ms busy, and a window far beyond what the
    #: receiver holds overflows it in one round trip.
    ssthresh: float = 16.0

    def room(self, seq: int, pings_out: int) -> bool:
        """May the next data datagram (sequence number ``seq + 1``) go out?  Pings on their
        way take a place in the receiver's ring too."""
        return self.stalled or seq - self.confirmed + pings_out < int(self.window)

    def wants_ping(self, seq: int) -> bool:
        """Half a window sent since it was last asked: ask again."""
        return seq - max(self.confirmed, self.pinged) >= max(1, int(self.window) // 2)

    def answered(self, ping_seq: int, lost_seqs: list[int], now_seq: int) -> int:
        """The listener answered the ping sent after data datagram ``ping_seq``.
        ``lost_seqs``: data sequence numbers (last send) of the blocks it names that went out
        before that ping.  Returns how many data datagrams this answer newly confirmed;
        ``now_seq``: the last one sent so far.

        iPXE names only its first gap, so an answer naming an older loss (one not repaired
        yet) hides whatever this window lost behind it: such an answer holds the window
        where it is; only an answer lacking nothing sent since the flow began grows it."""
        fresh = ping_seq - self.confirmed
        self.confirmed = max(self.confirmed, ping_seq)
        self.stalled = False
        new_losses = [s for s in lost_seqs if s >= self.cut_before]
        if any(s > self.origin for s in lost_seqs) and not new_losses:
            return max(0, fresh)  # an older gap: held, neither grown nor cut
        if new_losses:
            self.lost_at = self.window
            self.window = max(MIN_WINDOW, self.window / 2)
            self.slow_start = False
            # What is already out may be lost in the same overflow: cut once for all of it.
            self.cut_before = now_seq + 1
        elif fresh > 0:
            grow = fresh if self.slow_start else fresh / self.window
            if self.lost_at is not None and self.window >= NEAR_LOSS * self.lost_at:
                grow /= CREEP
            self.window = min(self.max_window, self.window + grow)
            if self.slow_start and self.window >= self.ssthresh:
                self.slow_start = False
        return max(0, fresh)
