"""The adaptive retransmission timeout (RFC 6298) and how a unicast read uses it (issue 18)."""

from __future__ import annotations

import pytest

from netboot.tftp.options import OptionPolicy, negotiate
from netboot.tftp.read_transfer import ReadTransfer
from netboot.tftp.rto import DEFAULT_FLOOR, RECENT, RttEstimator
from netboot.tftp.sources import BytesSource
from tests.tftp.core_helpers import PEER, ack, events


def test_first_sample_then_smoothing_as_rfc_6298() -> None:
    rtt = RttEstimator(floor=0.0, ceiling=60.0)
    assert rtt.rto == 1.0  # before any sample (RFC 6298 2.1)
    rtt.sample(0.1)
    assert rtt.srtt == pytest.approx(0.1) and rtt.rttvar == pytest.approx(0.05)
    assert rtt.rto == pytest.approx(0.1 + 4 * 0.05)
    rtt.sample(0.3)
    assert rtt.rttvar == pytest.approx(0.75 * 0.05 + 0.25 * 0.2)
    assert rtt.srtt == pytest.approx(0.875 * 0.1 + 0.125 * 0.3)


def test_floor_ceiling_and_back_off_until_a_valid_sample() -> None:
    rtt = RttEstimator()
    rtt.sample(0.0005)  # a LAN round trip
    assert rtt.rto == DEFAULT_FLOOR
    for expected in (0.04, 0.08, 0.16):
        rtt.timed_out()
        assert rtt.rto == pytest.approx(expected)
    for _ in range(20):
        rtt.timed_out()
    assert rtt.rto == rtt.ceiling and rtt.base == DEFAULT_FLOOR
    rtt.sample(0.0005)
    assert rtt.backoff == 0 and rtt.rto == DEFAULT_FLOOR


def test_a_round_trip_inflated_by_the_client_s_own_retry_does_not_hold_the_timeout() -> None:
    """A lost ACK sent again by the client 2 s later looks like a 2 s round trip."""
    rtt = RttEstimator()
    for _ in range(3):
        rtt.sample(0.0005)
    rtt.sample(2.0)
    assert rtt.srtt is not None and rtt.srtt + 4 * rtt.rttvar > 1.0, "the plain estimate is inflated"
    assert rtt.rto == DEFAULT_FLOOR, "capped at 4 x the smallest recent round trip, not below the floor"
    plain = RttEstimator(cap_factor=None)
    for value in (0.0005, 0.0005, 0.0005, 2.0):
        plain.sample(value)
    assert plain.rto > 1.0


def test_a_path_that_really_got_slower_is_learnt_within_the_recent_window() -> None:
    rtt = RttEstimator()
    rtt.sample(0.0005)
    for _ in range(RECENT):
        rtt.sample(0.1)
    assert rtt.rto >= 0.1


def test_the_first_answer_bounds_the_timeout_before_any_sample() -> None:
    rtt = RttEstimator()
    assert rtt.rto == 1.0
    rtt.first_answer(0.014)  # the OACK's answer, transfer start included
    assert rtt.srtt is None and rtt.rto == pytest.approx(4 * 0.014)
    core = _adaptive(bytes(5000), (("blksize", "1432"),))
    core.datagrams_to_send(0.0)
    core.receive_datagram(ack(0), PEER, 0.001)
    assert core.rto == DEFAULT_FLOOR, "a first answer in 1 ms: a first lost DATA costs the floor, not 1 s"


def _adaptive(data: bytes, options: tuple[tuple[str, str], ...] = ()) -> ReadTransfer:
    negotiation = negotiate(options, len(data), OptionPolicy())
    return ReadTransfer(PEER, BytesSource(data), negotiation, now=0.0, timeout=5.0, rtt=RttEstimator())


def _lockstep(core: ReadTransfer, blocks: int, start: float, rtt: float) -> float:
    now = start
    for block in range(1, blocks + 1):
        core.datagrams_to_send(now)
        now += rtt
        core.receive_datagram(ack(block), PEER, now)
    core.datagrams_to_send(now)
    return now


def test_a_lost_block_costs_the_measured_timeout_not_a_second() -> None:
    core = _adaptive(b"x" * 512 * 40)
    now = _lockstep(core, 10, 0.0, 0.001)  # a 1 ms path
    assert core.get_timer() == pytest.approx(now + DEFAULT_FLOOR)
    deadline = core.get_timer()
    assert deadline is not None
    core.handle_timer(deadline)
    (again,) = core.datagrams_to_send(deadline)
    assert again[0][:4] == b"\0\3\0\x0b"  # block 11 again, 20 ms after it went out


