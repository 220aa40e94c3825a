"""The served file as a sequence of immutable snapshots, one per SLAM transaction.

Why snapshots: a transaction promises the same bytes for every block under one
header, so a file edited mid-transfer must become a *new* transaction (new id, so
iPXE resets), never a mix of old and new blocks.  The id comes from the file's
identity with nanosecond mtime, ctime, size and inode, not mini-slamd's 1-second
mtime, so two edits within one second still change it.
"""

from __future__ import annotations

import hashlib
import os

from netboot.slam.server import Content

Identity = tuple[int, int, int, int, int]


def file_identity(path: str) -> Identity:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def transaction_id(identity: Identity, previous: int | None = None) -> int:
    """A 32-bit id (5 bytes on the wire, as mini-slamd's mtime ids) that differs from ``previous``."""
    digest = hashlib.blake2b(repr(identity).encode(), digest_size=4).digest()
    value = int.from_bytes(digest, "big")
    if value == previous:
        value = (value + 1) % 2**32
    return value


class FileSource:
    """Reads consistent snapshots of one file and notices when it changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.identity: Identity | None = None

    def load(self, previous: int | None = None) -> Content:
        """Snapshot the file; retried while it changes under us (stat, read, stat)."""
        for _ in range(20):
            before = file_identity(self.path)
            with open(self.path, "rb") as handle:
                data = handle.read()
            after = file_identity(self.path)
            if before == after and len(data) == after[2]:
                self.identity = after
                return Content(transaction_id(after, previous), data)
        raise OSError(
            f"{self.path} keeps changing while being read; serve a stable file (write it, then rename)"
        )

    def changed(self) -> bool:
        try:
            return file_identity(self.path) != self.identity
        except OSError:
            return False  # gone for a moment (being replaced): keep serving the last snapshot
