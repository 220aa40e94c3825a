"""Flow windows (netboot/slam/window.py): what a listener may have unconfirmed, and how it changes."""

from __future__ import annotations

from netboot.slam.window import INITIAL_WINDOW, MIN_WINDOW, Flow


def test_the_window_counts_pings_in_the_ring_too() -> None:
    flow = Flow(window=6.0)
    assert flow.room(seq=5, pings_out=0)
    assert not flow.room(seq=5, pings_out=1)  # 5 data + 1 ping fill a 6-frame window
    assert Flow(window=6.0, stalled=True).room(seq=500, pings_out=3)  # out of the gate


def test_a_ping_is_due_after_half_a_window() -> None:
    flow = Flow(window=8.0, confirmed=100, pinged=100)
    assert not flow.wants_ping(103)
    assert flow.wants_ping(104)
    flow.pinged = 104
    assert not flow.wants_ping(107) and flow.wants_ping(108)


def test_slow_start_doubles_per_round_trip_until_ssthresh() -> None:
    flow = Flow()
    assert flow.answered(ping_seq=4, lost_seqs=[], now_seq=4) == 4
    assert flow.window == INITIAL_WINDOW + 4
    flow.answered(ping_seq=12, lost_seqs=[], now_seq=12)
    assert flow.window == flow.ssthresh and not flow.slow_start
    flow.answered(ping_seq=28, lost_seqs=[], now_seq=28)  # then one datagram per window
    assert flow.window == flow.ssthresh + 1


def test_one_overflow_halves_the_window_once() -> None:
    flow = Flow(window=20.0, slow_start=False)
    flow.answered(ping_seq=50, lost_seqs=[45], now_seq=60)
    assert flow.window == 10.0 and flow.lost_at == 20.0
    flow.answered(ping_seq=58, lost_seqs=[55], now_seq=66)  # sent before the cut: same overflow
    assert flow.window == 10.0
    flow.answered(ping_seq=70, lost_seqs=[65], now_seq=75)  # sent after it: a new one
    assert flow.window == 5.0
    for _ in range(10):
        flow.answered(ping_seq=flow.confirmed + 2, lost_seqs=[flow.confirmed + 1], now_seq=flow.confirmed + 2)
        flow.cut_before = 0
    assert flow.window == MIN_WINDOW


def test_an_answer_naming_an_old_gap_neither_grows_nor_cuts() -> None:
    """iPXE names only its first gap: behind an old one, this window's losses are hidden."""
    flow = Flow(window=10.0, slow_start=False, confirmed=100, cut_before=90, origin=0)
    flow.answered(ping_seq=110, lost_seqs=[80], now_seq=115)
    assert flow.window == 10.0 and flow.confirmed == 110


def test_a_late_joiners_head_does_not_hold_its_window() -> None:
    flow = Flow(window=10.0, slow_start=False, confirmed=500, cut_before=501, origin=500)
    flow.answered(ping_seq=510, lost_seqs=[3, 4, 5, 6], now_seq=515)  # sent before it joined
    assert flow.window > 10.0


def test_near_the_last_loss_the_window_creeps() -> None:
    flow = Flow(window=10.0, slow_start=False, lost_at=10.0)
    flow.answered(ping_seq=10, lost_seqs=[], now_seq=10)
    creeping = flow.window - 10.0
    free = Flow(window=10.0, slow_start=False)
    free.answered(ping_seq=10, lost_seqs=[], now_seq=10)
    assert 0 < creeping < (free.window - 10.0) / 8
