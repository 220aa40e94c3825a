"""C parsing helpers with iPXE's semantics (``strtoul`` base 0, ``inet_aton``).

Why: iPXE parses the OACK ``multicast`` value with ``strtoul(.., 0)`` and
``inet_aton``, so ``010`` is octal and ``-25536`` wraps to 40000.  A client that
parsed with Python's ``int`` would accept OACKs that iPXE rejects, and the other
way round.
"""

from __future__ import annotations

_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
ULONG_MASK = 0xFFFFFFFF  # i386 iPXE: unsigned long is 32 bits


def strtoul(text: str, base: int = 0) -> tuple[int, str]:
    """Return ``(value, rest)`` where ``rest`` is what ``*endp`` points at."""
    i = 0
    while i < len(text) and text[i] in " \t\n\r\f\v":
        i += 1
    negate = False
    if i < len(text) and text[i] in "+-":
        negate = text[i] == "-"
        i += 1
    if base == 0:
        if text[i : i + 2].lower() == "0x":
            base = 16
            i += 2
        elif text[i : i + 1] == "0":
            base = 8
        else:
            base = 10
    elif base == 16 and text[i : i + 2].lower() == "0x":
        i += 2
    value = 0
    first_digit = i
    while i < len(text):
        digit = _DIGITS.find(text[i].lower())
        if digit < 0 or digit >= base:
            break
        value = value * base + digit
        i += 1
    if i == first_digit:
        return 0, text  # no digits: C leaves endp at the start of the string
    if negate:
        value = -value
    return value & ULONG_MASK, text[i:]


def inet_aton(text: str) -> str | None:
    """iPXE's ``inet_aton``: four parts, each ``strtoul`` base 0 and <= 255."""
    octets: list[int] = []
    rest = text
    for separator in (".", ".", ".", ""):
        value, after = strtoul(rest, 0)
        if after == rest or value > 0xFF:
            return None
        octets.append(value)
        if separator:
            if not after.startswith(separator):
                return None
            rest = after[1:]
        elif after:
            return None
    return ".".join(str(o) for o in octets)
