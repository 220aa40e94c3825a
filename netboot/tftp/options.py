"""TFTP option negotiation (RFC 2347, 2348, 2349, 7440).  Pure functions, no I/O.

Why its own module: the unicast transfer, the RFC 2090 multicast sessions and PXE
MTFTP all negotiate the same options the same way, and a refused option must be
explained to the client identically whoever serves it.

Policy (strict, so a broken client hears why instead of timing out):

* Only options the client asked for go into the OACK, in the client's order.
* Unknown options are left out of the OACK (RFC 2347) and handed back in
  :attr:`Negotiation.other` so that a caller (e.g. the multicast manager) can use them.
* A value that is not a decimal integer, or lies outside its range, is refused with
  ERROR 8 naming the option, the value and the range.  The one exception is a
  ``blksize`` above 65464, which RFC 2348 lets the server lower to its maximum.
* An option named twice (any letter case) is refused with ERROR 8.
* An option disabled with ``--no-*`` is simply not acknowledged (atftpd behaviour).
* CVE-2021-41054 rule: a ``blksize`` smaller than the OACK it would have to carry
  is refused (atftpd overflowed its blksize-sized buffer building that OACK).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netboot.tftp.packets import ErrorCode

DEFAULT_BLKSIZE = 512
BLKSIZE_RANGE = (8, 65464)
TIMEOUT_RANGE = (1, 255)
WINDOWSIZE_RANGE = (1, 65535)
#: The options this module understands; everything else lands in ``Negotiation.other``.
KNOWN_OPTIONS = ("blksize", "timeout", "tsize", "windowsize")


class OptionRefused(ValueError):
    """The request's options cannot be honoured; answer with ERROR ``code`` and this text."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.OPTION_REFUSED) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class OptionPolicy:
    """What the server is willing to acknowledge (``--no-*`` switches clear these)."""

    blksize: bool = True
    timeout: bool = True
    tsize: bool = True
    windowsize: bool = True
    multicast: bool = True
    max_blksize: int = BLKSIZE_RANGE[1]
    max_windowsize: int = WINDOWSIZE_RANGE[1]

    def enabled(self, name: str) -> bool:
        return bool(getattr(self, name, False)) if name in (*KNOWN_OPTIONS, "multicast") else False


@dataclass
class Negotiation:
    """The outcome for one request: values in force and the OACK to send (if any)."""

    blksize: int = DEFAULT_BLKSIZE
    timeout: int | None = None
    tsize: int | None = None
    windowsize: int = 1
    #: (name, value) pairs to acknowledge, in the client's order and spelling.
    acknowledged: list[tuple[str, str]] = field(default_factory=list)
    #: Options this module does not handle, lower-cased name -> raw value.
    other: dict[str, str] = field(default_factory=dict)

    @property
    def needs_oack(self) -> bool:
        return bool(self.acknowledged)

    def oack_length(self) -> int:
        """Bytes of the OACK datagram built from :attr:`acknowledged`."""
        return 2 + sum(len(name) + len(value) + 2 for name, value in self.acknowledged)


def _integer(name: str, value: str, low: int, high: int | None) -> int:
    text = value.strip()
    if not text.isdigit() or not text.isascii():
        span = f"{low}..{high}" if high is not None else f">= {low}"
        raise OptionRefused(f"option {name}={value!r} is not a decimal integer in {span}")
    number = int(text)
    if number < low or (high is not None and number > high):
        raise OptionRefused(f"option {name}={value} is outside {low}..{high}")
    return number


def negotiate(
    options: tuple[tuple[str, str], ...],
    file_size: int | None,
    policy: OptionPolicy,
    *,
    is_read: bool = True,
) -> Negotiation:
    """Decide every option of one request; raise :class:`OptionRefused` to refuse it.

    ``file_size`` is the size a read transfer will send (after netascii conversion),
    or None when unknown; for a write the client's ``tsize`` is echoed.
    """
    result = Negotiation()
    seen: set[str] = set()
    for raw_name, value in options:
        name = raw_name.lower()
        if name in seen:
            raise OptionRefused(f"option {raw_name!r} appears twice in the request")
        seen.add(name)
        if name not in KNOWN_OPTIONS:
            result.other[name] = value
            continue
        if not policy.enabled(name):
            continue
        if name == "blksize":
            requested = _integer(raw_name, value, BLKSIZE_RANGE[0], None)
            result.blksize = min(requested, policy.max_blksize)
            result.acknowledged.append((raw_name, str(result.blksize)))
        elif name == "timeout":
            result.timeout = _integer(raw_name, value, *TIMEOUT_RANGE)
            result.acknowledged.append((raw_name, str(result.timeout)))
        elif name == "tsize":
            declared = _integer(raw_name, value, 0, None)
            if is_read:
                if file_size is None:
                    continue  # size unknown: leave tsize out rather than lie
                result.tsize = file_size
            else:
                result.tsize = declared
            result.acknowledged.append((raw_name, str(result.tsize)))
        else:  # windowsize
            requested = _integer(raw_name, value, *WINDOWSIZE_RANGE)
            result.windowsize = min(requested, policy.max_windowsize)
            result.acknowledged.append((raw_name, str(result.windowsize)))
    check_oack_fits(result)
    return result


def check_oack_fits(result: Negotiation) -> None:
    """CVE-2021-41054 rule: refuse a blksize smaller than the OACK it must carry.

    Call again after adding options (e.g. ``multicast``) to :attr:`Negotiation.acknowledged`.
    """
    if not result.acknowledged:
        return
    body = result.oack_length() - 2
    # atftpd builds the OACK in its blksize+4 byte DATA buffer (2 of them the opcode).
    if body > result.blksize + 2:
        raise OptionRefused(
            f"blksize {result.blksize} is smaller than the {body}-byte option acknowledgement; "
            f"ask for a larger blksize or fewer options"
        )
