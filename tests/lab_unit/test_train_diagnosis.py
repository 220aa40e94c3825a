from pathlib import Path

import dpkt

from lab.infra.capture import CaptureResult
from lab.judge.diagnosis import diagnose, refused_fallback, requests_lost_to_injected_loss
from lab.model.network import BRIDGE, MTFTP_PORT, Slot
from lab.model.results import BootEvidence, StageRecord
from lab.model.status import Status
from lab.run.train import requests_lost_to_lab_loss
from lab.wire.frames import Frame, read_frames
from lab.wire.streams import tap_activity
from tests.lab_unit.udp_frames import udp_frame, write_pcap

VM = "192.0.2.102"


def _frame(src: str, dst: str, payload: bytes) -> bytes:
    return udp_frame(src, dst, payload)


def _tap(tmp_path: Path, vm_sends_until: float, stream_until: float, asked_at: float | None = 10.0) -> Path:
    """Group DATA every 0.5 s, the VM's ACKs until ``vm_sends_until``, and (``asked_at``)
    three unicast DATA to the VM, as a promotion or probe it should answer."""
    path = tmp_path / "tap.pcap"
    with open(path, "wb") as handle:
        writer = dpkt.pcap.Writer(handle)
        ts = 0.0
        while ts <= stream_until:
            writer.writepkt(_frame("192.0.2.1", "239.255.1.1", b"\x00\x03\x00\x01" + b"x" * 512), ts=ts)
            if ts <= vm_sends_until:
                writer.writepkt(_frame(VM, "192.0.2.1", b"\x00\x04\x00\x00"), ts=ts + 0.01)
            if asked_at is not None and asked_at <= ts < asked_at + 1.5:
                writer.writepkt(_frame("192.0.2.1", VM, b"\x00\x03\x00\x02" + b"y" * 512), ts=ts + 0.02)
            ts += 0.5
    return path


def _failed(stage: str) -> BootEvidence:
    stages = [StageRecord("dhcp", Status.PASS, 1.0, 1.0), StageRecord(stage, Status.FAIL, 1.0, 2.0)]
    return BootEvidence(Status.FAIL, "x", stages)


def test_a_vm_that_went_quiet_while_the_stream_ran_is_named(tmp_path: Path) -> None:
    activity = tap_activity(_tap(tmp_path, vm_sends_until=2.0, stream_until=20.0), VM)
    assert activity.group_frames == 41
    text = diagnose(_failed("payload"), activity, asked_for_payload=True)
    assert "sent nothing for the last 18 s" in text and "payload" in text
    assert "left 3 unicast frames to it unanswered" in text


def test_a_silent_mtftp_listener_nobody_asked_is_not_called_a_stopped_nic(tmp_path: Path) -> None:
    """An MTFTP listener sends nothing until the server promotes or probes it."""
    activity = tap_activity(_tap(tmp_path, vm_sends_until=2.0, stream_until=20.0, asked_at=None), VM)
    text = diagnose(_failed("payload"), activity, asked_for_payload=True)
    assert "sent nothing" not in text and "never asked to answer" in text


def test_a_vm_that_talked_to_the_end_gets_only_its_stage(tmp_path: Path) -> None:
    activity = tap_activity(_tap(tmp_path, vm_sends_until=20.0, stream_until=20.0), VM)
    assert diagnose(_failed("payload"), activity, asked_for_payload=True) == "failed at stage payload"


def test_a_vm_that_never_asked_says_where_it_stopped(tmp_path: Path) -> None:
    activity = tap_activity(_tap(tmp_path, vm_sends_until=-1.0, stream_until=5.0), VM)
    text = diagnose(_failed("script"), activity, asked_for_payload=False)
    assert text.startswith("never asked for the payload (stopped at stage script)")
    assert "11 group frames" in text


def test_a_vm_that_passed_needs_no_diagnosis(tmp_path: Path) -> None:
    activity = tap_activity(_tap(tmp_path, vm_sends_until=1.0, stream_until=20.0), VM)
    assert diagnose(BootEvidence(Status.PASS), activity, asked_for_payload=True) == ""


