"""The lab's fixtures and ``--lab-*`` options come from the installed package's ``lab``
pytest11 entry point (lab/pytest_plugin.py); nothing else is needed here."""
