"""The settings of one pyatftpd server, as the command line sets them.

Why a module of its own: the request handlers (``unicast.py``, the multicast
services) read these settings through the handler interface (``handler.py``),
and neither may import the server that owns them (no import circle).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netboot.tftp.options import OptionPolicy


@dataclass
class ServerConfig:
    root: str = "/srv/tftp"
    policy: OptionPolicy = field(default_factory=OptionPolicy)
    retry_timeout: float = 5.0
    #: Unicast reads: the retransmission timeout from measured round trips (rto.py), up to
    #: ``retry_timeout``; False (``--retry-timeout``): ``first_retry`` as below.
    adaptive_rto: bool = True
    #: Without adaptive timeouts: the first retransmission after progress, doubling up to
    #: ``retry_timeout`` (the former default); None: always ``retry_timeout`` (atftpd).
    first_retry: float | None = 1.0
    max_retries: int = 5
    max_transfers: int = 100
    allow_upload: bool = False
    max_upload_bytes: int | None = None
    trace: bool = False
    check_port: bool = True
    listen_local: bool = False
    #: Exit after this many idle seconds (inetd mode, ``--tftpd-timeout``); None = never.
    idle_exit: float | None = None
    #: Run unicast reads in a thread each (lower latency per block) instead of on the loop.
    threaded: bool = True
