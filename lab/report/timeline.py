"""A picture of one multicast session: time across, block number up, one colour per client.

Why: whether a train shared the stream, where a late VM joined, when the server gave up
on the group and fell back to unicast, how the blocks were repaired, and where a VM
failed are hard to see in counts but obvious in a plot.  Each multicast boot and train
gets ``timeline.png`` beside its evidence; docs/timeline.md explains how to read it.

The parts: :mod:`~lab.report.timeline_model` (marks and the server's story from the
events and the capture), :mod:`~lab.report.timeline_build` (one session's timeline, its
repair window and numbered notes), :mod:`~lab.report.timeline_draw` (the page),
:mod:`~lab.report.timeline_inputs` (the names and failures the run layer passes).  This
module is the entry: :func:`draw_pictures` for the run layer, and a command line::

    python -m lab.report.timeline [EVENTS] [--pcap P] [--name IP=NAME] [--failure IP@UNIX:WHY] -o PNG
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from lab.model.network import SERVER_IPV4
from lab.report.timeline_build import (
    RepairWindow,
    block_near,
    build_timeline,
    failures_for_session,
    numbered_notes,
    progress_segments,
    repair_window,
    session_files,
    session_window,
)
from lab.report.timeline_draw import draw_timeline, render_timeline
from lab.report.timeline_model import (
    ACK,
    DONE,
    FAILURE,
    FALLBACK,
    GONE,
    GROUP_DATA,
    JOIN,
    MARK_KINDS,
    MASTER,
    NACK,
    PROMOTE,
    REFUSED,
    TAIL,
    UNICAST_DATA,
    Annotation,
    Failure,
    Mark,
    Timeline,
    read_event_lines,
)
from lab.wire.frames import datagrams

__all__ = [
    "ACK", "DONE", "FAILURE", "FALLBACK", "GONE", "GROUP_DATA", "JOIN", "MASTER", "NACK", "PROMOTE",
    "REFUSED", "TAIL", "UNICAST_DATA", "Annotation", "Failure", "Mark", "RepairWindow", "Timeline",
    "block_near", "build_timeline", "draw_pictures", "draw_timeline", "failures_for_session",
    "numbered_notes", "parse_failure", "progress_segments", "render_timeline", "repair_window",
    "timeline_for_artifacts", "write_timeline",
]  # fmt: skip


def write_timeline(
    events_path: Path | None,
    pcap_path: Path | None,
    out: Path,
    server_ips: Sequence[str] = (SERVER_IPV4,),
    file: str | None = None,
    names: Mapping[str, str] | None = None,
    failures: Sequence[Failure] = (),
) -> Timeline:
    """Build and draw; returns the timeline (its counts go into reports)."""
    timeline = build_timeline(events_path, pcap_path, server_ips, file=file, names=names, failures=failures)
    draw_timeline(timeline, out)
    return timeline


def draw_pictures(
    directory: Path, *, names: Mapping[str, str] | None = None, failures: Sequence[Failure] = ()
) -> tuple[list[Path], str | None]:
    """:func:`timeline_for_artifacts` that never raises: (pictures, why none, or None).

    ``names``: client IP -> what the picture calls it ("vmxnet3 (lossy 5 %) 192.0.2.103");
    ``failures``: what the caller knows went wrong, each drawn at its time
    (:mod:`lab.report.timeline_inputs` makes both from a boot's or a train's results).

    Why it never raises: a picture is a reading aid; a plotting error (or matplotlib
    missing) must never hide a boot's or a train's verdict, so every caller records the
    error instead.
    """
    try:
        return timeline_for_artifacts(directory, names=names, failures=failures), None
    except Exception as exc:  # noqa: BLE001 - see the docstring
        return [], f"timeline not drawn: {type(exc).__name__}: {exc}"


def timeline_for_artifacts(
    directory: Path, names: Mapping[str, str] | None = None, failures: Sequence[Failure] = ()
) -> list[Path]:
    """Draw the pictures of a test's artifacts: one per multicast session.

    Looks for ``*events.jsonl`` (the server's events) and a pcap (``br0.pcap`` first).
    One session gives ``timeline.png``; several (a kernel and an initrd) give
    ``timeline-<file>.png`` each, and each failure goes to the session it happened in.
    A unicast-only test gives nothing.
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
        write_timeline(None, pcap, directory / "timeline.png", names=names, failures=failures)
        return [directory / "timeline.png"]
    server_events = read_event_lines(multicast[0])
    files = session_files(server_events)
    if len(files) <= 1:
        write_timeline(multicast[0], pcap, directory / "timeline.png", names=names, failures=failures)
        return [directory / "timeline.png"]
    windows = [session_window(server_events, name) for name in files]
    out = []
    for index, name in enumerate(files):
        target = directory / f"timeline-{re.sub(r'[^A-Za-z0-9._-]', '_', name)}.png"
        mine = failures_for_session(failures, windows, index)
        write_timeline(multicast[0], pcap, target, file=name, names=names, failures=mine)
        out.append(target)
    return out


def _pcap_has_group_data(path: Path) -> bool:
    return any(d.to_group for d in datagrams(path))


def _has_multicast(path: Path) -> bool:
    return any(
        e["event"] in ("mcast_session_start", "mcast_join", "client_joined", "transaction")
        for e in read_event_lines(path)
    )


def parse_failure(text: str) -> Failure:
    """``IP@UNIX:REASON`` (``?`` for an unknown time) as a :class:`Failure`."""
    match = re.fullmatch(r"([^@]+)@([^:]+):(.*)", text, re.S)
    if match is None:
        raise ValueError(f"not IP@UNIX:WHY: {text!r}")
    client, at, reason = match.groups()
    return Failure(client, None if at == "?" else float(at), reason)


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="draw a multicast session timeline (PNG)")
    parser.add_argument("events", type=Path, nargs="?", help="the server's --events file (JSON lines)")
    parser.add_argument("--pcap", type=Path, default=None, help="capture on the bridge (optional)")
    parser.add_argument("--server", action="append", help=f"server IP (repeatable; default {SERVER_IPV4})")
    parser.add_argument("--file", default=None, help="only this file's multicast session")
    parser.add_argument(
        "--name",
        action="append",
        default=[],
        metavar="IP=NAME",
        help="what to call a client, e.g. '192.0.2.103=vmxnet3 192.0.2.103' (repeatable)",
    )
    parser.add_argument("--failure", action="append", default=[], metavar="IP@UNIX:WHY",
                        help="a failure to draw at Unix time UNIX ('?': unknown), e.g. "
                             "'192.0.2.101@1796546478.5:FAIL at payload' (repeatable)")  # fmt: skip
    parser.add_argument("-o", "--output", type=Path, default=Path("timeline.png"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    if args.events is not None and not args.events.is_file():
        print(f"lab.report.timeline: no events file {args.events}", file=sys.stderr)
        return 2
    if args.events is None and args.pcap is None:
        print("lab.report.timeline: give an events file, a --pcap, or both", file=sys.stderr)
        return 2
    try:
        names = dict(item.split("=", 1) for item in args.name)
        failures = [parse_failure(item) for item in args.failure]
    except ValueError:
        print(
            "lab.report.timeline: --name is IP=NAME, --failure is IP@UNIX:WHY (UNIX may be ?)",
            file=sys.stderr,
        )
        return 2
    try:
        timeline = write_timeline(args.events, args.pcap, args.output, tuple(args.server or (SERVER_IPV4,)),
                                  file=args.file, names=names, failures=failures)  # fmt: skip
    except ValueError as exc:
        print(f"lab.report.timeline: {exc}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{k} {timeline.count(k)}" for k in MARK_KINDS)
    sources = " + ".join(timeline.sources)
    print(f"{args.output}: {counts}; {len(timeline.annotations)} annotations; from {sources}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
