"""``lab diff OLD NEW``: what changed between two runs of the matrix.

Why: the gate says whether a run matches the committed expectations; a maintainer
comparing a branch with main wants more: which cells got worse or better, which changed
how their payload travelled, and which trains moved their figures (bytes on the group,
pass time) beyond noise.  Both runs are read from their matrix.json; nothing is re-run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lab.judge.cells import cell_name, cell_outcome
from lab.judge.expectations import verdict_rank
from lab.model.results import TrainResult
from lab.model.status import Status
from lab.report.matrix_json import MatrixDocument

#: Train figures that moved less than this are noise (group bytes per payload byte, and
#: the share of the pass time).
RATIO_TOLERANCE = 0.05
TIME_TOLERANCE = 0.25


@dataclass(frozen=True)
class Change:
    name: str
    kind: str  # "cell" or "train"
    was: str  # "PASS multicast"
    now: str
    change: str  # "regression", "fix", "outcome", "added", "removed", "figures"
    detail: str = ""


@dataclass
class MatrixDiff:
    old: str
    new: str
    changes: list[Change] = field(default_factory=list)

    def of(self, change: str) -> list[Change]:
        return [c for c in self.changes if c.change == change]

    def was_text(self) -> dict[str, str]:
        """Cell or train name -> "was PASS multicast", for the reports' change marks."""
        return {c.name: f"was {c.was}" for c in self.changes if c.change in ("regression", "fix", "outcome")}

    def to_json(self) -> dict[str, Any]:
        return {
            "old": self.old,
            "new": self.new,
            "counts": {kind: len(self.of(kind)) for kind in CHANGES},
            "changes": [c.__dict__ for c in self.changes],
        }


CHANGES = ("regression", "fix", "outcome", "figures", "added", "removed")


def _verdict_change(was: tuple[Status, str], now: tuple[Status, str]) -> str | None:
    if was == now:
        return None
    if was[0] in (Status.ERROR, Status.MISS) or now[0] in (Status.ERROR, Status.MISS):
        return "regression" if now[0] in (Status.ERROR, Status.MISS) else "fix"
    before, after = verdict_rank(*was), verdict_rank(*now)
    if before == after:
        return "outcome"
    return "regression" if after < before else "fix"


def _train_figures(old: TrainResult, new: TrainResult) -> str:
    notes = []
    if old.group_ratio is not None and new.group_ratio is not None:
        if abs(new.group_ratio - old.group_ratio) > RATIO_TOLERANCE:
            notes.append(f"group bytes/payload {old.group_ratio:.3f} -> {new.group_ratio:.3f}")
    if old.seconds > 0 and abs(new.seconds - old.seconds) > TIME_TOLERANCE * old.seconds:
        notes.append(f"pass time {old.seconds:.0f} s -> {new.seconds:.0f} s")
    return "; ".join(notes)


def diff(old: MatrixDocument, new: MatrixDocument) -> MatrixDiff:
    out = MatrixDiff(str(old.path), str(new.path))
    before = {cell_name(c): (c.status, cell_outcome(c)) for c in old.cells}
    after = {cell_name(c): (c.status, cell_outcome(c)) for c in new.cells}
    _compare(out, "cell", before, after)
    old_trains = {t.plan.column: t for t in old.trains}
    new_trains = {t.plan.column: t for t in new.trains}
    _compare(
        out,
        "train",
        {k: (t.status, t.outcome) for k, t in old_trains.items()},
        {k: (t.status, t.outcome) for k, t in new_trains.items()},
    )
    for name in old_trains.keys() & new_trains.keys():
        moved = _train_figures(old_trains[name], new_trains[name])
        if moved:
            was, now = old_trains[name], new_trains[name]
            out.changes.append(
                Change(
                    name,
                    "train",
                    _text((was.status, was.outcome)),
                    _text((now.status, now.outcome)),
                    "figures",
                    moved,
                )
            )
    return out


def _text(verdict: tuple[Status, str]) -> str:
    return f"{verdict[0].value} {verdict[1]}"


def _compare(
    out: MatrixDiff, kind: str, before: dict[str, tuple[Status, str]], after: dict[str, tuple[Status, str]]
) -> None:
    for name, now in after.items():
        was = before.get(name)
        if was is None:
            out.changes.append(Change(name, kind, "absent", _text(now), "added"))
            continue
        change = _verdict_change(was, now)
        if change is not None:
            out.changes.append(Change(name, kind, _text(was), _text(now), change))
    for name, was in before.items():
        if name not in after:
            out.changes.append(Change(name, kind, _text(was), "absent", "removed"))


def diff_markdown(result: MatrixDiff) -> str:
    counts = ", ".join(f"{len(result.of(kind))} {kind}" for kind in CHANGES)
    lines = ["# lab diff", "", f"Old: `{result.old}`  ", f"New: `{result.new}`", "", counts + ".", ""]
    for kind in CHANGES:
        rows = result.of(kind)
        if not rows:
            continue
        lines += [f"## {kind}", "", "| cell or train | was | now | detail |", "|---|---|---|---|"]
        lines += [f"| {c.name} | {c.was} | {c.now} | {c.detail} |" for c in rows]
        lines.append("")
    return "\n".join(lines) + "\n"
