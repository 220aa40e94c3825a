"""When a guest's iPXE has stopped: silent itself, with nothing coming to it.

Why a rule and not the stage timeout: in the older-driver train an eepro100 heard the
MTFTP stream, then sent nothing for 108 s after the stream ended, until the payload stage
timed out at 270 s; the whole train waited for it.  A live iPXE never stays silent that
long while it lacks data: its retry timer starts at a quarter second and doubles up to
10 s (``DEFAULT_MIN_TIMEOUT``/``DEFAULT_MAX_TIMEOUT`` in iPXE's ``retry.h``), after which
it resends its ACK or request, or gives up and prints an error.  A client that drives its
own transfer (plain TFTP: the verifier always, the payload in tftp cells) ACKs every block,
so its silence alone is enough.  A multicast listener that is being fed (MTFTP or SLAM
data arriving) may stay silent, so there silence counts only while nothing comes to the
guest either.  Frames that reach a guest stuck in a plain TFTP fetch are no sign of life:
in a train the others' group stream floods every tap (the eepro100 above froze fetching
the verifier while 12 830 frames were handed to it).
"""

from __future__ import annotations

from dataclasses import dataclass

#: The guest sent nothing for this long: four of iPXE's longest retry intervals.
SILENT_SECONDS = 40.0
#: ... while nothing came to it for this long (the stream, if any, has ended).
QUIET_SECONDS = 20.0


@dataclass
class SilenceJudge:
    """Fed the tap's counters over time; says when the guest has stopped, and why."""

    silent_seconds: float = SILENT_SECONDS
    quiet_seconds: float = QUIET_SECONDS
    _sent: int | None = None
    _received: int | None = None
    _last_sent: float = 0.0
    _last_received: float = 0.0

    def observe(self, now: float, sent: int, received: int, may_listen: bool = True) -> str | None:
        """``sent``: frames from the guest so far; ``received``: frames handed to it;
        ``may_listen``: the guest may be a silent multicast listener now (False: it drives
        a plain TFTP fetch).  None while it looks alive, else why it stopped (the FAIL)."""
        if self._sent is None or sent != self._sent:
            self._sent, self._last_sent = sent, now
        if self._received is None or received != self._received:
            self._received, self._last_received = received, now
        silent, quiet = now - self._last_sent, now - self._last_received
        if silent < self.silent_seconds:
            return None
        if not may_listen:
            return (
                f"iPXE stopped: the guest sent nothing for {silent:.0f} s in a plain TFTP fetch, "
                f"while {self._received} frames had reached it (a live iPXE ACKs or resends within 10 s)"
            )
        if quiet < self.quiet_seconds:
            return None
        return (
            f"iPXE stopped: the guest sent nothing for {silent:.0f} s and nothing came to it for "
            f"{quiet:.0f} s (a live iPXE resends within 10 s or prints an error)"
        )
