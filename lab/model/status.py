"""Cell and stage statuses, ordered the KernelCI (KCIDB) way.

Why an order: a matrix cell combines several stages and several payloads, and the
summary must show the worst thing that happened.  A driver failure (FAIL) outranks a
broken lab (ERROR), which outranks a run that never happened (MISS), so a real
regression is never hidden behind lab noise, and lab noise is never reported as a
driver regression.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable


class Status(enum.Enum):
    FAIL = "FAIL"  # the driver under test did something wrong (bad bytes, stuck after the ROM started)
    ERROR = "ERROR"  # the lab broke: QEMU did not start, ROM mismatch, a service died
    MISS = "MISS"  # the harness did not run it (no namespace, no tun device)
    PASS = "PASS"
    SKIP = "SKIP"  # not applicable here
    UNSUPPORTED = "UNSUPPORTED"  # the ROM lacks the feature (e.g. no SLAM in Features:)
    NOT_EMULATED = "NOT_EMULATED"  # QEMU has no model of this NIC

    @property
    def priority(self) -> int:
        return _PRIORITY[self]


#: Lower is worse.  UNSUPPORTED and NOT_EMULATED are facts about the ROM or QEMU, not
#: results, so they rank with SKIP: combined with anything that ran, the run wins.
_PRIORITY = {
    Status.FAIL: 0,
    Status.ERROR: 1,
    Status.MISS: 2,
    Status.PASS: 3,
    Status.UNSUPPORTED: 4,
    Status.NOT_EMULATED: 5,
    Status.SKIP: 6,
}


def combine(statuses: Iterable[Status]) -> Status:
    """The worst of ``statuses``; SKIP when there are none (nothing applied)."""
    return min(statuses, key=lambda s: s.priority, default=Status.SKIP)
