"""Loss on one VM's tap from the moment that VM first asks the TFTP server for anything.

Why not from boot: with 5 % loss each way from power-on, the VM's DHCP exchange lost
packets and waited out iPXE's DHCP timers, so it asked for the payload 15 s after the
others (block 3884 of 12289) and any MTFTP server had to send a third of the file
again (1.397 x measured): a figure about DHCP, not about the transfer under test.  Why
not from its payload request (tried in a train): a lossy VM that happens to ask first is
the master for the whole pass, and every lost DATA or ACK then stalls all four VMs on a
timer (the train ran out of time at 270 s).  So loss starts at the boot-script request:
the verifier and the payload travel with loss, DHCP does not.

Used by the lossy train (the last VM) and by ``--lab-cell-loss`` (every cell's VM).
"""

from __future__ import annotations

import threading
from typing import Any

from lab.infra.loss import LossInjection, add_loss, remove_loss
from lab.model.network import Slot
from lab.run.lab import Lab

#: Where the loss starts, as the reports say it.
LOSS_FROM = "the VM's first TFTP request (after its DHCP)"


class LossAfterDhcp:
    """Watches the server's events for ``slot``'s first request, then drops ``percent`` % each way."""

    def __init__(self, lab: Lab, slot: Slot, percent: int) -> None:
        self.lab, self.slot, self.percent = lab, slot, percent
        self.mark = lab.mark()
        self.injected: LossInjection | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> LossAfterDhcp:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        if self.injected is not None and not self.injected.removed:
            remove_loss(self.lab.ns, self.injected)

    def record(self) -> dict[str, Any]:
        """What a report says about this loss (``injected`` False: the VM never asked, so none)."""
        out: dict[str, Any] = {"tap": self.slot.tap, "percent": self.percent, "from": LOSS_FROM}
        if self.injected is None:
            return {**out, "injected": False}
        return {**out, "injected": True, "method": self.injected.method,
                "ingress_method": self.injected.ingress_method}  # fmt: skip

    def _watch(self) -> None:
        while not self._stop.is_set():
            if any(e.client_ip == self.slot.ipv4 for e in self.lab.tftp_events_since(self.mark)):
                self.injected = add_loss(self.lab.ns, self.slot.tap, self.percent)
                return
            self._stop.wait(0.05)
