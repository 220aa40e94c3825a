"""Held MTFTP requests: who is still listening, and whose fallback is a clean one.

Why (docs/multicast.md, "The next file waits for the last one's tails"): a request for
the next file is not answered while the last file's tails run on the one group:port.
Its iPXE listens on the group meanwhile, so when the stream starts for someone else it
is made a member.  But it may fall back to plain TFTP before it hears that stream
(Debian's ROMs fall back 0.8 s after their first unanswered request; a TCG guest may
hear the first group DATA later than that).  Such a fallback is clean: iPXE falls back
only when it has no peer, and a client that heard anything of the stream has a peer
and must first *reopen* (a new RRQ from a new port on the MTFTP port) before it can
fall back.  So a held member whose plain RRQ comes with no reopen seen is served, and
leaves the session; refused as a stale member, its boot would fail for nothing.  The gap
in this: a reopen shows an RRQ only while iPXE's count of timeouts without a peer is
below 3, and a held client may have reached that while it waited; one that heard the
stream and then reopened would be served over a stale size, and its guest's verifier
would fail it (docs/multicast.md, "The next file waits for the last one's tails").

Sans-I/O: addresses and the server loop's times in, decisions out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Address = tuple[str, int]
SessionKey = tuple[str, str, str]

#: How long after a held MTFTP request its iPXE may still listen on the group: upstream
#: falls back to plain TFTP at its fourth timeout (0.25 + 0.5 + 1 + 2 s); Debian's ROMs
#: were seen to fall back 0.8 s after their first request.
HELD_LISTENS = 4.0


@dataclass
class HeldRequests:
    #: Requests not answered, per session key: client IP -> (address, time of the request).
    held: dict[SessionKey, dict[str, tuple[Address, float]]] = field(default_factory=dict)
    #: Held requesters made members of the stream that started, per session key: client IP ->
    #: the address they asked from.  An entry goes when the client reopens (it heard the stream).
    joined: dict[SessionKey, dict[str, Address]] = field(default_factory=dict)

    def hold(self, key: SessionKey, client: Address, now: float) -> None:
        self.held.setdefault(key, {})[client[0]] = (client, now)

    def saw_request(self, key: SessionKey, client: Address) -> None:
        """An MTFTP RRQ for ``key``: from a new port, a joined client has reopened."""
        joined = self.joined.get(key, {})
        if client[0] in joined and joined[client[0]] != client:
            del joined[client[0]]

    def still_listening(self, key: SessionKey, requester: Address, now: float) -> list[Address]:
        """The held requesters of ``key`` that may still listen, now that its stream starts.

        They are taken off the held list and remembered as joined (for :meth:`clean_fallback`).
        The requester that starts the stream is not among them: it is the master.
        """
        held = self.held.pop(key, {})
        listening = {
            ip: addr
            for ip, (addr, when) in held.items()
            if ip != requester[0] and now - when <= HELD_LISTENS
        }
        self.joined[key] = listening
        return list(listening.values())

    def clean_fallback(self, key: SessionKey, client: Address) -> Address | None:
        """A plain RRQ for ``key``'s file from ``client``: the member address to withdraw
        when it is the clean fallback of a held requester that never reopened, else None.

        Either way the client is off both lists: it gave up on MTFTP.
        """
        self.held.get(key, {}).pop(client[0], None)
        return self.joined.get(key, {}).pop(client[0], None)
