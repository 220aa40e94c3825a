"""One session's timeline from its sources, and what the picture makes of it (no pixels).

Why here: which packets belong to a session, where the end-of-pass repairs start, and
which numbered note says what are decisions a test can check without looking at a PNG.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.model.network import SERVER_IPV4
from lab.report.timeline_model import (
    DATA_KINDS,
    DEFAULT_SLAM_PORTS,
    DONE,
    FAILURE,
    GONE,
    GROUP_DATA,
    JOIN,
    LINE_KINDS,
    REFUSED,
    REQUEST_KINDS,
    RRQ_MULTICAST,
    TROUBLE_KINDS,
    Annotation,
    Failure,
    Mark,
    Timeline,
    annotations_from_events,
    int_field,
    marks_from_events,
    marks_from_pcap,
    read_event_lines,
)
from netboot.events import ServerEvent

#: A repair phase longer than this share of the session needs no zoom panel.
MOST_OF_THE_SESSION = 0.6
#: Requests from one client less than this far apart are one join (retries, follow-ups).
SAME_JOIN_SECONDS = 5.0


def _title(events: Sequence[ServerEvent], pcap: Path | None = None, files: Sequence[str] = ()) -> str:
    for event in events:
        if event["event"] == "mcast_session_start":
            mode = event.get("mode", "multicast")
            where = event.get("group", "?")
            return f"{event.get('file', '?')} by {mode} on {where} ({event.get('bytes', '?')} B)"
        if event["event"] == "transaction":
            return f"SLAM transaction {event.get('session', '?')} ({event.get('bytes', '?')} B)"
    what = f"{', '.join(files)}: " if files else ""
    return f"{what}capture {pcap.name}" if pcap is not None else f"{what}session timeline"


def session_files(events: Iterable[Mapping[str, Any]]) -> list[str]:
    """Files that had a multicast session, in the order the sessions started (or were joined).

    A join counts too: one VM's share of a train's events starts after the session did.
    """
    files: list[str] = []
    for event in events:
        name = event.get("file")
        if (
            event["event"] in ("mcast_session_start", "mcast_join")
            and isinstance(name, str)
            and name not in files
        ):
            files.append(name)
    return files


def session_window(events: Sequence[ServerEvent], file: str) -> tuple[float, float]:
    """Unix times from one second before ``file``'s session to one second after its end."""
    mine = [e.ts for e in events if e.get("file") == file]
    starts = [e.ts for e in events if e.get("file") == file and e.event == "mcast_session_start"]
    ends = [e.ts for e in events if e.get("file") == file and e.event == "mcast_session_end"]
    return (min(starts or mine) - 1.0, max(ends or mine) + 1.0)


def next_session_start(events: Sequence[ServerEvent], file: str) -> float | None:
    """When the next other file's session started after ``file``'s (None: none did)."""
    starts = [e.ts for e in events if e.get("file") == file and e.event == "mcast_session_start"]
    if not starts:
        return None
    others = [e for e in events if e.event == "mcast_session_start" and e.get("file") != file]
    return min((e.ts for e in others if e.ts > min(starts)), default=None)


def _in_window(
    stamped: list[tuple[float, Mark]], window: tuple[float, float], later: float | None = None
) -> list[tuple[float, Mark]]:
    """Packets of the session in ``window``: inside it, on a server port first used inside it.

    MTFTP puts every file on iPXE's one group, and a session that started earlier may
    still be streaming; its server port was already in use before the window, so its
    packets are left out.  A session that starts ``later`` (an initrd's, while the
    kernel's clients still get their unicast tails) is on a port first used after that
    start: left out too.
    """
    first_seen: dict[int | None, float] = {}
    for ts, mark in stamped:
        first_seen.setdefault(mark.port, ts)

    def ours(mark: Mark) -> bool:
        first = first_seen[mark.port]
        return mark.kind in REQUEST_KINDS or (first >= window[0] and (later is None or first < later))

    return [(ts, m) for ts, m in stamped if window[0] <= ts <= window[1] and ours(m)]


