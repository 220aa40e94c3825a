"""What the lab talks about: statuses, errors, plans, results, network facts.

Nothing here runs, reads a pcap or starts a process; every other layer may import it.
"""
