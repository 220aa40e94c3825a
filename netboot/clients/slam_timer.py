"""iPXE's retry timer (src/net/retry.c), in iPXE ticks, for the iPXE-faithful clients.

Why a faithful copy of the arithmetic: SLAM's client behaviour is all timers.  The
slave timer is started "fixed" at 1 s and doubles on every expiry (NACKs at 1, 3
and 7 s of silence, abort at 15 s when the timeout would exceed 10 s); the master
timer starts at the 0.25 s minimum and adapts to the ping interval the way iPXE's
RTT estimator does (``t := 7t/8 + runtime/2``).
"""

from __future__ import annotations

TICKS_PER_SEC = 1024
DEFAULT_MIN_TIMEOUT = TICKS_PER_SEC // 4
DEFAULT_MAX_TIMEOUT = 10 * TICKS_PER_SEC


def ticks(now: float) -> int:
    return int(now * TICKS_PER_SEC)


class RetryTimer:
    """A binary exponential back-off timer with iPXE's start/stop/expiry rules."""

    def __init__(
        self, min_timeout: int = DEFAULT_MIN_TIMEOUT, max_timeout: int = DEFAULT_MAX_TIMEOUT
    ) -> None:
        self.min = min_timeout
        self.max = max_timeout
        self.timeout = 0
        self.start_tick = 0
        self.running = False
        self.count = 0

    def start(self, now: float) -> None:
        self.start_tick = ticks(now)
        self.running = True
        if self.timeout == 0:
            self.timeout = self.min

    def start_fixed(self, now: float, timeout: int) -> None:
        self.start(now)
        self.timeout = timeout

    def restart_fixed_at(self, now_ticks: int, timeout: int) -> None:
        """``stop`` then ``start_fixed`` in one step (the per-datagram path): stop's RTT
        update is overwritten by the fixed timeout, so only its ``count`` effect stays."""
        if self.running and self.count:
            self.count -= 1
        self.running = True
        self.start_tick = now_ticks
        self.timeout = timeout

    def stop(self, now: float) -> None:
        if self.running:
            self.stop_at(ticks(now))

    def stop_at(self, now_ticks: int) -> None:
        if not self.running:
            return
        runtime = now_ticks - self.start_tick
        self.running = False
        if self.count:
            self.count -= 1
        else:
            self.timeout -= self.timeout >> 3
            self.timeout += runtime >> 1
            self.timeout = min(max(self.timeout, self.min), self.max)

    def deadline(self) -> float | None:
        """When it expires, in seconds (a hair late so that ``ticks()`` has reached it)."""
        if not self.running:
            return None
        return (self.start_tick + self.timeout) / TICKS_PER_SEC + 1e-6

    def due(self, now: float) -> bool:
        return self.running and ticks(now) - self.start_tick >= self.timeout

    def expire(self) -> bool:
        """Mark expired and back off; returns iPXE's ``fail`` flag (timeout exceeded max)."""
        self.running = False
        self.count += 1
        self.timeout <<= 1
        fail = self.timeout > self.max
        if fail:
            self.timeout = self.max
        return fail
