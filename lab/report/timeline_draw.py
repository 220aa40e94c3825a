"""Drawing a session timeline: the main panel, the requests strip, the end-of-pass zoom, the notes.

Why this layout (docs/timeline.md, "Layout"):

* clients' ACKs and NACKs go in a strip below the main panel, one row per client, so the
  master's ticks never cover the group's dots;
* the server's story and the caller's failures are shapes on the plot with a number, and
  the words are a numbered list beside the plot: a label is a few digits, placed where
  it touches no other label (checked with the renderer's text boxes), and the legend
  and the list live in a column of their own, outside every plot;
* the end of the pass, where repairs happen, gets panels of its own with their own
  scale (:func:`lab.report.timeline_build.repair_window`).

matplotlib is used through :class:`~matplotlib.figure.Figure` and the Agg canvas, never
pyplot: a train's VMs finish in threads and each may draw its own picture at once, and
pyplot keeps global state.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lab.report.timeline_build import (
    Note,
    RepairWindow,
    block_near,
    note_of,
    numbered_notes,
    progress_segments,
    repair_window,
)
from lab.report.timeline_model import (
    ACK,
    CLOSED,
    DONE,
    FAILURE,
    FALLBACK,
    GONE,
    GROUP_DATA,
    JOIN,
    LINE_KINDS,
    MASTER,
    NACK,
    PROMOTE,
    REFUSED,
    TAIL,
    UNICAST_DATA,
    Timeline,
)

DPI = 110
WIDTH = 15.0  # inches
COLUMN = 4.0  # the right column: legend and notes (inches)
FONT = 7.5  # the notes and labels (points)
RED = "#d62728"
DARK_RED = "#8b0000"
_DIGEST = re.compile(r"\b[0-9a-f]{40,}\b")
#: tab10 without its red (failures) and its grey (the group's dots).
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")

#: Kind -> (marker, size in points², what the legend calls it).
SHAPES: dict[str, tuple[str, int, str]] = {
    JOIN: (">", 80, "join (or its read request)"),
    MASTER: ("*", 160, "becomes master"),
    PROMOTE: ("P", 100, "promoted"),
    CLOSED: ("h", 90, "group closed to the file"),
    TAIL: ("<", 70, "unicast tail"),
    DONE: ("s", 60, "done"),
    FALLBACK: ("X", 130, "unicast fallback (red edge)"),
    GONE: ("x", 90, "given up / skipped"),
    REFUSED: ("D", 70, "refused / ERROR sent"),
    FAILURE: ("X", 280, "FAILURE (caller's verdict)"),
}

# Heights of the page's bands (inches); the title's depends on its lines.
MAIN, GAP, XLABEL, ZOOM_TITLE, ZOOM, BOTTOM = 4.6, 0.06, 0.62, 0.34, 2.5, 0.12
TITLE_LINE, FAILURE_LINE = 0.17, 0.3


@dataclass
class Page:
    """Where the panels go, in figure fractions, and the figure's size in inches."""

    height: float
    rects: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)


def strip_height(clients: int) -> float:
    return 0.3 + 0.17 * max(1, clients)


def page(clients: int, zoom: bool, left: float, top: float) -> Page:
    """The bands from top to bottom: title, main, strip, (zoom title, zoom, zoom strip)."""
    strip = strip_height(clients)
    bands = [("title", top), ("main", MAIN), ("gap", GAP), ("strip", strip), ("xlabel", XLABEL)]
    if zoom:
        bands += [
            ("ztitle", ZOOM_TITLE),
            ("zoom", ZOOM),
            ("zgap", GAP),
            ("zstrip", strip),
            ("zxlabel", XLABEL),
        ]
    bands.append(("bottom", BOTTOM))
    height = sum(h for _, h in bands)
    out = Page(height)
    plot_width = WIDTH - left - COLUMN - 0.35
    y = height
    for name, h in bands:
        y -= h
        if name in ("main", "strip", "zoom", "zstrip"):
            out.rects[name] = (left / WIDTH, y / height, plot_width / WIDTH, h / height)
    column_left = WIDTH - COLUMN
    out.rects["column"] = (column_left / WIDTH, BOTTOM / height, (COLUMN - 0.1) / WIDTH,
                           (height - top - BOTTOM) / height)  # fmt: skip
    return out