def _of_files(stamped: list[tuple[float, Mark]], files: Sequence[str]) -> list[tuple[float, Mark]]:
    """Drop the packets of transfers of other files (boot script, verifier); keep unknown ones."""
    if not files:
        return stamped
    return [(ts, m) for ts, m in stamped if m.file is None or m.file in files]


def _read_pcap(
    pcap_path: Path | None, server_ips: Sequence[str], slam_ports: Sequence[int], sources: list[str]
) -> list[tuple[float, Mark]]:
    if pcap_path is None:
        return []
    if not pcap_path.is_file():
        sources.append("no pcap")
        return []
    try:
        stamped = marks_from_pcap(pcap_path, server_ips, slam_ports)
    except (OSError, ValueError) as exc:
        sources.append(f"pcap unreadable ({type(exc).__name__})")
        return []
    sources.append("pcap")
    return stamped


def _session_events(events: list[ServerEvent], file: str | None) -> tuple[list[ServerEvent], list[str]]:
    """The events of the picture's session(s) and the session files (checked against ``file``)."""
    multicast_files = session_files(events)
    if file is not None:
        if file not in multicast_files:
            raise ValueError(f"no multicast session for {file!r} in the events (sessions: {multicast_files})")
        return [e for e in events if e.get("file", file) == file], [file]
    if multicast_files:
        return [e for e in events if e.get("file", multicast_files[0]) in multicast_files], multicast_files
    return events, []


def build_timeline(
    events_path: Path | None,
    pcap_path: Path | None = None,
    server_ips: Sequence[str] = (SERVER_IPV4,),
    slam_ports: Sequence[int] = DEFAULT_SLAM_PORTS,
    file: str | None = None,
    names: Mapping[str, str] | None = None,
    failures: Sequence[Failure] = (),
) -> Timeline:
    """Marks and annotations of one test, on a common clock starting at its first record.

    Unicast transfers of other files (boot scripts) are left out when the events hold a
    multicast session, or (capture alone) when a request asked for multicast.  With
    ``file``, only that file's session: its events, and the packets from one second before
    its start to one second after its end (MTFTP puts every file on the same group, so the
    packets are told apart by time).  A pcap that cannot be read is noted in ``sources``
    and the events alone are used.  ``names`` name the clients; ``failures`` are drawn
    as the caller gives them (choosing which failures belong to which session is
    :func:`failures_for_session`'s job).
    """
    every = read_event_lines(events_path) if events_path is not None and events_path.is_file() else []
    every.sort(key=lambda e: e.ts)
    events, files = _session_events(every, file)
    sources: list[str] = ["events"] if events else []
    stamped = _read_pcap(pcap_path, server_ips, slam_ports, sources)
    if file is not None:
        stamped = _in_window(stamped, session_window(every, file), next_session_start(every, file))
    if not files:
        files = sorted({m.file for _, m in stamped if m.kind == RRQ_MULTICAST and m.file})
    stamped = _of_files(stamped, files)
    times = [e.ts for e in events if e.ts > 0] + [ts for ts, _ in stamped]
    origin = min(times or [f.at for f in failures if f.at is not None] or [0.0])
    marks = [Mark(ts - origin, m.block, m.kind, m.client, m.port, m.file) for ts, m in stamped
             if m.kind not in REQUEST_KINDS]  # fmt: skip
    if not marks:
        marks = marks_from_events(events, origin)
    annotations = annotations_from_events(events, origin, names)
    if not events:  # no server story (e.g. the reference atftpd): the requests on the wire are the joins
        requests = [(ts - origin, m) for ts, m in stamped if m.kind in REQUEST_KINDS]
        annotations = _joins_from_requests(requests, marks, names or {})
    line = Timeline(
        _title(events, pcap_path, files), origin, marks, annotations, [], None, sources, dict(names or {})
    )
    line.annotations += [failure_note(line, f) for f in failures]
    line.annotations.sort(key=lambda a: a.t)
    line.clients = _clients(line)
    line.blocks = next(
        (int_field(e.get("blocks")) for e in events if e["event"] == "mcast_session_start"), None
    )
    if line.blocks is None and marks:
        line.blocks = max(m.block for m in marks)
    ratios = [e.get("group_ratio") for e in events if e.event == "mcast_session_end"]
    line.group_ratio = next((float(r) for r in reversed(ratios) if isinstance(r, int | float)), None)
    return line


