"""How a boot's payload travelled, derived from evidence (server events + wire counts).

Why a separate verdict from the status: PASS only says the guest's SHA-256 matched.
The matrix must also say *how* the bytes came: on the group (multicast delivered),
by unicast after the server saw the client miss the group (unicast fallback), or by
plain unicast.  Each outcome names the figures it rests on, so a cell is never
asserted from the protocol alone (docs/matrix.md, "Outcomes").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lab.model.jsonable import to_json
from lab.model.results import Delivery, WireFigures
from lab.model.status import Status
from lab.wire.counts import WireSummary
from netboot.events import as_server_events

MULTICAST_PROTOCOLS = ("tftm", "mtftp", "x-slam")

#: Outcome labels, in the order the docs list them.
OUTCOMES = (
    "multicast",  # multicast delivered
    "unicast-fallback",  # the server saw the client miss the group and finished by unicast
    "unicast",  # plain unicast (the tftp baseline, or a server that declined multicast)
    "ok-but-corrupt",  # iPXE printed ok, the guest's SHA-256 differs: a corrupt boot caught
    "failed",  # wrong bytes or a timeout at a named stage
    "unsupported",  # the ROM's Features: lacks the protocol
    "not-emulated",
    "error",  # the lab broke
    "miss",
    "skip",
)


#: Statuses that say nothing about a transfer, and the outcome each is.
_NOT_A_TRANSFER = {
    Status.UNSUPPORTED: "unsupported",
    Status.NOT_EMULATED: "not-emulated",
    Status.ERROR: "error",
    Status.MISS: "miss",
    Status.SKIP: "skip",
}


def wire_figures(
    summary: WireSummary, client_ip: str, other_unicast_bytes: int, drops: int = 0
) -> WireFigures:
    """The tap's counts for ``client_ip``; ``other_unicast_bytes`` = the boot script + verifier by tftp."""
    figures = WireFigures(kernel_drops=drops)
    for group in summary.groups.values():
        figures.group_data_bytes += group.data_bytes
        figures.group_data_frames += group.data_frames
    client = summary.clients.get(client_ip)
    if client is not None:
        figures.unicast_data_bytes = client.unicast_data_bytes
        figures.unicast_payload_bytes = max(0, client.unicast_data_bytes - other_unicast_bytes)
        figures.unicast_retransmits = client.unicast_data_retransmits
        figures.acks = client.acks
        figures.slam_nacks = client.slam_nacks
        figures.igmp_reports = client.igmp_reports
    return figures


def classify(
    protocol: str,
    status: Status,
    size: int,
    events: Sequence[Mapping[str, Any]],
    wire: WireFigures | None,
    ipxe_said_ok: bool = False,
    failed_stage: str | None = None,
) -> Delivery:
    """The outcome of one boot from its status, the server's events for it and its tap's counts."""
    figures: dict[str, Any] = {"size": size, **(to_json(wire) if wire else {})}
    events = as_server_events(events)
    fallback_events = [e for e in events if e.event == "multicast_not_received"]
    if fallback_events:
        figures["multicast_not_received"] = dict(fallback_events[0])
    if status in _NOT_A_TRANSFER:
        return Delivery(_NOT_A_TRANSFER[status], f"status {status.value}", figures)
    wire_text = _wire_text(wire)
    if status is Status.FAIL:
        if ipxe_said_ok and failed_stage == "verified":
            return Delivery(
                "ok-but-corrupt",
                "iPXE fetched the payload without an error ('LAB fetched'), the in-guest SHA-256 differs; "
                + wire_text,
                figures,
            )
        return Delivery("failed", f"FAIL at stage {failed_stage or '?'}; {wire_text}", figures)
    if protocol not in MULTICAST_PROTOCOLS:
        return Delivery("unicast", f"tftp baseline; {wire_text}", figures)
    if wire is None:
        return Delivery("unicast" if not events else "multicast", "no wire capture: path unproven", figures)
    return _multicast_path(wire, size, fallback_events, figures, wire_text)


def _multicast_path(
    wire: WireFigures,
    size: int,
    fallback_events: Sequence[Mapping[str, Any]],
    figures: dict[str, Any],
    wire_text: str,
) -> Delivery:
    """A multicast boot whose bytes were right: which path carried them?"""
    by_unicast = wire.unicast_payload_bytes >= size
    if fallback_events and not by_unicast and wire.unicast_payload_bytes * 2 > size:
        # The server gave up on the group part way (a lossy VM is sometimes taken for deaf):
        # most of the payload came by unicast, so the boot does not show multicast delivery.
        share = 1.0 - wire.unicast_payload_bytes / size
        figures["group_share"] = round(share, 4)
        return Delivery(
            "unicast-fallback",
            f"server event multicast_not_received at block {fallback_events[0].get('block')}: "
            f"{share:.1%} of the payload came by the group before it, the rest by unicast; {wire_text}",
            figures,
        )
    if fallback_events and by_unicast:
        return Delivery(
            "unicast-fallback",
            f"server event multicast_not_received (block {fallback_events[0].get('block')}) and "
            f"{wire.unicast_payload_bytes} B of unicast DATA for a {size} B payload; {wire_text}",
            figures,
        )
    if wire.group_data_bytes > 0 and not by_unicast:
        share = 1.0 - wire.unicast_payload_bytes / size if size else 1.0
        figures["group_share"] = round(share, 4)
        return Delivery(
            "multicast",
            f"{wire.group_data_bytes} B of group DATA reached the VM's tap; only "
            f"{wire.unicast_payload_bytes} B of the payload came by unicast ({share:.1%} by the group)",
            figures,
        )
    if by_unicast:
        text = f"the server sent the payload by unicast without a fallback event; {wire_text}"
        return Delivery("unicast", text, figures)
    return Delivery("multicast", f"path unproven: {wire_text}", figures)


def _wire_text(wire: WireFigures | None) -> str:
    if wire is None:
        return "no wire capture"
    return (
        f"tap: {wire.group_data_frames} group DATA frames ({wire.group_data_bytes} B), "
        f"{wire.unicast_payload_bytes} B payload by unicast, {wire.unicast_retransmits} unicast retransmits, "
        f"{wire.acks} ACKs, {wire.slam_nacks} SLAM NACKs, {wire.igmp_reports} IGMP reports"
        + (
            ""
            if wire.bridge_group_data_bytes is None
            else f"; br0: {wire.bridge_group_data_bytes} B to the group"
        )
    )
