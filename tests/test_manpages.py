"""The man pages are generated from the parsers, up to date, and render with ``man -l``."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from netboot import manpages


@pytest.mark.parametrize("page", manpages.PAGES, ids=[p.name for p in manpages.PAGES])
def test_the_page_is_up_to_date_with_its_parser(page: manpages.Page) -> None:
    assert manpages.path_of(page).read_text() == manpages.render(page), "run: python -m netboot.manpages"


@pytest.mark.skipif(shutil.which("man") is None, reason="man is missing: apt-get install -y man-db")
@pytest.mark.parametrize("page", manpages.PAGES, ids=[p.name for p in manpages.PAGES])
def test_the_page_renders_with_man(page: manpages.Page) -> None:
    result = subprocess.run(
        ["man", "--warnings", "-l", str(manpages.path_of(page))],
        capture_output=True, text=True, timeout=60, env={**os.environ, "MANWIDTH": "100"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    text = result.stdout
    assert f"{page.name.upper()}({page.section})" in text and "NAME" in text and "OPTIONS" in text
    assert "--version" in text
