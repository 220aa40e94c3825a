"""pyslamd's pacing: a token bucket whose rate follows what the master client reports.

Why a module of its own: the rules that decide how fast the group is fed (and so
whether a slow NIC is flooded) are the part most likely to be tuned, and they are
easier to read and test apart from the client bookkeeping in ``server.py``.

With flow windows (``window.py``, the default) only the ceiling and the ramp apply
(``cuts`` is False): a loss shrinks the window of the listener that lost it instead.

Rules, all driven by the server core with its ``now``:

* the *ramp* (``note_answer``): from the start rate, multiply by ``slow_start`` on
  each clean master answer until the first fresh loss or cut, or the ceiling;
  ``restart()`` begins it again for a new master;
* ``cut(now, factor)``: an immediate multiplicative back-off, at most every 50 ms
  (a 4-block loss run, a missed master ping);
* ``end_window(...)``: every 0.1 s (longer at slow rates, until the window holds
  16 datagrams, at most 1 s), back off by 30 % when the master's share of
  freshly lost blocks exceeds ``backoff_above`` or it is congested (answers late),
  and grow by 15 % when the master answered and lost less than ``grow_below``,
  slowing to 2 % near the rate of the last cut.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The pacing rate is reconsidered this often (seconds).
RATE_WINDOW = 0.1
#: Immediate cuts are at least this far apart (about one answer from the master).
MIN_CUT_INTERVAL = 0.05
#: Fewer data datagrams than this in a window say nothing about loss...
MIN_WINDOW_SAMPLE = 16
#: ...so at slow rates a window lasts until it holds that many, up to this long (seconds).
#: Without it, below 160 datagrams/s no window ever counted and the rate never grew back.
MAX_WINDOW = 1.0
#: During the ramp, an answer must vouch for at least this many datagrams to speed it up.
MIN_RAMP_SAMPLE = 32
#: After a cut the rate grows back by 15 % a window up to this share of the rate that was
#: cut, and from there by only :data:`PROBE_GROWTH` a window: a NIC that overflows at a
#: rate is not driven over it again every half second (a TCG rtl8139 lost a burst on each
#: such overshoot, 10-30 % of the file in all, every block of it repaired on the group).
NEAR_LAST_CUT = 0.9
PROBE_GROWTH = 1.02
#: A listener of the pace set that reports fresh loss slows the stream by this much.
LISTENER_CUT = 0.85
#: Cuts closer together than this (seconds) are one episode.
CUT_CASCADE = 0.3


@dataclass(frozen=True)
class RateChange:
    rate: float
    loss: float | None


class Pacer:
    """Token bucket of data datagrams per second, with iPXE-friendly AIMD-like rules."""

    def __init__(
        self,
        max_rate: float,
        min_rate: float,
        burst: int,
        now: float,
        backoff_above: float = 0.15,
        grow_below: float = 0.08,
        start_rate: float | None = None,
        slow_start: float = 1.0,
    ) -> None:
        self.max_rate = max_rate
        self.min_rate = min(min_rate, max_rate)
        self.burst = burst
        self.backoff_above = backoff_above
        self.grow_below = grow_below
        # At most half the ceiling: the master's first answers come within milliseconds
        # if even that is too much.
        start = max_rate / 2 if start_rate is None else min(start_rate, max_rate / 2)
        self.start_rate = min(max_rate, max(self.min_rate, start))
        self.rate = self.start_rate
        #: Growth per clean master answer until the first cut (1.0: none).
        self.slow_start = slow_start
        self.in_slow_start = slow_start > 1.0
        #: The rate the last cut was made from: where this receiver overflowed.
        self._last_cut_from: float | None = None
        self._tokens = float(burst)
        self._refilled = now
        self._last_cut = -1e9
        self._window_start = now
        self._sent = 0
        self._lost = 0
        self._answers = 0
        self._congested = False
        self.changes: list[RateChange] = []
        #: Set by the server before each step: False while a listener lags (no growth then).
        self.growth_allowed = True
        #: False: loss never slows the rate (flow windows do that per listener).
        self.cuts = True

    def restart(self) -> None:
        """A new receiver sets the pace (a new master): back to the start rate and ramp."""
        self.in_slow_start = self.slow_start > 1.0
        self._last_cut_from = None
        if self.rate > self.start_rate:
            self._set(self.start_rate, None)

    def begin(self, now: float) -> None:
        """A held stream starts for real: start rate, ramp and a full bucket, whatever the
        trickle before it looked like."""
        self.restart()
        self._set(self.start_rate, None)  # restart() only lowers it
        self._tokens = float(self.burst)
        self._refilled = now

    # ---------------------------------------------------------------- token bucket

    def refill(self, now: float) -> None:
        if now > self._refilled:
            self._tokens = min(float(self.burst), self._tokens + (now - self._refilled) * self.rate)
            self._refilled = now

    def may_send(self) -> bool:
        return self._tokens > 1.0 - 1e-6  # float slack: never wake up just short of a token

    def spend(self) -> None:
        self._tokens -= 1.0
        self._sent += 1

    def next_token_at(self) -> float:
        return self._refilled + max(0.0, 1.0 - self._tokens) / self.rate

    # ---------------------------------------------------------------- feedback

    def note_answer(self, fresh_losses: int, confirmed: int | None = None) -> None:
        """The master answered a ping; ``fresh_losses`` blocks it lacks were sent lately.

        ``confirmed``: data datagrams this answer vouches for (sent since its previous
        answer and before the ping).  During the ramp an answer without fresh loss that
        vouches for at least :data:`MIN_RAMP_SAMPLE` of them multiplies the rate: on a
        LAN answers come every 64 datagrams, so 2000/s reaches 86000/s in about 0.1 s.
        The first fresh loss ends the ramp for good (as TCP leaves slow start): an iPXE
        NACK names only its first gap, so one lost block may stand for many, and a NIC
        that cannot keep up may drop every other block without the 4-block run that
        makes the server cut at once.  The rate is then at most ``slow_start`` times
        what the NIC took, and the window rules take over."""
        self._answers += 1
        self._lost += fresh_losses
        if fresh_losses:
            self.in_slow_start = False
            return
        vouched = confirmed is not None and confirmed >= (1 if not self.cuts else MIN_RAMP_SAMPLE)
        if self.in_slow_start and vouched and not self._congested and self.growth_allowed:
            self._set(min(self.max_rate, self.rate * self.slow_start), 0.0)
            if self.rate >= self.max_rate:
                self.in_slow_start = False

    def note_listener_answer(self, fresh_losses: int, now: float) -> None:
        """A listener of the pace set answered a ping; ``fresh_losses`` as for the master.

        Why: the stream must go at the pace of its slowest receiver (NORM's "current
        limiting receiver"), not of the first NACKer.  A listener's fresh loss ends the
        ramp and counts in the window's loss share, so the window rules back off for it
        as they do for the master; its answers never speed the stream up."""
        if fresh_losses:
            self._lost += fresh_losses
            self.cut(now, LISTENER_CUT)

    def note_congestion(self) -> None:
        self._congested = True

    def cut(self, now: float, factor: float, loss: float | None = None) -> None:
        if not self.cuts:
            return
        self.in_slow_start = False  # the first sign of trouble ends the fast ramp for good
        if now - self._last_cut < MIN_CUT_INTERVAL:
            return
        # Cuts in quick succession answer one overflow (signals of it arrive late): the
        # rate it happened at is the first of them.
        cascade = self._last_cut_from is not None and now - self._last_cut < CUT_CASCADE
        self._last_cut_from = max(self.rate, self._last_cut_from or 0.0) if cascade else self.rate
        self._last_cut = now
        self._set(max(self.min_rate, self.rate * factor), loss)

    def end_window(self, now: float, have_master: bool, master_late: bool) -> None:
        """Called often; acts once per :data:`RATE_WINDOW`."""
        if now - self._window_start < RATE_WINDOW:
            return
        if master_late:
            self._congested = True
        if self._sent < MIN_WINDOW_SAMPLE and have_master and now - self._window_start < MAX_WINDOW:
            return  # a slow rate: widen the window until it says something
        sent, lost, answers = self._sent, self._lost, self._answers
        congested = self._congested
        self._window_start, self._sent, self._lost, self._answers = now, 0, 0, 0
        self._congested = False
        if sent < MIN_WINDOW_SAMPLE or not have_master or now - self._last_cut < RATE_WINDOW:
            return
        loss = lost / sent
        if congested or loss > self.backoff_above:
            self.cut(now, 0.7, loss)
        elif loss < self.grow_below and answers and self.growth_allowed:  # the master's word, the set's leave
            self._set(min(self.max_rate, self._grown()), loss)

    def _grown(self) -> float:
        fast = self.rate * 1.15
        if self._last_cut_from is None or fast <= NEAR_LAST_CUT * self._last_cut_from:
            return fast
        return max(min(fast, NEAR_LAST_CUT * self._last_cut_from), self.rate * PROBE_GROWTH)

    def _set(self, rate: float, loss: float | None) -> None:
        if abs(rate - self.rate) >= 1:
            self.changes.append(RateChange(rate, loss))
        self.rate = rate
