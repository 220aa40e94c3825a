"""Which servers a boot needs, decided in one place.

Why: a lab switches TFTP servers between cells, restarts the MTFTP server when a boot
wants another file on iPXE's one MTFTP group, runs one pyslamd per SLAM file, and
starts a train's multicast servers afresh with a hold for its VMs.  Five call sites used
to decide that each in its own way; now they say what they want (:func:`services_for`)
and :meth:`lab.run.lab.Lab.ensure` makes it so.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.model.network import SLAM_PORT

TFTP_SERVERS = ("pyatftpd", "atftpd")
#: The files of a full boot, each on its own SLAM port when they travel by x-slam.
FULL_BOOT_FILES = ("vmlinuz", "initrd.gz")


@dataclass(frozen=True)
class TftpWant:
    kind: str = "pyatftpd"
    #: The files PXE MTFTP serves (iPXE's one group), or None: whatever runs will do.
    mtftp_files: tuple[str, ...] | None = None
    #: Hold RFC 2090 sessions for this many clients (pyatftpd's --mcast-min-clients).
    mcast_min_clients: int = 1


@dataclass(frozen=True)
class SlamWant:
    file: str
    port: int = SLAM_PORT
    #: Hold the first stream for this many clients (pyslamd's --min-clients).
    min_clients: int = 1


@dataclass(frozen=True)
class Services:
    tftp: TftpWant
    #: The SLAM servers that must run (others on other ports may keep running).
    slam: tuple[SlamWant, ...] = ()
    #: Start the multicast servers anew even when the running ones match: a held server
    #: tells a new wave from a straggler of the last by the time since the file's last
    #: session, so one train's VMs must not be taken for the next train's.
    fresh: bool = False


def tftp_kind(server: str) -> str:
    """The TFTP server a cell needs (x-slam cells name pyslamd; their script comes from pyatftpd)."""
    return server if server in TFTP_SERVERS else "pyatftpd"


def services_for(
    protocol: str, files: tuple[str, ...], server: str, train_vms: int | None = None
) -> Services:
    """What must run for VMs fetching ``files`` by ``protocol`` from ``server``.

    ``train_vms``: a train of that many VMs boots at once; its multicast servers start
    afresh and hold their first stream for all of them.
    """
    kind = tftp_kind(server)
    hold = train_vms or 1
    mtftp = files if protocol == "mtftp" else None
    tftm_hold = hold if protocol == "tftm" and kind == "pyatftpd" else 1
    slam: tuple[SlamWant, ...] = ()
    if protocol == "x-slam":
        slam = tuple(SlamWant(name, SLAM_PORT + index, hold) for index, name in enumerate(files))
    return Services(TftpWant(kind, mtftp, tftm_hold), slam, fresh=train_vms is not None)
