"""Deterministic boot payloads: the same size and seed always give the same bytes.

The lab proves delivery by comparing the guest's SHA-256 of what it received with
the SHA-256 of what the server sent, so payloads must be reproducible from two small
numbers (no files to keep around) and must not be compressible or repetitive: a
zero-filled or shifted region has to change the digest.  SHAKE-256 gives that at
about 200 MB/s without numpy.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

#: TFTP block size the lab negotiates most (1432 fits a 1500-byte MTU with IP/UDP/TFTP headers).
LAB_BLKSIZE = 1432

#: Sizes that hit transfer edge cases: a single byte (one short block), an exact
#: multiple of the block size (the transfer must end with an empty block), and a
#: kernel-sized image (5 MiB: thousands of blocks, block number wrap with blksize 512).
EDGE_SIZES: tuple[int, ...] = (1, LAB_BLKSIZE * 3, 5 * 1024 * 1024)

_DOMAIN = b"netboot-lab payload v1 seed="


def make_payload(size: int, seed: int) -> bytes:
    """Return ``size`` pseudo-random bytes determined only by ``seed``.

    A payload is a prefix of any longer payload with the same seed.
    """
    if size < 0:
        raise ValueError(f"payload size must be >= 0, got {size}")
    if seed < 0:
        raise ValueError(f"payload seed must be >= 0, got {seed}")
    if size == 0:
        return b""
    return hashlib.shake_256(_DOMAIN + str(seed).encode()).digest(size)


def write_payload(path: Path | str, size: int, seed: int) -> str:
    """Write the payload to ``path`` and return its SHA-256 as lowercase hex."""
    data = make_payload(size, seed)
    Path(path).write_bytes(data)
    return hashlib.sha256(data).hexdigest()
