"""Stream facts for trains, read from one VM's tap: what it asked for, heard, and when.

Why here: whether a late VM took blocks from a running stream, when its transfer ran
and whether it went silent while the group kept coming are facts about frames, and the
train's judge and diagnosis rest on them.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lab.model.network import SERVER_IPV4, SLAM_PORT, VERIFIER_NAME
from lab.wire.counts import slam_header
from lab.wire.frames import Frame, datagrams, frames_of, ipv4
from netboot.slam.ints import IntDecodeError, decode_int
from netboot.tftp.packets import Opcode


@dataclass
class _Stream:
    """What one client's tap shows about its payload fetch, collected in one pass."""

    start: float | None = None
    last: float | None = None
    verifier_asked: bool = False
    verifier_done: float | None = None


def stream_timeline(
    pcap: Path | Sequence[Frame], client_ip: str, payload_name: str, listen_after: str = VERIFIER_NAME
) -> tuple[int, tuple[float, float] | None]:
    """From a VM's tap: group blocks it received but never asked for, and its transfer span.

    TFTP: a client asks for block 1 with its RRQ and for block n+1 with each ACK n (iPXE's
    ACK is cumulative: its first gap).  Group DATA blocks it received after its RRQ for
    ``payload_name`` that are not among those were requested by another client: it took
    them from the running stream.  The span runs from that RRQ to the last payload frame
    (group DATA or ACK).

    SLAM: a client asks for the blocks its NACKs list (skip/send runs from block 0).  A
    client that joins a running stream may never NACK at all (it hears every block it
    lacks), so its span starts with the first SLAM DATA after the fetch of the file named
    like ``listen_after`` (the verifier; the boot script for a full boot) ended.

    A client that never asked (stuck before its fetch) took nothing, whatever was flooded
    to its tap.
    """
    stream = _Stream()
    asked: set[int] = set()
    received: list[tuple[float, int]] = []
    slam_received: list[tuple[float, int]] = []
    for d in datagrams(pcap):
        body = d.payload
        if d.src == client_ip and d.dst == SERVER_IPV4 and d.dport == SLAM_PORT:
            if body[:1] != b"\0":  # b"\0" alone is the disconnect
                stream.start = d.ts if stream.start is None else stream.start
                asked |= slam_nack_blocks(body)
            stream.last = d.ts
        elif d.src == SERVER_IPV4 and d.to_group and SLAM_PORT in (d.sport, d.dport):
            packet = _slam_packet(body)
            if packet is not None:
                slam_received.append((d.ts, packet))
        elif len(body) >= 4:
            _tftp(stream, asked, received, d.ts, d.src, d.dst, d.to_group, body, client_ip,
                  payload_name, listen_after)  # fmt: skip
    if slam_received:
        received = slam_received
        _slam_span(stream, slam_received)
    if stream.start is None:
        return 0, None
    start = stream.start
    never_asked = {block for ts, block in received if ts >= start and block not in asked}
    return len(never_asked), (start, stream.last if stream.last is not None else start)


def fetch_on_wire(pcap: Path | Sequence[Frame], client_ip: str, payload_name: str) -> float | None:
    """Seconds from the client's first request for ``payload_name`` (the RRQ; for SLAM the
    first NACK) to the last payload frame on its tap: the part of a fetch a server can act
    on.  None when the tap shows no such request."""
    _, span = stream_timeline(pcap, client_ip, payload_name)
    return None if span is None else span[1] - span[0]


def _slam_packet(body: bytes) -> int | None:
    if body[:1] == b"\0":
        return None
    try:
        (_transaction, _total, _size, packet), _ = slam_header(body, 4)
    except IntDecodeError:
        return None
    return packet


def _tftp(
    stream: _Stream, asked: set[int], received: list[tuple[float, int]], ts: float, src: str, dst: str,
    to_group: bool, body: bytes, client_ip: str, payload_name: str, listen_after: str,
) -> None:  # fmt: skip
    opcode = struct.unpack_from("!H", body, 0)[0]
    if src == client_ip and dst == SERVER_IPV4:
        if opcode == Opcode.RRQ and payload_name.encode() in body:
            stream.start = ts if stream.start is None else stream.start
            asked.add(1)
        elif opcode == Opcode.RRQ and listen_after.encode() in body:
            stream.verifier_asked = True
        elif opcode == Opcode.ACK and stream.start is not None:
            asked.add((struct.unpack_from("!H", body, 2)[0] + 1) & 0xFFFF)
            stream.last = ts
        elif opcode == Opcode.ACK and stream.verifier_asked:
            stream.verifier_done = ts
    elif src == SERVER_IPV4 and to_group and opcode == Opcode.DATA:
        received.append((ts, struct.unpack_from("!H", body, 2)[0]))
        stream.last = ts


def _slam_span(stream: _Stream, slam_received: list[tuple[float, int]]) -> None:
    if stream.start is None and stream.verifier_done is not None:
        done = stream.verifier_done
        stream.start = next((ts for ts, _ in slam_received if ts > done), None)
    if stream.start is not None:
        start = stream.start
        heard_last = max((ts for ts, _ in slam_received if ts >= start), default=start)
        stream.last = heard_last if stream.last is None else max(stream.last, heard_last)


def slam_nack_blocks(body: bytes, limit: int = 1 << 17) -> set[int]:
    """The blocks a SLAM NACK asks for: alternating (skip, send) run lengths from block 0."""
    blocks: set[int] = set()
    position, block, sending = 0, 0, False
    while len(blocks) < limit:
        try:
            run, position = decode_int(body, position)
        except IntDecodeError:
            break  # the terminating NUL (or garbage) ends the list
        if sending:
            blocks.update(range(block, block + min(run, limit - len(blocks))))
        block += run
        sending = not sending
    return blocks


@dataclass(frozen=True)
class TapActivity:
    last_sent: float | None  # the VM's last IPv4 frame (capture clock)
    group_frames: int  # IPv4 multicast frames delivered to its tap
    group_last: float | None
    #: Unicast IPv4 frames to the VM after its last frame: the server asked (an MTFTP
    #: promotion or probe, a unicast repair) and got no answer.
    unanswered: int = 0


def sent_to_port(pcap: Path | Sequence[Frame], client_ip: str, port: int) -> bool:
    """Whether ``client_ip`` put any UDP datagram to ``port`` on this capture."""
    return any(d.src == client_ip and d.dport == port for d in datagrams(pcap))


def tap_activity(pcap: Path | Sequence[Frame], client_ip: str) -> TapActivity:
    """When a VM last sent anything, and what reached its tap after that."""
    last_sent: float | None = None
    group_frames = 0
    group_last: float | None = None
    to_it: list[float] = []
    for frame in frames_of(pcap):
        packet = ipv4(frame)
        if packet is None:
            continue
        if packet.src == client_ip:
            last_sent = packet.ts
        elif packet.to_group:
            group_frames += 1
            group_last = packet.ts
        elif packet.dst == client_ip:
            to_it.append(packet.ts)
    unanswered = sum(1 for ts in to_it if last_sent is None or ts > last_sent)
    return TapActivity(last_sent, group_frames, group_last, unanswered)
