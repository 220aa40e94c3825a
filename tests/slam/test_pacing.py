"""The pacing rules on their own (netboot/slam/pacing.py)."""

from __future__ import annotations

from netboot.slam.pacing import RATE_WINDOW, Pacer


def _window(p: Pacer, start: float, sent: int, losses: int, answers: int = 1) -> float:
    for _ in range(sent):
        p.spend()
    for _ in range(answers):
        p.note_answer(losses // max(answers, 1))
    now = start + RATE_WINDOW
    p.end_window(now, have_master=True, master_late=False)
    return now


def test_starts_at_half_and_grows_only_on_answers() -> None:
    p = Pacer(max_rate=1000, min_rate=100, burst=16, now=0.0)
    assert p.rate == 500
    now = _window(p, 0.0, sent=50, losses=0, answers=0)
    assert p.rate == 500  # no word from the master: no growth
    now = _window(p, now, sent=50, losses=0)
    assert p.rate == 500 * 1.15
    for _ in range(20):
        now = _window(p, now, sent=50, losses=0)
    assert p.rate == 1000  # capped at the ceiling


def test_backs_off_on_loss_and_congestion_with_a_floor() -> None:
    p = Pacer(max_rate=1000, min_rate=100, burst=16, now=0.0)
    now = _window(p, 0.0, sent=100, losses=20)  # 20 % > 15 %
    assert p.rate == 500 * 0.7
    now += RATE_WINDOW  # cuts are not repeated within a window
    p.note_congestion()
    now = _window(p, now, sent=100, losses=0)
    assert p.rate == 500 * 0.7 * 0.7
    for i in range(50):
        p.cut(now + i, 0.5)
    assert p.rate == 100
    assert [round(c.rate) for c in p.changes][:2] == [350, 245]


def test_cuts_are_at_least_50_ms_apart() -> None:
    p = Pacer(max_rate=1000, min_rate=10, burst=16, now=0.0)
    p.cut(1.0, 0.5)
    p.cut(1.01, 0.5)
    assert p.rate == 250
    p.cut(1.06, 0.5)
    assert p.rate == 125


def test_token_bucket_paces_to_the_rate() -> None:
    p = Pacer(max_rate=1000, min_rate=1000, burst=4, now=0.0)
    sent = 0
    now = 0.0
    while now < 1.0:
        p.refill(now)
        while p.may_send():
            p.spend()
            sent += 1
        now = p.next_token_at()
    assert 995 <= sent <= 1005


def test_grows_back_from_the_floor() -> None:
    """At 100 datagrams/s a 0.1 s window holds 10, too few to judge: the window widens
    until it holds 16, so the rate can still grow on the master's clean answers."""
    p = Pacer(max_rate=1000, min_rate=100, burst=16, now=0.0)
    for i in range(10):
        p.cut(i * 0.06, 0.5)
    assert p.rate == 100
    now = 1.0
    p.end_window(now, have_master=True, master_late=False)  # resets the window
    for step in range(1, 30):
        for _ in range(int(100 * RATE_WINDOW)):
            p.spend()
        p.note_answer(0)
        p.end_window(now + step * (RATE_WINDOW + 1e-6), have_master=True, master_late=False)
    assert p.rate > 100 * 1.15**5, p.rate


def test_a_late_master_in_a_short_window_still_counts() -> None:
    p = Pacer(max_rate=1000, min_rate=100, burst=16, now=0.0)
    for _ in range(10):
        p.spend()
    p.note_answer(0)
    p.end_window(RATE_WINDOW, have_master=True, master_late=True)  # 10 sent: window widens
    for _ in range(10):
        p.spend()
    p.end_window(2 * RATE_WINDOW, have_master=True, master_late=False)
    assert p.rate == 500 * 0.7


def test_start_rate_is_capped_at_half_the_ceiling() -> None:
    assert Pacer(max_rate=86000, min_rate=100, burst=16, now=0.0, start_rate=2000).rate == 2000
    assert Pacer(max_rate=1000, min_rate=100, burst=16, now=0.0, start_rate=2000).rate == 500


def test_ramp_grows_per_vouched_clean_answer_and_ends_at_the_first_loss() -> None:
    p = Pacer(max_rate=86000, min_rate=100, burst=16, now=0.0, start_rate=2000, slow_start=1.5)
    p.note_answer(0, confirmed=1)  # the answer to block 0's ping says nothing about the NIC
    p.note_answer(0, confirmed=None)
    assert p.rate == 2000
    p.note_answer(0, confirmed=64)
    p.note_answer(0, confirmed=64)
    assert p.rate == 2000 * 1.5 * 1.5
    p.note_answer(1, confirmed=64)  # one fresh loss: the ramp is over, no cut
    assert p.rate == 4500 and not p.in_slow_start
    p.note_answer(0, confirmed=64)
    assert p.rate == 4500


def test_ramp_stops_at_the_ceiling_and_a_cut_ends_it() -> None:
    p = Pacer(max_rate=10000, min_rate=100, burst=16, now=0.0, start_rate=2000, slow_start=2.0)
    for _ in range(2):
        p.note_answer(0, confirmed=64)
    assert p.rate == 8000 and p.in_slow_start  # half the ceiling caps the start, not the ramp...
    p.note_answer(0, confirmed=64)
    assert p.rate == 10000 and not p.in_slow_start  # ...the ceiling does
    q = Pacer(max_rate=86000, min_rate=100, burst=16, now=0.0, start_rate=2000, slow_start=2.0)
    q.cut(1.0, 0.5)
    q.note_answer(0, confirmed=64)
    assert q.rate == 1000


def test_restart_goes_back_to_the_start_rate_and_ramps_again() -> None:
    """A new master may have a slower NIC than the one that set the current rate."""
    p = Pacer(max_rate=86000, min_rate=100, burst=16, now=0.0, start_rate=2000, slow_start=2.0)
    for _ in range(3):
        p.note_answer(0, confirmed=64)
    p.note_answer(2, confirmed=64)
    assert p.rate == 16000 and not p.in_slow_start
    p.restart()
    assert p.rate == 2000 and p.in_slow_start
    p.note_answer(0, confirmed=64)
    assert p.rate == 4000


def test_after_a_cut_the_rate_creeps_up_near_where_it_was_cut() -> None:
    """Back to 90 % of the cut rate at 15 % a window, then 2 %: an overflowing NIC is not
    driven over its limit again every half second."""
    p = Pacer(max_rate=10000, min_rate=100, burst=16, now=0.0, start_rate=1000)
    now = 1.0
    p.cut(now, 0.5)  # overflow at 1000
    assert p.rate == 500
    rates = []
    for _ in range(12):
        now = _window(p, now, sent=200, losses=0)
        rates.append(p.rate)
    assert rates[0] == 500 * 1.15
    assert rates[4] == 900  # 15 % steps, capped at 90 % of the rate that overflowed...
    assert rates[5] == 900 * 1.02  # ...then 2 % steps
    assert rates[-1] < 1.05 * 1000


def test_cuts_in_one_episode_remember_the_rate_it_began_at() -> None:
    p = Pacer(max_rate=10000, min_rate=100, burst=16, now=0.0, start_rate=1000)
    p.cut(1.0, 0.5)
    p.cut(1.1, 0.5)  # late signals of the same overflow
    assert p.rate == 250
    now = 1.2
    for _ in range(12):
        now = _window(p, now, sent=200, losses=0)
    assert p.rate > 850  # grew fast back towards 900, not towards 450