def _clients(line: Timeline) -> list[str]:
    clients: list[str] = []
    for client in [a.client for a in line.annotations] + [m.client for m in line.marks]:
        if client and client not in clients:
            clients.append(client)
    return clients


def _joins_from_requests(
    requests: list[tuple[float, Mark]], marks: list[Mark], names: Mapping[str, str]
) -> list[Annotation]:
    """One join per client at its first request of each burst, placed at the group's block then.

    A plain request (port 69, no multicast option) for the session's file is told apart:
    with MTFTP it is iPXE's fallback to plain TFTP.
    """
    group = [m for m in marks if m.kind == GROUP_DATA]
    out: list[Annotation] = []
    last: dict[tuple[str | None, str], float] = {}
    for t, mark in requests:
        previous = last.get((mark.client, mark.kind))
        last[(mark.client, mark.kind)] = t
        if previous is not None and t - previous < SAME_JOIN_SECONDS:
            continue  # a retransmitted or follow-up request, not a new join
        before = [g for g in group if g.t <= t]
        block = max(before, key=lambda g: g.t).block if before else None
        who = names.get(mark.client or "", mark.client or "?")
        label = f"RRQ {who}" if mark.kind == RRQ_MULTICAST else f"plain-TFTP RRQ {who}"
        out.append(Annotation(t, JOIN, mark.client, label, block))
    return out


# --- failures ------------------------------------------------------------------------------


def block_near(line: Timeline, note: Annotation) -> int:
    """Where to put an annotation without a block: a sibling event's block, else the client's
    block by then, else 0."""
    if note.block is not None:
        return note.block
    if note.kind == DONE and line.blocks:
        return line.blocks
    for other in line.annotations:
        if other.client == note.client and other.block is not None and abs(other.t - note.t) < 0.05:
            return other.block
    return client_block_at(line, note.client, note.t) or 0


def client_block_at(line: Timeline, client: str | None, t: float) -> int | None:
    """The block a client was at by ``t``: its last mark, else the group's, else None."""
    mine = [m for m in line.marks if m.client == client and m.t <= t]
    if mine:
        return max(mine, key=lambda m: m.t).block
    group = [m for m in line.marks if m.kind == GROUP_DATA and m.t <= t]
    return max(group, key=lambda m: m.t).block if group else None


def failure_note(line: Timeline, failure: Failure) -> Annotation:
    """The caller's failure on the timeline's clock; without a time, at the client's last record."""
    who = line.name(failure.client)
    label = f"{who}: {failure.reason}" if who else failure.reason
    if failure.at is not None:
        t = failure.at - line.origin
        return Annotation(t, FAILURE, failure.client, label, client_block_at(line, failure.client, t))
    mine = [m.t for m in line.marks if m.client == failure.client]
    mine += [a.t for a in line.annotations if a.client == failure.client]
    t = max(mine) if mine else line.end()
    label += " (time unknown: drawn at its last record)"
    return Annotation(t, FAILURE, failure.client, label, client_block_at(line, failure.client, t), False)


def failures_for_session(
    failures: Sequence[Failure], windows: Sequence[tuple[float, float]], index: int
) -> list[Failure]:
    """The failures that belong to session ``index`` of ``windows`` (Unix (start, end), in order).

    A failure belongs to the session whose window holds it, else to the last session that
    started before it (a kernel that panicked after both files came), else to the first.
    A failure without a time belongs to the last session.
    """
    out = []
    for failure in failures:
        if failure.at is None:
            home = len(windows) - 1
        else:
            inside = [i for i, (a, b) in enumerate(windows) if a <= failure.at <= b]
            before = [i for i, (a, _) in enumerate(windows) if a <= failure.at]
            home = inside[0] if inside else before[-1] if before else 0
        if home == index:
            out.append(failure)
    return out


