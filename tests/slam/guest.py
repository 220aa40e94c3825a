"""A TCG guest behind an emulated NIC, for the virtual-time SLAM network (tests/slam/sim.py).

Why this model: in the lab's x-slam trains every VM verified, yet the group carried up to
1.4 x the file, all of it repairs of frames that QEMU read from the tap and the guest never
saw.  Four TCG guests share two cores, so each is descheduled for milliseconds at a time;
meanwhile QEMU keeps moving frames into the NIC's receive ring, which iPXE keeps filled
with only a few buffers (8 for intel and vmxnet3, an 8 KiB buffer for realtek).  What
happens to a frame that finds the ring full depends on the NIC model: e1000 and
virtio-net refuse it and QEMU leaves it in the tap queue (back-pressure), vmxnet3 drops it.
A token bucket (``SimClient.capacity``) cannot show this: it never delays a frame, so a
ping never waits behind data, and it loses frames at a steady rate rather than in the
bursts a paused guest loses.

The model, per guest:

* frames wait in one FIFO and are taken in order; each costs ``per_frame`` seconds of the
  guest's running time (iPXE's poll, copy and protocol work);
* while the guest runs, its driver moves ring frames into iPXE's receive queue at once,
  up to ``memory`` of them (iPXE's heap is small); beyond that they stay in the ring;
* while it is descheduled (``Pauses``) nothing is taken, and arrivals fill the ``ring``;
  when it is full a frame goes to the host's ``backlog`` (a back-pressure NIC) or is
  dropped (``backlog`` 0);
* the guest's own timers fire only while it runs.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class Pauses:
    """When a guest is descheduled: alternating runs and pauses, exponentially distributed,
    with a share of long pauses (a busy host's scheduler or QEMU's big lock)."""

    run_mean: float = 0.010
    pause_mean: float = 0.010
    long_share: float = 0.0
    long_pause: tuple[float, float] = (0.05, 0.15)
    seed: int = 0
    _rng: random.Random = field(init=False, repr=False)
    #: (start, end) of each pause generated so far, in order.
    _spans: list[tuple[float, float]] = field(init=False, repr=False, default_factory=list)
    _until: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def _extend(self, t: float) -> None:
        while self._until <= t:
            start = self._until + self._rng.expovariate(1.0 / self.run_mean)
            if self._rng.random() < self.long_share:
                length = self._rng.uniform(*self.long_pause)
            else:
                length = self._rng.expovariate(1.0 / self.pause_mean)
            self._spans.append((start, start + length))
            self._until = start + length

    def _index(self, t: float) -> int:
        """Index of the first pause that ends after ``t``."""
        self._extend(t)
        lo, hi = 0, len(self._spans)
        while lo < hi:
            mid = (lo + hi) // 2
            if self._spans[mid][1] <= t:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def paused_at(self, t: float) -> tuple[float, float] | None:
        """The pause ``t`` falls in, or None while the guest runs."""
        span = self._spans[self._index(t)]
        return span if span[0] <= t else None

    def running_from(self, t: float) -> float:
        span = self.paused_at(t)
        return span[1] if span else t

    def advance(self, t: float, work: float) -> float:
        """When ``work`` seconds of running time, starting at ``t``, are done."""
        t = self.running_from(t)
        while True:
            i = self._index(t)
            self._extend(t + work)
            start = self._spans[i][0]
            if t + work <= start:
                return t + work
            work -= start - t
            t = self._spans[i][1]


@dataclass
class Guest(Generic[T]):
    """One guest's receive path: see the module docstring."""

    ring: int = 8
    per_frame: float = 0.0001
    backlog: int = 0
    memory: int = 64
    pauses: Pauses | None = None
    queue: deque[T] = field(default_factory=deque)
    #: When the head of the queue has been taken and processed.
    done_at: float | None = None
    dropped: int = 0
    taken: int = 0
    #: Frames already in iPXE's memory when the current pause began.
    _pulled_at_pause: int = 0
    _pause: tuple[float, float] | None = None

    def running_from(self, t: float) -> float:
        return self.pauses.running_from(t) if self.pauses else t

    def _limit(self, t: float) -> int:
        span = self.pauses.paused_at(t) if self.pauses else None
        if span is None:
            return self.memory + self.ring + self.backlog
        if span != self._pause:  # a new pause: what the driver had pulled stays pulled
            self._pause = span
            self._pulled_at_pause = min(len(self.queue), self.memory)
        return self._pulled_at_pause + self.ring + self.backlog

    def arrive(self, frame: T, t: float) -> bool:
        """A frame reaches the NIC at ``t``; False if it was dropped."""
        if len(self.queue) >= self._limit(t):
            self.dropped += 1
            return False
        self.queue.append(frame)
        if self.done_at is None:
            self.done_at = self._finish(t)
        return True

    def _finish(self, t: float) -> float:
        return self.pauses.advance(t, self.per_frame) if self.pauses else t + self.per_frame

    def take(self, t: float) -> T:
        """The head frame, processed at ``t`` (== ``done_at``); the next one starts."""
        frame = self.queue.popleft()
        self.taken += 1
        self.done_at = self._finish(t) if self.queue else None
        return frame


@dataclass(frozen=True)
class Host:
    """How busy the host is: the guests' descheduling and their per-frame cost."""

    run_mean: float
    pause_mean: float
    long_share: float
    per_frame: float


#: Four TCG guests on two shared cores, as in the lab's x-slam train (each runs about 70 %
#: of the time, in 20 ms stretches, with now and then a pause of 50-150 ms).
SHARED = Host(run_mean=0.020, pause_mean=0.008, long_share=0.01, per_frame=0.0001)
#: A starved host: half the time descheduled, twice the cost per frame.
STARVED = Host(run_mean=0.010, pause_mean=0.010, long_share=0.02, per_frame=0.0002)

#: The lab's train NICs as their QEMU models and iPXE drivers hold frames: (name, ring,
#: host backlog).  e1000 and virtio-net refuse a frame when the ring is full and QEMU
#: leaves it in the tap queue; QEMU's vmxnet3 accepts everything and drops what the 8
#: buffers iPXE posts cannot hold; the rtl8139's 8 KiB buffer holds five full frames
#: (taken here as dropping beyond them).
TRAIN_NICS: tuple[tuple[str, int, int], ...] = (
    ("e1000", 8, 1000),
    ("rtl8139", 5, 0),
    ("virtio-net-pci", 16, 1000),
    ("vmxnet3", 8, 0),
)


def train_guests(host: Host, seed: int) -> list[Guest[tuple[str, bytes]]]:
    """One guest per train NIC, each descheduled on its own schedule."""
    return [
        Guest(
            ring=ring,
            backlog=backlog,
            per_frame=host.per_frame,
            pauses=Pauses(host.run_mean, host.pause_mean, host.long_share, seed=seed * 10 + i),
        )
        for i, (_, ring, backlog) in enumerate(TRAIN_NICS)
    ]
