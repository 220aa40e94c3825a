"""A picture of one multicast session: time across, block number up, one colour per client.

Why: whether a train shared the stream, where a late VM joined, when the server gave up
on the group and fell back to unicast, and how the blocks were repaired are hard to see in
counts but obvious in a plot.  Each multicast test gets ``timeline.png`` beside its
evidence; docs/timeline.md explains how to read it.

Two sources, aligned on the wall clock (the server's events and the capture both carry
Unix time):

* the capture gives one mark per packet: DATA to the group, DATA by unicast to a client,
  each client's ACKs (TFTP) or NACKs (SLAM).  16-bit TFTP block numbers are unwrapped;
* the server's events (docs/events.md) give the annotations: joins, masters and promotions,
  fallbacks to unicast, clients done or gone, SLAM passes.  Per-block events (the unicast
  core's ``data``/``ack``/``retransmit``) become marks too, so a run without a usable pcap
  still gets a picture, with each client's progress drawn from its join to its end.

Extraction (:func:`build_timeline`) is separate from drawing (:func:`draw_timeline`) so it
can be tested without looking at pixels.  CLI: ``python -m lab.timeline [EVENTS] [--pcap P] -o PNG``.
"""

from __future__ import annotations

import argparse
import re
import struct
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.model.network import LAB_SLAM_PORTS, SERVER_IPV4
from lab.wire.counts import slam_header
from lab.wire.frames import datagrams
from netboot.events import ServerEvent, read_events
from netboot.slam.ints import IntDecodeError

GROUP_DATA = "group_data"
UNICAST_DATA = "unicast_data"
ACK = "ack"
NACK = "nack"
RRQ = "rrq"  # a read request seen on the wire: the join, when the server wrote no events
MARK_KINDS = (GROUP_DATA, UNICAST_DATA, ACK, NACK)

JOIN = "join"
MASTER = "master"
PROMOTE = "promote"
FALLBACK = "fallback"
DONE = "done"
GONE = "gone"
PASS = "pass"
SESSION = "session"

