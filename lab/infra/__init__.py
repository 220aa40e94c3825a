"""The lab's machinery: the sealed namespace, bridge and taps, loss, the server processes,
dnsmasq, packet capture, QEMU and its console, provisioning.

Infra does what it is told and records it; it decides nothing about what a boot proved
(that is the judge's) or which servers a boot needs (that is the run layer's).
"""
