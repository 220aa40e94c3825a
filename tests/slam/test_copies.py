"""What a NACK proves a client took (netboot/slam/copies.py): the first copy sent after it
named a block, once it holds that block."""

from __future__ import annotations

from netboot.slam.copies import WATCH_PER_ANSWER, CopyWatch

CLIENT, OTHER = ("192.0.2.10", 1000), ("192.0.2.11", 1000)


def test_a_named_block_held_later_proves_its_first_copy_since() -> None:
    watch = CopyWatch()
    last_sent = [0] * 100
    last_sent[40] = 7  # its only copy went out before the answer's position (10)
    watch.named(CLIENT, [(40, 2)], taken=10, last_sent_seq=last_sent)
    watch.sent(40, 15)
    watch.sent(40, 18)  # a second copy proves nothing more: the first may be the one taken
    watch.sent(41, 16)
    assert watch.proven(CLIENT, first_gap=41) == 15  # 40 held, 41 not yet
    assert watch.proven(CLIENT, first_gap=42) == 16
    assert watch.proven(CLIENT, first_gap=50) == 0  # each proof is used once


def test_a_block_with_a_copy_on_its_way_proves_nothing() -> None:
    """That copy, sent after the answer's position, may be the one that fills it: which copy
    came first is unknown, so the block is not watched."""
    watch = CopyWatch()
    last_sent = [0] * 100
    last_sent[40] = 12
    watch.named(CLIENT, [(40, 1)], taken=10, last_sent_seq=last_sent)
    watch.sent(40, 20)
    assert watch.proven(CLIENT, first_gap=41) == 0


def test_a_block_still_missing_keeps_its_proof_for_later() -> None:
    watch = CopyWatch()
    watch.named(CLIENT, [(5, 1)], taken=3, last_sent_seq=[0] * 10)
    watch.sent(5, 9)
    assert watch.proven(CLIENT, first_gap=5) == 0  # the copy at 9 was lost, or is on its way
    assert watch.proven(CLIENT, first_gap=6) == 9  # a later copy filled it: 9 is still a bound


def test_clients_are_watched_apart_and_forgotten() -> None:
    watch = CopyWatch()
    watch.named(CLIENT, [(5, 1)], taken=3, last_sent_seq=[0] * 10)
    watch.named(OTHER, [(5, 1)], taken=3, last_sent_seq=[0] * 10)
    watch.sent(5, 9)
    watch.forget(OTHER)
    assert watch.proven(OTHER, first_gap=6) == 0
    assert watch.proven(CLIENT, first_gap=6) == 9


def test_a_long_run_length_nack_watches_only_its_first_blocks() -> None:
    watch = CopyWatch()
    watch.named(CLIENT, [(0, 1000)], taken=0, last_sent_seq=[0] * 1000)
    for block in range(1000):
        watch.sent(block, block + 1)
    assert watch.proven(CLIENT, first_gap=1000) == WATCH_PER_ANSWER
