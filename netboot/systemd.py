"""The two systemd conventions the servers speak, without a dependency.

Why by hand: both are a few lines (``sd_notify(3)``, ``sd_listen_fds(3)``) and the
servers have no dependencies at all; libsystemd's Python binding would add one.

* Readiness: with ``Type=notify`` systemd passes ``NOTIFY_SOCKET`` (a path, or an
  abstract name written with a leading ``@``) and waits for a ``READY=1`` datagram.
* Socket activation: a ``.socket`` unit passes its sockets from fd 3 on, with
  ``LISTEN_FDS`` (how many) and ``LISTEN_PID`` (for whom: a child must not take them).
"""

from __future__ import annotations

import os
import socket

LISTEN_FDS_START = 3


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``READY=1``) to systemd; False when not run by systemd or it failed."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode(), address)
    except OSError:
        return False
    return True


def listen_fds() -> list[socket.socket]:
    """The sockets systemd passed to this process (none otherwise); the variables are then
    removed, so children (the workers, anything they start) do not take them again."""
    try:
        count = int(os.environ.get("LISTEN_FDS", "0"))
        pid = int(os.environ.get("LISTEN_PID", "0"))
    except ValueError:
        return []
    if count <= 0 or pid != os.getpid():
        return []
    for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    sockets = []
    for fd in range(LISTEN_FDS_START, LISTEN_FDS_START + count):
        os.set_inheritable(fd, True)
        sockets.append(socket.socket(fileno=fd))
    return sockets
