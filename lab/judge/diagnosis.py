"""Why a train VM failed, read from its tap: did it stop talking while the group stream ran?

Why this exists: in 4-VM trains on a 2-core TCG host, some NIC models (pcnet, eepro100)
fail in ways the console alone does not explain: a VM stops transmitting while group
DATA keeps arriving on its tap, or never gets as far as asking for the payload while the
stream floods it.  Saying so in the train's report keeps "the driver stopped" apart from
"the server did not answer" (the server's events show the second).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lab.model.results import BootEvidence
from lab.model.status import Status
from lab.wire.frames import Frame, datagrams
from lab.wire.streams import TapActivity
from netboot.events import as_server_events

#: A VM silent this long before the group stream ended had stopped taking part.
SILENT_SECONDS = 3.0


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


#: The id (docs/findings.md anchor) of iPXE's unknown MTFTP listener.
UNKNOWN_LISTENER = "ipxe-mtftp-unknown-listener"


def known_defect(
    server_events: Sequence[Mapping[str, Any]], client_ip: str, mtftp_request_reached_bridge: bool
) -> str:
    """The docs/findings.md id of a defect outside the project that this failed VM's
    evidence proves, or "".

    The unknown MTFTP listener: the server refused the VM's plain-TFTP fallback because
    its session never heard it, **and** no MTFTP request of the VM reached the bridge,
    the server's side (its tap shows none, or every one on its tap was dropped by the
    loss the lab injects there: :func:`requests_lost_to_injected_loss`).  Both are
    needed: a server that lost a request it was sent would also "never hear" the client,
    and that is the server's failure, not iPXE's.
    """
    if mtftp_request_reached_bridge:
        return ""
    for event in as_server_events(server_events):
        if (
            event.event == "mtftp_stale_fallback"
            and event.client_ip == client_ip
            and "never heard" in str(event.get("reason", ""))
        ):
            return UNKNOWN_LISTENER
    return ""


def requests_lost_to_injected_loss(
    tap: Sequence[Frame], bridge: Sequence[Frame], client_ip: str, port: int
) -> int:
    """How many requests ``client_ip`` sent to ``port`` on its tap, when the bridge's
    capture has no request of it to that port; 0 when one reached the bridge or none was sent.

    Why: the lab drops a lossy VM's frames at its tap's nftables ingress hook, which runs
    after a capture of the tap has taken them (docs/evidence.md, tests/test_loss.py).  A
    request on the tap but not on br0 was dropped by the lab on its way, never offered to
    the server.  Trust this only for a tap with injected loss and captures of the tap and
    the bridge that dropped no frame; the caller checks all three.
    """
    sent = sum(1 for d in datagrams(tap) if d.src == client_ip and d.dport == port)
    if sent == 0 or any(d.src == client_ip and d.dport == port for d in datagrams(bridge)):
        return 0
    return sent


def refused_fallback(server_events: Sequence[Mapping[str, Any]], client_ip: str) -> str:
    """The clause for a VM whose plain-TFTP fallback pyatftpd refused ("" if none).

    Such a VM had listened to the group and then fallen back with iPXE's emptied block
    bitmap: either its MTFTP request never reached the server (the unknown listener of
    docs/multicast.md, an iPXE race), or the server let it go quiet unfinished.  The
    refusal is what kept it from printing ``ok`` over an image with holes; the event's
    reason says which case it was.
    """
    for event in as_server_events(server_events):
        if event.event == "mtftp_stale_fallback" and event.client_ip == client_ip:
            return (
                f"fell back to plain TFTP {event.get('quiet_seconds')} s after the MTFTP stream and the "
                f"server refused it ({event.get('reason')}; mtftp_stale_fallback, ERROR 0, iPXE: "
                "'Operation not supported') rather than serve it holes"
            )
    return ""
