"""The ping ledger (netboot/slam/pings.py): answers matched to pings, erring towards too little."""

from __future__ import annotations

from netboot.slam.pings import MIN_HOLDOFF, STALE, PingLedger


def test_answers_belong_to_the_pings_in_the_order_they_went_out() -> None:
    ledger = PingLedger()
    ledger.sent(10, 0.000)
    ledger.sent(20, 0.001)
    assert len(ledger) == 2 and ledger.frames == 2
    first, second = ledger.answer(0.002), ledger.answer(0.003)
    assert first is not None and second is not None
    assert (first.seq, second.seq) == (10, 20)
    assert ledger.answer(0.004) is None  # nothing out: an unsolicited NACK
    assert ledger.min_rtt == 0.002


def test_a_ping_asked_again_is_one_question_and_its_second_answer_confirms_nothing_new() -> None:
    """A guest descheduled past the retry answers both copies.  The second answer must not
    be taken for the answer to a ping sent after the first answer: that would confirm data
    still on its way."""
    ledger = PingLedger()
    ledger.sent(10, 0.000)
    ledger.sent(10, 0.010)  # nothing sent since: a copy
    assert len(ledger) == 1 and ledger.frames == 2
    answered = ledger.answer(0.050)
    assert answered is not None and answered.seq == 10
    assert not ledger.may_send(0.050)  # the copy's answer may come right behind
    assert ledger.answer(0.0501) is None  # ...and it confirms nothing new
    assert ledger.may_send(0.0502)
    ledger.sent(30, 0.0502)
    later = ledger.answer(0.051)
    assert later is not None and later.seq == 30


def test_a_lost_copy_ends_the_holdoff_after_a_few_round_trips() -> None:
    ledger = PingLedger()
    ledger.sent(10, 0.000)
    ledger.sent(10, 0.010)
    assert ledger.answer(0.011) is not None
    until = ledger.holdoff_until
    assert until is not None and until - 0.011 == max(MIN_HOLDOFF, 4 * ledger.min_rtt)
    assert not ledger.may_send(until - 1e-6)
    assert ledger.may_send(until)
    assert ledger.holdoff_until is None and ledger.frames == 0


def test_a_lost_ping_makes_later_answers_confirm_less_until_it_is_stale() -> None:
    ledger = PingLedger()
    ledger.sent(10, 0.0)  # lost
    ledger.sent(20, 0.1)
    early = ledger.answer(0.2)
    assert early is not None and early.seq == 10  # too little, never too much
    ledger.sent(30, 0.3)
    ledger.sent(40, 0.4)
    ledger.answer(0.5)  # takes 20
    stale = PingLedger()
    stale.sent(10, 0.0)  # lost
    stale.sent(20, STALE + 0.1)
    answered = stale.answer(STALE + 0.2)
    assert answered is not None and answered.seq == 20


def test_retry_backs_off_per_copy() -> None:
    ledger = PingLedger()
    assert ledger.retry_at() is None
    ledger.sent(10, 1.0)
    first = ledger.retry_at()
    ledger.sent(10, first or 0.0)
    second = ledger.retry_at()
    assert first is not None and second is not None
    assert second - first > first - 1.0  # doubled
