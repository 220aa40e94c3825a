"""Netascii (RFC 764 / RFC 1350): converted as it is read, block by block.

Why streamed: converting a whole file before the first block cost 17 s of a
server's event loop and 3 GB of memory for one 20-byte RRQ of a 32 MB file of
newlines (issue 20).  Here a read transfer asks :class:`NetasciiSource` for wire
bytes by offset, and the source converts only the file chunk that holds them.

* The rule is per input byte (LF becomes CR LF, a bare CR becomes CR NUL; a CR LF
  pair becomes CR NUL CR LF, as atftpd sends it), so chunks convert independently
  and a CR LF that straddles two blocks needs no carried state.
* The wire offset where each chunk starts is remembered as the stream moves on, so
  a retransmission (a block or a window back) converts one chunk again, never the
  file from the start; memory is two converted chunks and one integer per chunk.
* The wire size is unknown until the end, so ``size`` is None and ``tsize`` is left
  out of the OACK (RFC 2349 lets a server decline it; atftpd does not compute it for
  netascii either).  The transfer ends at the first short block.
* The file's size is fixed when it is opened, as for octet reads
  (:class:`~netboot.tftp.sources.FileSource`): a file that grows meanwhile is served
  as it was.
"""

from __future__ import annotations

import bisect
import os
import re
from collections.abc import Sequence

_FROM_WIRE = re.compile(rb"\r\n|\r\0")

#: Input bytes converted at a time; a converted chunk is at most twice this.
CHUNK = 16 * 1024


def to_netascii(data: bytes) -> bytes:
    """Local text -> wire: LF becomes CR LF, a bare CR becomes CR NUL."""
    return data.replace(b"\r", b"\r\0").replace(b"\n", b"\r\n")


def from_netascii(data: bytes) -> bytes:
    """Wire -> local text: CR LF becomes LF, CR NUL becomes CR; anything else is kept."""
    return _FROM_WIRE.sub(lambda m: b"\n" if m.group() == b"\r\n" else b"\r", data)


class NetasciiSource:
    """The netascii form of an open file, by wire offset; owns (and closes) ``fd``."""

    #: Unknown until a read comes back short (see the module docstring).
    size: int | None = None

    def __init__(self, fd: int, file_size: int, chunk: int = CHUNK) -> None:
        self._fd = fd
        self._file_size = file_size
        self._chunk = chunk
        #: Wire offset of the start of chunk i (chunk i is file bytes i*chunk ...).
        self._starts = [0]
        self._cache: dict[int, bytes] = {}

    def _chunk_count(self) -> int:
        return -(-self._file_size // self._chunk)

    def _converted(self, index: int) -> bytes:
        cached = self._cache.get(index)
        if cached is not None:
            return cached
        raw = os.pread(self._fd, self._chunk, index * self._chunk)
        raw = raw[: max(0, self._file_size - index * self._chunk)]
        wire = to_netascii(raw)
        if len(self._cache) >= 2:
            self._cache.pop(next(iter(self._cache)))
        self._cache[index] = wire
        if index + 1 == len(self._starts) and index + 1 <= self._chunk_count():
            self._starts.append(self._starts[index] + len(wire))
        return wire

    def _locate(self, offset: int) -> int | None:
        """The chunk holding wire ``offset``, converting forward as needed; None past the end."""
        while offset >= self._starts[-1]:
            index = len(self._starts) - 1
            if index >= self._chunk_count():
                return None
            self._converted(index)  # appends the next start
        return bisect.bisect_right(self._starts, offset) - 1

    def read(self, offset: int, length: int) -> bytes:
        parts: list[bytes] = []
        while length > 0:
            index = self._locate(offset)
            if index is None:
                break
            wire = self._converted(index)
            piece = wire[offset - self._starts[index] : offset - self._starts[index] + length]
            if not piece:
                break
            parts.append(piece)
            offset += len(piece)
            length -= len(piece)
        return b"".join(parts)

    def read_into(self, offset: int, buffers: Sequence[memoryview]) -> int:
        done = 0
        for buffer in buffers:
            piece = self.read(offset + done, len(buffer))
            buffer[: len(piece)] = piece
            done += len(piece)
            if len(piece) < len(buffer):
                break
        return done

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._cache.clear()
