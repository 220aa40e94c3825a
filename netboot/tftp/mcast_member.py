"""One client of a multicast session, as the session knows it.

Why a client is identified by (ip, port): iPXE opens a new socket (a new port) when it
reopens a transfer, and that is a new request; a repeated RRQ from the same address is
a retransmission of the old one (mcast_requests.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netboot.tftp.rto import RttEstimator

Address = tuple[str, int]

WAITING, MASTER, UNICAST, DONE, GONE = "waiting", "master", "unicast", "done", "gone"
#: MTFTP: a silent listener that did not answer the end-of-stream probe.  Not a failure:
#: an iPXE listener that finished is silent, and one that still lacks blocks reopens
#: (new RRQ) when the group goes quiet, and is answered then.
RELEASED = "released"


@dataclass
class Member:
    addr: Address
    order: int
    joined_at: float
    acknowledged: list[tuple[str, str]] = field(default_factory=list)
    state: str = WAITING
    have: int = 0
    acking: bool = False
    rfc_style: bool = False
    #: Sent anything to the session socket (ACK, ERROR): it is there (mcast_requests.py).
    answered: bool = False
    #: The current offer of the master role (promoted_at) is repeated every ``retransmit``
    #: (a promotion or probe of a waiting client; an offer made at its request is not:
    #: the client repeats the request itself).
    repeat_offer: bool = False
    #: MTFTP: heard something of the session (unicast DATA, or it joined while the group
    #: stream flowed); only such listeners are probed at the end of a pass.
    contacted: bool = False
    #: Its round trips while it is the master (the repair timeout, mcast_master.py).
    rtt: RttEstimator | None = None
    #: The block from which it was last seen to fall behind a window (mcast_window.py).
    behind_from: int = 0
    #: It joined while a master that had answered led: it heard the stream (a listener).
    listener: bool = False
    #: It ACKed as the master (or, MTFTP, ACKed what it heard): ``have`` is what it holds.
    led: bool = False
    #: Since when it has heard every group block (its join; a master handing the lead on
    #: listens again from then, holding ``have``): what went out earlier it may lack.
    listening_since: float = field(init=False)
    last_heard: float = 0.0
    last_unicast: float = 0.0
    promoted_at: float | None = None
    probes: int = 0
    consecutive_repairs: int = 0
    repairs: int = 0
    #: Blocks it acknowledged from the group copy alone (proof it hears the group).
    group_acked: int = 0
    # unicast service (deaf clients, or a lone MTFTP master's repair)
    pending: int = 0
    pending_sent: float = 0.0
    pending_via: str = ""
    unicast_bytes: int = 0

    def __post_init__(self) -> None:
        self.listening_since = self.joined_at

    @property
    def heard_stream(self) -> bool:
        """A real client in all likelihood: it answered, or listened to a stream a real master led."""
        return self.answered or self.listener

    @property
    def text(self) -> str:
        return f"{self.addr[0]}:{self.addr[1]}"
