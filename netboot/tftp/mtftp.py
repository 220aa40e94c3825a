"""PXE MTFTP (``--mtftp FILE``, ``--mtftp-port``), served by the multicast session core.

Why it is shaped like atftpd's (docs/multicast.md, "Command line" and "PXE MTFTP";
docs/findings.md#ipxe-mtftp-one-group for iPXE's fixed group): the configuration file has
lines ``filename group port``; a request on ``--mtftp-port`` (default 75, as atftpd;
iPXE's ``mtftp://`` uses 1759 and the group 239.255.1.1:3001, so run
``pyatftpd --mtftp FILE --mtftp-port 1759`` with a line ``name 239.255.1.1 3001``)
starts a transfer with 512-byte blocks and no options, block 1 unicast to the
requester (the master) and to the group, and each ACK of the master puts the next
block on the group.

Where it differs on purpose: a request for a transfer that is already running is not
ignored.  It is answered at once, by unicast from the session socket, and the
requester joins the running stream.  atftpd ignores it, the iPXE client listens,
times out when the transfer ends and reopens, and finishes with zero-filled holes
(docs/findings.md#atftpd-mtftp-late-joiners, #ipxe-mtftp-stale-fallback).  Answering
at once and never pausing the group stream keeps every iPXE client off that restart
path.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from netboot.tftp.handler import RequestContext
from netboot.tftp.mcast_member import DONE, MASTER, UNICAST, WAITING
from netboot.tftp.mcast_pool import GroupPort
from netboot.tftp.mcast_service import SessionRegistry
from netboot.tftp.mcast_state import MAX_MULTICAST_BLOCKS
from netboot.tftp.mcast_tuning import Tuning
from netboot.tftp.mtftp_held import HeldRequests
from netboot.tftp.multicast import MulticastSession
from netboot.tftp.packets import ErrorCode
from netboot.tftp.router import RequestRouter
from netboot.tftp.server import TftpServer
from netboot.tftp.stale_fallback import GroupStream, other_file_reason, refusal_message, stale_fallback_reason
from netboot.tftp.unicast import open_file

log = logging.getLogger("pyatftpd")

DEFAULT_MTFTP_PORT = 75
#: Member states of a client that may still be receiving its file (not done, gone or released).
RECEIVING = frozenset({WAITING, MASTER, UNICAST})
MTFTP_BLKSIZE = 512


class MtftpConfigError(ValueError):
    pass


@dataclass(frozen=True)
class MtftpEntry:
    filename: str
    group: GroupPort


def parse_mtftp_config(text: str, origin: str = "--mtftp file") -> dict[str, MtftpEntry]:
    """Lines ``filename group port``; ``#`` starts a comment; blank lines are ignored."""
    entries: dict[str, MtftpEntry] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        where = f"{origin} line {number}"
        if len(fields) != 3:
            raise MtftpConfigError(f"{where}: expected 'filename group port', got {raw.strip()!r}")
        name, group, port_text = fields
        try:
            if not ipaddress.IPv4Address(group).is_multicast:
                raise MtftpConfigError(f"{where}: {group} is not a multicast address (e.g. 239.255.1.1)")
        except ipaddress.AddressValueError:
            raise MtftpConfigError(f"{where}: {group!r} is not an IPv4 address") from None
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise MtftpConfigError(f"{where}: port {port_text!r} is not in 1..65535 (iPXE listens on 3001)")
        if name in entries:
            raise MtftpConfigError(f"{where}: {name!r} is listed twice")
        entries[name] = MtftpEntry(name, GroupPort(group, int(port_text)))
    return entries


def load_mtftp_config(path: str) -> dict[str, MtftpEntry]:
    try:
        with open(path, encoding="utf-8") as handle:
            return parse_mtftp_config(handle.read(), path)
    except OSError as exc:
        raise MtftpConfigError(f"cannot read --mtftp file {path}: {exc.strerror}") from None


def group_stream(core: MulticastSession) -> GroupStream:
    """The part of a session that :func:`stale_fallback_reason` judges by."""
    finished = frozenset(m.addr[0] for m in core.members.values() if m.state == DONE)
    everyone = frozenset(m.addr[0] for m in core.members.values())
    return GroupStream(core.last_group_send, finished, everyone - finished, running=not core.finished)


def group_mates(entries: dict[str, MtftpEntry], entry: MtftpEntry) -> list[MtftpEntry]:
    """The other configured files on ``entry``'s group:port (iPXE's ``mtftp://`` has one for all)."""
    where = (entry.group.group, entry.group.port)
    return [
        other
        for other in entries.values()
        if other.filename != entry.filename and (other.group.group, other.group.port) == where
    ]


