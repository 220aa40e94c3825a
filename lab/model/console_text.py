"""Console bytes as text a person (or a pattern) can read: no ANSI escapes, no carriage returns.

Why in the model: the console reader matches patterns on this text, and the reports quote
it; both must clean it the same way.
"""

from __future__ import annotations

import re
from pathlib import Path

_ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1bc")


def clean(raw: bytes) -> str:
    """Console bytes as matchable text: no ANSI sequences, no carriage returns."""
    return _ANSI.sub(b"", raw).replace(b"\r", b"").decode("utf-8", errors="replace")


def readable(raw: bytes) -> str:
    """:func:`clean`, and what the backspaces erased is gone (iPXE's countdown dots), one line
    per console line: the console as it looked on a screen."""
    return erase_backspaces(clean(raw))


def erase_backspaces(text: str) -> str:
    """Cleaned console text with each backspace taking back the character before it."""
    lines = []
    for line in text.split("\n"):
        kept: list[str] = []
        for char in line:
            if char == "\b":
                if kept:
                    kept.pop()
            else:
                kept.append(char)
        lines.append("".join(kept).rstrip())
    return "\n".join(lines)


def last_lines(text: str, lines: int) -> list[str]:
    """The last ``lines`` non-empty lines of readable text."""
    return [line for line in text.splitlines() if line.strip()][-lines:]


def console_tail(path: Path, lines: int = 40) -> str:
    """The last non-empty ``lines`` of a console, readable ("" when there is none); ``console.txt``
    is read when it is there, else the raw log is cleaned."""
    try:
        text = (
            path.with_suffix(".txt").read_text()
            if path.with_suffix(".txt").is_file()
            else readable(path.read_bytes())
        )
    except OSError:
        return ""
    return "\n".join(last_lines(text, lines))