#: Server event name -> annotation kind (pyatftpd multicast, pyslamd; docs/events.md).
EVENT_KINDS: dict[str, str] = {
    "mcast_join": JOIN,
    "client_joined": JOIN,
    "mcast_master": MASTER,
    "master": MASTER,
    "mcast_promote": PROMOTE,
    "multicast_not_received": FALLBACK,
    "mcast_declined": FALLBACK,
    "done": DONE,
    "client_left": DONE,
    "mcast_client_gone": GONE,
    "mcast_skip": GONE,
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


@dataclass(frozen=True)
class Annotation:
    t: float
    kind: str
    client: str | None
    label: str
    block: int | None = None


@dataclass
class Timeline:
    title: str
    origin: float  # Unix time of t = 0
    marks: list[Mark] = field(default_factory=list)
    annotations: list[Annotation] = field(default_factory=list)
    clients: list[str] = field(default_factory=list)
    blocks: int | None = None
    sources: list[str] = field(default_factory=list)

    def count(self, kind: str, client: str | None = None) -> int:
        return sum(1 for m in self.marks if m.kind == kind and (client is None or m.client == client))

    def of_kind(self, kind: str) -> list[Annotation]:
        return [a for a in self.annotations if a.kind == kind]


# --- events --------------------------------------------------------------------------------


def read_event_lines(path: Path) -> list[ServerEvent]:
    """A server's ``--events`` file; a broken line is skipped, never fatal."""
    return read_events(path)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _label(event: ServerEvent, kind: str, client: str | None) -> str:
    who = client or ""
    name = event["event"]
    if kind == JOIN:
        return f"join {who}" + (" (late)" if event.get("late") else "")
    if kind == MASTER:
        reason = event.get("reason")
        return f"master {who}" + (f" ({reason})" if reason else "")
    if kind == PROMOTE:
        return f"promoted {who}"
    if kind == FALLBACK:
        return f"unicast fallback {who}" if name == "multicast_not_received" else f"declined {who}"
    if kind == DONE:
        return f"done {who}"
    if kind == GONE:
        return f"{'skipped' if name == 'mcast_skip' else 'gone'} {who}"
    if kind == PASS:
        return f"pass from {event.get('block', '?')}"
    if name == "mcast_session_end":
        ratio = event.get("group_ratio")
        return "session end" + (f" (group {ratio}x)" if ratio is not None else "")
    return "session start"


def annotations_from_events(events: Iterable[ServerEvent], origin: float) -> list[Annotation]:
    """Joins, masters, promotions, fallbacks, ends: the story the server tells about the session."""
    out: list[Annotation] = []
    for event in events:
        kind = EVENT_KINDS.get(str(event["event"]))
        if kind is None:
            continue
        client = event.client_ip
        block = None
        for key in ("block", "from_block", "stream_block"):
            block = _int(event.get(key))
            if block is not None:
                break
        if kind == JOIN and block == 0:
            block = None  # "stream_block 0": nothing on the group yet, not a real position
        out.append(Annotation(event.ts - origin, kind, client, _label(event, kind, client), block))
    return out


def marks_from_events(events: Iterable[ServerEvent], origin: float) -> list[Mark]:
    """Per-block events (the unicast core's data/ack/retransmit): marks without a pcap."""
    unwrap = _Unwrapper()
    out: list[Mark] = []
    for event in events:
        kind = BLOCK_EVENTS.get(str(event["event"]))
        block = _int(event.get("block"))
        client = event.client_ip
        if kind is None or block is None:
            continue
        value = unwrap((kind == ACK, client), block)
        out.append(Mark(event.ts - origin, value, kind, client))
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


def marks_from_pcap(
    path: Path,
    server_ips: Sequence[str] = (SERVER_IPV4,),
    slam_ports: Sequence[int] = DEFAULT_SLAM_PORTS,
) -> list[tuple[float, Mark]]:
    """(Unix time, mark) per TFTP/SLAM packet: group DATA, unicast DATA, ACKs and NACKs.

    Only the 4-byte TFTP header and the SLAM header Ints are read, so a capture cut by a
    short snap length still gives every mark.
    """
    servers = set(server_ips)
    unwrap = _Unwrapper()
    out: list[tuple[float, Mark]] = []
    for d in datagrams(path):
        ts, src, dst, sport, dport, payload, to_group = (
            d.ts,
            d.src,
            d.dst,
            d.sport,
            d.dport,
            d.payload,
            d.to_group,
        )
        if src in servers and to_group:
            if payload[:2] == b"\x00\x03" and len(payload) >= 4:
                block = unwrap(("g", sport, dst, dport), struct.unpack_from("!H", payload, 2)[0])
                out.append((ts, Mark(0.0, block, GROUP_DATA, None, sport)))
            elif sport in slam_ports or dport in slam_ports:
                ints = _slam_ints(payload, 4)
                if ints is not None:
                    out.append((ts, Mark(0.0, ints[3], GROUP_DATA, None, sport)))
        elif src in servers and dst not in servers:
            if sport not in slam_ports and payload[:2] == b"\x00\x03" and len(payload) >= 4:
                block = unwrap(("u", sport, dst), struct.unpack_from("!H", payload, 2)[0])
                out.append((ts, Mark(0.0, block, UNICAST_DATA, dst, sport)))
        elif dst in servers and src not in servers:
            if dport in slam_ports:
                ints = _slam_ints(payload, 1)
                if ints is not None and payload != b"\x00":
                    out.append((ts, Mark(0.0, ints[0], NACK, src, dport)))
            elif payload[:2] == b"\x00\x04" and len(payload) >= 4:
                block = unwrap(("a", src, dport), struct.unpack_from("!H", payload, 2)[0])
                out.append((ts, Mark(0.0, block, ACK, src, dport)))
            elif payload[:2] == b"\x00\x01":
                out.append((ts, Mark(0.0, 0, RRQ, src, dport)))
    return out


# --- the timeline --------------------------------------------------------------------------


def _title(events: Sequence[ServerEvent], pcap: Path | None = None) -> str:
    for event in events:
        if event["event"] == "mcast_session_start":
            mode = event.get("mode", "multicast")
            where = event.get("group", "?")
            return f"{event.get('file', '?')} by {mode} on {where} ({event.get('bytes', '?')} B)"
        if event["event"] == "transaction":
            return f"SLAM transaction {event.get('session', '?')} ({event.get('bytes', '?')} B)"
    return f"capture {pcap.name}" if pcap is not None else "session timeline"


def session_files(events: Iterable[Mapping[str, Any]]) -> list[str]:
    """Files that had a multicast session, in the order the sessions started."""
    files: list[str] = []
    for event in events:
        name = event.get("file")
        if event["event"] == "mcast_session_start" and isinstance(name, str) and name not in files:
            files.append(name)
    return files


def _session_window(events: Sequence[ServerEvent], file: str) -> tuple[float, float]:
    mine = [e.ts for e in events if e.get("file") == file]
    starts = [e.ts for e in events if e.get("file") == file and e.event == "mcast_session_start"]
    ends = [e.ts for e in events if e.get("file") == file and e.event == "mcast_session_end"]
    return (min(starts or mine) - 1.0, max(ends or mine) + 1.0)


def _in_window(stamped: list[tuple[float, Mark]], window: tuple[float, float]) -> list[tuple[float, Mark]]:
    """Packets of the session in ``window``: inside it, on a server port first used inside it.

    MTFTP puts every file on iPXE's one group, and a session that started earlier may
    still be streaming; its server port was already in use before the window, so its
    packets are left out.
    """
    first_seen: dict[int | None, float] = {}
    for ts, mark in stamped:
        first_seen.setdefault(mark.port, ts)
    return [
        (ts, m) for ts, m in stamped
        if window[0] <= ts <= window[1] and (m.kind == RRQ or first_seen[m.port] >= window[0])
    ]  # fmt: skip


def build_timeline(
    events_path: Path | None,
    pcap_path: Path | None = None,
    server_ips: Sequence[str] = (SERVER_IPV4,),
    slam_ports: Sequence[int] = DEFAULT_SLAM_PORTS,
    file: str | None = None,
) -> Timeline:
    """Marks and annotations of one test, on a common clock starting at its first record.

    Unicast transfers of other files (boot scripts) are left out when the events hold a
    multicast session.  With ``file``, only that file's session: its events, and the
    packets from one second before its start to one second after its end (MTFTP puts
    every file on the same group, so the packets are told apart by time).  A pcap that
    cannot be read is noted in ``sources`` and the events alone are used.
    """
    events = read_event_lines(events_path) if events_path is not None and events_path.is_file() else []
    events.sort(key=lambda e: e.ts)
    window: tuple[float, float] | None = None
    multicast_files = session_files(events)
    if file is not None:
        if file not in multicast_files:
            raise ValueError(f"no multicast session for {file!r} in the events (sessions: {multicast_files})")
        window = _session_window(events, file)
        events = [e for e in events if e.get("file", file) == file]
    elif multicast_files:
        events = [e for e in events if e.get("file", multicast_files[0]) in multicast_files]
    stamped: list[tuple[float, Mark]] = []
    sources: list[str] = []
    if events:
        sources.append("events")
    if pcap_path is not None and not pcap_path.is_file():
        sources.append("no pcap")
    elif pcap_path is not None:
        try:
            stamped = marks_from_pcap(pcap_path, server_ips, slam_ports)
            if window is not None:
                stamped = _in_window(stamped, window)
            sources.append("pcap")
        except (OSError, ValueError) as exc:
            sources.append(f"pcap unreadable ({type(exc).__name__})")
    starts = [e.ts for e in events] + [min((ts for ts, _ in stamped), default=float("inf"))]
    starts = [t for t in starts if t != float("inf")]
    origin = min(starts) if starts else 0.0
    marks = [Mark(ts - origin, m.block, m.kind, m.client, m.port) for ts, m in stamped if m.kind != RRQ]
    if not marks:
        marks = marks_from_events(events, origin)
    annotations = annotations_from_events(events, origin)
    if not events:  # no server story (e.g. the reference atftpd): the RRQs on the wire are the joins
        annotations = _joins_from_requests([(ts - origin, m) for ts, m in stamped if m.kind == RRQ], marks)
    clients: list[str] = []
    for client in [a.client for a in annotations] + [m.client for m in marks]:
        if client and client not in clients:
            clients.append(client)
    blocks = next((_int(e.get("blocks")) for e in events if e["event"] == "mcast_session_start"), None)
    if blocks is None and marks:
        blocks = max(m.block for m in marks)
    return Timeline(_title(events, pcap_path), origin, marks, annotations, clients, blocks, sources)


def _joins_from_requests(requests: list[tuple[float, Mark]], marks: list[Mark]) -> list[Annotation]:
    """One join per client at its first RRQ of each burst, placed at the group's block of that moment."""
    group = [m for m in marks if m.kind == GROUP_DATA]
    out: list[Annotation] = []
    last: dict[str | None, float] = {}
    for t, mark in requests:
        previous = last.get(mark.client)
        last[mark.client] = t
        if previous is not None and t - previous < 5.0:
            continue  # a retransmitted or follow-up request, not a new join
        before = [g for g in group if g.t <= t]
        block = max(before, key=lambda g: g.t).block if before else None
        out.append(Annotation(t, JOIN, mark.client, f"RRQ {mark.client}", block))
    return out


def progress_segments(timeline: Timeline) -> dict[str, tuple[tuple[float, int], tuple[float, int]]]:
    """Per client with no per-block marks: (join time, join block) -> (end time, last block).

    This is what the events alone say about a non-master: it listened from its join to its
    ``done``; the line is drawn dashed so it is not mistaken for packets.
    """
    with_marks = {m.client for m in timeline.marks if m.client}
    out: dict[str, tuple[tuple[float, int], tuple[float, int]]] = {}
    for client in timeline.clients:
        if client in with_marks:
            continue
        mine = [a for a in timeline.annotations if a.client == client]
        join = next((a for a in mine if a.kind == JOIN), None)
        end = next((a for a in reversed(mine) if a.kind in (DONE, GONE)), None)
        if join is None or end is None:
            continue
        last = timeline.blocks if end.kind == DONE and timeline.blocks else (end.block or 0)
        out[client] = ((join.t, join.block or 0), (end.t, last))
    return out


# --- drawing -------------------------------------------------------------------------------

_KIND_STYLE: dict[str, tuple[str, int]] = {
    JOIN: (">", 90),
    MASTER: ("*", 150),
    PROMOTE: ("P", 110),
    FALLBACK: ("X", 150),
    DONE: ("s", 70),
    GONE: ("x", 90),
}


def draw_timeline(timeline: Timeline, out: Path, dpi: int = 110) -> Path:
    """Write the PNG (matplotlib, Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(13, 7), dpi=dpi)
    palette = plt.get_cmap("tab10")
    colour = {c: palette(i % 10) for i, c in enumerate(timeline.clients)}

    _draw_marks(ax, timeline, colour)
    top = _draw_annotations(ax, timeline, colour)
    for kind, (marker, _) in _KIND_STYLE.items():  # legend entries for the annotation shapes
        if timeline.of_kind(kind):
            look: dict[str, Any] = {"color": "black"}
            if marker != "x":
                look = {"color": "white", "edgecolors": "black"}
            ax.scatter([], [], marker=marker, s=40, label=kind, **look)
    ax.set_xlabel("seconds since the first record")
    ax.set_ylabel("block number")
    ax.set_ylim(bottom=0, top=top * 1.08 + 1)
    ax.set_xlim(left=0)
    ax.grid(True, linewidth=0.3, alpha=0.5)
    sources = " + ".join(timeline.sources) or "no data"
    ax.set_title(f"{timeline.title}\n{len(timeline.clients)} clients; from {sources}", fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7.5, markerscale=1.5, frameon=False)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def _draw_marks(ax: Any, timeline: Timeline, colour: dict[str, Any]) -> None:
    """One dot per packet: group DATA in grey, each client's unicast DATA, ACKs and NACKs in its colour."""
    group = [m for m in timeline.marks if m.kind == GROUP_DATA]
    if group:
        ax.scatter([m.t for m in group], [m.block for m in group], s=4, c="0.2", marker=".",
                   linewidths=0, rasterized=True, label=f"group DATA ({len(group)})", zorder=3)  # fmt: skip
    for client in timeline.clients:
        for kind, marker, size, text in (
            (UNICAST_DATA, "o", 9, "unicast DATA to"),
            (ACK, "|", 30, "ACKs from"),
            (NACK, "v", 22, "NACKs from"),
        ):
            pts = [m for m in timeline.marks if m.kind == kind and m.client == client]
            if not pts:
                continue
            ax.scatter([m.t for m in pts], [m.block for m in pts], s=size, marker=marker,
                       color=colour[client], alpha=0.35 if kind == UNICAST_DATA else 0.8,
                       linewidths=0.8 if marker == "|" else 0, rasterized=True,
                       label=f"{text} {client} ({len(pts)})", zorder=2)  # fmt: skip
    for client, ((t0, b0), (t1, b1)) in progress_segments(timeline).items():
        ax.plot([t0, t1], [b0, b1], linestyle="--", color=colour[client], linewidth=1.2,
                label=f"{client} listening (from events)", zorder=2)  # fmt: skip


def _draw_annotations(ax: Any, timeline: Timeline, colour: dict[str, Any]) -> int:
    """The server's story (joins, masters, fallbacks, ends) as labelled shapes; returns the top block."""
    top = max([m.block for m in timeline.marks] + [timeline.blocks or 0, 1])
    labelled: set[str] = set()
    for note in timeline.annotations:
        if note.kind == SESSION or note.kind == PASS:
            ax.axvline(note.t, color="0.3", linestyle=":", linewidth=0.8, zorder=0)
            ax.text(note.t, 0.02, note.label, transform=ax.get_xaxis_transform(), rotation=90,
                    ha="right", va="bottom", fontsize=7, color="0.25")  # fmt: skip
            continue
        y = note.block if note.block is not None else _block_near(timeline, note)
        if note.kind == DONE and note.block is None and timeline.blocks:
            y = timeline.blocks
        marker, size = _KIND_STYLE[note.kind]
        face = "red" if note.kind == FALLBACK else colour.get(note.client or "", "black")
        edge: dict[str, Any] = {} if marker == "x" else {"edgecolors": "black"}
        ax.scatter([note.t], [y], marker=marker, s=size, color=face, linewidths=0.6, zorder=4, **edge)
        if note.label in labelled:
            continue  # the same words again (a retried promotion): the shape is enough
        labelled.add(note.label)
        lift = 6 + 9 * (len(labelled) % 6)
        ax.annotate(note.label, (note.t, y), xytext=(6, lift), textcoords="offset points",
                    fontsize=7.5, color="darkred" if note.kind == FALLBACK else "black",
                    arrowprops={"arrowstyle": "-", "color": "0.6", "linewidth": 0.5}, zorder=5)  # fmt: skip
    return top


def _block_near(timeline: Timeline, note: Annotation) -> int:
    """Where to put an annotation without a block: a sibling event's block, else the client's last mark."""
    for other in timeline.annotations:
        if other.client == note.client and other.block is not None and abs(other.t - note.t) < 0.05:
            return other.block
    mine = [m for m in timeline.marks if m.client == note.client and m.t <= note.t]
    if mine:
        return max(mine, key=lambda m: m.t).block
    return 0


def write_timeline(
    events_path: Path | None,
    pcap_path: Path | None,
    out: Path,
    server_ips: Sequence[str] = (SERVER_IPV4,),
    file: str | None = None,
) -> Timeline:
    """Build and draw; returns the timeline (its counts go into reports)."""
    timeline = build_timeline(events_path, pcap_path, server_ips, file=file)
    draw_timeline(timeline, out)
    return timeline


def draw_pictures(directory: Path) -> tuple[list[Path], str | None]:
    """:func:`timeline_for_artifacts` that never raises: (pictures, why none, or None).

    Why: a picture is a reading aid; a plotting error (or matplotlib missing) must never
    hide a boot's or a train's verdict, so every caller records the error instead.
    """
    try:
        return timeline_for_artifacts(directory), None
    except Exception as exc:  # noqa: BLE001 - see the docstring
        return [], f"timeline not drawn: {exc}"


def timeline_for_artifacts(directory: Path) -> list[Path]:
    """Draw the pictures of a test's artifacts: one per multicast session.

    Looks for ``*events.jsonl`` (the server's events) and a pcap (``br0.pcap`` first).
    One session gives ``timeline.png``; several (a kernel and an initrd) give
    ``timeline-<file>.png`` each.  A unicast-only test gives nothing.
    """
    events = sorted(directory.rglob("*events.jsonl"))
    pcaps = sorted(directory.rglob("*.pcap"), key=lambda p: (p.name != "br0.pcap", str(p)))
    multicast = [e for e in events if _has_multicast(e)]
    pcap = pcaps[0] if pcaps else None
    if not multicast:
        # A server without JSON events (Debian's atftpd): the capture alone, if it holds
        # group traffic.
        if pcap is None or not _pcap_has_group_data(pcap):
            return []
        write_timeline(None, pcap, directory / "timeline.png")
        return [directory / "timeline.png"]
    files = session_files(read_event_lines(multicast[0]))
    if len(files) <= 1:
        write_timeline(multicast[0], pcap, directory / "timeline.png")
        return [directory / "timeline.png"]
    out = []
    for name in files:
        target = directory / f"timeline-{re.sub(r'[^A-Za-z0-9._-]', '_', name)}.png"
        write_timeline(multicast[0], pcap, target, file=name)
        out.append(target)
    return out


def _pcap_has_group_data(path: Path) -> bool:
    return any(d.to_group for d in datagrams(path))


def _has_multicast(path: Path) -> bool:
    return any(
        e["event"] in ("mcast_session_start", "mcast_join", "client_joined", "transaction")
        for e in read_event_lines(path)
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="draw a multicast session timeline (PNG)")
    parser.add_argument("events", type=Path, nargs="?", help="the server's --events file (JSON lines)")
    parser.add_argument("--pcap", type=Path, default=None, help="capture on the bridge (optional)")
    parser.add_argument("--server", action="append", help=f"server IP (repeatable; default {SERVER_IPV4})")
    parser.add_argument("--file", default=None, help="only this file's multicast session")
    parser.add_argument("-o", "--output", type=Path, default=Path("timeline.png"))
    args = parser.parse_args(argv)
    if args.events is not None and not args.events.is_file():
        print(f"lab.timeline: no events file {args.events}", file=sys.stderr)
        return 2
    if args.events is None and args.pcap is None:
        print("lab.timeline: give an events file, a --pcap, or both", file=sys.stderr)
        return 2
    try:
        timeline = write_timeline(args.events, args.pcap, args.output, tuple(args.server or (SERVER_IPV4,)),
                                  file=args.file)  # fmt: skip
    except ValueError as exc:
        print(f"lab.timeline: {exc}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{k} {timeline.count(k)}" for k in MARK_KINDS)
    sources = " + ".join(timeline.sources)
    print(f"{args.output}: {counts}; {len(timeline.annotations)} annotations; from {sources}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
