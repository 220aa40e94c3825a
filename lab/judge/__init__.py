"""Verdicts from evidence: the boot ladder, how a payload travelled, trains and full boots.

The judge reads results, wire facts and server events; it never waits on a console or
starts anything, so every rule is tested on recorded evidence.
"""
