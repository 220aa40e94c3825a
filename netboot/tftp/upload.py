"""Where an upload (WRQ, ``--allow-upload``) is stored, and what it may overwrite.

Why its own module: an upload is the one request that changes the admin's files, so
it follows atftpd's rules where they are safe and is stricter where they lose data
(docs/pyatftpd.md, "Uploads"):

* An existing file is overwritten only when the server user may write it (the check
  is an ``open`` for writing, as atftpd's ``fopen(name, "w")`` is), and never when it
  has no write bit at all (0444), even for a server running as root.
* An existing file keeps its inode, owner, mode and links: the finished upload is
  copied into it in place, as atftpd writes in place.  Unlike atftpd, the bytes are
  first received into a temporary file, so an upload that fails (a full disk, a
  client that goes away) leaves the old content whole instead of truncated.
* A new file appears only when complete (temporary file renamed), mode 0644, owned
  by the server user (as atftpd's).
* Every write is checked: a short ``write`` is retried and ENOSPC fails the upload
  with ERROR 3, never with a truncated file acknowledged as stored.
* Netascii is converted block by block (a CR at the end of a block waits for the
  next one), so memory stays bounded whatever the upload's size.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile

from netboot.tftp.packets import ErrorCode


class UploadRefused(OSError):
    """The WRQ cannot be accepted; answer ERROR ``code`` with this text."""

    def __init__(self, message: str, code: ErrorCode) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class NetasciiDecoder:
    """Wire -> local text, a block at a time: CR LF -> LF, CR NUL -> CR, other CR kept."""

    def __init__(self) -> None:
        self._cr_pending = False

    def feed(self, data: bytes) -> bytes:
        if self._cr_pending:
            data = b"\r" + data
            self._cr_pending = False
        if data.endswith(b"\r"):
            data = data[:-1]
            self._cr_pending = True
        return data.replace(b"\r\n", b"\n").replace(b"\r\0", b"\r")

    def finish(self) -> bytes:
        """A lone CR as the very last byte is kept as it is."""
        tail = b"\r" if self._cr_pending else b""
        self._cr_pending = False
        return tail


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written; a write that stores nothing is ENOSPC."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


def _open_existing(target: str, shown: str) -> tuple[int, os.stat_result] | None:
    """Open an existing target for writing (not truncated yet), or None when there is none."""
    try:
        info = os.stat(target)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        raise UploadRefused(f"access violation: {shown!r} is not a regular file", ErrorCode.ACCESS_VIOLATION)
    if not info.st_mode & 0o222:
        raise UploadRefused(
            f"access violation: {shown!r} is read-only (mode {stat.S_IMODE(info.st_mode):04o})",
            ErrorCode.ACCESS_VIOLATION,
        )
    try:
        fd = os.open(target, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise UploadRefused(
            f"access violation: cannot write {shown!r}: {exc.strerror}", ErrorCode.ACCESS_VIOLATION
        ) from None
    return fd, info


class FileSink:
    """Receives one upload into a temporary file; :meth:`commit` stores it (see the module doc)."""

    def __init__(self, target: str, netascii: bool, shown: str | None = None) -> None:
        self.target = target
        shown = target if shown is None else shown
        self._decoder = NetasciiDecoder() if netascii else None
        opened = _open_existing(target, shown)
        self._target_fd = opened[0] if opened is not None else -1
        self._existing: os.stat_result | None = opened[1] if opened is not None else None
        folder = os.path.dirname(target)
        try:
            self._fd, self._tmp = tempfile.mkstemp(prefix=".upload-", dir=folder)
        except OSError as exc:
            if self._existing is None or exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                self._close_target()
                raise UploadRefused(
                    f"access violation: cannot create {shown!r}: {exc.strerror}", ErrorCode.ACCESS_VIOLATION
                ) from None
            # The file is writable but its folder is not (atftpd writes such a file in
            # place): receive it elsewhere and copy it in at the end.
            self._fd, self._tmp = tempfile.mkstemp(prefix="pyatftpd-upload-")
        self.bytes_stored = 0

    def write(self, data: bytes) -> None:
        if self._decoder is not None:
            data = self._decoder.feed(data)
        _write_all(self._fd, data)
        self.bytes_stored += len(data)

    def commit(self) -> None:
        """Store the upload; raises OSError (ENOSPC: ERROR 3) and leaves the old content whole."""
        if self._decoder is not None:
            tail = self._decoder.finish()
            _write_all(self._fd, tail)
            self.bytes_stored += len(tail)
        if self._existing is None:
            os.fchmod(self._fd, 0o644)
            os.close(self._fd)
            self._fd = -1
            os.replace(self._tmp, self.target)
            return
        self._copy_in_place()
        self.abort()  # the temporary file is no longer needed

    def _copy_in_place(self) -> None:
        size = self.bytes_stored
        target = self._target_fd
        if size:
            # Reserve the space first: on a full disk this fails before a byte changes.
            try:
                os.posix_fallocate(target, 0, size)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    raise
        offset = 0
        while offset < size:
            try:
                copied = os.copy_file_range(self._fd, target, size - offset, offset, offset)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                copied = os.pwrite(target, os.pread(self._fd, min(1 << 20, size - offset), offset), offset)
            if copied <= 0:
                raise OSError(errno.EIO, f"copy stopped at {offset} of {size} bytes")
            offset += copied
        os.ftruncate(target, size)

    def _close_target(self) -> None:
        if self._target_fd >= 0:
            os.close(self._target_fd)
            self._target_fd = -1

    def abort(self) -> None:
        self._close_target()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        try:
            os.unlink(self._tmp)
        except FileNotFoundError:
            pass
