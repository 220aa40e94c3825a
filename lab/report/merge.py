"""``lab merge RUN... --out DIR``: one matrix from the shards CI runners made.

Why it refuses so much: a merged matrix claims to be one run of one plan.  Shards of
another commit, another ROM set, another plan, a shard missing or given twice would make
a matrix nobody ran, so each is an error naming the shard and what differs.  Each
shard's run folder is copied under ``DIR/shards/K/`` and the merged reports link into
those copies, so the merged folder can be zipped and browsed on its own.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.judge.cells import cell_name
from lab.model.results import CellResult, RunInfo, TrainResult
from lab.report.matrix_json import MatrixDocument, read_matrix


class MergeError(ValueError):
    """The shards cannot make one matrix; the message names the shard and the difference."""


@dataclass
class Merged:
    info: RunInfo
    cells: list[CellResult] = field(default_factory=list)
    trains: list[TrainResult] = field(default_factory=list)


def shard_of(info: RunInfo) -> tuple[int, int]:
    """(K, N) of a run made with ``--shard K/N`` (1/1 for an unsharded run)."""
    text = str(info.extra.get("shard", "1/1"))
    index, _, count = text.partition("/")
    return int(index), int(count)


def _identity(info: RunInfo) -> dict[str, Any]:
    plan = info.extra.get("plan", {})
    return {"commit": info.commit, "rom_sets": sorted(info.rom_sets), "plan": plan.get("fingerprint")}


def _check(docs: list[MatrixDocument]) -> int:
    if not docs:
        raise MergeError("no shard given: lab merge RUN... --out DIR")
    first = docs[0]
    for doc in docs[1:]:
        for key, value in _identity(doc.info).items():
            expected = _identity(first.info)[key]
            if value != expected:
                raise MergeError(f"{doc.path}: {key} {value!r} differs from {first.path}'s {expected!r}")
    counts = {shard_of(d.info)[1] for d in docs}
    if len(counts) != 1:
        raise MergeError(f"the shards were cut for different counts: {sorted(counts)}")
    (count,) = counts
    seen = sorted(shard_of(d.info)[0] for d in docs)
    if seen != list(range(1, count + 1)):
        raise MergeError(f"need shards 1..{count} once each, got {seen}")
    return count


def merge_runs(runs: list[Path], out: Path) -> Merged:
    """Copy every shard's run folder under ``out/shards/K`` and read them as one matrix."""
    docs = [read_matrix(run) for run in runs]
    count = _check(docs)
    copies = []
    for doc in docs:
        index, _ = shard_of(doc.info)
        target = out / "shards" / str(index)
        shutil.copytree(doc.path.parent, target, dirs_exist_ok=True)
        copies.append(read_matrix(target))
    first = copies[0].info
    plan = first.extra.get("plan", {})
    cells = {cell_name(c): c for doc in copies for c in doc.cells}
    trains = {t.plan.column: t for doc in copies for t in doc.trains}
    missing = [n for n in plan.get("cells", []) if n not in cells] + [
        n for n in plan.get("trains", []) if n not in trains
    ]
    if missing:
        raise MergeError(
            f"the shards lack {len(missing)} planned cells or trains, e.g. {', '.join(missing[:5])}"
        )
    info = RunInfo(
        run_id=f"{first.run_id}-merged",
        started=min(d.info.started for d in copies),
        wall_seconds=max(d.info.wall_seconds for d in copies),
        jobs=sum(d.info.jobs for d in copies),
        accel=first.accel,
        qemu_version=first.qemu_version,
        commit=first.commit,
        rom_sets=first.rom_sets,
        extra={**first.extra, "shard": f"merged {count} shards"},
    )
    order = {name: i for i, name in enumerate([*plan.get("cells", []), *plan.get("trains", [])])}
    return Merged(
        info,
        sorted(cells.values(), key=lambda c: order.get(cell_name(c), len(order))),
        sorted(trains.values(), key=lambda t: order.get(t.plan.column, len(order))),
    )
