"""``python -m lab.wire FILE.pcap``: the counts of a lab pcap (lab.wire.counts)."""

import sys

from lab.wire.counts import main

sys.exit(main())
