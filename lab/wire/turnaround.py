"""``python -m lab.wire.turnaround TAP.pcap CLIENT_IP``: how long a TFTP client took to
acknowledge each block, block range by block range, read from its tap.

Why: a lock-step transfer goes at the client's pace, and a turnaround that grows with the
block number is the client's doing, not the server's or the wire's.  It showed that
iPXE's MTFTP client grows its buffer by every block (docs/multicast.md, "The last block
first"): 0.4 ms at the start of a 5 MiB file, 4 ms at its end.  The time runs from the
first copy of DATA n that reached the tap (group or unicast) to the client's first ACK n
after it; blocks it acknowledged without such a DATA (heard before a capture began) are
skipped.  Blocks are TFTP's 16-bit numbers, so a transfer past 65535 blocks is counted as
far as its first wrap (multicast sessions never get there).
"""

from __future__ import annotations

import argparse
import statistics
import struct
import sys
from collections.abc import Sequence
from pathlib import Path

from lab.wire.frames import Frame, datagrams
from netboot.tftp.packets import Opcode


def turnarounds(pcap: Path | Sequence[Frame], client_ip: str) -> dict[int, float]:
    """Block number -> seconds from its first DATA on the tap to the client's ACK of it."""
    sent: dict[int, float] = {}
    answered: dict[int, float] = {}
    for d in datagrams(pcap):
        if len(d.payload) < 4:
            continue
        opcode, block = struct.unpack_from("!HH", d.payload)
        if opcode == Opcode.DATA and d.src != client_ip and (d.to_group or d.dst == client_ip):
            if block == 0 and sent:
                break  # the block number wrapped: later blocks would land on earlier ones
            sent.setdefault(block, d.ts)
        elif opcode == Opcode.ACK and d.src == client_ip and block in sent and block not in answered:
            answered[block] = d.ts - sent[block]
    return answered


def by_range(times: dict[int, float], width: int) -> list[tuple[int, int, float]]:
    """(first block of the range, blocks answered in it, median seconds), in block order."""
    ranges: dict[int, list[float]] = {}
    for block, seconds in times.items():
        ranges.setdefault(block // width * width, []).append(seconds)
    return [(start, len(v), statistics.median(v)) for start, v in sorted(ranges.items())]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="a TFTP client's turnaround per block range, from its tap")
    parser.add_argument("pcap", type=Path)
    parser.add_argument("client", help="the client's IPv4 address")
    parser.add_argument("--width", type=int, default=1000, help="blocks per range (default 1000)")
    args = parser.parse_args(argv)
    try:
        times = turnarounds(args.pcap, args.client)
    except (OSError, ValueError) as exc:
        print(f"lab.wire.turnaround: cannot read {args.pcap}: {exc}", file=sys.stderr)
        return 2
    if not times:
        print(f"no block of {args.client} was both sent and acknowledged in {args.pcap}", file=sys.stderr)
        return 1
    print("blocks          acked  median turnaround")
    for start, count, median in by_range(times, max(1, args.width)):
        print(f"{start:>6}-{start + args.width - 1:<6} {count:>7}  {median * 1000:8.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
