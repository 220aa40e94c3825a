"""Loss on one VM's tap from power-on, on every UDP datagram but DHCP's.

Why not everything from power-on: with 5 % loss each way on the whole boot, the VM's DHCP
exchange lost packets and waited out iPXE's DHCP timers, so it asked for the payload 15 s
after the others (block 3884 of 12289) and any MTFTP server had to send a third of the
file again (1.397 x measured): a figure about DHCP, not about the transfer under test.
Why not from its payload request (tried in a train): a lossy VM that happens to ask first
is the master for the whole pass, and every lost DATA or ACK then stalls all four VMs on a
timer (the train ran out of time at 270 s).  Why not from its first TFTP request, as
until 2026-12-06: that meant watching the server's events and adding the rules after the
request, and a fast VM fetched its script, the verifier and a whole 256 KiB payload in
the 0.1 s that took (a clean-clone CI run saw no retransmission at 10 % loss).  So the
nftables rules are on before the VM starts and spare DHCP alone (ports 67, 68, 546, 547): the
boot script, the verifier and the payload travel with loss, DHCP does not.

Used by the lossy train (the last VM) and by ``--lab-cell-loss`` (every cell's VM).
"""

from __future__ import annotations

from typing import Any

from lab.infra.loss import LossInjection, add_loss, remove_loss
from lab.model.network import Slot
from lab.run.lab import Lab

#: Where the loss starts, as the reports say it.
LOSS_FROM = "power-on, on every UDP datagram but DHCP's (the boot script, verifier and payload; not DHCP)"


class LossAfterDhcp:
    """Drops ``percent`` % of ``slot``'s UDP each way, DHCP spared, while the context is open."""

    def __init__(self, lab: Lab, slot: Slot, percent: int) -> None:
        self.lab, self.slot, self.percent = lab, slot, percent
        self.injected: LossInjection | None = None

    def __enter__(self) -> LossAfterDhcp:
        self.injected = add_loss(self.lab.ns, self.slot.tap, self.percent, spare_dhcp=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.injected is not None and not self.injected.removed:
            remove_loss(self.lab.ns, self.injected)

    def record(self) -> dict[str, Any]:
        """What a report says about this loss (``injected`` False: the rules were never added)."""
        out: dict[str, Any] = {"tap": self.slot.tap, "percent": self.percent, "from": LOSS_FROM}
        if self.injected is None:
            return {**out, "injected": False}
        return {**out, "injected": True, "method": self.injected.method,
                "ingress_method": self.injected.ingress_method}  # fmt: skip
