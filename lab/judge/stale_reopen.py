"""Proving, from a failed VM's tap, that iPXE's MTFTP reopen fell straight back over a
stale size although the server never let it go quiet.

Why (docs/findings.md#ipxe-mtftp-stale-fallback): an ``mtftp://`` client of Debian's ROMs
that goes 0.25 s without processing a packet reopens, and the reopen falls back to plain
TFTP at once, with its block bitmap emptied and its file size kept; pyatftpd must refuse
that fallback (served, it would print ``ok`` over holes), so the VM fails.  pyatftpd's
half is never to let a listener go 0.25 s without a packet (repeats within
``repair_after``, keep-alives every ``mtftp_gap``).  When a VM's own tap shows that half
kept (a packet of its own session at least every 0.25 s from its last ACK to its
fallback, and nothing of any other stream) and no reopen request leaving it, the guest
stopped taking packets in (a TCG vCPU not scheduled, a slow NIC model): iPXE's defect,
not the server's.  A server that left a 0.25 s gap, swamped the guest with another
stream (run 20261206T201059Z, docs/findings.md#ipxe-mtftp-one-group), or did not answer
a reopen, is never excused by this.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lab.model.network import MTFTP_PORT, SERVER_IPV4
from lab.wire.frames import Frame, datagrams
from netboot.events import as_server_events

#: The docs/findings.md id of the defect.
STALE_REOPEN = "ipxe-mtftp-stale-fallback"
#: iPXE's shortest retry timeout (``DEFAULT_MIN_TIMEOUT``, a quarter second).
IPXE_MIN_TIMEOUT = 0.25
TFTP_PORT = 69


def stale_reopen_defect(
    server_events: Sequence[Mapping[str, Any]], client_ip: str, frames: Sequence[Frame]
) -> str:
    """:data:`STALE_REOPEN` when this failed VM's tap proves it, else ""."""
    refused_ports = {
        e.client[1]
        for e in as_server_events(server_events)
        if e.event == "mtftp_stale_fallback"
        and e.client_ip == client_ip
        and e.client is not None
        and "has not finished" in str(e.get("reason", ""))  # a member, not an unknown listener
    }
    if not refused_ports:
        return ""
    seen = list(datagrams(frames))
    fallback = next(
        (d.ts for d in seen if d.src == client_ip and d.sport in refused_ports and d.dport == TFTP_PORT), None
    )
    if fallback is None:
        return ""
    before = [d for d in seen if d.ts < fallback]
    sent = [d for d in before if d.src == client_ip]
    if not sent or sent[-1].dst != SERVER_IPV4 or sent[-1].dport in (MTFTP_PORT, TFTP_PORT):
        return ""  # its last word was no ACK to its session (a (re)open the server had to answer)
    silent_from, session_port = sent[-1].ts, sent[-1].dport
    from_server = [
        d for d in before
        if d.ts > silent_from and d.src == SERVER_IPV4 and (d.dst == client_ip or d.to_group)
    ]  # fmt: skip
    if any(d.sport != session_port for d in from_server):
        return ""  # another stream reached it meanwhile: the server may have swamped it
    points = [silent_from, *(d.ts for d in from_server), fallback]
    if max(b - a for a, b in zip(points, points[1:], strict=False)) >= IPXE_MIN_TIMEOUT:
        return ""  # the server let it go quiet: its failure, not iPXE's
    return STALE_REOPEN
