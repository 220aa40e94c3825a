"""Registers the lab's pytest plugin (fixtures, markers, --lab-* options) for every test run."""

pytest_plugins = ["lab.pytest_plugin"]
