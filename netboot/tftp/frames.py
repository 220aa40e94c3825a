"""Ready-to-send DATA datagrams for the lock-step fast lane, built in place.

Why: in a lock-step read the server's cost per block *is* its throughput, and in
CPython the per-block work used to be three allocations and two copies of about a
blksize each (slice the payload out of a read-ahead buffer, pack the header,
concatenate).  Here one ``preadv`` scatters a chunk of the file straight into
payload slots that sit right behind their 4-byte headers in one reused
``bytearray``, and the block numbers of the whole chunk are written with two
strided slice assignments from a table.  Sending block ``k`` is then sending a
memoryview that already exists: no allocation, no copy in Python.

Only full blocks live here; the last (short) block, retransmissions and windows
use the general path of the core, which builds fresh ``bytes``.
"""

from __future__ import annotations

from netboot.tftp.sources import READ_AHEAD, BlockSource

#: The most buffers one ``preadv`` accepts on Linux (IOV_MAX).
MAX_FRAMES = 1024
#: Every block number 0..65535 as two big-endian bytes, twice, so that a run of
#: frames that wraps past 65535 is still one contiguous slice.
_WIRE_NUMBERS = b"".join(n.to_bytes(2, "big") for n in range(65536)) * 2


class FrameRing:
    """Frames (DATA header + payload) for consecutive full blocks of one source.

    A frame handed out stays valid until the next :meth:`load`; the caller sends it
    before asking for more.
    """

    def __init__(self, source: BlockSource, blksize: int, chunk: int = READ_AHEAD) -> None:
        self._source = source
        self._blksize = blksize
        self._stride = stride = blksize + 4
        #: Full blocks of the source; block numbers start at 1 as on the wire.
        self._full_blocks = (source.size or 0) // blksize
        count = max(1, min(MAX_FRAMES, chunk // stride, self._full_blocks))
        self._buffer = bytearray(count * stride)
        self._buffer[1::stride] = b"\3" * count  # opcode DATA; byte 0 stays 0
        view = memoryview(self._buffer)
        self.frames = [view[i * stride : (i + 1) * stride] for i in range(count)]
        self._payloads = [frame[4:] for frame in self.frames]
        #: Absolute number of the block in ``frames[0]``, and how many frames hold data.
        self.first = 1
        self.loaded = 0

    def load(self, block: int) -> int:
        """Fill the frames with full blocks from ``block`` on; return how many are valid.

        0 means none: past the last full block, or the file shrank under us (the
        general path then sends what is really there, as it did before).
        """
        count = min(len(self.frames), self._full_blocks - block + 1)
        self.first = block
        self.loaded = 0
        if count <= 0:
            return 0
        blksize = self._blksize
        got = self._source.read_into((block - 1) * blksize, self._payloads[:count])
        count = min(count, got // blksize)
        if count <= 0:
            return 0
        stride = self._stride
        wire = 2 * (block & 0xFFFF)
        end = count * stride
        self._buffer[2:end:stride] = _WIRE_NUMBERS[wire : wire + 2 * count : 2]
        self._buffer[3:end:stride] = _WIRE_NUMBERS[wire + 1 : wire + 2 * count : 2]
        self.loaded = count
        return count