def colours(timeline: Timeline) -> dict[str, str]:
    """One colour per client, in the order the clients appear."""
    return {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(timeline.clients)}


def render_timeline(timeline: Timeline, dpi: int = DPI) -> Any:
    """The picture as a matplotlib Figure (with an Agg canvas): what :func:`draw_timeline` saves."""
    window = repair_window(timeline)
    zoom = window.start is not None and window.end is not None
    probe, probe_renderer = _agg((WIDTH, 5), dpi)
    left = _left_margin(probe, probe_renderer, timeline)
    notes = numbered_notes(timeline)
    lines, failed = title_lines(timeline, window, notes)
    top = 0.2 + TITLE_LINE * len(lines) + (FAILURE_LINE if failed else 0.1)
    layout = page(len(timeline.clients), zoom, left, top)
    fig, renderer = _agg((WIDTH, layout.height), dpi)
    colour = colours(timeline)
    axes = {name: fig.add_axes(rect, label=name) for name, rect in layout.rects.items()}
    span = _x_span(timeline)
    _draw_data(axes["main"], timeline, colour, span, None)
    _draw_requests(axes["strip"], timeline, colour, span)
    axes["strip"].set_xlabel("seconds since the first record", fontsize=8)
    axes["main"].tick_params(labelbottom=False)
    if window.start is not None and window.end is not None:
        _draw_zoom(axes, timeline, colour, window)
    listed = _draw_column(fig, axes["column"], renderer, timeline, colour, notes)
    placer = _Placer(renderer)
    for name in ("main", "zoom"):
        if name in axes:
            _draw_notes(axes[name], timeline, colour, notes, listed, placer, renderer)
    _title(fig, axes["main"], lines, failed)
    return fig


