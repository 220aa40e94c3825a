"""iPXE's own error line from a console: its words and its ipxe.org error code.

Why: a failed cell that says only ``FAIL@payload: failure pattern seen: 'LAB fetch-failed'``
hides what went wrong; iPXE printed it (``Connection timed out (http://ipxe.org/4c126035)``)
and the report should show that line.  SeaBIOS forwards iPXE's screen at 80 columns, so the
URL may be wrapped anywhere; the words are what the ROM printed before it.  When a ROM printed
the code without words (a build without its error message table), the POSIX part of the code
(its top byte in iPXE's numbering) is put into words from the codes the lab has seen printed
with their words (``KNOWN_POSIX``); otherwise the ipxe.org page is the reference.
"""

from __future__ import annotations

import re

from lab.model.console_text import erase_backspaces
from lab.model.results import IpxeError

_URL = re.compile(
    r"\(\s*h\s*t\s*t\s*p\s*:\s*/\s*/\s*i\s*p\s*x\s*e\s*\.\s*o\s*r\s*g\s*/(?P<code>(?:\s*[0-9a-f]){8})\s*\)"
)

#: The top byte of an iPXE error code -> the words iPXE printed with it, in this lab's
#: consoles (docs/findings.md): Debian's ROMs print both.
KNOWN_POSIX = {
    0x4C: "Connection timed out",
    0x3C: "Operation not supported",
}
_CODE_ONLY = re.compile(r"^(?:Error )?0x[0-9a-f]+$", re.I)


def ipxe_error(console: str) -> IpxeError | None:
    """The last iPXE error line of ``console`` (cleaned console text) that names a cause, or None.

    Backspaces are applied first: iPXE redraws its progress ("  0%" and four backspaces)
    on the line its error ends, and the words must not carry that.  A code whose POSIX byte
    is 0 is a script's own exit status (``Could not boot image: Error 0x00000001`` after the
    boot script's ``exit 1``): printed after the real error whenever the VM lives long
    enough, it is taken only when no other error was printed.
    """
    console = erase_backspaces(console)
    found = list(_URL.finditer(console))
    if not found:
        return None
    causes = [m for m in found if int(_code(m)[:2], 16) != 0]
    match = (causes or found)[-1]
    code = _code(match)
    before = console[: match.start()]
    lines = before.split("\n")
    words = lines[-1].strip()
    if not words and len(lines) > 1:  # the URL was wrapped onto a line of its own
        words = lines[-2].strip()
    words = _strip_progress(words)
    if _CODE_ONLY.match(words):
        words = ""  # a build without the message table prints the code alone
    decoded = words or KNOWN_POSIX.get(int(code[:2], 16), "")
    line = f"{words} (http://ipxe.org/{code})" if words else f"http://ipxe.org/{code}"
    return IpxeError(line=line, code=code, words=decoded, printed=bool(words))


def _code(match: re.Match[str]) -> str:
    return re.sub(r"\s", "", match["code"])


def _strip_progress(words: str) -> str:
    """``tftp://192.0.2.1/f.bin... Connection timed out`` -> the words after the URL's dots."""
    if "... " in words:
        words = words.rsplit("... ", 1)[1]
    return words.strip()
