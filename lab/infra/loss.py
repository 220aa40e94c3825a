"""Packet loss and rate limits on one lab interface (a VM's tap), inside the lab namespace.

Why two methods: netem is the standard tool, but this machine's kernel has no netem
(``CONFIG_NET_SCH_NETEM`` unset: "Specified qdisc kind is unknown").  nftables netdev
hooks drop a random share of frames on ingress and egress of one device and work
here (docs/findings.md#kernel-no-netem).  We try netem first and fall back, and the result names the
method so the matrix report can say how loss was made.

netem is a qdisc, so it acts on egress only (toward the VM); loss on frames *from* the
VM would need an ifb redirect.  So ingress loss is always the nftables ingress hook, and
``method`` names what makes the egress loss: ``netem`` where the kernel has it,
otherwise ``nftables-netdev`` for both directions.

Usage::

    with inject_loss(ns, "tap0", percent=5) as loss:
        ...
    loss.method, loss.rules
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from lab.infra.namespace import Namespace

LossMethod = Literal["netem", "nftables-netdev"]

_DEVICE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


class LossUnavailable(RuntimeError):
    """Neither netem nor nftables netdev hooks work here; the message says what to install."""


@dataclass
class LossInjection:
    """What was installed: enough to reproduce it by hand and to name it in a report."""

    device: str
    percent: int
    #: How egress loss is made (``netem`` or ``nftables-netdev``).
    method: LossMethod
    ingress_method: LossMethod = "nftables-netdev"
    #: The commands or nftables ruleset text that was applied, in order.
    rules: list[str] = field(default_factory=list)
    table: str | None = None
    netem_error: str | None = None
    removed: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _check_device(device: str) -> None:
    if not _DEVICE_NAME.match(device):
        raise ValueError(f"not an interface name: {device!r}")


def nft_ruleset(
    table: str, device: str, percent: int, egress: bool, ingress: bool, spare_dhcp: bool = False
) -> str:
    """The netdev table of docs/evidence.md; chains on separate lines (nft requires it).

    ``spare_dhcp``: drop only UDP datagrams that are not DHCP's (67, 68; DHCPv6 546, 547), so loss
    can be on from power-on without touching the VM's DHCP (lab.run.loss says why).
    """
    match = "udp dport != { 67, 68, 546, 547 } " if spare_dhcp else ""
    lines = [f"table netdev {table} {{"]
    if egress:
        lines.append(
            f' chain o {{ type filter hook egress device "{device}" priority 0; '
            f"{match}numgen random mod 100 < {percent} drop; }}"
        )
    if ingress:
        lines.append(
            f' chain i {{ type filter hook ingress device "{device}" priority 0; '
            f"{match}numgen random mod 100 < {percent} drop; }}"
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


def _nft_apply(ns: Namespace, ruleset: str) -> None:
    result = ns.run(["nft", "-f", "-"], check=False, input=ruleset)
    if result.returncode != 0:
        raise LossUnavailable(
            f"nft -f failed ({result.stderr.strip()}); install nftables (apt-get install -y nftables) "
            "and use a kernel with nf_tables netdev ingress/egress hooks (Linux >= 5.16)"
        )


def _try_netem(ns: Namespace, device: str, percent: int) -> tuple[str | None, str | None]:
    """Egress loss by netem; returns (command text, None) or (None, why not)."""
    argv = ["tc", "qdisc", "add", "dev", device, "root", "netem", "loss", f"{percent}%"]
    result = ns.run(argv, check=False)
    if result.returncode == 0:
        return " ".join(argv), None
    return None, (result.stderr or "").strip() or f"tc exited {result.returncode}"


def add_loss(
    ns: Namespace, device: str, percent: int, prefer: LossMethod | None = None, spare_dhcp: bool = False
) -> LossInjection:
    """Drop ``percent``% of frames each way on ``device``; undo with :func:`remove_loss`.

    ``spare_dhcp`` (see :func:`nft_ruleset`) takes nftables for both ways: netem cannot match.
    """
    _check_device(device)
    if spare_dhcp:
        prefer = "nftables-netdev"
    if not 0 <= percent <= 100:
        raise ValueError(f"loss percent must be 0..100, not {percent}")
    if ns.run(["ip", "link", "show", "dev", device], check=False).returncode != 0:
        raise LossUnavailable(f"no device {device!r} in the lab namespace: add loss once the tap exists")
    table = f"lab_loss_{device.replace('-', '_').replace('.', '_')}"
    netem_cmd: str | None = None
    netem_error: str | None = "not tried"
    if prefer != "nftables-netdev":
        netem_cmd, netem_error = _try_netem(ns, device, percent)
    if netem_cmd is None and prefer == "netem":
        raise LossUnavailable(f"netem is not available: {netem_error}")
    egress = netem_cmd is None
    ruleset = nft_ruleset(table, device, percent, egress=egress, ingress=True, spare_dhcp=spare_dhcp)
    try:
        _nft_apply(ns, ruleset)
    except LossUnavailable:
        if netem_cmd is not None:
            ns.run(["tc", "qdisc", "del", "dev", device, "root"], check=False)
        raise
    rules = ([netem_cmd] if netem_cmd else []) + [ruleset]
    return LossInjection(
        device=device,
        percent=percent,
        method="netem" if netem_cmd else "nftables-netdev",
        rules=rules,
        table=table,
        netem_error=netem_error if netem_cmd is None else None,
    )


def remove_loss(ns: Namespace, loss: LossInjection) -> None:
    """Remove what :func:`add_loss` installed; a device that has gone (VM ended) is fine."""
    if loss.removed:
        return
    if loss.method == "netem":
        ns.run(["tc", "qdisc", "del", "dev", loss.device, "root"], check=False)
    if loss.table:
        ns.run(["nft", "delete", "table", "netdev", loss.table], check=False)
    loss.removed = True


@contextmanager
def inject_loss(
    ns: Namespace, device: str, percent: int, prefer: LossMethod | None = None
) -> Iterator[LossInjection]:
    loss = add_loss(ns, device, percent, prefer)
    try:
        yield loss
    finally:
        remove_loss(ns, loss)


@dataclass
class RateLimit:
    device: str
    rate: str
    rule: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def add_rate_limit(ns: Namespace, device: str, rate: str = "10mbit", burst: str = "32kbit") -> RateLimit:
    """Egress token bucket on ``device`` (tbf works on this kernel); removed by :func:`remove_rate_limit`."""
    _check_device(device)
    argv = ["tc", "qdisc", "add", "dev", device, "root", "tbf"]
    argv += ["rate", rate, "burst", burst, "latency", "400ms"]
    result = ns.run(argv, check=False)
    if result.returncode != 0:
        raise LossUnavailable(f"tbf on {device} failed: {result.stderr.strip()}; the kernel needs sch_tbf")
    return RateLimit(device=device, rate=rate, rule=" ".join(argv))


def remove_rate_limit(ns: Namespace, limit: RateLimit) -> None:
    ns.run(["tc", "qdisc", "del", "dev", limit.device, "root"], check=False)
