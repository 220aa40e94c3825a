"""The multicast group:port pool behind ``--mcast-addr`` / ``--mcast-port`` (atftpd syntax).

Why a pool: every RFC 2090 session needs its own group:port for as long as it runs,
and the pool must be handed back when it ends, or later sessions would find it empty.

Syntax (as atftpd 0.8's ``tftpd_mcast_parse_opt``; docs/multicast.md, "Command line
(atftpd's syntax)"):

* addresses: a comma list of ``a.b.c.d`` or ``a.b.c.d-N`` (a range of the last octet,
  ``d <= N``); a bare number ``N`` or ``N-M`` reuses the first three octets of the
  previous element, e.g. ``239.255.0.1,5,10-12``;
* ports: a comma list of ``p`` or ``p-q``.

Order is address-major, port-minor, and allocation is first fit, both as atftpd.
Unlike atftpd we check everything at parse time (octets 0..255, multicast addresses
only, ports 1..65535) and say what is wrong.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

DEFAULT_MCAST_ADDR = "239.255.0.0-255"
DEFAULT_MCAST_PORT = "1758"
DEFAULT_MCAST_TTL = 1


class PoolSyntaxError(ValueError):
    """A ``--mcast-addr`` or ``--mcast-port`` value that cannot be used."""


@dataclass(frozen=True, order=True)
class GroupPort:
    group: str
    port: int

    def oack_value(self, master: bool) -> str:
        """The RFC 2090 OACK value: plain decimal (iPXE parses with base 0), two commas."""
        return f"{self.group},{self.port},{1 if master else 0}"


def _parse_int(text: str, what: str, element: str) -> int:
    if not text.isdigit():
        raise PoolSyntaxError(f"{what} {element!r}: {text!r} is not a decimal number")
    return int(text)


def _octet_range(text: str, element: str) -> tuple[int, int]:
    low_text, sep, high_text = text.partition("-")
    low = _parse_int(low_text, "multicast address", element)
    high = _parse_int(high_text, "multicast address", element) if sep else low
    for value in (low, high):
        if value > 255:
            raise PoolSyntaxError(f"multicast address {element!r}: octet {value} is above 255")
    if high < low:
        raise PoolSyntaxError(f"multicast address {element!r}: range end {high} is below its start {low}")
    return low, high


def parse_addresses(spec: str) -> list[str]:
    """Expand an atftpd ``--mcast-addr`` value into the list of group addresses, in order."""
    addresses: list[str] = []
    prefix: list[int] | None = None
    for raw in spec.split(","):
        element = raw.strip()
        if not element:
            raise PoolSyntaxError(f"--mcast-addr {spec!r}: empty element (check the commas)")
        head, _, tail = element.partition("-")
        parts = head.split(".")
        if len(parts) == 4:
            prefix = [_octet_range(p, element)[0] for p in parts[:3]]
            last = parts[3] + ("-" + tail if tail else "")
        elif len(parts) == 1:
            if prefix is None:
                raise PoolSyntaxError(
                    f"--mcast-addr {spec!r}: {element!r} is a bare number but no full address comes before it"
                )
            last = element
        else:
            raise PoolSyntaxError(
                f"--mcast-addr {spec!r}: {element!r} is neither a.b.c.d[-N] nor a bare N[-M]"
            )
        low, high = _octet_range(last, element)
        for octet in range(low, high + 1):
            address = ".".join(str(o) for o in (*prefix, octet))
            if not ipaddress.IPv4Address(address).is_multicast:
                raise PoolSyntaxError(
                    f"--mcast-addr {spec!r}: {address} is not a multicast address (use 224.0.0.0/4, "
                    "usually 239.x.x.x)"
                )
            addresses.append(address)
    return addresses


def parse_ports(spec: str) -> list[int]:
    """Expand an atftpd ``--mcast-port`` value (``1758``, ``1758-1760,8000``) into ports."""
    ports: list[int] = []
    for raw in spec.split(","):
        element = raw.strip()
        if not element:
            raise PoolSyntaxError(f"--mcast-port {spec!r}: empty element (check the commas)")
        low_text, sep, high_text = element.partition("-")
        low = _parse_int(low_text, "--mcast-port", element)
        high = _parse_int(high_text, "--mcast-port", element) if sep else low
        for value in (low, high):
            if not 1 <= value <= 65535:
                raise PoolSyntaxError(f"--mcast-port {element!r}: port {value} is outside 1..65535")
        if high < low:
            raise PoolSyntaxError(f"--mcast-port {element!r}: range end {high} is below its start {low}")
        ports.extend(range(low, high + 1))
    return ports


def parse_ttl(text: str | int) -> int:
    try:
        ttl = int(text)
    except ValueError:
        raise PoolSyntaxError(
            f"--mcast-ttl {text!r} is not a number (use 1..255; 1 keeps it on the link)"
        ) from None
    if not 0 <= ttl <= 255:
        raise PoolSyntaxError(f"--mcast-ttl {ttl} is outside 0..255")
    return ttl


class McastPool:
    """First-fit allocator over (group, port) pairs, address-major as atftpd."""

    def __init__(self, addresses: str = DEFAULT_MCAST_ADDR, ports: str = DEFAULT_MCAST_PORT) -> None:
        groups = parse_addresses(addresses)
        port_list = parse_ports(ports)
        seen: set[GroupPort] = set()
        self.entries: list[GroupPort] = []
        for group in groups:
            for port in port_list:
                entry = GroupPort(group, port)
                if entry not in seen:  # a repeated element must not hand out one pair twice
                    seen.add(entry)
                    self.entries.append(entry)
        self._used: set[GroupPort] = set()

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def free(self) -> int:
        return len(self.entries) - len(self._used)

    def allocate(self) -> GroupPort | None:
        """The first unused pair, or None when every pair is held by a session."""
        for entry in self.entries:
            if entry not in self._used:
                self._used.add(entry)
                return entry
        return None

    def release(self, entry: GroupPort) -> None:
        if entry not in self._used:
            raise ValueError(f"{entry.group}:{entry.port} was not allocated from this pool")
        self._used.discard(entry)
