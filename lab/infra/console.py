"""A VM's serial console: always drained by a thread into console.log and a buffer.

Why our own buffer and not pexpect's reader: the guest blocks on UART output if
nobody reads it, so reading cannot depend on someone waiting for a pattern.  The
thread reads everything; ``expect`` searches the (ANSI-stripped) buffer from a
cursor, with success and failure patterns and a deadline, the way pexpect does.

SeaBIOS forwards iPXE's screen to the serial line at 80 columns, so long lines wrap
(``... -- http\\n://ipxe.org``): patterns must tolerate line breaks where text can wrap.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from lab.model.console_text import clean, readable

__all__ = ["Console", "ConsoleClosed", "Match", "clean", "readable"]


@dataclass
class Match:
    pattern: str
    text: str
    groups: dict[str, str]
    failed: bool
    at: float


class ConsoleClosed(Exception):
    """QEMU closed its console (it exited) before a pattern appeared."""


class ConsoleAborted(Exception):
    """Someone watching the VM from outside (:mod:`lab.run.stall`) ended the wait, with why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


#: Something that types keys on the console (QEMU's stdin).
Typist = Callable[[bytes], None]


class Console:
    """``answers``: (pattern, keys) pairs typed by the drain thread each time a pattern
    appears, like an expect script's auto-responses; each answer goes to ``answers.log``."""

    def __init__(
        self,
        stream: IO[bytes],
        log_path: Path,
        answers: Sequence[tuple[str, bytes]] = (),
        typist: Typist | None = None,
    ) -> None:
        self.log_path = log_path
        self.answers_path = log_path.with_name("answers.log")
        self._answers = [(re.compile(pattern), keys) for pattern, keys in answers]
        self._answered_to = 0
        self._typist = typist
        self._started = time.monotonic()
        self._stream = stream
        self._raw = bytearray()
        self._cond = threading.Condition()
        self._closed = False
        self._aborted: str | None = None
        self._cursor = 0
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed by the drain thread
        name = f"console:{log_path.parent.name}"
        self._thread = threading.Thread(target=self._drain, name=name, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        fd = self._stream.fileno()
        try:
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                self._log.write(chunk)
                self._log.flush()
                with self._cond:
                    self._raw += chunk
                    self._cond.notify_all()
                self._answer()
        except OSError:
            pass
        finally:
            self._log.close()
            self._write_text()
            with self._cond:
                self._closed = True
                self._cond.notify_all()

    def _write_text(self) -> None:
        """``console.txt`` beside the raw log: what a person reads (no escapes, no erased dots)."""
        with self._cond:
            raw = bytes(self._raw)
        try:
            self.log_path.with_suffix(".txt").write_text(readable(raw))
        except OSError:
            pass  # the raw log is the evidence; the text copy is a convenience

    def _answer(self) -> None:
        if not self._answers or self._typist is None:
            return
        text = self.text
        hits = sorted(
            (m.start(), m.end(), m.group(0), keys)
            for rx, keys in self._answers
            for m in rx.finditer(text, self._answered_to)
        )
        for _, end, prompt, keys in hits:
            if end <= self._answered_to:
                continue
            self._typist(keys)
            self._answered_to = end
            with open(self.answers_path, "a") as log:
                log.write(f"{time.monotonic() - self._started:8.3f} s  {prompt!r} -> typed {keys!r}\n")

    @property
    def text(self) -> str:
        with self._cond:
            return clean(bytes(self._raw))

    def tail(self, lines: int = 20) -> list[str]:
        return [line for line in self.text.splitlines() if line.strip()][-lines:]

    def expect(self, success: str, failures: Sequence[str], timeout: float, consume: bool = True) -> Match:
        """Wait for ``success`` or any of ``failures`` after the cursor; advance the cursor.

        ``consume=False`` only watches (a test waiting for a moment to break the lab
        must not hide text from the boot ladder).  Raises TimeoutError after ``timeout``
        s and ConsoleClosed when QEMU is gone.
        """
        patterns = [(re.compile(success), False)] + [(re.compile(f), True) for f in failures]
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                text = clean(bytes(self._raw))
                hits = [(m, failed) for rx, failed in patterns if (m := rx.search(text, self._cursor))]
                if hits:
                    m, failed = min(hits, key=lambda h: h[0].start())
                    if consume:
                        self._cursor = m.end()
                    groups = {k: v for k, v in m.groupdict().items() if v is not None}
                    return Match(m.re.pattern, m.group(0), groups, failed, time.monotonic())
                if self._aborted is not None:
                    raise ConsoleAborted(self._aborted)
                if self._closed:
                    raise ConsoleClosed()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError()
                self._cond.wait(min(remaining, 0.5))

    def abort(self, reason: str) -> None:
        """End the current (and every later) :meth:`expect` with ConsoleAborted(``reason``)."""
        with self._cond:
            self._aborted = reason
            self._cond.notify_all()

    def wait_closed(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()
