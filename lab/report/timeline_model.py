"""What one multicast session picture shows, as data: marks, the server's story, failures.

Why apart from the drawing: what a picture says (which packets, which joins, where the
repairs start, which failure at which time) is tested here without pixels; the drawing
(:mod:`lab.report.timeline_draw`) only decides where things go on the page.

Two sources, aligned on the wall clock (the server's events and the capture both carry
Unix time):

* the capture gives one mark per packet: DATA to the group, DATA by unicast to a client,
  each client's ACKs (TFTP) or NACKs (SLAM).  16-bit TFTP block numbers are unwrapped.
  A unicast transfer is tied to its file by the read request that opened it (the client's
  address and port), so the boot script and the verifier never appear in a payload's
  picture;
* the server's events (docs/events.md) give the annotations: joins, masters and promotions,
  fallbacks to unicast, refusals, clients done or gone, SLAM passes.  Per-block events (the
  unicast core's ``data``/``ack``/``retransmit``) become marks too, so a run without a
  usable pcap still gets a picture.

A third source is the caller's: the failures it knows (a VM's failed stage with iPXE's
error, a train VM's diagnosis), each at the Unix time it happened, and a name for each
client ("vmxnet3 (lossy 5 %) 192.0.2.103").
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lab.model.network import LAB_SLAM_PORTS, SERVER_IPV4
from lab.wire.counts import slam_header
from lab.wire.frames import datagrams
from netboot.events import ServerEvent, read_events
from netboot.slam.ints import IntDecodeError

GROUP_DATA = "group_data"
UNICAST_DATA = "unicast_data"
ACK = "ack"
NACK = "nack"
RRQ = "rrq"  # a plain read request seen on the wire (port 69, no multicast option)
RRQ_MULTICAST = "rrq_multicast"  # a read request with the multicast option, or to the MTFTP port
MARK_KINDS = (GROUP_DATA, UNICAST_DATA, ACK, NACK)
DATA_KINDS = (GROUP_DATA, UNICAST_DATA)
REQUEST_KINDS = (RRQ, RRQ_MULTICAST)
TFTP_PORT = 69

JOIN = "join"
MASTER = "master"
PROMOTE = "promote"
FALLBACK = "fallback"
TAIL = "tail"
CLOSED = "closed"
DONE = "done"
GONE = "gone"
REFUSED = "refused"
FAILURE = "failure"  # the caller's: what a VM's verdict says went wrong
PASS = "pass"
SESSION = "session"
#: Kinds drawn as a vertical line, not as a numbered note.
LINE_KINDS = (PASS, SESSION)
#: Kinds that tell of trouble (drawn red; their notes are never left out of the list).
TROUBLE_KINDS = (FALLBACK, GONE, REFUSED, FAILURE)

#: Server event name -> annotation kind (pyatftpd multicast, pyslamd; docs/events.md).
EVENT_KINDS: dict[str, str] = {
    "mcast_join": JOIN,
    "client_joined": JOIN,
    "mcast_master": MASTER,
    "master": MASTER,
    "mcast_promote": PROMOTE,
    "multicast_not_received": FALLBACK,
    "mcast_declined": FALLBACK,
    "mcast_withdrawn": FALLBACK,  # an MTFTP member that fell back to plain TFTP, served there
    "mcast_group_closed": CLOSED,
    "mcast_unicast_tail": TAIL,
    "done": DONE,
    "client_left": DONE,
    "mcast_client_gone": GONE,
    "mcast_skip": GONE,
    "mcast_client_quiet": GONE,  # a listener that stopped ACKing, a listener again (not failed)
    "mcast_client_back": JOIN,  # a client given up or waited for ACKed after all
    "mcast_full": REFUSED,
    "mcast_linger": SESSION,  # the session waits, sending nothing, for a client that went quiet
    "mtftp_stale_fallback": REFUSED,
    "client_refused": REFUSED,
    "file_error": REFUSED,
    "error": REFUSED,
    "pass_start": PASS,
    "mcast_session_start": SESSION,
    "mcast_session_end": SESSION,
}

#: Per-block events of the unicast core: (mark kind) when the pcap is missing.
BLOCK_EVENTS: dict[str, str] = {"data": UNICAST_DATA, "retransmit": UNICAST_DATA, "ack": ACK}

#: The lab's SLAM ports (kernel and initrd in a full boot).
DEFAULT_SLAM_PORTS = LAB_SLAM_PORTS


@dataclass(frozen=True)
class Mark:
    t: float  # seconds since the timeline's origin
    block: int
    kind: str
    client: str | None  # client IP; None for the group stream
    #: The server's port (its session socket): tells apart two sessions on one group.
    port: int | None = None
    #: The file of the transfer (from the read request that opened it); None: not known.
    file: str | None = None


@dataclass(frozen=True)
class Annotation:
    t: float
    kind: str
    client: str | None
    label: str
    block: int | None = None
    #: False when the time is a stand-in (a failure whose time the caller did not know).
    timed: bool = True


@dataclass(frozen=True)
class Failure:
    """What the caller knows went wrong for one client, drawn where it happened.

    ``at`` is Unix time (the clock of the events and the capture).  None: the caller does
    not know when; the failure is then drawn at the client's last record and says so.
    """

    client: str | None
    at: float | None
    reason: str


@dataclass
class Timeline:
    title: str
    origin: float  # Unix time of t = 0
    marks: list[Mark] = field(default_factory=list)
    annotations: list[Annotation] = field(default_factory=list)
    clients: list[str] = field(default_factory=list)
    blocks: int | None = None
    sources: list[str] = field(default_factory=list)
    #: Client IP -> what the picture calls it ("e1000 192.0.2.101"); the IP when not given.
    names: dict[str, str] = field(default_factory=dict)
    #: The group bytes over the file size, from the server's session end.
    group_ratio: float | None = None

    def count(self, kind: str, client: str | None = None) -> int:
        return sum(1 for m in self.marks if m.kind == kind and (client is None or m.client == client))

    def of_kind(self, kind: str) -> list[Annotation]:
        return [a for a in self.annotations if a.kind == kind]

    def name(self, client: str | None) -> str:
        if client is None:
            return ""
        return self.names.get(client, client)

    def end(self) -> float:
        """The last time anything happened (marks, notes, failures)."""
        return max([m.t for m in self.marks] + [a.t for a in self.annotations] + [0.0])


# --- events --------------------------------------------------------------------------------


def read_event_lines(path: Path) -> list[ServerEvent]:
    """A server's ``--events`` file; a broken line is skipped, never fatal."""
    return read_events(path)


