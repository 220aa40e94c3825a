"""When to refuse iPXE's stale MTFTP fallback rather than serve it an image with holes.

Why (docs/multicast.md, "the unknown listener"): an iPXE ``mtftp://`` client that
hears a group DATA before its first RRQ leaves takes the session socket as its peer
and never sends that RRQ, so the server never learns it exists.  It listens through
the pass; when the group goes quiet it reopens, and with Debian's ROMs (iPXE
1.0.0+git-20190125) a reopen falls straight back to plain TFTP on port 69.  That
fallback frees the block bitmap but keeps the file size, so the next OACK does not
resize it, and the first DATA makes the empty bitmap "full": iPXE prints ``ok`` over
the blocks it heard, one plain-TFTP block and zeros.  No answer can give it the
right bytes.  An ERROR at least makes the fetch fail visibly, which is what current
upstream iPXE does by itself (commit de4302490, 2026-07-30: ``bitmap_set()`` reports
``-ERANGE`` for a bit beyond an empty bitmap).

The rule, sans-I/O (times are the server loop's clock): a plain RRQ (no ``multicast``
option) for a file the server offers by MTFTP is stale when

* its client IP is a member of that file's session that has not finished (it was
  told about the session, so it reopened and fell back: nothing else sends this),
  while the session runs or up to :data:`QUIET_MAX` after its last group packet, or
* the file's group last carried a packet between :data:`QUIET_MIN` and
  :data:`QUIET_MAX` seconds ago (iPXE's listener reopens 0.25 s after the last
  packet; the VMs' fallbacks came 0.23-0.3 s after it) and the IP did not finish the
  file in that session.

Outside that second-long window a plain RRQ is a genuine ``tftp://`` fetch and is
served: the price is that a genuine ``tftp://`` fetch of the same file from another
machine inside the window is refused too (its iPXE reports the error, and a retry
works).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

#: A listener reopens after iPXE's minimum retry timeout, 0.25 s without a packet.
QUIET_MIN = 0.15
#: Slack for a slow guest (TCG) after that timeout.
QUIET_MAX = 1.5
#: A member the session knew is an MTFTP client of this very file: its plain RRQ is the
#: fallback for as long as its iPXE can still be listening.  iPXE gives up a transfer
#: after 15.75 s without a packet, so no listener's reopen comes later than this after
#: the group's last packet, however long the host did not schedule the guest.
MEMBER_QUIET_MAX = 16.0


@dataclass(frozen=True)
class GroupStream:
    """What the server knows of one MTFTP file's latest session."""

    #: Server-loop time of the last group packet of this file (-1: none yet).
    last_group_send: float
    finished_ips: frozenset[str]
    unfinished_ips: frozenset[str]
    running: bool = False


def stale_fallback_reason(stream: GroupStream | None, client_ip: str, now: float) -> str | None:
    """Why a plain RRQ from ``client_ip`` at ``now`` is iPXE's stale fallback, or None."""
    if stream is None or client_ip in stream.finished_ips:
        return None
    quiet = now - stream.last_group_send if stream.last_group_send >= 0 else None
    if client_ip in stream.unfinished_ips and (
        stream.running or (quiet is not None and quiet <= MEMBER_QUIET_MAX)
    ):
        return "a member of the MTFTP session that has not finished fell back to plain TFTP"
    if quiet is not None and QUIET_MIN <= quiet <= QUIET_MAX:
        return (
            f"plain TFTP request {quiet:.2f} s after the MTFTP group stream stopped, from a "
            "client the session never heard: an iPXE listener's fallback"
        )
    return None


def other_file_reason(
    others: Iterable[tuple[str, GroupStream]], client_ip: str, now: float
) -> tuple[GroupStream, str] | None:
    """The other file's stream, and why a plain RRQ is the fallback of a listener that
    locked onto it (another file's stream on the same group:port), or None.

    iPXE's ``mtftp://`` listens on one fixed group for every file, and its first packet
    sets its TID filter: a client that opens a file while another file's stream flows may
    take that stream's port as its peer and never send its RRQ.  It assembles the other
    file's blocks, and when that stream goes quiet it falls back to plain TFTP with the
    other file's size and an empty bitmap.  So the stranger's timing rule applies to every
    stream on the group, not only to the requested file's.
    """
    for filename, stream in others:
        if client_ip in stream.unfinished_ips or client_ip in stream.finished_ips:
            continue  # it asked for that file itself: this plain RRQ is its own business
        quiet = now - stream.last_group_send if stream.last_group_send >= 0 else None
        if quiet is not None and QUIET_MIN <= quiet <= QUIET_MAX:
            return stream, (
                f"plain TFTP request {quiet:.2f} s after the MTFTP stream of {filename!r} on the same "
                "group:port stopped, from a client that session never heard: an iPXE listener that "
                "locked onto that stream (its first packet) and fell back"
            )
    return None


def refusal_message(filename: str) -> str:
    """The ERROR text: what happened and what to do next."""
    return (
        f"refused: {filename!r} is being served by MTFTP and this request looks like iPXE's "
        "fallback after listening to the group unseen; iPXE lost its block bitmap, so any "
        "answer would leave holes in the image; fetch the file again"
    )
