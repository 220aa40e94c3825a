"""The optional C inner loop of lock-step reads (``lockstep.c``), built on first use.

Why: issue #2 asks pyatftpd to match Debian's atftpd with 8 concurrent clients on
2 cores, and there the interpreter's few microseconds per block, under the GIL, were
the difference (docs/pyatftpd.md, benchmark).  The loop is ours, about 80 lines of C,
compiled with the system's ``cc`` (``gcc`` is one of the packages the project
provisions) into a cache directory and loaded with ctypes, which releases the GIL
for the call.  No compiler, a failed build or ``PYATFTPD_NATIVE=0``: the Python fast
lane serves instead, byte for byte the same; the ``done`` event says which lane
served (``lane``).

Cache: ``$PYATFTPD_CACHE``, else ``$XDG_CACHE_HOME/pyatftpd``, else
``~/.cache/pyatftpd``; the library's name carries a hash of the source, so an edited
``lockstep.c`` is rebuilt.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

log = logging.getLogger("pyatftpd")

SOURCE = Path(__file__).with_name("lockstep.c")
STOPPED = -100000
SHORT_READ = -100001

_lock = threading.Lock()
_loaded: list[ctypes.CDLL | None] = []


def enabled() -> bool:
    return os.environ.get("PYATFTPD_NATIVE", "1") not in ("0", "no", "off", "")


def _cache_dir() -> Path:
    if os.environ.get("PYATFTPD_CACHE"):
        return Path(os.environ["PYATFTPD_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pyatftpd"


def _build(source: bytes) -> Path | None:
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        log.info("native lane off: no C compiler (apt-get install -y gcc); the Python lane serves")
        return None
    digest = hashlib.sha256(source).hexdigest()[:16]
    target = _cache_dir() / f"lockstep-{digest}-{os.uname().machine}.so"
    if target.exists():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
            built = Path(scratch) / target.name
            result = subprocess.run(
                [compiler, "-O2", "-shared", "-fPIC", "-o", str(built), str(SOURCE)],
                capture_output=True, text=True, timeout=60, check=False,
            )
            if result.returncode != 0:
                log.warning("native lane off: %s failed: %s", compiler, result.stderr.strip()[-500:])
                return None
            os.replace(built, target)  # atomic: workers building at once agree
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("native lane off: cannot build it in %s (%s); set PYATFTPD_CACHE", target.parent, exc)
        return None
    return target


def library() -> ctypes.CDLL | None:
    """The loaded loop, or None (then the Python fast lane serves).  Built once per process."""
    with _lock:
        if _loaded:
            return _loaded[0]
        lib: ctypes.CDLL | None = None
        if enabled():
            try:
                path = _build(SOURCE.read_bytes())
                if path is not None:
                    lib = ctypes.CDLL(str(path))
                    function = lib.pyatftpd_lockstep
                    function.restype = ctypes.c_long
                    function.argtypes = [
                        ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_longlong, ctypes.c_longlong,
                        ctypes.c_void_p, ctypes.c_long, ctypes.POINTER(ctypes.c_long),
                        ctypes.POINTER(ctypes.c_int),
                    ]
            except OSError as exc:
                log.warning("native lane off: %s", exc)
                lib = None
        _loaded.append(lib)
        return lib


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
