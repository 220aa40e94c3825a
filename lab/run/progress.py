"""What a long run prints while it works: a line per boot and per train, and what it is.

Why: a matrix runs for a quarter of an hour; a line per finished boot with its verdict
and time (and a live counter on a terminal) shows it is alive and where it stands.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from lab.model.results import BootOutcome, TrainResult, TrainVm
from lab.model.status import Status


class BootProgress:
    """One line per finished boot, plus a live counter on a terminal."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.start = time.monotonic()
        self.tty = sys.stderr.isatty()
        self.counts: dict[str, int] = {}

    def __call__(self, done: int, total: int, outcome: BootOutcome) -> None:
        ev = outcome.evidence
        self.counts[ev.status.value] = self.counts.get(ev.status.value, 0) + 1
        first = clip(ev.reason.splitlines()[0], 100) if ev.reason else ""
        where = "" if ev.status is Status.PASS else f" {ev.failed_stage or ''}: {first}"
        key = outcome.plan.key
        fetch = ""
        if ev.fetch_seconds is not None:
            fetch = f" (fetch {ev.fetch_seconds:.2f} s{_on_wire(ev.wire_fetch_seconds)})"
        line = (
            f"[{done:>3}/{total}] {ev.status.value:<5} {key.nic:<10} {key.column:<24} "
            f"{outcome.plan.size:>8} B {ev.seconds:5.1f} s{fetch}{where}"
        )
        if self.tty:
            sys.stderr.write("\r\033[K")
        sys.stderr.write(line + "\n")
        if self.tty:
            summary = " ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))
            sys.stderr.write(f"  {summary}  elapsed {time.monotonic() - self.start:.0f} s")
        sys.stderr.flush()


def train_progress(done: int, total: int, train: TrainResult) -> None:
    ratio = "" if train.group_ratio is None else f" group/payload {train.group_ratio:.3f}"
    failed = "; ".join(c.name for c in train.checks if c.ok is False)
    print(
        f"[train {done}/{total}] {train.status.value:<5} {train.plan.column:<36} {train.outcome}{ratio} "
        f"{train.seconds:.0f} s" + (f" failed: {failed}" if failed else ""),
        file=sys.stderr,
        flush=True,
    )
    for vm in train.vms:
        if vm.status in (Status.FAIL, Status.ERROR, Status.MISS):
            # A CI log is often all a reader has: say which VM failed and how, not only that one did.
            print(f"    {vm.nic}: {vm_failure_line(vm)}", file=sys.stderr, flush=True)
            if vm.server_story:
                print(f"      server, for {vm.ip}: {vm.server_story}", file=sys.stderr, flush=True)


def vm_failure_line(vm: TrainVm) -> str:
    """One line on a train VM that failed (an UNSUPPORTED ROM is the train's own line):
    its outcome, its reason, what its tap shows."""
    evidence = vm.evidence
    parts = [f"{evidence.status.value} {evidence.outcome or ''}".strip()]
    if evidence.reason:
        parts.append(clip(evidence.reason.splitlines()[0], 160))
    for payload in evidence.payloads:
        if payload.seen_bytes is not None and payload.seen_sha256 != payload.expect_sha256:
            # Wrong bytes of the right length (holes) or of another length (another file)?
            parts.append(f"the guest hashed {payload.seen_bytes} B where the payload has {payload.size} B")
    if vm.diagnosis:
        parts.append(clip(vm.diagnosis, 200))
    if vm.defect:
        parts.append(f"known defect {vm.defect}")
    return "; ".join(parts)


def _on_wire(seconds: float | None) -> str:
    """The tap's figure beside the console's: for x-slam the two differ by the second iPXE
    waits before its first NACK, which no server can shorten."""
    return f", on the wire {seconds:.3f} s" if seconds is not None else ""


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters at a word's end, marked with "…": a reason cut
    mid-word ("prints an erro") reads as a typo in a CI log."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:") + "…"


def qemu_version() -> str:
    try:
        out = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "QEMU not found"


def commit() -> str:
    """This repo's commit; ``LAB_COMMIT`` wins (the container image carries no .git)."""
    if os.environ.get("LAB_COMMIT"):
        return os.environ["LAB_COMMIT"]
    try:
        out = subprocess.run(  # the repo of this code, wherever the matrix is run from
            ["git", "-C", str(Path(__file__).resolve().parents[2]), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
    except OSError:
        return "unknown"
    return out.stdout.strip() or "unknown"
