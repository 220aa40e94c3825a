"""The RFC 2090 / MTFTP session core, driven by hand: no sockets, no clock."""

from __future__ import annotations

import struct
from types import SimpleNamespace
from typing import Any, cast

import pytest

from netboot.tftp.events import CoreEvent
from netboot.tftp.mcast_pool import GroupPort
from netboot.tftp.multicast import MulticastSession, Tuning

GROUP = GroupPort("239.255.0.0", 1758)
A, B, C = ("192.0.2.10", 1000), ("192.0.2.11", 1001), ("192.0.2.12", 1002)
OPTS = [("blksize", "100"), ("tsize", "1000")]


def session(size: int = 1000, blksize: int = 100, mtftp: bool = False) -> MulticastSession:
    data = bytes(range(256)) * (size // 256 + 1)
    return MulticastSession(lambda off, n: data[off : off + n], size, blksize, GROUP, 0.0, mtftp=mtftp)


def ack(block: int) -> bytes:
    return struct.pack("!HH", 4, block)


def parse(out: list[tuple[bytes, tuple[str, int]]]) -> list[tuple[str, object, tuple[str, int]]]:
    found: list[tuple[str, object, tuple[str, int]]] = []
    for data, addr in out:
        opcode = struct.unpack_from("!H", data)[0]
        if opcode == 6:
            fields = data[2:-1].split(b"\0")
            found.append(("OACK", dict(zip(fields[0::2], fields[1::2], strict=True)), addr))
        elif opcode == 3:
            found.append(("DATA", struct.unpack_from("!H", data, 2)[0], addr))
        else:
            found.append(("OTHER", opcode, addr))
    return found


def events_of(core: MulticastSession) -> list[CoreEvent]:
    return list(iter(core.next_event, None))


def events(core: MulticastSession) -> list[str]:
    names = []
    while (e := core.next_event()) is not None:
        names.append(e.name)
    return names


def test_first_client_is_master_and_oack_value_is_plain_decimal() -> None:
    core = session()
    core.add_request(A, OPTS, 0.0)
    (kind, options, addr), = parse(core.datagrams_to_send(0.0))
    assert kind == "OACK" and addr == A
    assert options == {b"blksize": b"100", b"tsize": b"1000", b"multicast": b"239.255.0.0,1758,1"}


def test_retransmitted_rrq_gets_the_same_oack_and_never_a_second_entry_or_demotion() -> None:
    core = session()
    core.add_request(A, OPTS, 0.0)
    core.add_request(B, OPTS, 0.01)
    first = core.datagrams_to_send(0.01)
    core.add_request(A, OPTS, 0.25)
    core.add_request(B, OPTS, 0.25)
    again = core.datagrams_to_send(0.25)
    assert again == first
    assert len(core.members) == 2 and core.master is not None and core.master.addr == A
    assert events(core).count("mcast_rrq_retransmit") == 2


def test_master_ack_is_cumulative_and_goes_to_the_group_nonmasters_are_left_alone() -> None:
    core = session()
    core.add_request(A, OPTS, 0.0)
    core.add_request(B, OPTS, 0.0)
    core.datagrams_to_send(0.0)
    core.receive_datagram(ack(0), A, 0.01)
    assert parse(core.datagrams_to_send(0.01)) == [("DATA", 1, ("239.255.0.0", 1758))]
    core.receive_datagram(ack(5), A, 0.02)  # a jump: it heard blocks 2..5 while it was not master
    assert parse(core.datagrams_to_send(0.02)) == [("DATA", 6, ("239.255.0.0", 1758))]
    core.receive_datagram(ack(5), A, 0.021)  # duplicate within a round trip: no second copy
    assert core.datagrams_to_send(0.021) == []


def test_lost_group_block_is_repaired_by_unicast_before_ipxe_times_out() -> None:
    core = session()
    core.add_request(A, OPTS, 0.0)
    core.receive_datagram(ack(0), A, 0.0)
    core.datagrams_to_send(0.0)
    deadline = core.get_timer()
    assert deadline is not None and deadline < 0.25
    core.handle_timer(deadline)
    assert parse(core.datagrams_to_send(deadline)) == [("DATA", 1, A)]


def test_deaf_master_is_served_by_unicast_with_evidence_and_the_group_passes_on() -> None:
    core = session()
    core.add_request(A, OPTS, 0.0)
    core.add_request(B, OPTS, 0.0)
    now = 0.0
    core.receive_datagram(ack(0), A, now)
    core.receive_datagram(ack(0), B, now)  # B answers its offer too late: a listener
    for block in range(1, 5):
        while core.members[A].state == "master" and core.members[A].repairs < block:
            deadline = core.get_timer()
            assert deadline is not None
            now = deadline
            core.handle_timer(now)  # no ACK after the group copy: unicast repair
        now += 0.001
        core.receive_datagram(ack(block), A, now)  # ACKed after the unicast copy
    assert now < 1.5, "three repairs in a row, backed off from 0.15 s"
    names = events(core)
    assert "multicast_not_received" in names
    assert core.members[A].state == "unicast"
    sent = parse(core.datagrams_to_send(now))
    assert ("OACK", {b"blksize": b"100", b"tsize": b"1000", b"multicast": b"239.255.0.0,1758,1"}, B) in sent
    assert ("DATA", 4, A) in sent
    core.receive_datagram(ack(0), B, now + 0.001)  # B answers the offer: the group is its
    assert core.master is not None and core.master.addr == B


def test_master_finishing_promotes_a_late_joiner_which_gets_only_what_it_lacks() -> None:
    core = session()
    core.add_request(A, OPTS, 0.0)
    core.receive_datagram(ack(0), A, 0.0)
    for block in range(1, 6):
        core.receive_datagram(ack(block), A, block * 0.01)
    core.add_request(C, OPTS, 0.06)  # late: blocks 1..6 already went out
    for block in range(6, 12):  # 1000 bytes in 100-byte blocks: 11 blocks, the last one empty
        core.receive_datagram(ack(block), A, 0.06 + block * 0.01)
    sent = parse(core.datagrams_to_send(1.0))
    assert core.members[A].state == "done"
    assert ("OACK", {b"blksize": b"100", b"tsize": b"1000", b"multicast": b"239.255.0.0,1758,1"}, C) in sent
    core.receive_datagram(ack(0), C, 0.2)  # C answers with its first gap: it lacks block 1...
    assert core.master is not None and core.master.addr == C
    assert parse(core.datagrams_to_send(0.2)) == [("DATA", 1, ("239.255.0.0", 1758))]
    core.receive_datagram(ack(6), C, 0.21)  # ...then 7, which it lost; it heard 8..11 as a non-master
    assert parse(core.datagrams_to_send(0.21)) == [("DATA", 7, ("239.255.0.0", 1758))]
    core.receive_datagram(ack(11), C, 0.22)
    assert core.members[C].state == "done"


def test_silent_clients_are_offered_the_role_once_and_dropped_without_retries() -> None:
    """A silent requester (a spoofed address, issue 20) costs what it sent: no second round."""
    tuning = Tuning()
    core = session()
    core.add_request(A, OPTS, 0.0)
    core.add_request(B, OPTS, 0.0)  # offered the role too: A has not answered yet
    core.receive_datagram(ack(0), A, 0.0)
    core.add_request(C, OPTS, 0.05)  # late, a listener: A leads
    for block in range(1, 12):
        core.receive_datagram(ack(block), A, 0.05 + block * 0.01)
    sent: dict[tuple[str, int], list[tuple[float, str]]] = {B: [], C: []}
    now = 0.2
    while not core.finished and now < 30:
        core.handle_timer(now)
        for kind, _, addr in parse(core.datagrams_to_send(now)):
            if addr in sent:
                sent[addr].append((now, kind))
        now += tuning.tick
    names = events(core)
    assert "mcast_skip" not in names and "mcast_linger" in names
    assert len(sent[B]) == 1, "B's offer came with its own request: nothing more"
    oacks = [t for t, kind in sent[C] if kind == "OACK"]
    assert 2 <= len(oacks) <= 1 + tuning.promote_timeout / tuning.retransmit, "its OACK, then one probe round"
    # C listened to the stream and cannot have it all: the session waits for it, silently, as
    # long as iPXE itself would, then tells it with an ERROR (a spoofed C costs one datagram more).
    assert [kind for _, kind in sent[C]][len(oacks):] == ["OTHER"]
    assert core.finished and tuning.give_up_after < now < 2.5 + tuning.give_up_after


def test_an_answered_client_that_misses_promotions_is_skipped_then_retried_then_given_up() -> None:
    tuning = Tuning()
    core = session()
    core.add_request(A, OPTS, 0.0)
    core.receive_datagram(ack(0), A, 0.0)
    core.add_request(B, OPTS, 0.01)
    core.receive_datagram(ack(0), B, 0.02)  # an RFC 2090 client confirms its mc=0 OACK
    for block in range(1, 12):
        core.receive_datagram(ack(block), A, 0.05 + block * 0.01)
    now = 0.2
    while not core.finished and now < 30:
        core.handle_timer(now)
        core.datagrams_to_send(now)
        now += tuning.tick
    names = events(core)
    assert core.finished and now < 10 + tuning.give_up_after
    assert names.count("mcast_skip") == tuning.max_probes - 1 and names.count("mcast_client_gone") == 2
    assert names.index("mcast_linger") < len(names) - 2, "it lacks block 1: waited for, then given up"


def test_waiting_ipxe_clients_hear_something_on_one_schedule() -> None:
    """Every waiting client hears from the session within two keep-alive rounds."""
    tuning = Tuning()
    core = session()
    core.add_request(A, OPTS, 0.0)
    core.receive_datagram(ack(0), A, 0.0)
    waiting = [("192.0.2.20", 2000 + i) for i in range(5)]
    for index, client in enumerate(waiting):
        core.add_request(client, OPTS, 0.3 * index)
    core.datagrams_to_send(1.5)
    heard: dict[tuple[str, int], list[float]] = {client: [0.3 * i] for i, client in enumerate(waiting)}
    sends_at: set[float] = set()
    now = 0.0
    for step in range(1, 120):
        now = step * 0.25
        core.receive_datagram(ack(0), A, now)  # a slow master keeps the session busy
        core.handle_timer(now)
        for _kind, _, addr in parse(core.datagrams_to_send(now)):
            if addr in heard:
                heard[addr].append(now)
                sends_at.add(now)
    for times in heard.values():
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        assert gaps and max(gaps) <= 2 * tuning.keepalive + tuning.tick
    assert len(sends_at) <= 30 / tuning.keepalive + 1, "one round per keepalive, not one per client"


def test_files_over_65535_blocks_cannot_be_a_session() -> None:
    with pytest.raises(ValueError):
        session(size=65535 * 8, blksize=8)


def test_mtftp_late_request_listens_to_the_stream_and_is_promoted_by_unicast() -> None:
    core = session(mtftp=True, size=5000, blksize=512)
    core.add_request(A, [], 0.0)
    assert sorted(parse(core.datagrams_to_send(0.0))) == [("DATA", 1, A), ("DATA", 1, ("239.255.0.0", 1758))]
    core.receive_datagram(ack(1), A, 0.01)
    core.receive_datagram(ack(2), A, 0.02)
    core.datagrams_to_send(0.02)
    # The stream flows: B is left to hear it, and gets no unicast that would make it an
    # ACKing iPXE master for the rest of the pass.
    core.add_request(B, [], 0.03)
    assert parse(core.datagrams_to_send(0.03)) == []
    for block in range(3, 10):
        core.receive_datagram(ack(block), A, 0.03 + block * 0.01)
    assert all(addr != B for _, _, addr in parse(core.datagrams_to_send(0.12)))
    core.receive_datagram(ack(10), A, 0.2)  # A is done: B is asked at once, by unicast DATA
    assert parse(core.datagrams_to_send(0.2)) == [("DATA", 1, B)]
    core.receive_datagram(ack(1), B, 0.21)  # holds 1 and 4..10 (heard on the group): asks for 2
    assert core.master is not None and core.master.addr == B
    assert parse(core.datagrams_to_send(0.21)) == [("DATA", 2, ("239.255.0.0", 1758))]


def test_mtftp_request_told_to_wait_then_led_by_the_candidate_is_probed_not_dropped() -> None:
    """B asks a millisecond after A, before A answered: told to wait (nothing sent).  A then
    leads the pass, B hears it from block 2 on (block 1 went out before B joined the group)
    and, as iPXE does while it hears a stream, asks nothing more.  At the end B is probed
    for what it lacks; dropped as "asked once, never again", it timed out and fell back
    (tests/test_multicast_interop.py saw it)."""
    core = session(mtftp=True, size=5000, blksize=512)
    core.add_request(A, [], 0.0)
    core.datagrams_to_send(0.0)
    core.add_request(B, [], 0.001)
    assert parse(core.datagrams_to_send(0.001)) == []
    assert "mcast_wait" in events(core)
    for block in range(1, 10):
        core.receive_datagram(ack(block), A, 0.01 * block)
        core.datagrams_to_send(0.01 * block)
    core.receive_datagram(ack(10), A, 0.2)  # A is done: B is asked at once, by unicast DATA
    assert parse(core.datagrams_to_send(0.2)) == [("DATA", 1, B)]
    assert "mcast_client_gone" not in events(core)


def test_mtftp_silent_listener_is_released_then_waited_for_then_told() -> None:
    """B heard block 2 but not 1 and never answers: released (not failed), waited for as long
    as iPXE would wait itself, then given up with an ERROR, never silence (issue 18)."""
    tuning = Tuning()
    core = session(mtftp=True, size=1000, blksize=512)
    core.add_request(A, [], 0.0)
    core.receive_datagram(ack(1), A, 0.01)
    core.add_request(B, [], 0.02)  # hears 2 on the group
    core.receive_datagram(ack(3), A, 0.03)
    core.datagrams_to_send(0.03)
    to_b: list[float] = []
    now = 0.03
    while not core.finished and now < 30:
        now = round(now + 0.25, 2)
        core.handle_timer(now)
        to_b += [now for _, _, addr in parse(core.datagrams_to_send(now)) if addr == B]
    names = [(e.name, e.fields.get("client"), e.fields.get("error_sent")) for e in events_of(core)]
    assert ("mcast_listener_released", "192.0.2.11:1001", None) in names
    assert ("mcast_client_gone", "192.0.2.11:1001", True) in names
    released = next(i for i, n in enumerate(names) if n[0] == "mcast_listener_released")
    assert names[released + 1][0] == "mcast_linger"
    assert core.finished and to_b[-1] > tuning.give_up_after and to_b[-2] < 2.0, "nothing during the linger"


def test_mtftp_request_with_no_stream_flowing_is_answered_at_once_on_the_group() -> None:
    core = session(mtftp=True, size=5000, blksize=512)
    core.add_request(A, [], 0.0)
    core.receive_datagram(ack(1), A, 0.01)
    core.datagrams_to_send(0.01)
    core.add_request(B, [], 0.5)  # the master has been quiet for 0.49 s: nothing for B to hear
    assert parse(core.datagrams_to_send(0.5)) == [("DATA", 2, ("239.255.0.0", 1758))]
    core.add_request(C, [], 0.52)  # the same pause: that group DATA answered C too
    assert parse(core.datagrams_to_send(0.52)) == []


def test_mtftp_repeated_or_reopened_request_is_answered_at_once() -> None:
    core = session(mtftp=True, size=50000, blksize=512)
    core.add_request(A, [], 0.0)
    core.receive_datagram(ack(1), A, 0.01)
    core.add_request(B, [], 0.02)
    core.datagrams_to_send(0.02)
    core.receive_datagram(ack(2), A, 0.03)
    core.add_request(B, [], 0.04)  # B asks again: it heard nothing (a deaf client)
    assert ("DATA", 3, B) in parse(core.datagrams_to_send(0.04))
    reopened = (B[0], B[1] + 7)  # iPXE reopens on a new port after 0.25 s without a packet
    core.add_request(reopened, [], 0.4)
    assert ("DATA", 3, ("239.255.0.0", 1758)) in parse(core.datagrams_to_send(0.4))  # it hears that
    core.add_request(reopened, [], 0.65)  # ...unless it did not: then by unicast
    assert ("DATA", 3, reopened) in parse(core.datagrams_to_send(0.65))


def test_mtftp_request_that_may_not_listen_is_answered_at_once() -> None:
    core = session(mtftp=True, size=50000, blksize=512)
    core.add_request(A, [], 0.0)
    core.receive_datagram(ack(1), A, 0.01)
    core.datagrams_to_send(0.01)
    core.add_request(B, [], 0.02, may_listen=False)  # another file's stream shares the group
    assert parse(core.datagrams_to_send(0.02)) == [("DATA", 2, B)]


def test_mtftp_service_sees_another_file_on_the_same_group() -> None:
    from types import SimpleNamespace
    from typing import Any, cast

    from netboot.tftp.mtftp import MtftpService

    group = GroupPort("239.255.1.1", 3001)
    service = MtftpService(cast(Any, None), {})
    kernel = MulticastSession(lambda o, n: b"", 5000, 512, group, 0.0, mtftp=True)
    key = ("mtftp", "kernel", "")
    service.registry.sessions[key] = cast(Any, SimpleNamespace(key=key, core=kernel))
    assert service._group_shared(("mtftp", "initrd", ""), group)
    assert not service._group_shared(("mtftp", "kernel", ""), group)
    assert not service._group_shared(("mtftp", "initrd", ""), GroupPort("239.255.1.2", 3001))


def test_mtftp_listeners_never_hear_nothing_for_a_quarter_second() -> None:
    """iPXE's MTFTP client reopens after 0.25 s of silence, which in the lab meant a fallback."""
    core = session(mtftp=True, size=5000, blksize=512)
    core.add_request(A, [], 0.0)
    core.receive_datagram(ack(1), A, 0.01)
    core.add_request(B, [], 0.02)  # a silent listener that will never answer
    heard: list[float] = []
    now = 0.02
    for block in range(2, 11):  # A finishes at 0.11
        now += 0.01
        core.receive_datagram(ack(block), A, now)
    while now < 3.0 and not core.finished:
        now = round(now + 0.01, 2)
        core.handle_timer(now)
        heard += [now for _, _, addr in parse(core.datagrams_to_send(now)) if addr == ("239.255.0.0", 1758)]
    gaps = [b - a for a, b in zip([0.11, *heard], heard, strict=False)]
    assert max(gaps) <= 0.13, gaps
    names = [e.name for e in iter(core.next_event, None)]
    assert "mcast_listener_released" in names  # after about 1 s of probes (then the session lingers)


def shared_session(size: int = 5000) -> MulticastSession:
    data = bytes(range(256)) * (size // 256 + 1)
    return MulticastSession(
        lambda off, n: data[off : off + n], size, 512, GROUP, 0.0, mtftp=True, shared_group=True
    )


def test_mtftp_shared_group_carries_nothing_more_of_a_file_once_a_client_finished_it() -> None:
    """iPXE opens its next file on the same group at once: this file's DATA must be gone by then."""
    core = shared_session()
    core.add_request(A, [], 0.0)
    core.receive_datagram(ack(1), A, 0.01)
    core.add_request(B, [], 0.02)  # listens to blocks 3.. on the group
    core.datagrams_to_send(0.02)
    for block in range(2, 10):
        core.receive_datagram(ack(block), A, 0.02 + block * 0.01)
    core.datagrams_to_send(0.2)
    events(core)
    core.receive_datagram(ack(10), A, 0.2)  # A has the file and will open the next one now
    assert parse(core.datagrams_to_send(0.2)) == [("DATA", 1, B)]  # B is probed by unicast only
    assert "mcast_group_closed" in events(core)
    core.receive_datagram(ack(1), B, 0.21)  # B heard 3..10 and lacks 2
    sent = parse(core.datagrams_to_send(0.21))
    assert sent == [("DATA", 2, B)]
    assert "mcast_unicast_tail" in events(core)
    core.receive_datagram(ack(10), B, 0.22)
    assert core.finished and parse(core.datagrams_to_send(0.22)) == []
    # Nothing of the file went to the group after A's last ACK.
    assert core.group_packets == 10


def test_mtftp_shared_group_late_request_after_close_is_served_by_unicast() -> None:
    core = shared_session()
    core.add_request(A, [], 0.0)
    core.add_request(B, [], 0.001)
    for block in range(1, 11):
        core.receive_datagram(ack(block), A, block * 0.01)
    core.datagrams_to_send(0.1)
    before = core.group_packets
    core.add_request(C, [], 0.15)  # a late VM asks while B is still being served
    out = parse(core.datagrams_to_send(0.15))
    assert all(addr != ("239.255.0.0", 1758) for _, _, addr in out), out
    assert ("DATA", 1, C) in out
    core.receive_datagram(ack(1), C, 0.16)
    assert parse(core.datagrams_to_send(0.16)) == [("DATA", 2, C)]
    assert core.group_packets == before


def test_mtftp_shared_group_lost_tail_data_is_repeated_before_ipxe_reopens() -> None:
    core = shared_session()
    core.add_request(A, [], 0.0)
    core.add_request(B, [], 0.001)
    for block in range(1, 11):
        core.receive_datagram(ack(block), A, block * 0.01)
    core.receive_datagram(ack(0), B, 0.11)  # B answers the probe: it has nothing
    core.datagrams_to_send(0.11)
    now, resent = 0.11, []
    while now < 0.6:
        deadline = core.get_timer()
        assert deadline is not None
        now = max(now + 0.001, deadline)
        core.handle_timer(now)
        out = parse(core.datagrams_to_send(now))
        resent += [now for _kind, block, addr in out if addr == B and block == 1]
    assert resent and resent[0] - 0.11 <= 0.2, resent  # well before iPXE's 0.25 s timer


def _service_with_kernel(kernel: MulticastSession) -> tuple[Any, list[tuple[str, dict[str, Any]]]]:
    """An MtftpService whose registry runs ``kernel`` on GROUP, and the events it emits."""
    from types import SimpleNamespace

    from netboot.tftp.mtftp import MtftpService, parse_mtftp_config

    emitted: list[tuple[str, dict[str, Any]]] = []
    server = SimpleNamespace(emit=lambda name, **fields: emitted.append((name, fields)))
    entries = parse_mtftp_config(f"kernel {GROUP.group} {GROUP.port}\ninitrd {GROUP.group} {GROUP.port}\n")
    service = MtftpService(cast(Any, server), entries)
    key = ("mtftp", "kernel", "")
    driver = SimpleNamespace(closed=False, kick=lambda: None)
    service.registry.sessions[key] = cast(Any, SimpleNamespace(key=key, core=kernel, driver=driver))
    return service, emitted


def _initrd_request(client: tuple[str, int], now: float) -> Any:
    from types import SimpleNamespace

    refused: list[str] = []
    request = SimpleNamespace(is_read=True, mode="octet", filename="initrd")
    return SimpleNamespace(
        request=request, client=client, client_text=f"{client[0]}:{client[1]}", local_ip="", now=now,
        refuse=lambda code, text: refused.append(text), refused=refused,
    )


def test_mtftp_next_file_is_held_while_the_last_one_s_tails_run_on_its_closed_group() -> None:
    """A client on its unicast tail still listens on the one group:port, and a lost tail DATA
    makes it reopen and take the next packet it hears as its peer: the next file's stream
    must not start until the tails are done (a CI full boot failed so)."""
    from netboot.tftp.mtftp_held import HELD_LISTENS

    kernel = shared_session()
    service, emitted = _service_with_kernel(kernel)
    kernel.add_request(A, [], 0.0)
    kernel.add_request(B, [], 0.001)  # listens from block 2 on
    for block in range(1, 11):
        kernel.receive_datagram(ack(block), A, block * 0.01)
    kernel.datagrams_to_send(0.1)
    assert kernel.group_closed  # A has the kernel; B lacks block 1 and gets it by unicast
    initrd_key = ("mtftp", "initrd", "")

    master = (A[0], 2000)  # A opens the initrd at once
    assert service._tails_on_group(initrd_key, GROUP, A[0]) == ("kernel", 1)
    ctx = _initrd_request(master, 0.11)
    assert service.handle(ctx) is True and ctx.refused == []
    assert initrd_key not in service.registry.sessions, "the initrd stream started beside a tail"
    assert emitted[-1] == (
        "mtftp_held", {"client": f"{A[0]}:2000", "file": "initrd", "other_file": "kernel", "unfinished": 1}
    )
    # The tail client itself is never held back by its own tail.
    assert service._tails_on_group(initrd_key, GROUP, B[0]) is None
    # A held client listens on the group: when the initrd's stream starts for another
    # requester it is made a member (probed for what it misses), within iPXE's listening time.
    held = service.held
    assert held.still_listening(initrd_key, C, 0.5) == [master]
    assert held.still_listening(initrd_key, C, 0.6) == []  # taken off the list
    service.handle(_initrd_request(master, 0.2))
    assert held.still_listening(initrd_key, C, 0.2 + HELD_LISTENS + 0.1) == []
    service.handle(_initrd_request(master, 0.3))
    assert held.still_listening(initrd_key, master, 0.4) == []  # itself: no
    service.handle(_initrd_request(master, 0.5))
    fallback = _initrd_request((A[0], 3000), 0.9)  # its plain-TFTP fallback: served, not a listener now
    fallback.option_names = []
    assert service.refuse_stale_fallback(fallback) is False and fallback.refused == []
    assert held.still_listening(initrd_key, C, 1.0) == []

    kernel.receive_datagram(ack(0), B, 0.12)  # answers the probe: lacks block 1
    kernel.datagrams_to_send(0.12)
    kernel.receive_datagram(ack(10), B, 0.13)  # its tail is done
    assert service._tails_on_group(initrd_key, GROUP, A[0]) is None  # A's next RRQ starts the stream


def test_mtftp_held_member_that_falls_back_before_hearing_the_stream_is_served() -> None:
    """A held client made a member when the initrd's stream started may fall back to plain
    TFTP before it hears a packet (Debian's ROMs do so 0.8 s after their first request);
    refused as a stale member, its boot would fail.  iPXE falls back only without a peer,
    so a member that never reopened heard nothing: its fallback is served."""
    from netboot.tftp.mcast_member import GONE

    service, emitted = _service_with_kernel(shared_session())
    initrd_key = ("mtftp", "initrd", "")
    held_a, held_b = (A[0], 2000), (B[0], 2001)
    service.held.hold(initrd_key, held_a, 0.0)
    service.held.hold(initrd_key, held_b, 0.1)
    initrd = shared_session()
    initrd.add_request(C, [], 0.7)  # C's request starts the stream; A and B still listen
    for addr in service.held.still_listening(initrd_key, C, 0.7):
        initrd.add_request(addr, [], 0.7)
    driver = SimpleNamespace(closed=False, kick=lambda: None)
    handle = SimpleNamespace(key=initrd_key, core=initrd, driver=driver)
    service.registry.sessions[initrd_key] = cast(Any, handle)
    initrd.datagrams_to_send(0.7)

    clean = _initrd_request((A[0], 3000), 0.8)  # A's fallback: it never reopened
    clean.option_names = []
    assert service.refuse_stale_fallback(clean) is False and clean.refused == []
    assert initrd.members[held_a].state == GONE, "served elsewhere: not waited or lingered for"
    said = [(e.name, e.fields.get("client")) for e in iter(initrd.next_event, None)]
    assert ("mcast_withdrawn", f"{A[0]}:2000") in said
    assert emitted[-1][0] == "mtftp_fallback_served"

    service.handle(_initrd_request((B[0], 4000), 0.9))  # B heard the stream, lost it, reopened
    stale = _initrd_request((B[0], 5000), 1.3)  # and then fell back: its bitmap is gone
    stale.option_names = []
    assert service.refuse_stale_fallback(stale) is True and stale.refused
    assert initrd.members[held_b].state != GONE


def test_mtftp_next_file_is_not_held_while_the_last_one_still_streams_on_the_group() -> None:
    """Before the group closes, holding a request would leave it listening to the other
    file's stream: it is answered at once by unicast instead (``_group_shared``)."""
    kernel = shared_session()
    service, _ = _service_with_kernel(kernel)
    kernel.add_request(A, [], 0.0)
    kernel.add_request(B, [], 0.001)
    kernel.receive_datagram(ack(1), A, 0.01)
    kernel.datagrams_to_send(0.01)
    assert not kernel.group_closed
    assert service._tails_on_group(("mtftp", "initrd", ""), GROUP, C[0]) is None
    assert service._group_shared(("mtftp", "initrd", ""), GROUP)


def test_mtftp_service_marks_files_that_share_a_group() -> None:
    from netboot.tftp.mtftp import parse_mtftp_config

    entries = parse_mtftp_config("kernel 239.255.1.1 3001\ninitrd 239.255.1.1 3001\nalone 239.255.1.2 3001\n")
    from netboot.tftp.mtftp import shares_group

    assert shares_group(entries, entries["kernel"]) and shares_group(entries, entries["initrd"])
    assert not shares_group(entries, entries["alone"])


def test_mtftp_probe_lost_while_another_master_streams_is_sent_again() -> None:
    """CI lossy train, 2026-11-28 09:28: a late listener's one probe was lost while another
    client's repairs kept the group busy; it was released unfinished 1.1 s later and fell back.
    An unanswered probe is repeated every ``retransmit`` whatever the group carries."""
    core = session(mtftp=True, size=20 * 512, blksize=512)
    core.add_request(A, [], 0.0)
    core.receive_datagram(ack(1), A, 0.01)
    core.receive_datagram(ack(2), A, 0.02)
    core.add_request(B, [], 0.03)  # listeners from block 3 on: each lacks 1-2
    core.add_request(C, [], 0.03)
    now = 0.03
    for block in range(3, 22):
        now += 0.01
        core.receive_datagram(ack(block), A, now)
    out = parse(core.datagrams_to_send(now))
    assert ("DATA", 1, B) in out and ("DATA", 1, C) in out, "A is done: both are probed"
    probed_at = now
    # C answers, B's probe was lost; C is served, its repairs keep the group busy
    core.receive_datagram(ack(0), C, now + 0.01)
    to_b = []
    t = now + 0.01
    while t < probed_at + 0.9:
        t += 0.02
        if core.master is not None and core.master.addr == C:
            core.receive_datagram(ack(min(core.master.have + 1, 2)), C, t)
        deadline = core.get_timer()
        if deadline is not None and deadline <= t:
            core.handle_timer(t)
        to_b += [(round(t, 2), block) for kind, block, addr in parse(core.datagrams_to_send(t)) if addr == B]
    assert to_b, "B was never asked again"
    assert to_b[0][0] - probed_at <= 0.55, to_b
    core.receive_datagram(ack(0), B, to_b[0][0] + 0.01)  # the repeat got through
    names = [e.name for e in iter(core.next_event, None)]
    assert "mcast_listener_released" not in names
