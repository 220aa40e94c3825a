"""The regression gate: what each cell and train is expected to show, and how a run compares.

Why a committed file per ROM set: a FAIL cell can be a known finding (atftpd's MTFTP late
joiners printing ``ok`` over zero-filled images) or news (our server broke for one NIC).
Only a file that names the known ones, each with its reason, lets CI tell them apart:
every cell and train of a run is then

* ``expected``: its status (and outcome) is one the file allows;
* ``regression``: worse than anything allowed (PASS expected, FAIL seen; multicast
  expected, unicast fallback seen);
* ``unexpected-pass``: better than expected; the file must be updated, as a strict xfail;
* ``new``: no entry matches it;
* ``lab-broke``: ERROR or MISS, whatever the file says.

The file is TOML (lab/expectations/debian.toml is the example).  Entries are tried in
order and the first whose ``match`` (a shell glob over ``NIC/column`` for cells, the
column for trains) fits is used::

    [[cell]]
    match = "*/tftm/debian/atftpd"
    status = ["FAIL"]
    outcome = ["failed"]
    reason = "iPXE's tftm:// cannot hear the group and atftpd has no unicast fallback (docs/findings.md)"

A non-PASS or multi-valued entry must say why (``reason``); the loader refuses it otherwise.

A train entry may name NICs whose VM is known to fail for a reason of its own (a driver
defect in docs/findings.md), ``vms_may_fail = ["eepro100"]``, and defects outside the
project that a failed VM's evidence proves (``defects_may_fail =
["ipxe-mtftp-unknown-listener"]``, ids from lab.judge.diagnosis and lab.judge.stale_reopen): the
train is then expected when its only failed check is "every VM verified the bytes" (a full
boot: "every VM booted") and each VM that failed it is
one of those NICs or carries one of those defects.  Every other check still counts (they
judge the VMs that verified), and any other failure is a regression, so a known defect
cannot hide the server's.

A train entry may also name efficiency checks that are known to fail now and then
(``checks_may_fail = ["group bytes <= 1.2 x payload + what the last VM to start
missed"]``): the train is then expected when
every VM verified the bytes and each failed check is one of those.  The correctness checks
(every VM verified, no ok over bad bytes) can never be named, and the report still shows
the train as FAIL with its figures: the entry says the failure is known, not that it is fine.
"""

from __future__ import annotations

import fnmatch
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lab.judge.cells import cell_name, cell_outcome
from lab.judge.train import CORRECTNESS_CHECKS, EVERY_VM_BOOTED_CHECK, EVERY_VM_CHECK
from lab.model.results import CellResult, TrainResult
from lab.model.status import Status

EXPECTED = "expected"
REGRESSION = "regression"
UNEXPECTED_PASS = "unexpected-pass"
NEW = "new"
LAB_BROKE = "lab-broke"
VERDICTS = (REGRESSION, UNEXPECTED_PASS, LAB_BROKE, NEW, EXPECTED)

#: How good a status is for a gate: a run that did not happen is the lab's, not better or worse.
_STATUS_RANK = {
    Status.FAIL: 0,
    Status.UNSUPPORTED: 1,
    Status.SKIP: 1,
    Status.NOT_EMULATED: 1,
    Status.PASS: 2,
}
#: How good an outcome is, within one status (best last).
_OUTCOME_RANK = {
    name: rank
    for rank, names in enumerate(
        [
            ("ok-but-corrupt", "wrong-hash"),
            ("failed",),
            ("error", "miss", "skip", "unsupported", "not-emulated"),
            ("unicast",),
            ("unicast-fallback",),
            ("multicast", "booted"),
        ]
    )
    for name in names
}


class ExpectationsError(ValueError):
    """The expectations file is malformed; the message names the entry and what to fix."""


@dataclass(frozen=True)
class Expectation:
    match: tuple[str, ...]
    statuses: tuple[Status, ...]
    outcomes: tuple[str, ...] = ()
    reason: str = ""
    #: Trains only: NICs whose VM may fail the every-VM check (a known driver defect).
    vms_may_fail: tuple[str, ...] = ()
    #: Trains only: defects (lab.judge.diagnosis ids) a failed VM may carry.
    defects_may_fail: tuple[str, ...] = ()
    #: Trains only: efficiency checks that may fail while every VM verified.
    checks_may_fail: tuple[str, ...] = ()

    def excuses(self, failed: Sequence[tuple[str, str]]) -> bool:
        """Every failed VM ``(nic, defect)`` is a known-broken NIC or carries an allowed defect."""
        return all(
            nic in self.vms_may_fail or (defect and defect in self.defects_may_fail) for nic, defect in failed
        )

    def allows(self, status: Status, outcome: str) -> bool:
        return status in self.statuses and (not self.outcomes or outcome in self.outcomes)

    def describe(self) -> str:
        outcome = f" {'/'.join(self.outcomes)}" if self.outcomes else ""
        return f"{'/'.join(s.value for s in self.statuses)}{outcome}"


