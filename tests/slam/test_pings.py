"""The ping ledger (netboot/slam/pings.py): answers matched to pings, erring towards too little."""

from __future__ import annotations

from netboot.slam.pings import GHOST_AGE, MAX_RETRY, MIN_RETRY, REORDER, STALE, PingLedger


def test_answers_belong_to_the_pings_in_the_order_they_went_out() -> None:
    ledger = PingLedger()
    ledger.sent(10, 0.000)
    ledger.sent(20, 0.001)
    assert len(ledger) == 2
    first, second = ledger.answer(0.002), ledger.answer(0.003)
    assert first is not None and second is not None
    assert (first.seq, second.seq) == (10, 20)
    assert ledger.answer(0.004) is None  # nothing out: an unsolicited NACK
    assert ledger.min_rtt == 0.002


def test_a_ping_asked_again_after_a_late_answer_is_answered_twice_in_order() -> None:
    """A guest descheduled past the retry answers both; the second answer belongs to the
    second ping, so a ping sent after both is matched to its own answer."""
    ledger = PingLedger()
    ledger.sent(10, 0.000)
    ledger.sent(10, 0.010)  # nothing sent since: a retry
    assert ledger.retries == 1 and len(ledger) == 2 and ledger.in_ring == 1
    first, second = ledger.answer(0.050), ledger.answer(0.0501)
    assert first is not None and second is not None and first.seq == second.seq == 10
    ledger.sent(30, 0.051)
    later = ledger.answer(0.060)
    assert later is not None and later.seq == 30 and ledger.retries == 0


def test_a_lost_ping_is_found_from_what_the_answer_holds() -> None:
    """The client holds the block before its first gap, whose first copy was data datagram
    25: the ping it answers went out after that, so the ping after datagram 10 was lost."""
    ledger = PingLedger()
    ledger.sent(10, 0.0)  # lost
    ledger.sent(30, 0.1)
    answered = ledger.answer(0.2, floor=25)
    assert answered is not None and answered.seq == 30
    assert ledger.lost == 1 and len(ledger) == 0


def test_without_such_evidence_a_lost_ping_makes_answers_confirm_too_little() -> None:
    ledger = PingLedger()
    ledger.sent(10, 0.0)  # lost
    ledger.sent(20, 0.1)
    early = ledger.answer(0.2, floor=5)
    assert early is not None and early.seq == 10  # too little, never too much


def test_a_ping_unanswered_for_long_is_dropped_once_a_later_one_is_out() -> None:
    ledger = PingLedger()
    ledger.sent(10, 0.0)  # lost
    ledger.sent(20, STALE + 0.1)
    answered = ledger.answer(STALE + 0.2)
    assert answered is not None and answered.seq == 20


def test_retry_backs_off_with_each_retry_of_the_same_question() -> None:
    ledger = PingLedger()
    assert ledger.retry_at() is None
    ledger.sent(10, 1.0)
    assert ledger.retry_at() == 1.0 + MIN_RETRY
    ledger.sent(10, 1.0 + MIN_RETRY)
    assert ledger.retry_at() == 1.0 + MIN_RETRY + 2 * MIN_RETRY
    for _ in range(10):
        ledger.sent(10, 2.0)
    assert ledger.retry_at() == 2.0 + MAX_RETRY
    ledger.sent(11, 3.0)  # new data went out: a new question
    assert ledger.retry_at() == 3.0 + MIN_RETRY


def test_a_young_ping_overtaken_by_a_little_data_is_not_taken_for_lost() -> None:
    """On a busy host a ping may reach the client after data sent just after it: its own
    answer then shows that data held.  Dropping it would give the answer to the next ping
    (confirming too much); only an older ping, or one far behind, is dropped."""
    ledger = PingLedger()
    ledger.sent(10, 0.0)
    ledger.sent(20, 0.001)
    answered = ledger.answer(0.002, floor=15)  # young, 5 datagrams behind: its own answer
    assert answered is not None and answered.seq == 10 and ledger.lost == 0
    ledger.sent(30, 0.003)
    far = ledger.answer(0.004, floor=20 + REORDER + 1)  # 20 is far behind: lost
    assert far is not None and far.seq == 30 and ledger.lost == 1
    old = PingLedger()
    old.sent(10, 0.0)
    old.sent(20, 0.001)
    late = old.answer(GHOST_AGE + 0.001, floor=15)  # old enough: lost
    assert late is not None and late.seq == 20
    alone = PingLedger()
    alone.sent(10, 0.0)
    only = alone.answer(1.0, floor=50)  # nothing later out: it is this answer's
    assert only is not None and only.seq == 10
