"""A repeated RRQ is one transfer whichever worker reads it (``--workers N``; read_owners.py).

Before, the workers' shared socket gave a repeat to whichever worker was free, and the
busier one (the worker serving the read) steps back for an idle one: the test below
failed, a repeat answered from a second port (a second transfer), IPv4 and IPv6.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import time
from collections import Counter
from pathlib import Path

import pytest

from netboot.tftp.read_owners import ReadKey, ReadOwners
from tests.tftp.peers import rrq, start_server

CLIENTS = 12
REPEATS = 2


def _fetch_repeating(address: tuple[str, int], name: str) -> tuple[bytes, set[tuple[str, int]]]:
    """Ask, ask again twice before answering (as iPXE does when an answer is lost), then read."""
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        sock.sendto(rrq(name), address)
        first, peer = sock.recvfrom(2048)
        peers = {peer[:2]}
        for _ in range(REPEATS):
            time.sleep(0.03)
            sock.sendto(rrq(name), address)
            again, source = sock.recvfrom(2048)
            assert again == first
            peers.add(source[:2])
        payload, packet, block = b"", first, 1
        while True:
            payload += packet[4:]
            sock.sendto(b"\0\4" + packet[2:4], peer)
            if len(packet) < 516:
                break
            block += 1
            packet, source = sock.recvfrom(2048)
            assert packet[:4] == b"\0\3" + block.to_bytes(2, "big")
        sock.settimeout(0.3)
        try:
            while True:
                peers.add(sock.recvfrom(2048)[1][:2])  # anything else: a second transfer
        except TimeoutError:
            pass
    return payload, peers


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_every_repeat_is_answered_by_the_worker_serving_the_read(tmp_path: Path, host: str) -> None:
    if ":" in host:
        try:
            socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).bind(("::1", 0))
        except OSError:
            pytest.skip("no IPv6 loopback here")
    root = tmp_path / "root"
    root.mkdir()
    data = os.urandom(3000)
    (root / "boot.img").write_bytes(data)
    events = tmp_path / "events.jsonl"
    server = start_server("pyatftpd", root, extra=["--workers", "4"], events=events, host=host)
    try:
        for _ in range(CLIENTS):
            payload, peers = _fetch_repeating(server.address, "boot.img")
            assert payload == data
            assert len(peers) == 1, f"answers from {peers}: a repeat started a second transfer"
    finally:
        server.stop()
    names = Counter(json.loads(line)["event"] for line in events.read_text().splitlines())
    assert names["rrq_repeated"] == CLIENTS * REPEATS
    assert names["done"] == CLIENTS


def _claim_in_child(owners: ReadOwners, key: ReadKey, result: multiprocessing.Queue[int]) -> None:
    result.put(owners.claim(key, 2))


def test_the_table_is_shared_across_forks_and_a_release_frees_the_slot() -> None:
    owners = ReadOwners(slots=64)
    key: ReadKey = (("192.0.2.10", 2000), "boot.img", "octet", ())
    assert owners.claim(key, 0) == 0
    context = multiprocessing.get_context("fork")
    result: multiprocessing.Queue[int] = context.Queue()
    child = context.Process(target=_claim_in_child, args=(owners, key, result))
    child.start()
    child.join(10)
    assert result.get(timeout=5) == 0  # the sibling sees worker 0's claim
    owners.release(key, 1)  # only the owner releases
    assert owners.claim(key, 3) == 0
    owners.release(key, 0)
    assert owners.claim(key, 3) == 3


def test_a_read_whose_slot_is_taken_is_served_where_it_arrives() -> None:
    owners = ReadOwners(slots=1)
    first: ReadKey = (("192.0.2.10", 2000), "a", "octet", ())
    second: ReadKey = (("192.0.2.11", 2000), "b", "octet", ())
    assert owners.claim(first, 0) == 0
    assert owners.claim(second, 1) == 1 and owners.claim(second, 2) == 2  # not entered
    assert owners.claim(first, 1) == 0