def int_field(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def event_kind(event: ServerEvent) -> str | None:
    """The annotation kind of an event (None: not drawn).

    ``error`` only when the server sent an ERROR (it has a ``code``); ``done`` with
    ``ok: false`` is a refusal too: the transfer ended without the file.
    """
    kind = EVENT_KINDS.get(event.event)
    if event.event == "error" and event.get("code") is None:
        return None
    if kind == DONE and event.get("ok") is False:
        return REFUSED
    return kind


def _label(event: ServerEvent, kind: str, who: str) -> str:
    name = event.event
    reason = event.get("reason")
    simple = {
        PROMOTE: f"promoted {who}",
        CLOSED: f"group closed to this file ({who} finished first)",
        TAIL: f"unicast tail to {who} from block {event.get('from_block', '?')}",
        PASS: f"pass from {event.get('block', '?')}",
    }
    if kind in simple:
        return simple[kind]
    if kind == JOIN:
        if name == "mcast_client_back":
            gap = event.get("first_gap")
            return f"back {who}" + (f" from {gap}" if gap is not None else "")
        return f"join {who}" + (" (late)" if event.get("late") else "")
    if kind == MASTER:
        return f"master {who}" + (f" ({reason})" if reason else "")
    if kind == FALLBACK:
        words = {"multicast_not_received": "unicast fallback", "mcast_withdrawn": "plain-TFTP fallback"}
        return f"{words.get(name, 'declined')} {who}"
    if kind == DONE:
        return f"done {who}"
    if kind == GONE:
        word = {"mcast_skip": "skipped", "mcast_client_quiet": "quiet"}.get(name, "gone")
        return f"{word} {who}" + (f": {reason}" if reason else "")
    if kind == REFUSED:
        return _refusal(event, who)
    if name == "mcast_session_end":
        ratio = event.get("group_ratio")
        return "session end" + (f" (group {ratio}x)" if ratio is not None else "")
    if name == "mcast_linger":
        return f"lingers {event.get('seconds', '?')} s for {event.get('clients', '?')}"
    return "session start"


def _refusal(event: ServerEvent, who: str) -> str:
    reason = event.get("reason")
    why = f": {reason}" if reason else ""
    if event.event == "mtftp_stale_fallback":
        return f"plain-TFTP fallback of {who} refused (ERROR 0){why}"
    if event.event == "error":
        return f"ERROR {event.get('code')} sent to {who}{why}"
    if event.event == "done":
        return f"transfer to {who} failed{why}"
    return f"{event.event} {who}{why}"


def annotations_from_events(
    events: Iterable[ServerEvent], origin: float, names: Mapping[str, str] | None = None
) -> list[Annotation]:
    """Joins, masters, promotions, fallbacks, refusals, ends: the story the server tells."""
    out: list[Annotation] = []
    for event in events:
        kind = event_kind(event)
        if kind is None or (event.event == "mcast_listen"):
            continue
        client = event.client_ip
        block = None
        for key in ("block", "from_block", "stream_block"):
            block = int_field(event.get(key))
            if block is not None:
                break
        if kind == JOIN and block == 0:
            block = None  # "stream_block 0": nothing on the group yet, not a real position
        who = (names or {}).get(client, client) if client else ""
        out.append(Annotation(event.ts - origin, kind, client, _label(event, kind, who or ""), block))
    return out


def marks_from_events(events: Iterable[ServerEvent], origin: float) -> list[Mark]:
    """Per-block events (the unicast core's data/ack/retransmit): marks without a pcap."""
    unwrap = _Unwrapper()
    out: list[Mark] = []
    for event in events:
        kind = BLOCK_EVENTS.get(event.event)
        block = int_field(event.get("block"))
        client = event.client_ip
        if kind is None or block is None:
            continue
        value = unwrap((kind == ACK, client), block)
        file = event.get("file")
        out.append(Mark(event.ts - origin, value, kind, client, file=file if isinstance(file, str) else None))
    return out


# --- pcap ----------------------------------------------------------------------------------


class _Unwrapper:
    """16-bit TFTP block numbers to a running count, per stream (the value nearest the last)."""

    def __init__(self) -> None:
        self.last: dict[object, int] = {}

    def __call__(self, key: object, block16: int) -> int:
        last = self.last.get(key)
        if last is None:
            value = block16
        else:
            base = last - (last & 0xFFFF)
            value = min((base - 0x10000 + block16, base + block16, base + 0x10000 + block16),
                        key=lambda v: abs(v - last))  # fmt: skip
            value = max(value, 0)
        self.last[key] = value
        return value


def _slam_ints(payload: bytes, count: int) -> list[int] | None:
    """The first ``count`` SLAM Ints, or None if the bytes are not SLAM."""
    try:
        return slam_header(payload, count)[0]
    except IntDecodeError:
        return None


def parse_request(payload: bytes) -> tuple[str, bool] | None:
    """A TFTP RRQ's file name and whether it asked for multicast (RFC 2090's option)."""
    parts = payload[2:].split(b"\0")
    if len(parts) < 2 or not parts[0]:
        return None
    options = [p.decode("ascii", "replace").lower() for p in parts[2::2]]
    return parts[0].decode("utf-8", "replace"), "multicast" in options


class _PcapReader:
    """One pass over a capture: marks, and each transfer's file from the request that opened it."""

    def __init__(self, server_ips: Sequence[str], slam_ports: Sequence[int]) -> None:
        self.servers = set(server_ips)
        self.slam_ports = set(slam_ports)
        self.unwrap = _Unwrapper()
        #: (client IP, client port) -> the file its last read request named.
        self.files: dict[tuple[str, int], str] = {}
        self.out: list[tuple[float, Mark]] = []

    def group(self, ts: float, sport: int, dst: str, dport: int, payload: bytes) -> None:
        if payload[:2] == b"\x00\x03" and len(payload) >= 4:
            block = self.unwrap(("g", sport, dst, dport), struct.unpack_from("!H", payload, 2)[0])
            self.out.append((ts, Mark(0.0, block, GROUP_DATA, None, sport)))
        elif sport in self.slam_ports or dport in self.slam_ports:
            ints = _slam_ints(payload, 4)
            if ints is not None:
                self.out.append((ts, Mark(0.0, ints[3], GROUP_DATA, None, sport)))

    def to_client(self, ts: float, sport: int, dst: str, dport: int, payload: bytes) -> None:
        if sport not in self.slam_ports and payload[:2] == b"\x00\x03" and len(payload) >= 4:
            block = self.unwrap(("u", sport, dst), struct.unpack_from("!H", payload, 2)[0])
            file = self.files.get((dst, dport))
            self.out.append((ts, Mark(0.0, block, UNICAST_DATA, dst, sport, file)))

    def to_server(self, ts: float, src: str, sport: int, dport: int, payload: bytes) -> None:
        if dport in self.slam_ports:
            ints = _slam_ints(payload, 1)
            if ints is not None and payload != b"\x00":
                self.out.append((ts, Mark(0.0, ints[0], NACK, src, dport)))
        elif payload[:2] == b"\x00\x04" and len(payload) >= 4:
            block = self.unwrap(("a", src, dport), struct.unpack_from("!H", payload, 2)[0])
            self.out.append((ts, Mark(0.0, block, ACK, src, dport, self.files.get((src, sport)))))
        elif payload[:2] == b"\x00\x01":
            request = parse_request(payload)
            if request is None:
                return
            file, multicast = request
            self.files[(src, sport)] = file
            kind = RRQ_MULTICAST if multicast or dport != TFTP_PORT else RRQ
            self.out.append((ts, Mark(0.0, 0, kind, src, dport, file)))


def marks_from_pcap(
    path: Path,
    server_ips: Sequence[str] = (SERVER_IPV4,),
    slam_ports: Sequence[int] = DEFAULT_SLAM_PORTS,
) -> list[tuple[float, Mark]]:
    """(Unix time, mark) per TFTP/SLAM packet: group DATA, unicast DATA, ACKs, NACKs, requests.

    Only the TFTP header (and a request's names) and the SLAM header Ints are read, so a
    capture cut by a short snap length still gives every mark.
    """
    reader = _PcapReader(server_ips, slam_ports)
    servers = reader.servers
    for d in datagrams(path):
        if d.src in servers and d.to_group:
            reader.group(d.ts, d.sport, d.dst, d.dport, d.payload)
        elif d.src in servers and d.dst not in servers:
            reader.to_client(d.ts, d.sport, d.dst, d.dport, d.payload)
        elif d.dst in servers and d.src not in servers:
            reader.to_server(d.ts, d.src, d.sport, d.dport, d.payload)
    return reader.out
