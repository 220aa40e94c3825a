"""A pyatftpd broken on purpose, for the lab's own tests of its regression gate.

Why it exists: a gate is only worth something if it is seen to fail.  With
``PYATFTPD_TEST_FAULT=drop-group-data`` in its environment, pyatftpd's multicast sessions
(RFC 2090 and PXE MTFTP) never put DATA on the group: the core believes it sent them,
the datagrams just never leave.  Clients then miss the group, which the lab must report
as a regression.  Without the variable nothing here is used; with it, pyatftpd says so
once at start-up.
"""

from __future__ import annotations

import os
import socket

from netboot.tftp.driver import Address, Core
from netboot.tftp.events import CoreEvent

FAULT_ENV = "PYATFTPD_TEST_FAULT"
DROP_GROUP_DATA = "drop-group-data"


def active_fault() -> str | None:
    """The fault switched on in the environment, or None (the normal case)."""
    return os.environ.get(FAULT_ENV) or None


def _is_group(addr: Address) -> bool:
    try:
        return 224 <= socket.inet_aton(addr[0])[0] <= 239
    except OSError:
        return False


class GroupDataDropped:
    """A session core whose DATA to the group is dropped on the way out."""

    def __init__(self, core: Core) -> None:
        self._core = core

    @property
    def finished(self) -> bool:
        return self._core.finished

    @finished.setter
    def finished(self, value: bool) -> None:
        self._core.finished = value

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        self._core.receive_datagram(data, addr, now)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        out = self._core.datagrams_to_send(now)
        return [(d, a) for d, a in out if not (d[:2] == b"\x00\x03" and _is_group(a))]

    def get_timer(self) -> float | None:
        return self._core.get_timer()

    def handle_timer(self, now: float) -> None:
        self._core.handle_timer(now)

    def next_event(self) -> CoreEvent | None:
        return self._core.next_event()


def with_fault(core: Core) -> Core:
    """``core`` as the driver should see it: itself, unless a test switched a fault on."""
    return GroupDataDropped(core) if active_fault() == DROP_GROUP_DATA else core
