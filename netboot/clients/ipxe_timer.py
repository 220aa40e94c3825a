"""iPXE's retry timer (src/net/retry.c), in seconds instead of ticks.

Why copy it exactly: iPXE's silence limit (about 15.75 s) and its MTFTP restarts
(after about 0.25 s without a packet) both come out of this arithmetic, and a server
is only correct with iPXE if it is correct against these numbers.

* ``start``: keep the timeout, but never below 1/4 s;
* ``stop``: if no back-off is pending, smooth ``t := 7t/8 + rtt/2``;
* expiry: the timeout doubles; ``fail`` when it passes 10 s.
"""

from __future__ import annotations

MIN_TIMEOUT = 0.25
MAX_TIMEOUT = 10.0


class RetryTimer:
    def __init__(self) -> None:
        self.running = False
        self.started = 0.0
        self.timeout = 0.0
        self.count = 0  # expiries not yet matched by a stop (iPXE's timer->count)

    def start(self, now: float) -> None:
        self.running = True
        self.started = now
        if self.timeout < MIN_TIMEOUT:
            self.timeout = MIN_TIMEOUT

    def start_nodelay(self, now: float) -> None:
        self.start(now)
        self.timeout = 0.0

    def stop(self, now: float) -> None:
        if not self.running:
            return
        self.running = False
        if self.count:
            self.count -= 1
        else:
            self.timeout -= self.timeout / 8
            self.timeout += (now - self.started) / 2

    @property
    def deadline(self) -> float | None:
        return self.started + self.timeout if self.running else None

    def expire(self) -> bool:
        """Mark the timer expired; return iPXE's ``fail`` flag."""
        self.running = False
        self.count += 1
        self.timeout *= 2
        fail = self.timeout > MAX_TIMEOUT
        if fail:
            self.timeout = MAX_TIMEOUT
        return fail