def test_a_duplicate_ack_is_never_answered_unless_the_timer_is_backed_off_then_once() -> None:
    core = _adaptive(b"x" * 512 * 40)
    now = _lockstep(core, 5, 0.0, 0.001)
    for _ in range(3):  # duplicates while nothing is backed off: silence
        core.receive_datagram(ack(5), PEER, now + 0.001)
        assert core.datagrams_to_send(now + 0.001) == []
    stall = now
    for _ in range(5):  # the client stalls: 20, 40, 80, 160, 320 ms
        deadline = core.get_timer()
        assert deadline is not None
        core.handle_timer(deadline)
        assert len(core.datagrams_to_send(deadline)) == 1
        stall = deadline
    backed_off = core.get_timer()
    assert backed_off is not None and backed_off - stall == pytest.approx(0.64)
    core.receive_datagram(ack(5), PEER, stall + 0.1)  # it is back, and repeats its ACK
    assert core.datagrams_to_send(stall + 0.1) == [], "no send for the duplicate itself"
    pulled = core.get_timer()
    assert pulled == pytest.approx(stall + 0.1 + DEFAULT_FLOOR)
    core.handle_timer(pulled)
    assert len(core.datagrams_to_send(pulled)) == 1


def test_karn_a_retransmitted_block_gives_no_sample() -> None:
    core = _adaptive(b"x" * 512 * 40)
    _lockstep(core, 3, 0.0, 0.001)
    rtt = core._rtt
    assert rtt is not None
    samples = rtt.samples
    deadline = core.get_timer()
    assert deadline is not None
    core.handle_timer(deadline)  # block 4 again
    core.datagrams_to_send(deadline)
    core.receive_datagram(ack(4), PEER, deadline + 2.0)  # answered 2 s later: which copy?
    assert rtt.samples == samples and rtt.srtt is not None and rtt.srtt < 0.01


def test_a_client_timeout_option_is_used_exactly() -> None:
    core = _adaptive(b"x" * 512 * 40, (("timeout", "2"),))
    core.datagrams_to_send(0.0)
    core.receive_datagram(ack(0), PEER, 0.001)  # the OACK's ACK
    now = _lockstep(core, 10, 0.001, 0.001)
    assert core.get_timer() == pytest.approx(now + 2.0)
    core.handle_timer(now + 2.0)
    core.datagrams_to_send(now + 2.0)
    assert core.get_timer() == pytest.approx(now + 4.0)


def test_an_adaptive_read_gives_up_after_the_silence_budget_with_an_error() -> None:
    core = _adaptive(b"x" * 512 * 40)
    now = _lockstep(core, 2, 0.0, 0.001)
    sent = 0
    while not core.finished:
        deadline = core.get_timer()
        assert deadline is not None
        now = deadline
        core.handle_timer(now)
        sent += len(core.datagrams_to_send(now))
    assert 25.0 <= now <= 31.0 and not core.succeeded
    done = [e for e in events(core) if e.name == "done"][0]
    assert "no ACK for" in str(done.fields["reason"])
    assert 8 <= sent <= 20  # backed off up to 5 s between retransmissions, then the ERROR


def test_the_first_datagram_is_no_sample() -> None:
    """Its answer includes starting the transfer (a thread, a file): a VM run measured 14 ms
    for a 0.15 ms path that way, and every lost block then cost 70 ms."""
    core = _adaptive(b"x" * 512 * 40)
    core.datagrams_to_send(0.0)
    core.receive_datagram(ack(1), PEER, 0.5)  # a slow start
    rtt = core._rtt
    assert rtt is not None and rtt.srtt is None
    core.datagrams_to_send(0.5)
    core.receive_datagram(ack(2), PEER, 0.5002)
    assert rtt.srtt == pytest.approx(0.0002)


def test_back_off_ends_when_a_block_sent_once_is_acknowledged() -> None:
    """Between two samples a lossy fetch times out several times: back-off must not pile up
    across those losses (seen: 5 s timeouts on a 0.1 ms path at 5 % loss)."""
    core = _adaptive(b"x" * 512 * 400)
    now = _lockstep(core, 10, 0.0, 0.001)
    for _ in range(3):  # three losses in a row of blocks: each block lost once
        deadline = core.get_timer()
        assert deadline is not None
        core.handle_timer(deadline)
        core.datagrams_to_send(deadline)
        now = deadline + 0.001
        block = core._acked + 1
        core.receive_datagram(ack(block), PEER, now)  # the retransmitted block: no sample (Karn)
        core.datagrams_to_send(now)
        now += 0.001
        core.receive_datagram(ack(block + 1), PEER, now)  # a block sent once: in time
        core.datagrams_to_send(now)
        assert core.rto == DEFAULT_FLOOR
