"""Sans-I/O multicast session: one file, one blksize, one group:port, many clients.

RFC 2090 (``tftm://``) and PXE MTFTP (``mtftp://``) share this core; docs/multicast.md
explains the design.  The session is one state machine over one state, split by concept
into layers.  Each layer is a module whose class extends the one below it and calls only
itself and the layers below, so a module reads on its own and imports never cycle:

* mcast_state.py: what a session knows; the datagrams and events it queues;
* mcast_linger.py: how a session ends, at once or after waiting for a quiet client;
* mcast_unicast.py: clients served by unicast (deaf ones, a shared group's tail);
* mcast_election.py: who leads, and how the next master is found (promotions, probes, hold);
* mcast_leaving.py: clients that finish, are skipped, released or given up;
* mcast_master.py: the group stream the master's ACKs clock (repair, deafness, window);
* mcast_pacing.py: RFC 2090: the lead rotates, and what listeners lost sets the pace;
* mcast_acks.py, mcast_timers.py, mcast_requests.py: the inputs: datagrams to the session
  socket, the clock, and requests from the listening socket.

Members and their states are in mcast_member.py, the knobs in mcast_tuning.py.
"""

from __future__ import annotations

from netboot.tftp.mcast_acks import Acks
from netboot.tftp.mcast_requests import Requests
from netboot.tftp.mcast_state import MAX_MULTICAST_BLOCKS
from netboot.tftp.mcast_timers import Timers
from netboot.tftp.mcast_tuning import Tuning

__all__ = ["MAX_MULTICAST_BLOCKS", "MulticastSession", "Tuning"]


class MulticastSession(Requests, Acks, Timers):
    """One session; drive it with the aioquic-shaped methods: ``receive_datagram(data, addr,
    now)``, ``datagrams_to_send(now)``, ``get_timer()``, ``handle_timer(now)``, ``next_event()``,
    and ``add_request(addr, options, now)`` for each RRQ the service routes to it."""
