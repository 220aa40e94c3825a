"""The optional C inner loop of lock-step reads (``lockstep.c``), built with the package.

Why: issue #2 asks pyatftpd to match Debian's atftpd with 8 concurrent clients on
2 cores, and there the interpreter's few microseconds per block, under the GIL, were
the difference (docs/pyatftpd.md, benchmark).  The loop is ours, about 80 lines of C.
It is compiled when the package is built (``pip install .``, also editable: the
optional extension ``netboot.tftp._lockstep`` in pyproject.toml) and loaded with
ctypes, which releases the GIL for the call.  Nothing is compiled or written at run
time: a production boot server needs no compiler and loads no code from a cache.

Built without a compiler (the extension is optional), or ``PYATFTPD_NATIVE=0``: the
Python fast lane serves instead, byte for byte the same (it stays the reference);
the server says which once at start, and the ``done`` event says which lane served
(``lane``).
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import threading

log = logging.getLogger("pyatftpd")

MODULE = "netboot.tftp._lockstep"
STOPPED = -100000
SHORT_READ = -100001

_lock = threading.Lock()
_loaded: list[ctypes.CDLL | None] = []


def enabled() -> bool:
    return os.environ.get("PYATFTPD_NATIVE", "1") not in ("0", "no", "off", "")


def built_path() -> str | None:
    """Where the package build put the loop, or None when it was built without it."""
    try:
        spec = importlib.util.find_spec(MODULE)
    except (ImportError, ValueError):
        return None
    return spec.origin if spec is not None and spec.origin else None


def _load() -> ctypes.CDLL | None:
    if not enabled():
        log.info("native lane off (PYATFTPD_NATIVE=0): the Python lane serves lock-step reads")
        return None
    path = built_path()
    if path is None:
        log.info(
            "native lane not built (no C compiler when the package was installed): the Python lane "
            "serves lock-step reads; reinstall with gcc present to build it"
        )
        return None
    try:
        lib = ctypes.CDLL(path)
        function = lib.pyatftpd_lockstep
    except (OSError, AttributeError) as exc:
        log.warning("native lane off: cannot load %s (%s); the Python lane serves", path, exc)
        return None
    function.restype = ctypes.c_long
    function.argtypes = [
        ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_longlong, ctypes.c_longlong,
        ctypes.c_void_p, ctypes.c_long, ctypes.POINTER(ctypes.c_long),
        ctypes.POINTER(ctypes.c_int),
    ]
    return lib


def library() -> ctypes.CDLL | None:
    """The loaded loop, or None (then the Python fast lane serves).  Loaded once per process;
    the server loads it before forking its workers, so the choice is said once."""
    with _lock:
        if not _loaded:
            _loaded.append(_load())
        return _loaded[0]


class NativeLane:
    """One transfer's view of the loop: its buffers and its stop flag."""

    def __init__(self, lib: ctypes.CDLL, sock_fd: int, file_fd: int, buffer: bytearray) -> None:
        self._function = lib.pyatftpd_lockstep
        self._sock = sock_fd
        self._file = file_fd
        self._buffer = buffer
        # Kept: while this view exports the bytearray, it cannot be resized under the loop.
        self._view = (ctypes.c_char * len(buffer)).from_buffer(buffer)
        self._address = ctypes.addressof(self._view)
        self._out = ctypes.c_long(0)
        self.stop_flag = ctypes.c_int(0)

    def run(self, blksize: int, sent: int, fast_last: int) -> tuple[int, int]:
        """Serve ACKs until one it does not handle; (blocks sent, datagram length or code)."""
        count = self._function(
            self._sock, self._file, blksize, sent, fast_last, self._address, len(self._buffer),
            ctypes.byref(self._out), ctypes.byref(self.stop_flag),
        )
        return int(count), int(self._out.value)