def shares_group(entries: dict[str, MtftpEntry], entry: MtftpEntry) -> bool:
    """Another configured file uses ``entry``'s group:port (always so for iPXE's ``mtftp://``)."""
    return bool(group_mates(entries, entry))


class MtftpService:
    """The MTFTP listening socket and its sessions (one per configured file and interface)."""

    def __init__(
        self,
        server: TftpServer,
        entries: dict[str, MtftpEntry],
        ttl: int = 1,
        tuning: Tuning | None = None,
    ) -> None:
        self.server = server
        self.entries = entries
        self.registry = SessionRegistry(server, ttl, tuning)
        self.tuning = tuning
        #: The last ended session of each (file, interface), for :meth:`refuse_stale_fallback`.
        self.ended: dict[tuple[str, str, str], GroupStream] = {}
        #: Requests held by :meth:`_tails_on_group`, and who of them joined the stream.
        self.held = HeldRequests()

    def install(self, sock: socket.socket) -> None:
        self.server.add_listener(sock, RequestRouter(self.handle), name="mtftp")
        self.server.router.register_first(self.refuse_stale_fallback)

    def refuse_stale_fallback(self, ctx: RequestContext) -> bool:
        """A plain RRQ on the TFTP port that is iPXE's stale MTFTP fallback gets an ERROR."""
        request = ctx.request
        if not request.is_read or "multicast" in ctx.option_names or request.filename not in self.entries:
            return False
        key = ("mtftp", request.filename, ctx.local_ip)
        handle = self.registry.sessions.get(key)
        if (joined := self.held.clean_fallback(key, ctx.client)) is not None:
            self.server.emit(
                "mtftp_fallback_served", client=ctx.client_text, file=request.filename,
                session_running=handle is not None,
                reason="held, made a member when the stream started, and fell back without reopening: "
                "it never heard the stream",
            )
            if handle is not None:
                handle.core.withdraw(joined, ctx.now, "fell back to plain TFTP before it heard the stream")
                handle.driver.kick()
            return False
        stream = self._latest_stream(key)
        reason = stale_fallback_reason(stream, ctx.client[0], ctx.now)
        if reason is None and (stream is None or ctx.client[0] not in stream.finished_ips):
            others = self._other_streams(request.filename, ctx.local_ip)
            found = other_file_reason(others, ctx.client[0], ctx.now)
            if found is not None:
                stream, reason = found
        if reason is None or stream is None:
            return False
        quiet = round(ctx.now - stream.last_group_send, 3) if stream.last_group_send >= 0 else None
        self.server.emit(
            "mtftp_stale_fallback", client=ctx.client_text, file=request.filename,
            quiet_seconds=quiet, session_running=handle is not None, reason=reason,
        )
        log.warning("refusing %s's plain RRQ for %r: %s", ctx.client_text, request.filename, reason)
        ctx.refuse(ErrorCode.NOT_DEFINED, refusal_message(request.filename))
        return True

    def _latest_stream(self, key: tuple[str, str, str]) -> GroupStream | None:
        """The running session of ``key`` as a stream, or else its last ended one."""
        handle = self.registry.sessions.get(key)
        return group_stream(handle.core) if handle is not None else self.ended.get(key)

    def _other_streams(self, filename: str, local_ip: str) -> Iterator[tuple[str, GroupStream]]:
        """The latest stream of every other file on ``filename``'s group:port (iPXE's one group)."""
        for other in group_mates(self.entries, self.entries[filename]):
            stream = self._latest_stream(("mtftp", other.filename, local_ip))
            if stream is not None:
                yield other.filename, stream

    def handle(self, ctx: RequestContext) -> bool:
        request = ctx.request
        if not request.is_read:
            ctx.refuse(ErrorCode.ILLEGAL_OPERATION, "the MTFTP port only serves reads (RRQ)")
            return True
        if request.mode != "octet":
            ctx.refuse(ErrorCode.ILLEGAL_OPERATION, f"MTFTP serves octet mode only, not {request.mode}")
            return True
        if ":" in ctx.client[0] or ":" in ctx.local_ip:
            ctx.refuse(ErrorCode.NOT_DEFINED, "MTFTP groups are IPv4; fetch over IPv4, or with tftp://")
            return True
        entry = self.entries.get(request.filename)
        if entry is None:
            ctx.refuse(
                ErrorCode.FILE_NOT_FOUND,
                f"{request.filename!r} is not offered by MTFTP here; list it in the --mtftp file",
            )
            return True
        key = ("mtftp", entry.filename, ctx.local_ip)
        self.held.saw_request(key, ctx.client)
        handle = self.registry.find(key)
        if handle is None and (busy := self._tails_on_group(key, entry.group, ctx.client[0])) is not None:
            other, unfinished = busy
            self.server.emit(
                "mtftp_held", client=ctx.client_text, file=request.filename, other_file=other,
                unfinished=unfinished,
            )
            log.info("holding %s's MTFTP request for %r: %d client(s) still receive %r by unicast on its "
                     "group:port", ctx.client_text, request.filename, unfinished, other)  # fmt: skip
            self.held.hold(key, ctx.client, ctx.now)
            return True
        started = handle is None
        if handle is None:
            source = open_file(ctx)
            if source is None:
                return True
            blocks = source.size // MTFTP_BLKSIZE + 1
            if blocks > MAX_MULTICAST_BLOCKS:
                source.close()
                ctx.refuse(
                    ErrorCode.NOT_DEFINED,
                    f"{request.filename!r} has {blocks} blocks of 512 bytes, more than MTFTP's "
                    f"{MAX_MULTICAST_BLOCKS}; fetch it with tftp:// instead",
                )
                return True

            shared = shares_group(self.entries, entry)

            created: list[MulticastSession] = []

            def factory(source: Any = source) -> MulticastSession:
                core = MulticastSession(
                    source.read, source.size, MTFTP_BLKSIZE, entry.group, ctx.now,
                    mtftp=True, tuning=self.tuning, shared_group=shared,
                )
                created.append(core)
                return core

            def on_end(source: Any = source, key: tuple[str, str, str] = key) -> None:
                source.close()
                for core in created:
                    self.ended[key] = group_stream(core)

            handle = self.registry.start(ctx, key, factory, entry.group, on_end)
            if handle is None:
                source.close()
                return True
        handle.core.add_request(ctx.client, [], ctx.now, may_listen=not self._group_shared(key, entry.group))
        if started:
            # Held requesters still listen: they asked, so this stream is theirs (probed for
            # what they miss; their fallback judged by mtftp_held.py, not as a stranger's).
            for addr in self.held.still_listening(key, ctx.client, ctx.now):
                handle.core.add_request(addr, [], ctx.now)  # it hears this stream from its first block
        handle.driver.kick()
        return True

    def _tails_on_group(
        self, key: tuple[str, str, str], group: GroupPort, client_ip: str
    ) -> tuple[str, int] | None:
        """Another file, and how many of its clients still receive it after its group closed.

        Why hold rather than start this file's stream (docs/multicast.md, "One group for
        every file"): those clients get the other file's tail by unicast while their iPXE
        still listens on the one group:port.  A tail DATA lost or taken in late lets such a
        client's 0.25 s timer expire: Debian's ROMs then fall back to plain TFTP over a stale
        size (refused), upstream reopens with its peer cleared and takes the next packet it
        hears, with this file streaming that one of this file's DATA.  In a CI full boot
        this file's stream (397 group frames in 0.5 s on the client's tap) kept a TCG guest
        from answering its tail's second DATA in time.  Not answering is safe: iPXE repeats the request
        after 0.25, 0.75 and 1.75 s, which starts the stream once the tails are done, and
        after 3.75 s falls back to plain TFTP on port 69, which is served (it heard nothing).
        A group that still carries the other file is a different case: a request is then
        answered at once by unicast (:meth:`_group_shared`), since holding it would leave it
        listening to that stream.
        """
        where = (group.group, group.port)
        for other in self.registry.sessions.values():
            core = other.core
            if other.key == key or core.group_addr != where or core.finished or not core.group_closed:
                continue
            unfinished = sum(
                1 for m in core.members.values() if m.state in RECEIVING and m.addr[0] != client_ip
            )
            if unfinished:
                return other.key[1], unfinished
        return None

    def _group_shared(self, key: tuple[str, str, str], group: GroupPort) -> bool:
        """Another file's session is running on the same group:port (iPXE's one fixed group).

        Then a late requester must not be left to listen: its first packet sets iPXE's
        TID filter, and a group DATA of the other file would lock it onto the wrong
        stream.  Answered at once by unicast, it usually locks onto its own session;
        what makes it safe is that a file leaves the group once a client has finished
        it (``shared_group`` in :class:`MulticastSession`).
        """
        where = (group.group, group.port)
        return any(
            other.key != key and other.core.group_addr == where and not other.core.finished
            for other in self.registry.sessions.values()
        )