# --- what the picture makes of it ----------------------------------------------------------


@dataclass(frozen=True)
class RepairWindow:
    """The end of the pass, where repairs happen: (start, end) in timeline seconds, or why none."""

    start: float | None
    end: float | None
    why: str


def repair_window(line: Timeline) -> RepairWindow:
    """From just before the stream first reached the last block to the last record after it.

    Why from the first time the last block was sent: whatever DATA comes after it (a
    second pass for late joiners, unicast tails, repairs of lost blocks) is the repair
    phase, and it is often a second or two at the end of a minutes-long session, a few
    pixels wide on the main panel.
    """
    data = [m for m in line.marks if m.kind in DATA_KINDS]
    top = line.blocks or max((m.block for m in data), default=0)
    reached = [m.t for m in data if m.block >= top]
    if not data or not reached:
        return RepairWindow(None, None, "the stream never reached the last block: no repair phase")
    first_top = min(reached)
    after = [m.t for m in data if m.t > first_top]
    if not after:
        return RepairWindow(None, None, "no repairs after the first pass")
    last = max(after + [a.t for a in line.annotations if a.t > first_top and a.kind not in LINE_KINDS])
    width = last - first_top
    span = max(line.end(), 1e-3)
    start = max(first_top - max(0.15 * width, 0.001 * span), min(m.t for m in data))
    end = last + max(0.05 * width, 0.001 * span)
    what = f"{len(after)} DATA after the first pass reached block {top} at {first_top:.2f} s"
    whole = max(span - min(m.t for m in data), 1e-3)
    if (end - start) / whole > MOST_OF_THE_SESSION:
        return RepairWindow(None, None, f"the repeats after the stream first reached block {top} "
                                        f"({first_top:.2f} s) fill most of the session")  # fmt: skip
    return RepairWindow(start, end, what)


@dataclass(frozen=True)
class Note:
    """One numbered line of the picture's list: one or more annotations with the same words."""

    number: int
    kind: str
    client: str | None
    label: str
    times: tuple[float, ...]
    block: int | None
    timed: bool = True

    @property
    def trouble(self) -> bool:
        return self.kind in TROUBLE_KINDS

    def text(self) -> str:
        if len(self.times) == 1:
            when = f"{self.times[0]:.2f} s"
        else:
            when = f"{len(self.times)}x, {self.times[0]:.2f}-{self.times[-1]:.2f} s"
        where = f", block {self.block}" if self.block is not None and self.kind not in (DONE, FAILURE) else ""
        return f"{self.label} ({when}{where})"


def numbered_notes(line: Timeline) -> list[Note]:
    """The annotations as numbered notes in time order; the same words again share a number.

    Why shared numbers: a master retried ten times, or the same client skipped again and
    again, is one fact for the reader; its shapes stay on the plot, its words once in the list.
    """
    groups: dict[tuple[str, str | None, str], list[Annotation]] = {}
    for note in sorted(line.annotations, key=lambda a: a.t):
        if note.kind in LINE_KINDS:
            continue
        groups.setdefault((note.kind, note.client, note.label), []).append(note)
    ordered = sorted(groups.values(), key=lambda g: g[0].t)
    return [
        Note(i + 1, g[0].kind, g[0].client, g[0].label, tuple(a.t for a in g), g[0].block, g[0].timed)
        for i, g in enumerate(ordered)
    ]


def note_of(notes: Sequence[Note], note: Annotation) -> Note | None:
    """The numbered note an annotation belongs to."""
    for candidate in notes:
        if (candidate.kind, candidate.client, candidate.label) == (note.kind, note.client, note.label):
            return candidate
    return None


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
        end = next((a for a in reversed(mine) if a.kind in (DONE, GONE, REFUSED)), None)
        if join is None or end is None or (end.kind != DONE and end.block is None):
            continue  # given up where? The events do not say: no line rather than a wrong one
        last = timeline.blocks if end.kind == DONE and timeline.blocks else (end.block or 0)
        out[client] = ((join.t, join.block or 0), (end.t, last))
    return out
