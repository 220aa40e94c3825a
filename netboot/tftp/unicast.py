"""The default request handler: a unicast read (RRQ) or, if allowed, an upload (WRQ).

Why separate from the server: this is policy (paths, options, limits, what error
a client hears), the server is mechanism.  The multicast handler reuses the same
steps (:func:`open_source`, :func:`negotiate_or_refuse`) for its sessions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from netboot.tftp.handler import RequestContext, TransferHandle
from netboot.tftp.netascii import NetasciiSource
from netboot.tftp.options import Negotiation, OptionRefused, negotiate
from netboot.tftp.packets import ErrorCode
from netboot.tftp.paths import PathRefused, resolve
from netboot.tftp.read_owners import ReadKey, SharedReads
from netboot.tftp.read_transfer import ReadTransfer
from netboot.tftp.rto import RttEstimator
from netboot.tftp.sources import BlockSource, FileSource
from netboot.tftp.upload import FileSink, UploadRefused
from netboot.tftp.write_transfer import WriteTransfer

log = logging.getLogger("pyatftpd")


def open_file(ctx: RequestContext) -> FileSource | None:
    """Open the requested file for reading as it is (octet), or refuse the request and return None."""
    request = ctx.request
    try:
        path = resolve(ctx.server.config.root, request.filename)
        return FileSource(path)
    except PathRefused as exc:
        ctx.refuse(exc.code, str(exc))
    except PermissionError:
        ctx.refuse(ErrorCode.ACCESS_VIOLATION, f"access violation: cannot read {request.filename!r}")
    except OSError as exc:
        ctx.refuse(ErrorCode.FILE_NOT_FOUND, f"cannot open {request.filename!r}: {exc.strerror}")
    return None


def open_source(ctx: RequestContext) -> BlockSource | None:
    """The bytes a read sends: the file, or (netascii) the file converted as it is read."""
    source = open_file(ctx)
    if source is None or ctx.request.mode != "netascii":
        return source
    return NetasciiSource(source.release_fd(), source.size)


def negotiate_or_refuse(ctx: RequestContext, size: int | None) -> Negotiation | None:
    try:
        return negotiate(ctx.request.options, size, ctx.server.config.policy, is_read=ctx.request.is_read)
    except OptionRefused as exc:
        ctx.refuse(exc.code, str(exc))
        return None


class UnicastHandler:
    """The default handler: unicast reads, and uploads when allowed.

    Why a class: it remembers the reads in progress, so a request repeated by its
    client (same address and port, same request; iPXE repeats an unanswered RRQ after
    0.25 s, other clients after their timeout) is a retransmission of that request,
    not a second transfer: it starts no second conversion, file and thread.  With
    ``--workers N`` (``shared``) that holds across workers: a repeat that a sibling reads
    is handed to the worker serving the read (read_owners.py).
    """

    def __init__(self, shared: SharedReads | None = None) -> None:
        self.reads: dict[ReadKey, tuple[ReadTransfer, TransferHandle]] = {}
        self.shared = shared

    def __call__(self, ctx: RequestContext) -> bool:
        server = ctx.server
        config = server.config
        request = ctx.request
        if not request.is_read and not config.allow_upload:
            ctx.refuse(
                ErrorCode.ACCESS_VIOLATION,
                "uploads (WRQ) are disabled on this server; start pyatftpd with --allow-upload",
            )
            return True
        if request.is_read:
            self._read(ctx)
            return True
        if not server.slots.acquire():
            _refuse_busy(ctx)
            return True
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                server.slots.release()

        try:
            started = _start_write(ctx, release)
        except BaseException:
            release()
            raise
        if not started:
            release()
        return True

    def _read(self, ctx: RequestContext) -> None:
        request = ctx.request
        key: ReadKey = (ctx.client, request.filename, request.mode, request.options)
        if key in self.reads:
            self._repeated(ctx, self.reads[key])
            return
        shared = self.shared
        if shared is not None and shared.handed_over(ctx, key):
            return
        slots = ctx.server.slots
        ended = False

        def claim() -> Callable[[], None] | None:
            """A ``--maxthread`` slot for the transfer, taken only once there is one to run.

            Why this late: a refused request (no such file, a bad option) must never count
            as a transfer, or a burst of them reads "server busy" to a client with a real one.
            """
            if not slots.acquire():
                _refuse_busy(ctx)
                return None

            def release() -> None:
                nonlocal ended
                if not ended:
                    ended = True
                    slots.release()
                    self.reads.pop(key, None)
                    if shared is not None:
                        shared.release(key)

            return release

        running = _start_read(ctx, claim)
        if running is not None and not ended:
            self.reads[key] = running
        elif shared is not None:
            shared.release(key)  # refused, or over already: no read of this worker to hand repeats to

    def _repeated(self, ctx: RequestContext, running: tuple[ReadTransfer, TransferHandle]) -> None:
        """Answer a repeated RRQ with the first datagram again, while the client never answered.

        Why here and not on the transfer's timer: a repeated RRQ shows the client is
        there and lost the first answer; a timer would also fire for a spoofed address
        that never asked (ReadTransfer's docstring).  One answer per repeat, so a
        repeat costs no more than the request that started the transfer.
        """
        core, handle = running
        answered = not core.proven and not core.finished
        if answered:
            handle.send_aside(core.first_datagram, ctx.client)
        ctx.server.emit("rrq_repeated", client=ctx.client_text, file=ctx.request.filename, answered=answered)


def _refuse_busy(ctx: RequestContext) -> None:
    in_use = ctx.server.slots.in_use()
    ctx.refuse(
        ErrorCode.NOT_DEFINED,
        f"server busy: {in_use} transfers in progress (--maxthread); try again later",
    )


def _labels(ctx: RequestContext) -> dict[str, object]:
    return {"client": ctx.client_text, "file": ctx.request.filename, "session": ctx.server.new_session_id()}


def _start_read(
    ctx: RequestContext, claim: Callable[[], Callable[[], None] | None]
) -> tuple[ReadTransfer, TransferHandle] | None:
    source = open_source(ctx)
    if source is None:
        return None
    negotiation = negotiate_or_refuse(ctx, source.size)
    if negotiation is None:
        source.close()
        return None
    release = claim()
    if release is None:
        source.close()
        return None
    server = ctx.server
    try:
        sock = server.open_transfer_socket(ctx.local_ip)
    except OSError as exc:
        source.close()
        release()
        ctx.refuse(ErrorCode.NOT_DEFINED, f"cannot open a transfer socket: {exc.strerror}")
        return None
    config = server.config
    core = ReadTransfer(
        ctx.client,
        source,
        negotiation,
        now=ctx.now,
        timeout=config.retry_timeout,
        max_retries=config.max_retries,
        trace=config.trace,
        check_port=config.check_port,
        first_retry=config.first_retry,
        rtt=RttEstimator(ceiling=config.retry_timeout) if config.adaptive_rto else None,
    )
    log.info(
        "serving %r to %s (blksize %d, windowsize %d, %s bytes)",
        ctx.request.filename,
        ctx.client_text,
        negotiation.blksize,
        negotiation.windowsize,
        "netascii, converted as read:" if source.size is None else source.size,
    )

    def done() -> None:
        source.close()
        release()

    handle = server.attach(
        core,
        sock,
        _labels(ctx),
        on_done=done,
        # A read transfer only expects ACKs and ERRORs: 512 bytes is enough (the thread
        # driver reads them into one reused buffer of this size).  Longer garbage is
        # truncated, which is harmless.
        recv_size=512,
        threaded=config.threaded,
        connect_to=ctx.client if config.check_port else None,
    )
    return core, handle


def _start_write(ctx: RequestContext, release: Callable[[], None]) -> bool:
    request = ctx.request
    server = ctx.server
    config = server.config
    try:
        target = resolve(config.root, request.filename, must_exist=False)
    except PathRefused as exc:
        ctx.refuse(exc.code, str(exc))
        return False
    negotiation = negotiate_or_refuse(ctx, None)
    if negotiation is None:
        return False
    if config.max_upload_bytes is not None and (negotiation.tsize or 0) > config.max_upload_bytes:
        ctx.refuse(
            ErrorCode.DISK_FULL,
            f"upload of {negotiation.tsize} bytes exceeds the limit of {config.max_upload_bytes} bytes",
        )
        return False
    try:
        sink = FileSink(target, request.mode == "netascii", request.filename)
    except UploadRefused as exc:
        ctx.refuse(exc.code, exc.message)
        return False
    except OSError as exc:
        ctx.refuse(ErrorCode.ACCESS_VIOLATION, f"cannot create {request.filename!r}: {exc.strerror}")
        return False
    try:
        sock = server.open_transfer_socket(ctx.local_ip)
    except OSError as exc:
        sink.abort()
        ctx.refuse(ErrorCode.NOT_DEFINED, f"cannot open a transfer socket: {exc.strerror}")
        return False
    core = WriteTransfer(
        ctx.client,
        sink,
        negotiation,
        now=ctx.now,
        timeout=config.retry_timeout,
        max_retries=config.max_retries,
        max_bytes=config.max_upload_bytes,
        trace=config.trace,
        check_port=config.check_port,
    )
    log.info("receiving %r from %s", request.filename, ctx.client_text)
    server.attach(core, sock, _labels(ctx), recv_size=negotiation.blksize + 8, on_done=release)
    return True
