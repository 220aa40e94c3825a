"""The iPXE-faithful client core, driven by hand (no sockets, no clock)."""

from __future__ import annotations

import struct

from netboot.clients.cstr import inet_aton, strtoul
from netboot.clients.ipxe_tftp import CloseGroup, Finished, IpxeTftpClient, OpenGroup, OpenSocket

SERVER = ("192.0.2.1", 69)
SESSION = ("192.0.2.1", 40000)
GROUP = ("239.255.0.0", 1758)


def oack(**options: str) -> bytes:
    body = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in options.items())
    return struct.pack("!H", 6) + body


def data(block: int, payload: bytes) -> bytes:
    return struct.pack("!HH", 3, block) + payload


def acks(out: list[tuple[bytes, tuple[str, int]]]) -> list[int]:
    return [struct.unpack("!HH", d)[1] for d, _ in out if d[:2] == b"\0\4"]


def events(core: IpxeTftpClient) -> list[object]:
    found = []
    while (e := core.next_event()) is not None:
        found.append(e)
    return found


def run_timers(core: IpxeTftpClient, until: float) -> list[float]:
    """Fire every timer expiry up to ``until``; return when RRQs/ACKs went out."""
    sent_at = []
    while (deadline := core.get_timer()) is not None and deadline <= until:
        core.handle_timer(deadline)
        if core.datagrams_to_send(deadline):
            sent_at.append(round(deadline, 4))
    return sent_at


def test_tftm_rrq_bytes_and_option_order_match_ipxe() -> None:
    core = IpxeTftpClient("10.0.0.1", "boot.img", scheme="tftm")
    core.start(0.0)
    core.handle_timer(0.0)
    (rrq, dest), = core.datagrams_to_send(0.0)
    assert dest == ("10.0.0.1", 69)
    assert rrq.hex() == (
        "0001626f6f742e696d67006f63746574"
        "00626c6b73697a6500313433320074"
        "73697a650030006d756c746963617374"
        "0000"
    )
    assert len(rrq) == 49


def test_rrq_retransmits_at_quarter_second_doubling_then_times_out_at_15_75() -> None:
    core = IpxeTftpClient("10.0.0.1", "f", scheme="tftm")
    core.start(0.0)
    sent = run_timers(core, 100.0)
    assert sent == [0.0, 0.25, 0.75, 1.75, 3.75, 7.75]
    assert core.done and not core.ok and "timed out" in (core.error or "")
    assert core.finished_at == 15.75


def test_master_acks_first_gap_and_non_master_is_silent() -> None:
    master = IpxeTftpClient("192.0.2.1", "f", scheme="tftm")
    other = IpxeTftpClient("192.0.2.1", "f", scheme="tftm")
    for core, mc in ((master, "1"), (other, "0")):
        core.start(0.0)
        core.handle_timer(0.0)
        core.datagrams_to_send(0.0)
        offer = oack(tsize="3000", blksize="1432", multicast=f"239.255.0.0,1758,{mc}")
        core.receive_datagram(offer, SESSION, 0.01)
    assert acks(master.datagrams_to_send(0.01)) == [0]
    assert acks(other.datagrams_to_send(0.01)) == []
    assert OpenGroup("239.255.0.0", 1758) in events(other)
    # block 2 arrives before block 1: the master still asks for block 1 (ACK 0 = first gap)
    for core in (master, other):
        core.receive_datagram(data(2, b"b" * 1432), SESSION, 0.02, GROUP)
    assert acks(master.datagrams_to_send(0.02)) == [0]
    for core in (master, other):
        core.receive_datagram(data(1, b"a" * 1432), SESSION, 0.03, GROUP)
        core.receive_datagram(data(3, b"c" * 136), SESSION, 0.04, GROUP)
    assert acks(master.datagrams_to_send(0.04)) == [2, 3]
    assert acks(other.datagrams_to_send(0.04)) == []  # not even a final ACK
    for core in (master, other):
        assert core.ok and core.image() == b"a" * 1432 + b"b" * 1432 + b"c" * 136
        assert core.bytes_multicast == 3000 and core.bytes_unicast == 0


def test_tid_filter_drops_other_sources_and_deaf_hears_no_group() -> None:
    core = IpxeTftpClient("192.0.2.1", "f", scheme="tftm", deaf=True)
    core.start(0.0)
    core.handle_timer(0.0)
    core.receive_datagram(oack(tsize="10", blksize="1432", multicast="239.255.0.0,1758,1"), SESSION, 0.01)
    core.receive_datagram(data(1, b"x" * 10), ("192.0.2.1", 40001), 0.02)  # wrong port
    core.receive_datagram(data(1, b"x" * 10), SESSION, 0.03, GROUP)  # deaf
    assert not core.done
    core.receive_datagram(data(1, b"x" * 10), SESSION, 0.04)  # unicast from the session port
    assert core.ok and core.bytes_unicast == 10


