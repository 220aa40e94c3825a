"""The retransmission timeout from measured round trips (RFC 6298, as RFC 1123 4.2.3.2 asks).

Why adaptive: a lost DATA or ACK costs one timeout, and a fixed timeout is sized for the
slowest path, not this one.  On a LAN a round trip is well under a millisecond, a TCG
guest answers a block in about one; with atftpd's 5 s (or our former 1 s first retry) a
2 MiB fetch at 5 % loss each way spends its time waiting (issue 18: atftpd needed 97 s).

* Smoothed RTT and variance as RFC 6298 section 2: ``srtt``, ``rttvar`` (alpha 1/8, beta
  1/4), RTO = srtt + max(G, 4 rttvar), clamped to ``[floor, ceiling]``.
* Karn's rule: a block that was retransmitted gives no sample (which copy was answered?).
* Back-off: each timeout doubles the RTO (up to ``ceiling``); it is kept until a valid
  sample arrives (RFC 6298 5.7), or until a block that was sent once is acknowledged
  (``answered_in_time``: that block's own timeout did not fire, so the path is faster than
  the un-backed-off RTO).  Without the second rule back-off piled up across the losses of
  a lossy fetch between two samples (5 s timeouts within a second, seen on loopback at
  5 % loss); with it a path slower than the estimate is still learnt, not retransmitted
  into forever.
* ``floor``: 20 ms by default (docs/pyatftpd.md, "Retransmission"): an order of magnitude
  above a LAN round trip and a TCG guest's usual answer, a tenth of iPXE's own 0.25 s
  retry, so the server repairs a loss before the client asks; a spurious retransmission
  costs one DATA (a duplicate ACK is never answered, RFC 1123 4.2.3.1).
* ``ceiling``: how far back-off may stretch the gap between retransmissions.
* ``cap_factor``: the RTO never exceeds that many times the smallest of the last
  ``RECENT`` round trips (and the client's first answer).  Why: when an ACK is lost, the
  client sends it again on its own timer (iPXE: 0.25 s and up), and the server cannot tell
  that copy from the first, so the block's "round trip" measures the client's timer.  At
  10 % loss each way such samples came often enough to hold SRTT + 4 RTTVAR at the 5 s
  ceiling on a 0.2 ms path: each lost DATA then waited 5 s, and iPXE gave up (a CI VM test;
  ``tests/test_rto_sim.py``).  The smallest recent sample is a round trip the path really
  made; a path that really got slower raises it within ``RECENT`` samples, and back-off
  covers it meanwhile.  ``None`` keeps RFC 6298's estimate alone.
* ``first_answer``: the time the client took to answer the first datagram is no sample
  (it includes starting the transfer), but it bounds the RTO before the first sample, so a
  first lost DATA costs a few times that, not RFC 6298's initial 1 s.

Sans-I/O: callers pass the times.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

#: Clock granularity G of RFC 6298: the thread driver wakes within about a millisecond.
GRANULARITY = 0.001
DEFAULT_FLOOR = 0.02
DEFAULT_CEILING = 5.0
DEFAULT_CAP_FACTOR = 4.0
#: How many recent round trips the cap looks back on.
RECENT = 8


@dataclass
class RttEstimator:
    floor: float = DEFAULT_FLOOR
    ceiling: float = DEFAULT_CEILING
    #: The RTO before the first sample (RFC 6298 2.1 says 1 s).
    initial: float = 1.0
    srtt: float | None = None
    rttvar: float = 0.0
    #: Consecutive timeouts since the last valid sample.
    backoff: int = 0
    samples: int = 0
    cap_factor: float | None = DEFAULT_CAP_FACTOR
    #: The last round trips (and the first answer), for the cap.
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT))

    def first_answer(self, rtt: float) -> None:
        """How long the client took to answer the first datagram: bounds the RTO, sets no SRTT."""
        self.recent.append(max(0.0, rtt))

    def sample(self, rtt: float) -> None:
        """A round trip measured on a block sent once (Karn); clears the back-off."""
        rtt = max(0.0, rtt)
        self.recent.append(rtt)
        if self.srtt is None:
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt
        self.backoff = 0
        self.samples += 1

    @property
    def base(self) -> float:
        """The RTO without back-off."""
        if self.srtt is None:
            estimate = self.initial
        else:
            estimate = self.srtt + max(GRANULARITY, 4 * self.rttvar)
        if self.cap_factor is not None and self.recent:
            estimate = min(estimate, self.cap_factor * min(self.recent))
        return min(self.ceiling, max(self.floor, estimate))

    @property
    def rto(self) -> float:
        return min(self.ceiling, self.base * (1 << min(self.backoff, 30)))

    def timed_out(self) -> None:
        self.backoff += 1

    def answered_in_time(self) -> None:
        """A block sent once was acknowledged before its timeout: no back-off is needed."""
        self.backoff = 0
