"""What crossed the wire: the one pcap reader, per-client and per-group counts, stream facts."""