def test_promotion_oack_makes_a_non_master_ack_its_first_gap() -> None:
    core = IpxeTftpClient("192.0.2.1", "f", scheme="tftm")
    core.start(0.0)
    core.handle_timer(0.0)
    core.receive_datagram(oack(tsize="5000", blksize="1000", multicast="239.255.0.0,1758,0"), SESSION, 0.01)
    for block in (1, 2, 4):
        core.receive_datagram(data(block, b"z" * 1000), SESSION, 0.02, GROUP)
    assert acks(core.datagrams_to_send(0.02)) == []
    core.receive_datagram(oack(multicast=",,1"), SESSION, 0.03)
    assert acks(core.datagrams_to_send(0.03)) == [2]


def test_bad_multicast_values_are_fatal_as_in_ipxe() -> None:
    for value, fragment in (("", "NO_PORT"), ("239.1.1.1,1758", "NO_MC"), ("a,1,1", "INVALID_IP"),
                            ("239.1.1.1,17x,1", "INVALID_PORT"), ("239.1.1.1,1758,1z", "INVALID_MC")):
        core = IpxeTftpClient("192.0.2.1", "f", scheme="tftm")
        core.start(0.0)
        core.handle_timer(0.0)
        core.receive_datagram(oack(multicast=value), SESSION, 0.01)
        assert core.done and not core.ok and fragment in (core.error or ""), value


def test_octal_and_negative_ports_parse_like_strtoul() -> None:
    assert strtoul("010", 0) == (8, "")
    assert strtoul("0x10", 0) == (16, "")
    assert strtoul("-25536", 0)[0] & 0xFFFF == 40000
    assert strtoul("", 0) == (0, "")
    assert inet_aton("239.255.0.010") == "239.255.0.8"
    assert inet_aton("239.255.0") is None


def test_mtftp_rrq_has_no_options_and_falls_back_after_four_expiries() -> None:
    core = IpxeTftpClient("192.0.2.1", "f", scheme="mtftp")
    core.start(0.0)
    assert OpenGroup("239.255.1.1", 3001) in events(core)
    sent = []
    for _ in range(4):
        deadline = core.get_timer()
        assert deadline is not None
        core.handle_timer(deadline)
        sent.extend((round(deadline, 3), d, a) for d, a in core.datagrams_to_send(deadline))
    assert [(t, a[1]) for t, _, a in sent] == [(0.0, 1759), (0.25, 1759), (0.75, 1759), (1.75, 69)]
    assert sent[0][1] == b"\0\1f\0octet\0"
    assert sent[-1][1] == b"\0\1f\0octet\0blksize\x001432\0tsize\x000\0"
    assert any(isinstance(e, CloseGroup) for e in events(core)) or core.group is None


def test_mtftp_unicast_makes_master_and_a_gap_reopens_with_the_suspected_defect() -> None:
    core = IpxeTftpClient("192.0.2.1", "f", scheme="mtftp", zero_on_reopen=True, reopen_falls_back=False)
    core.start(0.0)
    core.handle_timer(0.0)
    core.datagrams_to_send(0.0)
    mgroup = ("239.255.1.1", 3001)
    # joined a running transfer: blocks 3, 4 heard on the group, no unicast
    core.receive_datagram(data(3, b"3" * 512), SESSION, 0.01, mgroup)
    core.receive_datagram(data(4, b"4" * 100), SESSION, 0.02, mgroup)
    assert core.datagrams_to_send(0.02) == []
    events(core)
    deadline = core.get_timer()
    assert deadline is not None and abs(deadline - 0.27) < 0.01
    core.handle_timer(deadline)
    assert any(isinstance(e, OpenSocket) for e in events(core))
    (rrq, dest), = core.datagrams_to_send(deadline)
    assert dest == ("192.0.2.1", 1759) and core.reopens == 1
    # a new transfer from block 1, unicast first: the client completes ...
    new_session = ("192.0.2.1", 40002)
    core.receive_datagram(data(1, b"1" * 512), new_session, 0.5)
    core.receive_datagram(data(2, b"2" * 512), new_session, 0.51, mgroup)
    assert acks(core.datagrams_to_send(0.51)) == [1, 4]
    assert core.ok
    # ... but blocks 3 and 4 are zeros in its image, as on the real ROMs with atftpd
    assert core.image() == b"1" * 512 + b"2" * 512 + bytes(612)
    assert any(isinstance(e, Finished) for e in events(core))


def test_mtftp_reopen_goes_straight_to_plain_tftp_as_the_vms_did() -> None:
    core = IpxeTftpClient("192.0.2.1", "f", scheme="mtftp")
    core.start(0.0)
    core.handle_timer(0.0)
    core.datagrams_to_send(0.0)
    core.receive_datagram(data(3, b"3" * 512), SESSION, 0.01, ("239.255.1.1", 3001))
    deadline = core.get_timer()
    assert deadline is not None
    core.handle_timer(deadline)  # 0.25 s without a packet after hearing one
    (rrq, dest), = core.datagrams_to_send(deadline)
    assert dest == ("192.0.2.1", 69) and b"tsize" in rrq  # no MTFTP RRQ ever left
    assert (core.reopens, core.fallbacks) == (1, 1)