def _agg(size: tuple[float, float], dpi: int) -> tuple[Any, Any]:
    """A figure on its own Agg canvas (no pyplot) and the canvas's renderer."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=dpi)
    canvas: Any = FigureCanvasAgg(fig)
    return fig, canvas.get_renderer()


def _draw_zoom(
    axes: dict[str, Any], timeline: Timeline, colour: dict[str, str], window: RepairWindow
) -> None:
    assert window.start is not None and window.end is not None
    span = (window.start, window.end)
    _draw_data(axes["zoom"], timeline, colour, span, span)
    _draw_requests(axes["zstrip"], timeline, colour, span)
    axes["zstrip"].set_xlabel("seconds since the first record (end of the pass, zoomed)", fontsize=8)
    axes["zoom"].tick_params(labelbottom=False)
    title = f"end of the pass, zoomed to {span[0]:.2f}-{span[1]:.2f} s: {window.why}"
    axes["zoom"].set_title(title, fontsize=8.5, loc="left")


def draw_timeline(timeline: Timeline, out: Path, dpi: int = DPI) -> Path:
    """Write the PNG (Agg: no display needed)."""
    fig = render_timeline(timeline, dpi)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    return out


def _left_margin(fig: Any, renderer: Any, timeline: Timeline) -> float:
    """Room for the longest client name beside the requests strip (at least the main panel's)."""
    widest = 0.0
    for client in timeline.clients:
        text = fig.text(0, 0, timeline.name(client), fontsize=7)
        widest = max(widest, text.get_window_extent(renderer).width)
        text.remove()
    return max(0.9, (widest + 16) / float(fig.dpi) + 0.05)


def _x_span(timeline: Timeline) -> tuple[float, float]:
    start = min([0.0] + [a.t for a in timeline.annotations])
    end = max(timeline.end(), start + 1e-3)
    pad = 0.015 * (end - start)
    return start - pad, end + pad


def _in(span: tuple[float, float], t: float) -> bool:
    return span[0] <= t <= span[1]


def _draw_data(ax: Any, timeline: Timeline, colour: dict[str, str], span: tuple[float, float],
               zoom: tuple[float, float] | None) -> None:  # fmt: skip
    """Group DATA in grey, each client's unicast DATA in its colour, events-only progress dashed."""
    from matplotlib.ticker import MaxNLocator

    marks = [m for m in timeline.marks if _in(span, m.t)]
    group = [m for m in marks if m.kind == GROUP_DATA]
    if group:
        size = 4 if len(group) > 2000 else 9 if len(group) > 200 else 20
        ax.scatter([m.t for m in group], [m.block for m in group], s=size, c="0.25", marker=".", linewidths=0,
                   rasterized=True, zorder=3, gid="group_data")  # fmt: skip
    for client in timeline.clients:
        pts = [m for m in marks if m.kind == UNICAST_DATA and m.client == client]
        if pts:
            ax.scatter([m.t for m in pts], [m.block for m in pts], s=9, marker="o", color=colour[client],
                       alpha=0.45, linewidths=0, rasterized=True, zorder=2, gid="unicast_data")  # fmt: skip
    for client, ((t0, b0), (t1, b1)) in progress_segments(timeline).items():
        ax.plot([t0, t1], [b0, b1], linestyle="--", color=colour[client], linewidth=1.2, zorder=2)
    _vertical_lines(ax, timeline, span)
    ax.set_xlim(*span)
    noted = [a.block for a in timeline.annotations if a.block is not None]
    top = max([m.block for m in timeline.marks] + noted + [timeline.blocks or 0, 1])
    low, high = 0, top
    if zoom is not None:
        seen = [m.block for m in marks if m.kind in (GROUP_DATA, UNICAST_DATA)]
        low, high = (min(seen), max(seen)) if seen else (0, top)
    pad = max(0.5, 0.04 * (high - low))
    ax.set_ylim(low - pad, high + pad)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("block number", fontsize=8)
    ax.tick_params(labelsize=7.5)
    ax.grid(True, linewidth=0.3, alpha=0.5)


def _vertical_lines(ax: Any, timeline: Timeline, span: tuple[float, float]) -> None:
    """Session starts/ends and SLAM passes dotted grey; the caller's failures dashed red."""
    for note in timeline.annotations:
        if not _in(span, note.t):
            continue
        if note.kind in LINE_KINDS:
            ax.axvline(note.t, color="0.35", linestyle=":", linewidth=0.8, zorder=0)
        elif note.kind == FAILURE:
            ax.axvline(note.t, color=RED, linestyle="--", linewidth=1.0, zorder=1)


def _draw_requests(ax: Any, timeline: Timeline, colour: dict[str, str], span: tuple[float, float]) -> None:
    """One row per client: its ACKs as ticks, its NACKs as triangles, in its colour."""
    rows = {c: i for i, c in enumerate(timeline.clients)}
    for client, row in rows.items():
        for kind, marker, size, gid in ((ACK, "|", 40, "acks"), (NACK, "v", 20, "nacks")):
            pts = [m.t for m in timeline.marks if m.kind == kind and m.client == client and _in(span, m.t)]
            if pts:
                ax.scatter(pts, [row] * len(pts), s=size, marker=marker, color=colour[client],
                           linewidths=0.8 if marker == "|" else 0, rasterized=True, gid=gid)  # fmt: skip
    _vertical_lines(ax, timeline, span)
    ax.set_xlim(*span)
    ax.set_ylim(max(1, len(rows)) - 0.4, -0.6)
    ax.set_yticks(list(rows.values()), [timeline.name(c) for c in rows], fontsize=7)
    for label, client in zip(ax.get_yticklabels(), rows, strict=True):
        label.set_color(colour[client])
    ax.tick_params(axis="x", labelsize=7.5)
    ax.grid(True, axis="x", linewidth=0.3, alpha=0.5)


def _note_look(kind: str, client: str | None, colour: dict[str, str]) -> dict[str, Any]:
    marker, size, _ = SHAPES[kind]
    own = colour.get(client or "", "0.5")
    if kind == FALLBACK:
        return {"marker": marker, "s": size, "color": own, "edgecolors": RED, "linewidths": 1.6}
    if kind == GONE:
        return {"marker": marker, "s": size, "color": RED, "linewidths": 2.0}
    if kind in (REFUSED, FAILURE):
        return {"marker": marker, "s": size, "color": RED, "edgecolors": "black", "linewidths": 0.8}
    return {"marker": marker, "s": size, "color": own, "edgecolors": "black", "linewidths": 0.6}


def _draw_notes(ax: Any, timeline: Timeline, colour: dict[str, str], notes: Sequence[Note],
                listed: set[int], placer: _Placer, renderer: Any) -> None:  # fmt: skip
    """Every annotation's shape; one number label per listed note, at its first shape here."""
    span = ax.get_xlim()
    first: dict[int, tuple[float, float]] = {}
    shapes: list[tuple[tuple[float, float], int]] = []
    for note in timeline.annotations:
        if note.kind in LINE_KINDS or not _in(span, note.t):
            continue
        y = block_near(timeline, note)
        ax.scatter(
            [note.t], [y], zorder=5, gid=f"note_{note.kind}", **_note_look(note.kind, note.client, colour)
        )
        shapes.append(((note.t, y), SHAPES[note.kind][1]))
        numbered = note_of(notes, note)
        if numbered is not None and numbered.number in listed:
            first.setdefault(numbered.number, (note.t, y))
    trouble = {n.number for n in notes if n.trouble}
    placer.obstacles_from(ax, shapes)
    for numbers, xy in _clusters(ax, first):
        text = _compact(numbers)
        placer.place(ax, xy, text, DARK_RED if trouble & set(numbers) else "black")


def _clusters(
    ax: Any, first: dict[int, tuple[float, float]], near: float = 14.0
) -> list[tuple[list[int], Any]]:
    """Numbers whose shapes are within ``near`` pixels share one label."""
    out: list[tuple[list[int], Any, Any]] = []
    for number in sorted(first):
        xy = first[number]
        px = ax.transData.transform(xy)
        for numbers, _, anchor in out:
            if math.dist(px, anchor) <= near:
                numbers.append(number)
                break
        else:
            out.append(([number], xy, px))
    return [(numbers, xy) for numbers, xy, _ in out]


def _compact(numbers: Sequence[int]) -> str:
    """[3, 4, 5, 9] -> "3-5,9"."""
    runs: list[list[int]] = []
    for n in sorted(numbers):
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 2 else ",".join(map(str, r)) for r in runs)


