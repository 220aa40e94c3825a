"""What a request handler sees of the server: the request, and a small interface.

Why: the router (``router.py``) and the handlers (``unicast.py``, the multicast
services) must not depend on the concrete :class:`~netboot.tftp.server.TftpServer`,
which itself builds on the router: that made an import circle (router -> server ->
unicast -> router).  They depend on :class:`RequestServices`, a Protocol the server
satisfies, and the command line hands the server its default handler.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from netboot.events import EventLog
from netboot.tftp.config import ServerConfig
from netboot.tftp.driver import Core
from netboot.tftp.packets import ErrorCode, Request

Address = tuple[str, int]


class Slots(Protocol):
    """Counts transfers in progress; shared between workers when pre-forking."""

    def acquire(self) -> bool: ...

    def release(self) -> None: ...

    def in_use(self) -> int: ...


class Dispatcher(Protocol):
    """Serves the datagrams that reach one listening socket (``router.RequestRouter``)."""

    def dispatch(
        self,
        server: RequestServices,
        listener: Listener,
        data: bytes,
        client: Address,
        local_ip: str,
        now: float,
        truncated: bool = False,
    ) -> None: ...


@dataclass
class Listener:
    """A listening socket and the router that serves its requests."""

    sock: socket.socket
    router: Dispatcher
    name: str = "tftp"


class TransferHandle(Protocol):
    """A running transfer, as its handler sees it (``driver.CoreDriver``, ``ThreadDriver``)."""

    def send_aside(self, data: bytes, addr: Address) -> None:
        """Send ``data`` from the transfer's port, outside its core (answers a repeated request)."""
        ...


class RequestServices(Protocol):
    """The server's services a handler may use (``server.TftpServer`` provides them)."""

    config: ServerConfig
    events: EventLog
    slots: Slots

    def emit(self, event: str, **fields: Any) -> None: ...

    def send_error(
        self,
        listener: Listener,
        client: Address,
        local_ip: str,
        code: ErrorCode | int,
        message: str,
        **fields: Any,
    ) -> None: ...

    def open_transfer_socket(self, local_ip: str) -> socket.socket: ...

    def attach(
        self,
        core: Core,
        sock: socket.socket,
        labels: dict[str, Any],
        *,
        recv_size: int = 2048,
        on_done: Callable[[], None] | None = None,
        threaded: bool = False,
        connect_to: Address | None = None,
    ) -> TransferHandle: ...

    def new_session_id(self) -> str: ...


@dataclass
class RequestContext:
    """Everything a handler needs to serve one request."""

    server: RequestServices
    listener: Listener
    request: Request
    client: Address
    #: The local address the request arrived on (IP_PKTINFO); replies leave from it.
    local_ip: str
    now: float
    #: Lower-cased option names of the request.
    option_names: frozenset[str] = field(default_factory=frozenset)

    @property
    def client_text(self) -> str:
        return f"{self.client[0]}:{self.client[1]}"

    def refuse(self, code: ErrorCode | int, message: str) -> None:
        """Answer the request with ERROR ``code`` from the address it arrived on."""
        self.server.send_error(
            self.listener, self.client, self.local_ip, code, message, file=self.request.filename
        )


#: Takes a request (True) or lets the next handler try (False).
Handler = Callable[[RequestContext], bool]