def test_a_refused_stale_fallback_is_named_with_its_reason() -> None:
    events = [
        {"event": "mcast_join", "client": "192.0.2.101:2000"},
        {"event": "mtftp_stale_fallback", "client": f"{VM}:1234", "quiet_seconds": 0.26,
         "reason": "from a client the session never heard"},
    ]
    clause = refused_fallback(events, VM)
    assert "never heard" in clause and "0.26 s" in clause and "refused" in clause
    assert refused_fallback(events, "192.0.2.101") == ""
    assert refused_fallback(events, "192.0.2.10") == "", "an IP prefix is not the VM"


def test_joins_of_a_held_session_after_its_first_count_as_late() -> None:
    from lab.judge.train import late_join_check

    held = [{"event": "mcast_join", "session": "s1", "held": True, "late": False} for _ in range(4)]
    check = late_join_check(held)
    assert check.ok and "3 joined a held session" in check.detail
    alone = late_join_check(held[:1])
    assert not alone.ok, "one VM alone in its held session joined nobody's session"
    assert late_join_check([{"event": "mcast_join", "session": "s1", "late": True}]).ok
    assert not late_join_check([{"event": "mcast_join", "session": "s1", "late": False}]).ok


def _rrq_on(tmp_path: Path, name: str, sends_rrq: bool) -> list[Frame]:
    """A capture with the group stream, and the VM's MTFTP request when ``sends_rrq``."""
    frames = [(0.0, udp_frame("192.0.2.1", "239.255.1.1", b"\x00\x03\x00\x01" + b"x" * 512, 3001, 3001))]
    if sends_rrq:
        rrq = b"\x00\x01payload.bin\x00octet\x00"
        frames.append((0.1, udp_frame(VM, "192.0.2.1", rrq, 40000, MTFTP_PORT)))
    return list(read_frames(write_pcap(tmp_path / name, frames)))


def test_a_request_on_the_tap_but_not_on_the_bridge_was_lost_on_its_way(tmp_path: Path) -> None:
    """The lab's loss drops a VM's frames after its tap's capture took them: on the tap, not on br0."""
    on_tap = _rrq_on(tmp_path, "tap.pcap", sends_rrq=True)
    assert requests_lost_to_injected_loss(on_tap, _rrq_on(tmp_path, "br0.pcap", False), VM, MTFTP_PORT) == 1
    assert requests_lost_to_injected_loss(on_tap, _rrq_on(tmp_path, "br0b.pcap", True), VM, MTFTP_PORT) == 0
    silent = _rrq_on(tmp_path, "silent.pcap", sends_rrq=False)
    assert requests_lost_to_injected_loss(silent, silent, VM, MTFTP_PORT) == 0


def test_only_a_lossy_tap_with_whole_captures_can_prove_a_request_lost(tmp_path: Path) -> None:
    """Absence on br0 proves the lab dropped a request only where the lab drops frames, and
    only when neither capture dropped any itself; otherwise the server is not excused."""
    slot = Slot(0, 2)
    assert slot.ipv4 == VM
    tap = _rrq_on(tmp_path, "tap.pcap", sends_rrq=True)
    _rrq_on(tmp_path, "br0.pcap", sends_rrq=False)

    def result(drops: dict[str, int]) -> CaptureResult:
        stats: dict[str, dict[str, int | str]] = {dev: {"kernel_drops": n} for dev, n in drops.items()}
        files = {BRIDGE: tmp_path / "br0.pcap", slot.tap: tmp_path / "tap.pcap"}
        return CaptureResult("af_packet", files, "tpacket_v3", 262144, None, stats=stats)

    assert requests_lost_to_lab_loss(tap, slot, result({}), lossy_tap=slot.tap) == 1
    assert requests_lost_to_lab_loss(tap, slot, result({}), lossy_tap=None) == 0
    assert requests_lost_to_lab_loss(tap, slot, result({}), lossy_tap="tap9") == 0
    assert requests_lost_to_lab_loss(tap, slot, result({BRIDGE: 3}), lossy_tap=slot.tap) == 0
    assert requests_lost_to_lab_loss(tap, slot, result({slot.tap: 1}), lossy_tap=slot.tap) == 0
    assert requests_lost_to_lab_loss(tap, slot, None, lossy_tap=slot.tap) == 0