class _Placer:
    """Puts number labels where their text box touches no other label and stays in its panel.

    Candidates ring the shape at growing distances; a label far from its shape gets a
    thin leader line.  Shapes are avoided when possible; labels always.
    """

    RADII = (7, 14, 24, 38, 56, 80, 110, 150)
    #: Clear pixels between two labels, so "11" and "12" never read as "1112".
    GAP_PX = 4
    ANGLES = (45, 0, 90, -45, 135, 180, -90, -135, 22.5, 67.5, -22.5, -67.5, 112.5, 157.5, -112.5, -157.5)

    def __init__(self, renderer: Any) -> None:
        self.renderer = renderer
        self.labels: list[Any] = []  # Bbox of every label placed
        self.shapes: list[Any] = []

    def obstacles_from(self, ax: Any, shapes: Sequence[tuple[tuple[float, float], int]]) -> None:
        """Shapes (point, size in points²) labels should not cover."""
        from matplotlib.transforms import Bbox

        for xy, size in shapes:
            x, y = ax.transData.transform(xy)
            half = math.sqrt(size) * ax.figure.dpi / 72 / 2
            self.shapes.append(Bbox.from_extents(x - half, y - half, x + half, y + half))

    def place(self, ax: Any, xy: tuple[float, float], text: str, colour: str) -> bool:
        from matplotlib.transforms import offset_copy

        label = ax.text(*xy, text, fontsize=FONT, fontweight="bold", color=colour, zorder=7, gid="note_label")
        inside = ax.bbox.padded(-2)
        for avoid_shapes in (True, False):
            for radius in self.RADII:
                for angle in self.ANGLES:
                    dx, dy = radius * math.cos(math.radians(angle)), radius * math.sin(math.radians(angle))
                    label.set_transform(offset_copy(ax.transData, fig=ax.figure, x=dx, y=dy, units="dots"))
                    label.set_ha("left" if dx > 0.5 else "right" if dx < -0.5 else "center")
                    label.set_va("bottom" if dy > 0.5 else "top" if dy < -0.5 else "center")
                    box = label.get_window_extent(self.renderer)
                    if not _contains(inside, box) or any(
                        box.padded(self.GAP_PX).overlaps(b) for b in self.labels
                    ):
                        continue
                    if avoid_shapes and any(box.overlaps(b) for b in self.shapes):
                        continue
                    self.labels.append(box)
                    if radius > 14:
                        self._leader(ax, xy, dx, dy)
                    return True
        label.remove()
        return False

    @staticmethod
    def _leader(ax: Any, xy: tuple[float, float], dx: float, dy: float) -> None:
        x, y = ax.transData.transform(xy)
        norm = math.hypot(dx, dy)
        end = ax.transData.inverted().transform((x + dx - 3 * dx / norm, y + dy - 3 * dy / norm))
        start = ax.transData.inverted().transform((x + 5 * dx / norm, y + 5 * dy / norm))
        ax.plot([start[0], end[0]], [start[1], end[1]], color="0.45", linewidth=0.5, zorder=6)


