"""The servers' log: one format for pyatftpd and pyslamd, write failures counted, reopen on SIGHUP.

Why one module: an admin reads both servers' logs side by side (and greps them the
same way), so both write atftpd's shape, ``Mon DD HH:MM:SS program[pid]: message``
(syslog adds its own time, so syslog gets ``program[pid]: message``).

Why count failures: a log line that cannot be written (a full disk, a vanished
``/dev/log``) must never cost a client its reply, nor flood stderr with one
traceback per line as :mod:`logging` does by default.  The first failure is said
once on stderr, the count again at stop (:func:`report_failures`).

Why ``reopen``: logrotate moves the file and sends SIGHUP; the server then writes
to a fresh file of the same name instead of the rotated one.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from typing import Protocol, TextIO

DATEFMT = "%b %d %H:%M:%S"


def printable(text: str) -> str:
    """``text`` as UTF-8 can carry it: a byte that is not UTF-8 spelled ``\\xff``.

    Why: a file name is kept as the client sent it, bytes that are not UTF-8 included
    (``surrogateescape``, netboot/tftp/packets.py), so a log line can hold lone
    surrogates that no UTF-8 file, stream or syslog socket accepts: the line was lost.
    Any other lone surrogate is spelled ``\\udXXX``.
    """
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


class _LineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record))


def line_format(program: str, *, with_time: bool = True) -> logging.Formatter:
    prefix = "%(asctime)s " if with_time else ""
    return _LineFormatter(f"{prefix}{program}[%(process)d]: %(message)s", DATEFMT)


class _Counted(Protocol):
    failures: int


def _count(handler: _Counted, program: str, where: str) -> None:
    handler.failures += 1
    if handler.failures != 1:
        return
    reason = sys.exc_info()[1]
    try:
        sys.stderr.write(
            f"{program}: cannot write the log to {where} ({reason}); serving goes on, and the "
            "lines that cannot be written are counted (the count is reported at stop)\n"
        )
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


class LogFile(logging.FileHandler):
    """``--logfile FILE``: counts lines it cannot write; :meth:`reopen` after a rotation."""

    def __init__(self, path: str, program: str) -> None:
        super().__init__(path, encoding="utf-8")
        self.program = program
        self.failures = 0

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        _count(self, self.program, self.baseFilename)

    def reopen(self) -> None:
        self.acquire()
        try:
            if self.stream is not None:
                try:
                    self.stream.close()
                except OSError:
                    pass
            self.stream = self._open()
        except OSError:
            _count(self, self.program, self.baseFilename)
        finally:
            self.release()


class LogStream(logging.StreamHandler):  # type: ignore[type-arg]
    """stdout/stderr; counts lines it cannot write."""

    def __init__(self, stream: TextIO, program: str) -> None:
        super().__init__(stream)
        self.program = program
        self.failures = 0

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802
        _count(self, self.program, getattr(self.stream, "name", "the console"))


class LogSyslog(logging.handlers.SysLogHandler):
    """syslog (``/dev/log``, facility daemon) as atftpd; counts lines it cannot send."""

    def __init__(self, program: str) -> None:
        super().__init__("/dev/log", facility=logging.handlers.SysLogHandler.LOG_DAEMON)
        self.program = program
        self.failures = 0

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802
        _count(self, self.program, "syslog (/dev/log)")


def setup_logging(program: str, logfile: str | None, level: int, *, syslog: bool = False) -> logging.Handler:
    """Send every logger's records to one destination, in the shared format.

    ``logfile``: ``-`` is stdout, a path is appended to; None is syslog when ``syslog``
    is true and ``/dev/log`` exists, else stderr.  Raises OSError when the file
    cannot be opened (the caller says what to do).
    """
    handler: logging.Handler
    if logfile == "-":
        handler = LogStream(sys.stdout, program)
        handler.setFormatter(line_format(program))
    elif logfile:
        handler = LogFile(logfile, program)
        handler.setFormatter(line_format(program))
    elif syslog and os.path.exists("/dev/log"):
        handler = LogSyslog(program)
        handler.setFormatter(line_format(program, with_time=False))
    else:
        handler = LogStream(sys.stderr, program)
        handler.setFormatter(line_format(program))
    root = logging.getLogger()
    for old in root.handlers:
        old.close()
    root.handlers[:] = [handler]
    root.setLevel(level)
    return handler


def reopen_logs() -> None:
    """SIGHUP: reopen a ``--logfile`` (logrotate moved it away); other destinations need nothing."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, LogFile):
            handler.reopen()


def report_failures() -> int:
    """At stop: say how many log lines were lost, on stderr and in the log; return that count."""
    lost = 0
    for handler in logging.getLogger().handlers:
        failures = int(getattr(handler, "failures", 0))
        if failures:
            lost += failures
            program = getattr(handler, "program", "server")
            try:
                sys.stderr.write(f"{program}: {failures} log line(s) could not be written\n")
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
    if lost:
        logging.getLogger("netboot").warning("%d log line(s) could not be written", lost)
    return lost
