"""Turn what a run captured into evidence files: wire counts beside each pcap.

Why in the run layer: capturing is infrastructure and counting is the wire layer's; the
run decides when a capture is counted (after it stopped) and where the results go.
"""

from __future__ import annotations

import json
from pathlib import Path

from lab.infra.capture import CaptureResult
from lab.model.jsonable import to_json
from lab.model.network import LAB_SLAM_PORTS
from lab.wire.counts import WireContext, WireSummary, write_evidence

#: The lab's servers as the wire parser must know them (every SLAM port of a full boot).
WIRE_CONTEXT = WireContext(slam_ports=LAB_SLAM_PORTS)


def count_capture(
    result: CaptureResult, record: Path | None = None, context: WireContext = WIRE_CONTEXT
) -> dict[str, WireSummary]:
    """Count every pcap of ``result`` (``X.wire.json``/``X.wire.txt`` beside each) and, with
    ``record``, write how the capture was made and what it counted there."""
    summaries = {name: write_evidence(path, context) for name, path in result.files.items() if path.exists()}
    if record is not None:
        data = {**to_json(result, record.parent), "summaries": to_json(summaries, record.parent)}
        record.write_text(json.dumps(data, indent=1) + "\n")
    return summaries