def _contains(outer: Any, inner: Any) -> bool:
    return bool(
        outer.x0 <= inner.x0 and inner.x1 <= outer.x1 and outer.y0 <= inner.y0 and inner.y1 <= outer.y1
    )


def _legend_handles(timeline: Timeline, colour: dict[str, str]) -> list[Any]:
    from matplotlib.lines import Line2D

    def entry(label: str, **look: Any) -> Any:
        return Line2D([], [], linestyle="none", label=label, **look)

    handles = [entry(f"group DATA ({timeline.count(GROUP_DATA)})", marker=".", color="0.25", markersize=6)]
    for client in timeline.clients:
        counts = [
            f"{timeline.count(k, client)} {w}"
            for k, w in ((UNICAST_DATA, "unicast DATA"), (ACK, "ACKs"), (NACK, "NACKs"))
            if timeline.count(k, client)
        ]
        handles.append(entry(f"{timeline.name(client)}" + (f": {', '.join(counts)}" if counts else ""),
                             marker="s", color=colour[client], markersize=7))  # fmt: skip
    handles.append(entry("unicast DATA (client's colour)", marker="o", color="0.5", markersize=5))
    handles.append(entry("ACK | NACK v (strip below the plot)", marker="|", color="0.3", markersize=8))
    kinds = {a.kind for a in timeline.annotations}
    for kind, (marker, _, words) in SHAPES.items():
        if kind in kinds:
            look = _note_look(kind, None, {})
            face = look["color"] if kind in (GONE, REFUSED, FAILURE) else "white"
            edge = look.get("edgecolors", face)
            size = 8 if kind != FAILURE else 10
            handles.append(entry(words, marker=marker, color=face, markeredgecolor=edge, markersize=size))
    if kinds & set(LINE_KINDS):
        handles.append(Line2D([], [], linestyle=":", color="0.35", label="session start/end, SLAM pass"))
    if progress_segments(timeline):
        handles.append(Line2D([], [], linestyle="--", color="0.3", label="listening (from the events)"))
    return handles


