"""The virtual lab that confirms which iPXE NIC drivers receive multicast.

Layers, lowest first (docs/architecture.md; import-linter enforces them in tox -e lint):
model -> wire -> judge -> report, model -> infra, and run on top of all of them;
container, cli and the pytest plugin are entry points.
"""
