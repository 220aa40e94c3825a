"""iPXE's ``tftm://`` client (RFC 2090): see :mod:`netboot.clients.ipxe_tftp` for the behaviour."""

from __future__ import annotations

from netboot.clients.ipxe_tftp import TFTP_MAX_BLKSIZE, IpxeTftpClient


def tftm_client(
    server: str, path: str, *, port: int | None = None, deaf: bool = False, loss: float = 0.0, seed: int = 0
) -> IpxeTftpClient:
    """RRQ ``path\\0octet\\0blksize\\01432\\0tsize\\00\\0multicast\\0\\0`` to port 69."""
    return IpxeTftpClient(
        server, path, scheme="tftm", port=port, blksize=TFTP_MAX_BLKSIZE, deaf=deaf, loss=loss, seed=seed
    )
