"""Why a train VM failed, read from its tap: did it stop talking while the group stream ran?

Why this exists: in 4-VM trains on a 2-core TCG host, some NIC models (pcnet, eepro100)
fail in ways the console alone does not explain: a VM stops transmitting while group
DATA keeps arriving on its tap, or never gets as far as asking for the payload while the
stream floods it.  Saying so in the train's report keeps "the driver stopped" apart from
"the server did not answer" (the server's events show the second).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.evidence import BootEvidence
from lab.status import Status
from lab.wire import Frame, frames_of

#: A VM silent this long before the group stream ended had stopped taking part.
SILENT_SECONDS = 3.0


@dataclass(frozen=True)
class TapActivity:
    last_sent: float | None  # the VM's last IPv4 frame (capture clock)
    group_frames: int  # IPv4 multicast frames delivered to its tap
    group_last: float | None
    #: Unicast IPv4 frames to the VM after its last frame: the server asked (an MTFTP
    #: promotion or probe, a unicast repair) and got no answer.
    unanswered: int = 0


def tap_activity(pcap: Path | Sequence[Frame], client_ip: str) -> TapActivity:
    raw_ip = bytes(int(part) for part in client_ip.split("."))
    last_sent: float | None = None
    group_frames = 0
    group_last: float | None = None
    to_it: list[float] = []
    for frame in frames_of(pcap):
        l3 = frame.l3
        if frame.ethertype != 0x0800 or len(l3) < 20:
            continue
        if l3[12:16] == raw_ip:
            last_sent = frame.ts
        elif 224 <= l3[16] <= 239:
            group_frames += 1
            group_last = frame.ts
        elif l3[16:20] == raw_ip:
            to_it.append(frame.ts)
    unanswered = sum(1 for ts in to_it if last_sent is None or ts > last_sent)
    return TapActivity(last_sent, group_frames, group_last, unanswered)


def diagnose(evidence: BootEvidence, activity: TapActivity, asked_for_payload: bool) -> str:
    """One clause for a failed VM ("" when it passed or nothing stands out)."""
    if evidence.status is Status.PASS:
        return ""
    stage = evidence.failed_stage or "?"
    if not asked_for_payload:
        return (
            f"never asked for the payload (stopped at stage {stage}) while {activity.group_frames} "
            "group frames reached its tap"
        )
    if activity.last_sent is not None and activity.group_last is not None:
        silent = activity.group_last - activity.last_sent
        if silent >= SILENT_SECONDS and activity.unanswered:
            return (
                f"sent nothing for the last {silent:.0f} s of the group stream and left "
                f"{activity.unanswered} unicast frames to it unanswered (stage {stage})"
            )
        if silent >= SILENT_SECONDS:
            # An MTFTP listener is silent by design until the server asks it something.
            return (
                f"listened without sending for the last {silent:.0f} s of the group stream and was "
                f"never asked to answer (stage {stage})"
            )
    return f"failed at stage {stage}"


def refused_fallback(server_events: Sequence[dict[str, Any]], client_ip: str) -> str:
    """The clause for a VM whose plain-TFTP fallback pyatftpd refused ("" if none).

    Such a VM had listened to the group and then fallen back with iPXE's emptied block
    bitmap: either its MTFTP request never reached the server (the unknown listener of
    docs/multicast.md, an iPXE race), or the server let it go quiet unfinished.  The
    refusal is what kept it from printing ``ok`` over an image with holes; the event's
    reason says which case it was.
    """
    for event in server_events:
        if event.get("event") == "mtftp_stale_fallback" and str(event.get("client", "")).startswith(
            f"{client_ip}:"
        ):
            return (
                f"fell back to plain TFTP {event.get('quiet_seconds')} s after the MTFTP stream and the "
                f"server refused it ({event.get('reason')}; mtftp_stale_fallback, ERROR 0, iPXE: "
                "'Operation not supported') rather than serve it holes"
            )
    return ""
