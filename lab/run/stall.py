"""Watch a booting guest's tap during its two fetches; end the wait when iPXE has stopped.

The rule is :class:`lab.judge.stall.SilenceJudge`'s; this thread reads the tap's counters
every few seconds from the boot script's start (the verifier's plain TFTP fetch) to the
payload's arrival, and aborts the console's wait with the judge's reason (the stage then
FAILs with it).
"""

from __future__ import annotations

import threading
import time

from images.bootscript import FETCH_START, FETCHED, KERNEL_FETCHED
from lab.infra.console import Console
from lab.infra.namespace import Namespace
from lab.infra.network import tap_counters
from lab.judge.stall import SilenceJudge

POLL_SECONDS = 2.0


class StallWatch:
    """``with StallWatch(ns, tap, console):`` around a boot's ladder walk."""

    def __init__(
        self, ns: Namespace, tap: str, console: Console, protocol: str, judge: SilenceJudge | None = None
    ) -> None:
        self.ns, self.tap, self.console, self.protocol = ns, tap, console, protocol
        self.judge = judge or SilenceJudge()
        #: Why the watch ended the wait (None: it never did).
        self.reason: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"stall:{tap}", daemon=True)

    def __enter__(self) -> StallWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _watch(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            text = self.console.text
            if FETCH_START not in text:
                continue  # not yet fetching: DHCP and the script have stage timeouts of their own
            payload = text.split(KERNEL_FETCHED, 1)[1] if KERNEL_FETCHED in text else None
            if payload is not None and FETCHED[:-1] in payload:
                return  # the payload arrived: what follows is the verifier's business
            counters = tap_counters(self.ns, self.tap)
            if "rx_packets" not in counters:
                continue
            may_listen = payload is not None and self.protocol != "tftp"
            sent, received = counters["rx_packets"], counters["tx_packets"]
            reason = self.judge.observe(time.monotonic(), sent, received, may_listen)
            if reason is not None:
                self.reason = reason
                self.console.abort(reason)
                return
