"""The bridge's multicast variant (flooding vs IGMP snooping with a querier), set and confirmed.

Why: iPXE sends no IGMP membership reports (protocols.md section 5), so a snooping
bridge with an active querier stops forwarding the group to its taps.  The matrix
shows that topology as a column; its cells are only worth something if the bridge
really was in that state, so the state is read back from ``ip -d link show`` and
recorded, not assumed from the command that set it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Literal

from lab.netns import Namespace

Variant = Literal["flooding", "snooping-querier", "snooping"]

VARIANTS: dict[str, tuple[int, int]] = {
    # name: (mcast_snooping, mcast_querier)
    "flooding": (0, 0),
    "snooping": (1, 0),
    "snooping-querier": (1, 1),
}


class TopologyMismatch(RuntimeError):
    """The bridge is not in the variant a test asked for."""


@dataclass(frozen=True)
class BridgeMulticastState:
    bridge: str
    mcast_snooping: int
    mcast_querier: int
    #: In centiseconds, as ip reports it.
    mcast_query_interval: int | None
    mcast_igmp_version: int | None

    @property
    def variant(self) -> str:
        for name, (snooping, querier) in VARIANTS.items():
            if (self.mcast_snooping, self.mcast_querier) == (snooping, querier):
                return name
        return f"snooping={self.mcast_snooping},querier={self.mcast_querier}"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "variant": self.variant}


def read_bridge_state(ns: Namespace, bridge: str = "br0") -> BridgeMulticastState:
    """Read the multicast settings the kernel reports for ``bridge`` (``ip -d -j link show``)."""
    result = ns.run(["ip", "-d", "-j", "link", "show", "dev", bridge])
    links = json.loads(result.stdout)
    info = links[0].get("linkinfo", {}) if links else {}
    if info.get("info_kind") != "bridge":
        raise TopologyMismatch(f"{bridge} is not a bridge (ip -d link show says {info.get('info_kind')!r})")
    data = info.get("info_data", {})
    return BridgeMulticastState(
        bridge=bridge,
        mcast_snooping=int(data["mcast_snooping"]),
        mcast_querier=int(data["mcast_querier"]),
        mcast_query_interval=data.get("mcast_query_intvl"),
        mcast_igmp_version=data.get("mcast_igmp_version"),
    )


def set_variant(ns: Namespace, variant: Variant, bridge: str = "br0") -> BridgeMulticastState:
    """Put ``bridge`` into ``variant`` and return the state read back (raises if it did not take)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown bridge variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    snooping, querier = VARIANTS[variant]
    ns.run(
        [
            "ip", "link", "set", bridge, "type", "bridge",
            "mcast_snooping", str(snooping), "mcast_querier", str(querier),
        ]
    )
    return confirm_variant(ns, variant, bridge)


def confirm_variant(ns: Namespace, variant: Variant, bridge: str = "br0") -> BridgeMulticastState:
    """The bridge's state, after checking it matches ``variant``."""
    state = read_bridge_state(ns, bridge)
    if state.variant != variant:
        raise TopologyMismatch(f"{bridge} is in variant {state.variant}, not {variant}")
    return state
