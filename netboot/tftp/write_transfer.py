"""Sans-I/O state machine of one upload (WRQ); used only with ``--allow-upload``.

Why: some labs collect logs or images from clients.  The machine mirrors
:class:`~netboot.tftp.read_transfer.ReadTransfer`: it never raises out of
``receive_datagram``, answers foreign TIDs with ERROR 5, re-ACKs a duplicate DATA
(the client's retransmission) and retransmits its own last ACK only on timeout.
With ``windowsize`` N it ACKs every N-th block, the final block and after a gap
(RFC 7440).  The sink is committed when the final block arrived, before its ACK
(a failed commit is answered with ERROR 3, never with that ACK).
"""

from __future__ import annotations

import errno
import struct

from netboot.tftp import events as ev
from netboot.tftp.events import CoreEvent
from netboot.tftp.options import Negotiation
from netboot.tftp.packets import Data as DataPacket
from netboot.tftp.packets import Error as ErrorPacket
from netboot.tftp.packets import ErrorCode, OAck, encode, encode_error
from netboot.tftp.sources import BlockSink
from netboot.tftp.transfer_base import Address, TransferBase

_ACK = struct.Struct("!HH").pack


def _code_for(exc: OSError) -> ErrorCode:
    """The TFTP error a failed write is answered with: 3 for a full disk or quota, as atftpd."""
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ErrorCode.ACCESS_VIOLATION
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return ErrorCode.DISK_FULL
    return ErrorCode.NOT_DEFINED


class WriteTransfer(TransferBase):
    """Receives a file from ``peer`` into ``sink``."""

    def __init__(
        self,
        peer: Address,
        sink: BlockSink,
        negotiation: Negotiation,
        *,
        now: float,
        timeout: float = 5.0,
        max_retries: int = 5,
        max_bytes: int | None = None,
        trace: bool = False,
        check_port: bool = True,
    ) -> None:
        self.peer = peer
        self.negotiation = negotiation
        self.finished = False
        self.succeeded = False
        self.bytes_received = 0
        self.retransmits = 0
        self._sink = sink
        self._blksize = negotiation.blksize
        self._window = negotiation.windowsize
        self._timeout = float(negotiation.timeout) if negotiation.timeout is not None else timeout
        self._max_retries = max_retries
        self._max_bytes = max_bytes
        self._trace = trace
        self._check_port = check_port
        self._started = now
        self._expected = 1
        self._in_window = 0
        self._retries = 0
        self._init_queues()
        if negotiation.needs_oack:
            self._last_reply = encode(OAck(tuple(negotiation.acknowledged)))
            self._events.append(CoreEvent(ev.OACK, {"options": dict(negotiation.acknowledged)}))
        else:
            self._last_reply = _ACK(4, 0)
        self._outbox.append((self._last_reply, peer))
        self._deadline: float | None = now + self._timeout

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        if self.finished:
            return
        if addr != self.peer and self._is_foreign(addr):
            return
        packet = self._decode_or_drop(data)
        if packet is None:
            return
        if isinstance(packet, ErrorPacket):
            self._fail(f"client sent ERROR {packet.code}: {packet.message}", now, notify=False)
        elif isinstance(packet, DataPacket):
            self._on_data(packet, now)

    def handle_timer(self, now: float) -> None:
        if self._deadline is None or now < self._deadline or self.finished:
            return
        self._retries += 1
        if self._retries > self._max_retries:
            self._fail(f"no DATA after {self._max_retries} retries of {self._timeout:g} s", now, notify=True)
            return
        self.retransmits += 1
        self._events.append(CoreEvent(ev.RETRANSMIT, {"block": (self._expected - 1) & 0xFFFF}))
        self._outbox.append((self._last_reply, self.peer))
        self._deadline = now + self._timeout

    def cancel(self, reason: str, now: float) -> None:
        """The server stops: drop the partial upload (the driver tells the client)."""
        if not self.finished:
            self._fail(reason, now, notify=False)

    def _on_data(self, packet: DataPacket, now: float) -> None:
        delta = (packet.block - self._expected) & 0xFFFF
        if self._trace:
            self._events.append(CoreEvent(ev.DATA, {"block": packet.block, "bytes": len(packet.payload)}))
        if delta != 0:
            # A retransmission of an earlier block, or a gap inside a window: tell the
            # client where we are.  Both are answers to the client's own sends, so
            # they cannot multiply the stream.
            self._send_ack(self._expected - 1)
            return
        payload = packet.payload
        if len(payload) > self._blksize:
            self._fail(f"DATA of {len(payload)} bytes exceeds blksize {self._blksize}", now, notify=True)
            return
        if self._max_bytes is not None and self.bytes_received + len(payload) > self._max_bytes:
            self._fail(
                f"upload exceeds the limit of {self._max_bytes} bytes",
                now,
                notify=True,
                code=ErrorCode.DISK_FULL,
            )
            return
        try:
            self._sink.write(payload)
        except OSError as exc:
            self._fail(f"cannot store the upload: {exc.strerror}", now, notify=True, code=_code_for(exc))
            return
        self.bytes_received += len(payload)
        self._expected += 1
        self._in_window += 1
        self._retries = 0
        self._deadline = now + self._timeout
        final = len(payload) < self._blksize
        if final:
            # Stored before the last ACK: that ACK tells the client the file is safe.
            try:
                self._sink.commit()
            except OSError as exc:
                self._fail(f"cannot store the upload: {exc.strerror}", now, notify=True, code=_code_for(exc))
                return
        if final or self._in_window >= self._window:
            self._send_ack(self._expected - 1)
        if final:
            self._done(True, None, now)

    def _send_ack(self, block: int) -> None:
        self._in_window = 0
        self._last_reply = _ACK(4, block & 0xFFFF)
        self._outbox.append((self._last_reply, self.peer))
        if self._trace:
            self._events.append(CoreEvent(ev.ACK, {"block": block & 0xFFFF}))

    def _fail(
        self, reason: str, now: float, *, notify: bool, code: ErrorCode = ErrorCode.NOT_DEFINED
    ) -> None:
        if notify:
            self._outbox.append((encode_error(code, reason), self.peer))
        self._sink.abort()
        self._events.append(CoreEvent(ev.ERROR, {"reason": reason}))
        self._done(False, reason, now)

    def _done(self, ok: bool, reason: str | None, now: float) -> None:
        self.finished = True
        self.succeeded = ok
        self._deadline = None
        fields: dict[str, object] = {
            "ok": ok,
            "bytes": self.bytes_received,
            "seconds": round(now - self._started, 6),
            "blocks": self._expected - 1,
            "retransmits": self.retransmits,
        }
        if reason:
            fields["reason"] = reason
        self._events.append(CoreEvent(ev.DONE, fields))
