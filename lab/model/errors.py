"""The two kinds of trouble the lab can meet, kept apart on purpose.

``DriverFailure`` means the firmware under test misbehaved (it maps to FAIL);
``LabError`` means the lab itself broke (it maps to ERROR).  Code that raises picks
the side explicitly, so no generic exception is ever reported as a driver regression.
"""

from __future__ import annotations

from lab.model.status import Status


class LabError(RuntimeError):
    """The lab broke (QEMU would not start, a ROM does not match, a service died)."""

    status = Status.ERROR


class LabUnavailable(LabError):
    """A prerequisite is missing on this host; the test is skipped or the cell is MISS."""

    status = Status.MISS


class DriverFailure(AssertionError):
    """The firmware under test failed: wrong bytes, or stuck at a stage after the ROM ran."""

    status = Status.FAIL

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(f"stage '{stage}': {message}")
        self.stage = stage


class StageTimeout(DriverFailure):
    """A stage's success pattern did not appear in time; shows the console tail."""

    def __init__(self, stage: str, timeout: float, tail: list[str]) -> None:
        shown = "\n".join(f"    | {line}" for line in tail) or "    | (console empty)"
        super().__init__(stage, f"no success pattern within {timeout:.0f} s; last console lines:\n{shown}")
        self.timeout = timeout
        self.tail = tail


class StageFailed(DriverFailure):
    """A stage's failure pattern appeared on the console."""

    def __init__(self, stage: str, line: str) -> None:
        super().__init__(stage, f"failure pattern seen: {line!r}")
        self.line = line


class StageStalled(DriverFailure):
    """The guest went silent in a stage: it sent nothing while nothing came to it, where a
    live iPXE would have retried (:mod:`lab.run.stall`)."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(stage, reason)