@dataclass(frozen=True)
class Judgement:
    """One cell's or train's place in the gate."""

    name: str
    kind: str  # "cell" or "train"
    status: Status
    outcome: str
    verdict: str
    expected: str = ""  # what the file allowed ("" when no entry matched)
    reason: str = ""  # the file's reason for the entry

    @property
    def fails_gate(self) -> bool:
        if self.verdict == NEW:
            return self.status is Status.FAIL  # a FAIL nobody expected is news, entry or not
        return self.verdict in (REGRESSION, UNEXPECTED_PASS)


@dataclass
class Expectations:
    path: Path
    cells: list[Expectation] = field(default_factory=list)
    trains: list[Expectation] = field(default_factory=list)

    def entry(self, kind: str, name: str) -> Expectation | None:
        for expectation in self.cells if kind == "cell" else self.trains:
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in expectation.match):
                return expectation
        return None

    def judge(
        self, kind: str, name: str, status: Status, outcome: str,
        failed_vms: tuple[tuple[str, str], ...] | None = None,
        failed_checks: tuple[str, ...] = (),
    ) -> Judgement:  # fmt: skip
        """``failed_vms``: a train whose only failed check is the every-VM check, and the
        ``(nic, defect)`` of each VM that failed it (None otherwise); ``failed_checks``: the
        names of a train's failed checks."""
        entry = self.entry(kind, name)
        known = entry is not None and failed_vms is not None and entry.excuses(failed_vms)
        if entry is not None and failed_checks and not set(failed_checks) & set(CORRECTNESS_CHECKS):
            known = known or all(check in entry.checks_may_fail for check in failed_checks)
        if status in (Status.ERROR, Status.MISS):
            verdict = LAB_BROKE
        elif entry is None:
            verdict = NEW
        elif entry.allows(status, outcome) or (known and status is Status.FAIL):
            verdict = EXPECTED
        else:
            verdict = UNEXPECTED_PASS if _better(status, outcome, entry) else REGRESSION
        expected, reason = (entry.describe(), entry.reason) if entry is not None else ("", "")
        return Judgement(name, kind, status, outcome, verdict, expected, reason)


def verdict_rank(status: Status, outcome: str) -> tuple[int, int]:
    """How good a (status, outcome) is, for comparing two runs or a run with its expectations."""
    return _STATUS_RANK.get(status, -1), _OUTCOME_RANK.get(outcome, 2)


def _better(status: Status, outcome: str, entry: Expectation) -> bool:
    """Better than every combination the entry allows."""
    allowed = [(s, o) for s in entry.statuses for o in (entry.outcomes or (outcome,))]
    return all(verdict_rank(status, outcome) > verdict_rank(s, o) for s, o in allowed)


