"""A core that raises ends its own transfer with an ERROR to its clients, and nothing else.

Why: a bug in one transfer's state machine (one was found in the RFC 2090 pace code
before it shipped) must neither take the server down nor leave the transfer's clients
waiting in silence until iPXE's 15.75 s give-up.
"""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from netboot.tftp.driver import CoreDriver
from netboot.tftp.events import CoreEvent
from netboot.tftp.packets import Opcode
from netboot.tftp.thread_driver import ThreadDriver

Address = tuple[str, int]


class Bomb:
    """A core with one member that raises on its first datagram or its first timer."""

    def __init__(self, client: Address, on: str) -> None:
        self.finished = False
        self.peer = client
        self.on = on

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        if self.on == "datagram":
            raise ValueError("a bug")

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        return []

    def get_timer(self) -> float | None:
        return 0.0 if self.on == "timer" else None

    def handle_timer(self, now: float) -> None:
        raise ValueError("a bug")

    def next_event(self) -> CoreEvent | None:
        return None


@pytest.mark.parametrize("on", ["datagram", "timer"])
def test_a_core_that_raises_sends_its_client_an_error_and_closes(
    on: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> tuple[bytes, list[CoreEvent], bool]:
        loop = asyncio.get_running_loop()
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.bind(("127.0.0.1", 0))
        client.setblocking(False)
        server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        server.bind(("127.0.0.1", 0))
        events: list[CoreEvent] = []
        closed = asyncio.Event()
        bomb = Bomb(client.getsockname(), on)
        driver = CoreDriver(loop, server, bomb, events.append, lambda _d: closed.set())
        client.sendto(b"\0\4\0\1", server.getsockname())
        reply = await asyncio.wait_for(loop.sock_recv(client, 1024), 5)
        await asyncio.wait_for(closed.wait(), 5)
        client.close()
        return reply, events, driver.closed

    with caplog.at_level(logging.ERROR, logger="pyatftpd"):
        reply, events, closed = asyncio.run(scenario())
    assert reply[:4] == bytes([0, Opcode.ERROR, 0, 0]) and b"internal error" in reply
    assert closed
    assert [e.name for e in events] == ["internal_error"]
    assert "internal error in a transfer" in caplog.text and "ValueError: a bug" in caplog.text


@pytest.mark.parametrize("on", ["datagram", "timer"])
def test_a_unicast_core_that_raises_in_its_thread_sends_its_client_an_error_and_closes(
    on: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Unicast reads run in a thread of their own (thread_driver.py): the same rule holds."""

    async def scenario() -> tuple[bytes, list[CoreEvent], bool]:
        loop = asyncio.get_running_loop()
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.bind(("127.0.0.1", 0))
        client.setblocking(False)
        server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        server.bind(("127.0.0.1", 0))
        events: list[CoreEvent] = []
        closed = asyncio.Event()
        bomb = Bomb(client.getsockname(), on)
        driver = ThreadDriver(
            loop, server, bomb, events.append, lambda _d: closed.set(), peer=client.getsockname(), tick=0.05
        )
        client.sendto(b"\0\4\0\1", server.getsockname())
        reply = await asyncio.wait_for(loop.sock_recv(client, 1024), 5)
        await asyncio.wait_for(closed.wait(), 5)
        driver.join(5)
        client.close()
        return reply, events, driver.closed

    with caplog.at_level(logging.ERROR, logger="pyatftpd"):
        reply, events, closed = asyncio.run(scenario())
    assert reply[:4] == bytes([0, Opcode.ERROR, 0, 0]) and b"internal error" in reply
    assert closed
    assert [(e.name, e.fields["during"]) for e in events] == [("internal_error", "its thread")]
    assert "internal error in a transfer" in caplog.text and "ValueError: a bug" in caplog.text
