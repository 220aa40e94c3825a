"""The knobs of a multicast session (:class:`netboot.tftp.multicast.MulticastSession`).

Why one dataclass: the CLI (``--mcast-window``), the benchmarks and the virtual-time
tests set them by name, and docs/multicast.md ("Tuning") explains each default.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Tuning:
    repair_after: float = 0.15
    #: The master's repair timeout from its round trips (False: always ``repair_after``).
    adaptive_repair: bool = True
    #: 10 ms, half the unicast floor: a lone master's repairs are most of a lossy fetch's
    #: time (MTFTP's 512-byte blocks: ~400 repairs for 2 MiB at 5 % loss each way), and a
    #: master answers in 1-6 ms here; in a crowd its measured round trip sets the timeout.
    repair_floor: float = 0.01
    repair_ceiling: float = 1.0
    retransmit: float = 0.25
    master_silence: float = 2.0
    promote_timeout: float = 1.0
    max_probes: int = 3
    #: Waiting iPXE clients get a ``,,0`` OACK after this long without unicast.  iPXE's
    #: silence limit backs off from 0.25 s and fails once its timeout passes 10 s: a
    #: packet at most every 4 s (two rounds) keeps it at 4-8 s, even with one lost.
    keepalive: float = 2.0
    #: Active members (not done or gone) of one session; more requests go unicast.
    max_members: int = 512
    #: ``--mcast-window``: blocks in flight ahead of the master at most (mcast_window.py).
    window: int = 1
    #: ``--mcast-pace-blocks``: RFC 2090 blocks each member leads in turn, so that each
    #: new leader's first gap tells what it lost as a listener and the stream's pace
    #: follows (mcast_pace.py); 0: the first to answer leads, as fast as it ACKs.
    #: 128 blocks: a turn costs one OACK round trip, and at 1432 bytes four listeners
    #: report about every half megabyte.
    pace_blocks: int = 128
    #: RFC 2090: the least gap between group blocks to begin with (the feedback moves it).
    group_gap: float = 0.0
    deaf_blocks: int = 3
    #: The same for a master that has acknowledged a group copy: 10 % losses give 16 in a
    #: row about once in 10^16 blocks; a NIC that stops hearing the group still shows it.
    deaf_blocks_after_hearing: int = 16
    #: A unicast-served client silent this long is given up (with an ERROR).
    unicast_silence: float = 16.0
    #: How long a session with no active client waits for one that went quiet (mcast_linger.py).
    give_up_after: float = 16.0
    tick: float = 0.25
    #: MTFTP: a request within this long of the last group DATA is left to the stream.
    listen_window: float = 0.1
    #: MTFTP: the group never stays quiet longer than this while a client is unfinished.
    #: iPXE's MTFTP client reopens after 0.25 s without a packet, and in the lab a reopen
    #: never put an MTFTP RRQ on the wire: the client fell straight back to plain TFTP over
    #: a stale size and printed ok over holes (docs/multicast.md, "Never let a listener
    #: time out").  Pauses (promotions, end-of-stream probes) get keepalive DATA instead.
    mtftp_gap: float = 0.12
    #: ``--mtftp-last-block-first``: MTFTP has no tsize, so iPXE sizes its buffer by the
    #: blocks it gets, a copy of all it holds per block (its turnaround grew from 0.4 ms to
    #: 4 ms over 5 MiB in the lab); the last block first sizes it at once.  Experimental and
    #: off by default: the pass then ends so soon that VMs booting seconds apart miss most
    #: of it, the group carried 1.6-2.4 x and some listeners fell back and were refused
    #: (docs/multicast.md, "The last block first").
    last_block_first: bool = False