def load_expectations(path: Path) -> Expectations:
    """Read and check an expectations file."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ExpectationsError(f"cannot read expectations {path}: {exc}") from exc
    out = Expectations(path)
    for kind, target in (("cell", out.cells), ("train", out.trains)):
        for index, raw in enumerate(data.get(kind, [])):
            target.append(_entry(path, kind, index, raw))
    return out


def _entry(path: Path, kind: str, index: int, raw: dict[str, object]) -> Expectation:
    where = f"{path}: [[{kind}]] #{index + 1}"
    match, statuses = raw.get("match"), raw.get("status")
    outcomes, reason = raw.get("outcome", []), raw.get("reason", "")
    patterns = [match] if isinstance(match, str) else match
    if not isinstance(patterns, list) or not patterns or not all(isinstance(p, str) and p for p in patterns):
        raise ExpectationsError(f'{where}: needs match = "NIC/column glob" (or a list of globs)')
    if not isinstance(statuses, list) or not statuses or not all(isinstance(s, str) for s in statuses):
        raise ExpectationsError(f'{where} ({match}): needs status = ["PASS", ...]')
    try:
        parsed = tuple(Status(s) for s in statuses)
    except ValueError as exc:
        known = ", ".join(s.value for s in Status)
        raise ExpectationsError(f"{where} ({match}): {exc}; statuses are {known}") from None
    if not isinstance(outcomes, list) or not all(isinstance(o, str) for o in outcomes):
        raise ExpectationsError(f"{where} ({match}): outcome must be a list of outcome names")
    if not isinstance(reason, str):
        raise ExpectationsError(f"{where} ({match}): reason must be text")
    may_fail, defects = _names(raw, "vms_may_fail", kind, where), _names(raw, "defects_may_fail", kind, where)
    checks = _names(raw, "checks_may_fail", kind, where)
    if set(checks) & set(CORRECTNESS_CHECKS):
        named = ", ".join(CORRECTNESS_CHECKS)
        raise ExpectationsError(f"{where} ({match}): checks_may_fail cannot name these checks: {named}")
    plain = parsed == (Status.PASS,) and len(outcomes) <= 1 and not may_fail and not defects and not checks
    if not plain and not reason.strip():
        raise ExpectationsError(f"{where} ({match}): a non-PASS or multi-valued entry needs a reason")
    return Expectation(tuple(patterns), parsed, tuple(outcomes), reason, may_fail, defects, checks)


def _names(raw: dict[str, object], key: str, kind: str, where: str) -> tuple[str, ...]:
    """A train entry's list of NIC names or defect ids (``vms_may_fail``, ``defects_may_fail``)."""
    names = raw.get(key, [])
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise ExpectationsError(f'{where}: {key} must be a list of names, e.g. ["eepro100"]')
    if names and kind != "train":
        raise ExpectationsError(f"{where}: {key} is for [[train]] entries only")
    return tuple(names)


@dataclass
class GateResult:
    """Every judgement of a run and the exit status they give."""

    expectations: Path | None
    judgements: list[Judgement] = field(default_factory=list)

    def of(self, verdict: str) -> list[Judgement]:
        return [j for j in self.judgements if j.verdict == verdict]

    def failing(self) -> list[Judgement]:
        return [j for j in self.judgements if j.fails_gate]

    def counts(self) -> dict[str, int]:
        return {verdict: len(self.of(verdict)) for verdict in VERDICTS}

    def exit_status(self) -> int:
        """2 when the lab broke, 1 on a regression, an unexpected pass or a new FAIL, else 0."""
        if self.of(LAB_BROKE):
            return 2
        return 1 if self.failing() else 0


def gate(
    expectations: Expectations | None,
    cells: Sequence[tuple[str, Status, str]],
    trains: Sequence[tuple[str, Status, str]],
    train_vm_failures: Mapping[str, tuple[tuple[str, str], ...]] | None = None,
    train_failed_checks: Mapping[str, tuple[str, ...]] | None = None,
) -> GateResult:
    """Judge ``(name, status, outcome)`` of every cell and train; without expectations every
    FAIL fails the gate (nothing is known to fail) and ERROR/MISS is the lab's.
    ``train_vm_failures``: train -> ``(nic, defect)`` of the VMs that failed it, for trains
    whose only failed check is the every-VM check (:func:`vm_only_failures`)."""
    empty = Expectations(Path("(none)"))
    book = expectations or empty
    result = GateResult(expectations.path if expectations else None)
    for name, status, outcome in cells:
        result.judgements.append(book.judge("cell", name, status, outcome))
    for name, status, outcome in trains:
        failed = (train_vm_failures or {}).get(name)
        checks = (train_failed_checks or {}).get(name, ())
        result.judgements.append(book.judge("train", name, status, outcome, failed, checks))
    return result


def vm_only_failures(train: TrainResult) -> tuple[tuple[str, str], ...] | None:
    """``(nic, defect)`` of the VMs that failed ``train`` when its only failed check is the
    every-VM check (verified, or for a full boot booted), else None."""
    failed_checks = [c.name for c in train.checks if c.ok is False]
    if failed_checks not in ([EVERY_VM_CHECK], [EVERY_VM_BOOTED_CHECK]) or train.outcome == "ok-but-corrupt":
        return None
    return tuple((v.nic, v.defect) for v in train.vms if v.status is not Status.PASS)


def gate_run(
    expectations: Expectations | None, results: Sequence[CellResult], trains: Sequence[TrainResult]
) -> GateResult:
    """The gate over a run's cells and trains."""
    return gate(
        expectations,
        [(cell_name(r), r.status, cell_outcome(r)) for r in results],
        [(t.plan.column, t.status, t.outcome) for t in trains],
        {t.plan.column: failed for t in trains if (failed := vm_only_failures(t)) is not None},
        {t.plan.column: tuple(c.name for c in t.checks if c.ok is False) for t in trains},
    )
