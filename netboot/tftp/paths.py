"""Map a client's file name to a file inside the served root, or refuse it.

Why its own module: this is the one security boundary of a TFTP server.  Every
request (unicast, multicast, MTFTP, upload) must pass through the same checks:

* no ``..`` component, whatever the separators around it;
* an absolute name is taken relative to the root (``/boot.img`` == ``boot.img``),
  and a name that already starts with the root's own path is accepted (atftpd does
  the same), so nothing absolute can point outside;
* the fully resolved path (every symlink followed) must still lie inside the
  resolved root, so a symlink cannot lead out.
"""

from __future__ import annotations

import os
import stat

from netboot.tftp.packets import ErrorCode


class PathRefused(ValueError):
    """The name cannot be served; answer with ERROR ``code`` and this text."""

    def __init__(self, message: str, code: ErrorCode) -> None:
        super().__init__(message)
        self.code = code


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _stat(path: str, filename: str) -> os.stat_result | None:
    """``os.stat``, None when nothing is there; a folder the server user cannot search is
    a permission problem, said as such (``os.path.exists`` would call it "not found")."""
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except PermissionError:
        raise PathRefused(
            f"access violation: permission denied on the way to {filename!r} "
            f"(the server runs as uid {os.geteuid()}: make the served folders readable by it)",
            ErrorCode.ACCESS_VIOLATION,
        ) from None


def resolve(root: str, filename: str, *, must_exist: bool = True) -> str:
    """Return the real path for ``filename`` under ``root``; raise :class:`PathRefused`.

    With ``must_exist`` (reads) the target must be an existing regular file; for
    uploads (``must_exist=False``) the parent directory must exist inside the root.
    """
    real_root = os.path.realpath(root)
    if "\0" in filename:
        raise PathRefused("file name contains a NUL byte", ErrorCode.ACCESS_VIOLATION)
    name = filename
    for prefix in {root.rstrip("/") + "/", real_root.rstrip("/") + "/"}:
        if prefix != "/" and name.startswith(prefix):
            name = name[len(prefix) :]
            break
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise PathRefused(
            f"access violation: '..' is not allowed in {filename!r}", ErrorCode.ACCESS_VIOLATION
        )
    if not parts:
        raise PathRefused(f"{filename!r} names the root directory, not a file", ErrorCode.FILE_NOT_FOUND)
    candidate = os.path.join(real_root, *parts)
    if must_exist:
        real = os.path.realpath(candidate)
        if not _inside(real, real_root):
            raise PathRefused(
                f"access violation: {filename!r} leads outside the served directory",
                ErrorCode.ACCESS_VIOLATION,
            )
        info = _stat(real, filename)
        if info is None:
            raise PathRefused(f"file not found: {filename!r}", ErrorCode.FILE_NOT_FOUND)
        if not stat.S_ISREG(info.st_mode):
            raise PathRefused(f"{filename!r} is not a regular file", ErrorCode.FILE_NOT_FOUND)
        return real
    parent = os.path.realpath(os.path.dirname(candidate))
    if not _inside(parent, real_root):
        raise PathRefused(
            f"access violation: {filename!r} leads outside the served directory", ErrorCode.ACCESS_VIOLATION
        )
    info = _stat(parent, filename)
    if info is None or not stat.S_ISDIR(info.st_mode):
        raise PathRefused(f"directory of {filename!r} does not exist", ErrorCode.FILE_NOT_FOUND)
    target = os.path.join(parent, parts[-1])
    if os.path.islink(target):
        real = os.path.realpath(target)
        if not _inside(real, real_root):
            raise PathRefused(
                f"access violation: {filename!r} leads outside the served directory",
                ErrorCode.ACCESS_VIOLATION,
            )
        return real
    if os.path.isdir(target):
        raise PathRefused(f"{filename!r} is a directory", ErrorCode.ACCESS_VIOLATION)
    return target
