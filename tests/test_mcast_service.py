"""The ``multicast`` option handler's decisions, without sockets: decline -> unicast."""

from __future__ import annotations

from pathlib import Path
from typing import cast

from netboot.events import EventLog, read_events
from netboot.tftp.mcast_pool import McastPool
from netboot.tftp.mcast_service import MulticastService
from netboot.tftp.packets import Opcode, Request
from netboot.tftp.router import RequestContext
from netboot.tftp.server import Listener, ServerConfig, TftpServer
from netboot.tftp.unicast import UnicastHandler


def context(server: TftpServer, name: str, *options: tuple[str, str], mode: str = "octet") -> RequestContext:
    request = Request(Opcode.RRQ, name, mode, (*options, ("multicast", "")))
    no_listener = cast(Listener, None)  # only used to send an ERROR; these paths send none
    return RequestContext(
        server, no_listener, request, ("192.0.2.9", 2000), "192.0.2.1", 0.0,
        frozenset(n.lower() for n, _ in request.options),
    )


def make_server(tmp_path: Path) -> tuple[TftpServer, Path]:
    events = tmp_path / "events.jsonl"
    log = EventLog(str(events), "pyatftpd")
    server = TftpServer(ServerConfig(root=str(tmp_path)), log, default=UnicastHandler())
    return server, events


def test_files_over_65535_blocks_are_served_unicast_not_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.img"
    with open(big, "wb") as handle:
        handle.truncate(65535 * 64)  # sparse: 65536 blocks of 64 bytes
    server, events = make_server(tmp_path)
    service = MulticastService(server, McastPool())
    taken = service.handle(context(server, "big.img", ("blksize", "64"), ("tsize", "0")))
    server.events.close()
    assert taken is False, "falls through to the unicast handler, which omits multicast from the OACK"
    (declined,) = [e for e in read_events(str(events)) if e["event"] == "mcast_declined"]
    assert "65536 blocks" in declined["reason"]
    assert service.pool.free == len(service.pool), "no group:port was taken"


def test_netascii_is_never_multicast(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("hello\n")
    server, events = make_server(tmp_path)
    service = MulticastService(server, McastPool())
    assert service.handle(context(server, "t.txt", mode="netascii")) is False
    server.events.close()
    assert any(e["event"] == "mcast_declined" for e in read_events(str(events)))


def test_no_multicast_switch_leaves_the_option_to_unicast(tmp_path: Path) -> None:
    from netboot.tftp.options import OptionPolicy

    (tmp_path / "a.img").write_bytes(b"x" * 1000)
    config = ServerConfig(root=str(tmp_path), policy=OptionPolicy(multicast=False))
    server = TftpServer(config, default=UnicastHandler())
    service = MulticastService(server, McastPool())
    assert service.handle(context(server, "a.img")) is False