def test_mtftp_listener_that_falls_back_completes_after_one_block_over_zeros() -> None:
    """The defect the VM run points at: fallback frees the bitmap but keeps filesize."""
    core = IpxeTftpClient("192.0.2.1", "f", scheme="mtftp")
    core.start(0.0)
    core.handle_timer(0.0)
    core.datagrams_to_send(0.0)
    mgroup = ("239.255.1.1", 3001)
    # joined late: heard blocks 5..7 (the end of a 3200-byte file) while listening
    for block, size in ((5, 512), (6, 512), (7, 128)):
        core.receive_datagram(data(block, bytes([block]) * size), SESSION, 0.01 * block, mgroup)
    sent = []
    while not core.done and (deadline := core.get_timer()) is not None and deadline < 10:
        core.handle_timer(deadline)  # the pass ended: reopen, then nobody answers
        sent += [(round(deadline, 2), a[1]) for _, a in core.datagrams_to_send(deadline)]
        if a_port := [p for _, p in sent if p == 69]:
            break
    assert core.reopens == 1 and core.fallbacks == 1 and a_port
    # plain TFTP from block 1 with blksize 1432: one block and iPXE believes it is done
    core.receive_datagram(oack(tsize="3200", blksize="1432"), ("192.0.2.1", 40009), 3.0)
    core.receive_datagram(data(1, b"A" * 1432), ("192.0.2.1", 40009), 3.01)
    assert core.ok
    image = core.image()
    assert image[:1432] == b"A" * 1432
    assert image[1432:2048] == bytes(616), "never received: zeros"
    assert image[2048:3072] == b"\x05" * 512 + b"\x06" * 512 and image[3072:] == b"\x07" * 128


def test_mtftp_client_that_hears_the_group_first_never_sends_its_rrq() -> None:
    """``hears_group_first``: the unknown listener of docs/multicast.md."""
    core = IpxeTftpClient("192.0.2.1", "f", scheme="mtftp", hears_group_first=True)
    core.start(0.0)
    core.handle_timer(0.0)
    assert core.datagrams_to_send(0.0) == [], "the RRQ waits for the retry timer"
    mgroup = ("239.255.1.1", 3001)
    core.receive_datagram(data(9, b"x" * 512), SESSION, 0.01, mgroup)
    core.handle_timer(0.2)
    assert core.datagrams_to_send(0.2) == [] and core.peer == SESSION
    deadline = core.get_timer()
    assert deadline is not None
    core.handle_timer(deadline)  # the group went quiet: reopen, straight to plain TFTP
    ((rrq, dest),) = core.datagrams_to_send(deadline)
    assert dest == ("192.0.2.1", 69) and b"tsize" in rrq and core.fallbacks == 1


def _tftm_master(**machine: object) -> IpxeTftpClient:
    """A ``tftm://`` master that has handled its OACK (with the given machine model)."""
    core = IpxeTftpClient("192.0.2.1", "boot.img", scheme="tftm", **machine)  # type: ignore[arg-type]
    core.start(0.0)
    core.handle_timer(0.0)
    core.datagrams_to_send(0.0)
    core.receive_datagram(oack(blksize="512", tsize="5120", multicast="239.255.0.0,1758,1"), SESSION, 0.001)
    handled = core.get_timer()
    assert handled is not None
    core.handle_timer(handled)
    assert acks(core.datagrams_to_send(handled)) == [0]
    return core


def test_a_full_receive_ring_drops_frames_and_each_frame_costs_time() -> None:
    core = _tftm_master(ring=4, frame_cost=0.001)
    for block in range(1, 7):  # a burst of six group frames at once
        core.receive_datagram(data(block, b"x" * 512), SESSION, 0.01, group=GROUP)
    assert core.dropped_by_ring == 2
    assert core.get_timer() == 0.011  # the guest is busy with the first frame for 1 ms
    handled: list[tuple[float, list[int]]] = []
    now = 0.011
    while core.bitmap.first_gap < 4:
        deadline = core.get_timer()
        assert deadline is not None
        now = deadline
        core.handle_timer(now)
        handled.append((round(now, 4), acks(core.datagrams_to_send(now))))
    assert handled == [(0.011, [1]), (0.012, [2]), (0.013, [3]), (0.014, [4])]


def test_a_stalled_guest_handles_nothing_and_fires_no_timer_until_it_runs_again() -> None:
    core = _tftm_master(stalls=((0.1, 2.5),))
    core.receive_datagram(data(1, b"x" * 512), SESSION, 1.0, group=GROUP)
    assert core.get_timer() == 2.5
    core.handle_timer(2.5)
    assert acks(core.datagrams_to_send(2.5)) == [1]
