"""Proving iPXE's stale MTFTP reopen from a failed VM's tap (lab/judge/stale_reopen.py),
and telling the server's side of a failed VM (lab/judge/server_story.py)."""

from pathlib import Path

import dpkt

from lab.judge.server_story import server_story
from lab.judge.stale_reopen import STALE_REOPEN, stale_reopen_defect
from lab.wire.frames import Frame, read_frames
from tests.lab_unit.udp_frames import udp_frame

VM, SERVER, GROUP = "192.0.2.102", "192.0.2.1", "239.255.1.1"
SESSION, VM_PORT, FALLBACK_PORT = 40000, 5000, 6000


def _frame(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    return udp_frame(src, dst, payload, sport, dport)


def _tail(
    tmp_path: Path, repeat_every: float, reopen: bool = False, other_stream: bool = False
) -> list[Frame]:
    """A VM on its unicast tail: ACK 1 at 0.0, then silent while the server repeats DATA 2
    every ``repeat_every`` s, and its plain-TFTP fallback at 0.6 s."""
    path = tmp_path / "tap.pcap"
    data2 = b"\x00\x03\x00\x02" + b"k" * 512
    with open(path, "wb") as handle:
        writer = dpkt.pcap.Writer(handle)
        writer.writepkt(_frame(VM, SERVER, VM_PORT, SESSION, b"\x00\x04\x00\x01"), ts=100.0)
        ts = 100.001
        while ts < 100.6:
            writer.writepkt(_frame(SERVER, VM, SESSION, VM_PORT, data2), ts=ts)
            if other_stream:
                writer.writepkt(_frame(SERVER, GROUP, SESSION + 1, 3001, data2), ts=ts + 0.001)
            ts += repeat_every
        if reopen:
            writer.writepkt(_frame(VM, SERVER, VM_PORT + 1, 1759, b"\x00\x01vmlinuz\x00octet\x00"), ts=100.55)
        rrq = b"\x00\x01vmlinuz\x00octet\x00blksize\x001432\x00tsize\x000\x00"
        writer.writepkt(_frame(VM, SERVER, FALLBACK_PORT, 69, rrq), ts=100.6)
    return list(read_frames(path))


MEMBER = f"{VM}:{VM_PORT}"
REFUSED = [
    {"ts": 1.0, "event": "request", "client": MEMBER, "file": "vmlinuz", "options": {}},
    {"ts": 1.0, "event": "mcast_listen", "client": MEMBER, "file": "vmlinuz", "stream_block": 1305},
    {"ts": 130.0, "event": "mcast_unicast_tail", "client": MEMBER, "file": "vmlinuz", "from_block": 2},
    {"ts": 130.6, "event": "request", "client": f"{VM}:{FALLBACK_PORT}", "file": "vmlinuz",
     "options": {"blksize": "1432", "tsize": "0"}},
    {"ts": 130.6, "event": "mtftp_stale_fallback", "client": f"{VM}:{FALLBACK_PORT}", "file": "vmlinuz",
     "reason": "a member of the MTFTP session that has not finished fell back to plain TFTP"},
]  # fmt: skip


def test_a_vm_that_stopped_taking_in_a_steady_tail_is_ipxes_stale_reopen(tmp_path: Path) -> None:
    assert stale_reopen_defect(REFUSED, VM, _tail(tmp_path, repeat_every=0.15)) == STALE_REOPEN


def test_a_server_that_let_the_tail_go_quiet_is_never_excused(tmp_path: Path) -> None:
    assert stale_reopen_defect(REFUSED, VM, _tail(tmp_path, repeat_every=0.3)) == ""


def test_another_stream_reaching_the_vm_is_never_excused(tmp_path: Path) -> None:
    """Run 20261206T201059Z: the initrd's group stream swamped a kernel tail (the server's doing)."""
    assert stale_reopen_defect(REFUSED, VM, _tail(tmp_path, repeat_every=0.15, other_stream=True)) == ""


def test_a_reopen_the_server_did_not_answer_is_never_excused(tmp_path: Path) -> None:
    assert stale_reopen_defect(REFUSED, VM, _tail(tmp_path, repeat_every=0.15, reopen=True)) == ""


def test_an_unknown_listener_or_no_refusal_is_not_this_defect(tmp_path: Path) -> None:
    frames = _tail(tmp_path, repeat_every=0.15)
    stranger = [dict(e, reason="plain TFTP request 0.25 s after ..., from a client the session never heard")
                if e["event"] == "mtftp_stale_fallback" else e for e in REFUSED]  # fmt: skip
    assert stale_reopen_defect(stranger, VM, frames) == ""
    assert stale_reopen_defect(REFUSED[:3], VM, frames) == ""


def test_the_server_story_tells_a_failed_vm_s_events_in_order_with_ports() -> None:
    story = server_story(REFUSED, VM)
    assert story.startswith(f"+0.00 request vmlinuz:{VM_PORT} (no options)")
    assert "+129.00 mcast_unicast_tail vmlinuz:5000 (from_block=2" in story
    assert story.index("mcast_unicast_tail") < story.index("mtftp_stale_fallback")
    assert f"request vmlinuz:{FALLBACK_PORT} (options blksize,tsize)" in story
    assert server_story(REFUSED, "192.0.2.200") == ""
    untimed = [{k: v for k, v in e.items() if k != "ts"} for e in REFUSED[:2]]  # atftpd's log: no times
    expected = f"request vmlinuz:{VM_PORT} (no options); mcast_listen vmlinuz:{VM_PORT} (stream_block=1305)"
    assert server_story(untimed, VM) == expected


def test_a_long_server_story_keeps_its_start_and_its_end() -> None:
    many = [{"ts": 1.0 + i, "event": "mcast_skip", "client": f"{VM}:1", "file": "f"} for i in range(30)]
    story = server_story(many, VM)
    assert story.startswith("+0.00 mcast_skip") and story.endswith("+29.00 mcast_skip f:1")
    assert "… 18 more …" in story
