"""Where a transfer's bytes come from and go to.

Why: the transfer machines are sans-I/O about sockets and clocks, but they must
read blocks.  They get an object with this small interface; the server passes a
file-backed one (``os.pread`` on an open descriptor, no seek state, so one open
file can serve any number of transfers), tests pass bytes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol


class BlockSource(Protocol):
    @property
    def size(self) -> int | None:
        """Bytes the transfer sends; None for a stream whose end only a short read tells
        (netascii, :class:`~netboot.tftp.netascii.NetasciiSource`)."""
        ...

    def read(self, offset: int, length: int) -> bytes: ...

    def read_into(self, offset: int, buffers: Sequence[memoryview]) -> int:
        """Fill ``buffers`` in order from ``offset`` on (``preadv``); return the bytes read."""
        ...

    def close(self) -> None: ...


class BytesSource:
    """An in-memory file (tests, netascii-converted files)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.size = len(data)

    def read(self, offset: int, length: int) -> bytes:
        return self._data[offset : offset + length]

    def read_into(self, offset: int, buffers: Sequence[memoryview]) -> int:
        done = 0
        for buffer in buffers:
            piece = self._data[offset + done : offset + done + len(buffer)]
            buffer[: len(piece)] = piece
            done += len(piece)
            if len(piece) < len(buffer):
                break
        return done

    def close(self) -> None:
        self._data = b""


#: Bytes one read fetches ahead for a transfer (FileSource, FrameRing: up to two buffers).
#: Why so few: each transfer holds its own, and 200 concurrent downloads peaked at 161 MB
#: PSS in one process with 256 KiB, 74 MB with 64 KiB and 50 MB with 16 KiB, while one
#: pinned transfer ran no slower at 16 KiB (one ``pread`` per 11 blocks of 1432 bytes):
#: docs/pyatftpd.md, "Memory".
READ_AHEAD = 16 * 1024


class FileSource:
    """A regular file read with ``pread``; ``size`` is fixed when the transfer starts.

    Reads never go past that size: a file that grows while it is served is served as
    it was when opened (its ``tsize`` was announced, and iPXE sizes its block bitmap
    from it), so the transfer ends where the client expects it to.  Serving the new
    bytes instead sent a full-length "last" block and left the client waiting for a
    block that never came (issue 20).

    Reads go through a read-ahead buffer (``chunk`` bytes, one ``pread``) because a
    lock-step transfer asks for the next blksize bytes per ACK, and a system call per
    block was a measurable share of the server's CPU.  No mmap: a file truncated
    while being served would raise SIGBUS and take the whole server down.
    """

    def __init__(self, path: str, chunk: int = READ_AHEAD) -> None:
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.size = os.fstat(self._fd).st_size
        self._chunk = chunk
        self._buffer = b""
        self._start = 0

    def read(self, offset: int, length: int) -> bytes:
        length = max(0, min(length, self.size - offset))
        start = offset - self._start
        end = start + length
        if start >= 0 and end <= len(self._buffer):
            return self._buffer[start:end]
        self._buffer = os.pread(self._fd, max(0, min(max(length, self._chunk), self.size - offset)), offset)
        self._start = offset
        return self._buffer[:length]

    def read_into(self, offset: int, buffers: Sequence[memoryview]) -> int:
        return min(os.preadv(self._fd, buffers, offset), max(0, self.size - offset))

    def release_fd(self) -> int:
        """Hand the descriptor to another owner (a netascii stream); this source is closed."""
        fd, self._fd = self._fd, -1
        return fd

    def fileno(self) -> int:
        """The descriptor the native lane reads with ``pread`` (no shared offset)."""
        return self._fd

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class BlockSink(Protocol):
    def write(self, data: bytes) -> None: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


class BytesSink:
    """Collects an upload in memory (tests)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.committed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.chunks.append(data)

    def commit(self) -> None:
        self.committed = True

    def abort(self) -> None:
        self.aborted = True

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)