def _draw_column(fig: Any, ax: Any, renderer: Any, timeline: Timeline, colour: dict[str, str],
                 notes: Sequence[Note]) -> set[int]:  # fmt: skip
    """The legend, then the numbered notes under it; returns the numbers listed.

    When the list does not fit, notes without trouble are left out from the last one up
    (failures, refusals and fallbacks always stay) and a last line says how many.
    """
    ax.set_axis_off()
    width, height = ax.bbox.width, ax.bbox.height
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    legend = ax.legend(handles=_legend_handles(timeline, colour), loc="upper left", bbox_to_anchor=(0, 1),
                       borderaxespad=0, frameon=False, fontsize=FONT, handletextpad=0.4)  # fmt: skip
    top = legend.get_window_extent(renderer).y0 - ax.bbox.y0 - 22
    texts = [(note, _note_text(ax, renderer, note, width)) for note in notes]
    heights = {note.number: text.get_window_extent(renderer).height + 3 for note, text in texts}
    room = top - 14  # keep a line for "N more"
    kept = list(notes)
    while sum(heights[n.number] for n in kept) > room and any(not n.trouble for n in kept):
        drop = max(n.number for n in kept if not n.trouble)
        kept = [n for n in kept if n.number != drop]
    listed = {n.number for n in kept}
    y = top
    if notes:
        ax.text(
            0,
            y + 4,
            "notes (the numbers on the plot; t in seconds)",
            fontsize=FONT,
            fontstyle="italic",
            va="bottom",
        )
    for note, text in texts:
        if note.number not in listed:
            text.remove()
            continue
        text.set_position((16, y))
        ax.scatter([6], [y - 5], clip_on=False, **{**_note_look(note.kind, note.client, colour), "s": 30})
        y -= heights[note.number]
    if len(listed) < len(notes):
        ax.text(16, y, f"... {len(notes) - len(listed)} more notes, not numbered (see the events file)",
                fontsize=FONT, va="top", fontstyle="italic")  # fmt: skip
    return listed


def _note_text(ax: Any, renderer: Any, note: Note, width: float) -> Any:
    """One note's words, wrapped to the column's width."""
    chars = int((width - 20) / (FONT * ax.figure.dpi / 72 * 0.55))
    colour = DARK_RED if note.trouble else "black"
    weight = "bold" if note.kind == FAILURE else "normal"
    text = ax.text(16, 0, "", fontsize=FONT, va="top", color=colour, fontweight=weight)
    while True:
        body = textwrap.fill(
            f"{note.number}  {shorten_digests(note.text())}", chars, subsequent_indent="    "
        )
        text.set_text(body)
        box = text.get_window_extent(renderer)
        if box.x1 <= ax.bbox.x0 + width or chars <= 20:
            return text
        chars = int(chars * 0.9)


def title_lines(timeline: Timeline, window: RepairWindow, notes: Sequence[Note]) -> tuple[list[str], str]:
    """The title's lines, and the red line that names the failures ("" when none)."""
    sources = " + ".join(timeline.sources) or "no data"
    when = datetime.fromtimestamp(timeline.origin, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    ratio = f"; group {timeline.group_ratio:g}x the file" if timeline.group_ratio is not None else ""
    count = len(timeline.clients)
    lines = [
        timeline.title,
        f"{count} client{'s' if count != 1 else ''}; from {sources}{ratio}; t = 0 at {when}",
    ]
    if window.start is None:
        lines.append(f"no zoom panel: {window.why}")
    failures = [n for n in notes if n.kind == FAILURE]
    if not failures:
        return lines, ""
    numbers = ", ".join(str(n.number) for n in failures)
    return lines, f"FAILED: {len(failures)} of the clients (red X and dashed line; note {numbers})"


def shorten_digests(text: str) -> str:
    """A SHA-256 in a note is its first 12 hex digits and an ellipsis: the list is for reading."""
    return _DIGEST.sub(lambda m: m.group(0)[:12] + "...", text)


def _title(fig: Any, ax: Any, lines: Sequence[str], failed: str) -> None:
    box = ax.get_position()
    middle = box.x0 + box.width / 2
    fig.text(middle, 1 - 0.1 / fig.get_figheight(), "\n".join(lines), ha="center", va="top", fontsize=9.5)
    if failed:
        fig.text(middle, box.y1 + 0.06 / fig.get_figheight(), failed, ha="center", va="bottom", fontsize=9,
                 color=RED, fontweight="bold")  # fmt: skip
