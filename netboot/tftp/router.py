"""The one dispatch point for every request that reaches a listening socket.

Why: unicast reads, uploads, RFC 2090 multicast and PXE MTFTP all start from a
request datagram.  The router decodes it once, answers malformed input with an
ERROR, enforces the limits, and then hands the request to the first handler that
claims it:

* first handlers (``register_first(handler)``) see every request before the others,
  e.g. MTFTP's refusal of iPXE's stale plain-TFTP fallback (:mod:`stale_fallback`);
* option handlers (``register_option("multicast", handler)``) see requests that
  carry that option, in registration order; a handler returns True when it took
  the request, False to let it fall through (e.g. ``--no-multicast``, pool empty);
* the default handler (unicast) takes everything else.

Extra listening sockets (e.g. the MTFTP port) get their own router instance, so
a different default handler can serve them.
"""

from __future__ import annotations

import logging

from netboot.tftp.handler import Address, Handler, Listener, RequestContext, RequestServices
from netboot.tftp.packets import MAX_REQUEST_SIZE, ErrorCode, MalformedPacket, Request, decode

__all__ = ["Handler", "Listener", "RequestContext", "RequestRouter"]

log = logging.getLogger("pyatftpd")

#: The longest ERROR sent back for a datagram that is not a request, unless the datagram
#: itself was longer: atftpd's answer to junk ("Illegal TFTP operation", 27 bytes).
TERSE_LIMIT = 27
_TERSE = {
    int(ErrorCode.ILLEGAL_OPERATION): "malformed request",
    int(ErrorCode.UNKNOWN_TID): "send a RRQ or WRQ",
    int(ErrorCode.OPTION_REFUSED): "malformed option",
}


def terse(code: ErrorCode | int, message: str, request_length: int) -> str:
    """``message``, or a short one when the ERROR would be longer than the datagram it answers.

    Why: the source of a datagram can be spoofed, so a reply longer than the request
    is amplification aimed at whoever owns that address (issue 20: 69 bytes for a 1-byte
    datagram; atftpd 27).  The full text still goes to the log and the ``error`` event.
    """
    if 5 + len(message) <= max(request_length, TERSE_LIMIT):
        return message
    return _TERSE.get(int(code), "malformed request")


class RequestRouter:
    def __init__(self, default: Handler) -> None:
        self._default = default
        self._option_handlers: list[tuple[str, Handler]] = []
        self._first_handlers: list[Handler] = []

    def register_first(self, handler: Handler) -> None:
        """Offer every request to ``handler`` before the option handlers."""
        self._first_handlers.append(handler)

    def register_option(self, name: str, handler: Handler) -> None:
        """Route requests carrying option ``name`` to ``handler`` first."""
        self._option_handlers.append((name.lower(), handler))

    def dispatch(
        self,
        server: RequestServices,
        listener: Listener,
        data: bytes,
        client: Address,
        local_ip: str,
        now: float,
        truncated: bool = False,
    ) -> None:
        if truncated or len(data) > MAX_REQUEST_SIZE:  # longer than any reply: no terse form needed
            server.send_error(
                listener,
                client,
                local_ip,
                ErrorCode.ILLEGAL_OPERATION,
                f"request longer than {MAX_REQUEST_SIZE} bytes (RFC 2347 limit)",
            )
            return
        try:
            packet = decode(data)
        except MalformedPacket as exc:
            if data[:2] == b"\x00\x05":
                return  # never answer an ERROR with an ERROR
            message = f"malformed request: {exc}"
            server.send_error(
                listener, client, local_ip, exc.code, terse(exc.code, message, len(data)), reason=message
            )
            return
        if not isinstance(packet, Request):
            if type(packet).__name__ != "Error":
                message = "this is the request port: send a RRQ or WRQ"
                code = ErrorCode.UNKNOWN_TID
                server.send_error(
                    listener, client, local_ip, code, terse(code, message, len(data)), reason=message
                )
            return
        ctx = RequestContext(
            server,
            listener,
            packet,
            client,
            local_ip,
            now,
            frozenset(name.lower() for name, _ in packet.options),
        )
        server.emit(
            "request",
            client=ctx.client_text,
            file=packet.filename,
            op="RRQ" if packet.is_read else "WRQ",
            mode=packet.mode,
            options=dict(packet.options),
        )
        try:
            self.route(ctx)
        except Exception as exc:  # a handler bug must not take the server down
            log.exception("request from %s for %r failed", ctx.client_text, packet.filename)
            ctx.refuse(ErrorCode.NOT_DEFINED, f"internal server error: {type(exc).__name__}")

    def route(self, ctx: RequestContext) -> None:
        """Hand a decoded request to the first handler that takes it (also for forwarded ones)."""
        for handler in self._first_handlers:
            if handler(ctx):
                return
        for name, handler in self._option_handlers:
            if name in ctx.option_names and handler(ctx):
                return
        self._default(ctx)
