"""A stand-in for the server behind the handler interface (``handler.RequestServices``).

Why: the handlers' decisions (what starts a transfer, what is refused, what a
repeated request does) are tested without an event loop; transfers are recorded,
not driven, and "end" when the test says so.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any, cast

from netboot.events import EventLog
from netboot.tftp.config import ServerConfig
from netboot.tftp.driver import Core
from netboot.tftp.handler import Address, Listener, RequestContext, Slots
from netboot.tftp.packets import ErrorCode, Opcode, Request
from netboot.tftp.server import LocalSlots
from netboot.tftp.unicast import UnicastHandler

CLIENT: Address = ("192.0.2.9", 3000)


def read_request(
    name: str, mode: str = "octet", options: tuple[tuple[str, str], ...] = ()
) -> Request:
    return Request(Opcode.RRQ, name, mode, options)


class FakeServices:
    def __init__(self, root: str, **config: Any) -> None:
        self.config = ServerConfig(root=root, threaded=False, **config)
        self.events = EventLog(None, "pyatftpd")
        self.emitted: list[dict[str, Any]] = []
        self.errors: list[tuple[Address, int, str]] = []
        self.slots: Slots = LocalSlots(self.config.max_transfers)
        self.cores: list[Core] = []
        self.sent_aside: list[tuple[bytes, Address]] = []
        self._ends: list[Callable[[], None] | None] = []
        self._sockets: list[socket.socket] = []
        self.handler = UnicastHandler()
        self._ids = 0

    # RequestServices ------------------------------------------------------------------
    def emit(self, event: str, **fields: Any) -> None:
        self.emitted.append({"event": event, **fields})

    def send_error(
        self, listener: Listener, client: Address, local_ip: str, code: ErrorCode | int, message: str,
        **fields: Any,
    ) -> None:
        self.errors.append((client, int(code), message))

    def open_transfer_socket(self, local_ip: str) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        self._sockets.append(sock)
        return sock

    def attach(
        self, core: Core, sock: socket.socket, labels: dict[str, Any], *, recv_size: int = 2048,
        on_done: Callable[[], None] | None = None, threaded: bool = False, connect_to: Address | None = None,
    ) -> object:
        self.cores.append(core)
        self._ends.append(on_done)
        return self

    def send_aside(self, data: bytes, addr: Address) -> None:
        self.sent_aside.append((data, addr))

    def new_session_id(self) -> str:
        self._ids += 1
        return str(self._ids)

    # test helpers -----------------------------------------------------------------------
    def handle(self, request: Request, client: Address = CLIENT, now: float = 0.0) -> bool:
        listener = cast(Listener, None)  # only send_error uses it, and ours ignores it
        names = frozenset(n.lower() for n, _ in request.options)
        ctx = RequestContext(self, listener, request, client, "127.0.0.1", now, names)
        return self.handler(ctx)

    @property
    def slots_used(self) -> int:
        return self.slots.in_use()

    def close_all(self) -> None:
        """Every transfer recorded so far ends (its socket closes, its slot is released)."""
        for index, end in enumerate(self._ends):
            if end is not None:
                end()
                self._ends[index] = None
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()
