"""What a unicast read and a write transfer share: their queues and their peer check.

Why a base class: both cores answer a foreign TID the same way (ERROR 5, transfer
untouched), drop malformed datagrams the same way, and expose the same sans-I/O
accessors; keeping that in one place keeps the two in step.
"""

from __future__ import annotations

from collections import deque

from netboot.tftp import events as ev
from netboot.tftp.events import CoreEvent
from netboot.tftp.packets import ErrorCode, MalformedPacket, Packet, decode, encode_error

Address = tuple[str, int]
_UNKNOWN_TID = encode_error(ErrorCode.UNKNOWN_TID, "unknown transfer ID: this port serves another client")


class TransferBase:
    """Outbox, event queue, deadline and the foreign-TID rule of one transfer."""

    peer: Address
    _check_port: bool
    _deadline: float | None

    def _init_queues(self) -> None:
        self._outbox: list[tuple[bytes, Address]] = []
        self._events: deque[CoreEvent] = deque()

    def _is_foreign(self, addr: Address) -> bool:
        """Answer a datagram from another TID with ERROR 5; True when it must be ignored."""
        peer = self.peer
        if addr == peer or (not self._check_port and addr[0] == peer[0]):
            return False
        self._outbox.append((_UNKNOWN_TID, addr))
        to = f"{addr[0]}:{addr[1]}"
        self._events.append(CoreEvent(ev.ERROR, {"code": 5, "reason": "foreign TID", "to": to}))
        return True

    def _decode_or_drop(self, data: bytes) -> Packet | None:
        try:
            return decode(data)
        except MalformedPacket as exc:
            self._events.append(CoreEvent(ev.ERROR, {"reason": f"dropped malformed datagram: {exc}"}))
            return None

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        out = self._outbox
        if out:
            self._outbox = []
        return out

    def get_timer(self) -> float | None:
        return self._deadline

    def next_event(self) -> CoreEvent | None:
        return self._events.popleft() if self._events else None
