"""iPXE's ``mtftp://`` client (PXE MTFTP): see :mod:`netboot.clients.ipxe_tftp` for the behaviour."""

from __future__ import annotations

from netboot.clients.ipxe_tftp import MTFTP_GROUP, Address, IpxeTftpClient


def mtftp_client(
    server: str,
    path: str,
    *,
    port: int | None = None,
    group: Address = MTFTP_GROUP,
    loss: float = 0.0,
    seed: int = 0,
    zero_on_reopen: bool = False,
) -> IpxeTftpClient:
    """RRQ ``path\\0octet\\0`` (no options, 512-byte blocks) to port 1759, group 239.255.1.1:3001."""
    return IpxeTftpClient(
        server, path, scheme="mtftp", port=port, loss=loss, seed=seed,
        zero_on_reopen=zero_on_reopen, mtftp_group=group,
    )
