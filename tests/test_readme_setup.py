"""The README's two set-up commands work as root without sudo and as a user with sudo.

Each command runs under /bin/sh with a PATH of stand-ins that record what was run:
``apt-get`` (installing tox makes a ``tox`` appear), ``sudo`` (only in the user case)
and ``tox`` itself.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    return [line.strip() for line in text.splitlines() if line.startswith("    command -v tox")]


def test_the_readme_has_the_lab_and_the_test_command_and_ci_runs_the_test_command() -> None:
    commands = _readme_commands()
    assert [c.rsplit(";", 1)[1].strip() for c in commands] == ["tox -e lab", "tox"]
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()
    assert re.search(r"\btox$", ci[-1]), ".ci/run must end by running the README's test command (tox)"


def _stand_ins(folder: Path, log: Path, with_sudo: bool) -> None:
    folder.mkdir()
    scripts = {
        "apt-get": f'echo "apt-get $*" >> {log}\n'
        f'case "$*" in *install*tox*) printf \'#!/bin/sh\\necho "tox $*" >> {log}\\n\' > {folder}/tox;'
        f" /bin/chmod +x {folder}/tox;; esac\n",
    }
    if with_sudo:
        scripts["sudo"] = f'echo "sudo $*" >> {log}\nexec "$@"\n'
    for name, body in scripts.items():
        path = folder / name
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(0o755)
    (folder / "sh").symlink_to("/bin/sh")


@pytest.mark.parametrize("with_sudo", [False, True], ids=["root-without-sudo", "user-with-sudo"])
@pytest.mark.parametrize("which", [0, 1], ids=["lab", "tests"])
def test_the_readme_command_installs_tox_then_runs_it(tmp_path: Path, with_sudo: bool, which: int) -> None:
    command = _readme_commands()[which]
    log = tmp_path / "log"
    _stand_ins(tmp_path / "bin", log, with_sudo)
    result = subprocess.run(
        ["/bin/sh", "-c", command], env={"PATH": str(tmp_path / "bin"), "HOME": str(tmp_path)},
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    lines = [line.rstrip() for line in log.read_text().splitlines()]
    expected_tox = command.rsplit(";", 1)[1].strip()
    assert lines[-1] == expected_tox
    installs = [line for line in lines if line.startswith("apt-get install")]
    assert installs and installs[0].endswith(" tox"), lines
    assert lines.index("apt-get update") < lines.index(installs[0])
    assert any(line.startswith("sudo ") for line in lines) == with_sudo


def test_nothing_is_installed_when_tox_is_there(tmp_path: Path) -> None:
    log = tmp_path / "log"
    _stand_ins(tmp_path / "bin", log, with_sudo=False)
    tox = tmp_path / "bin" / "tox"
    tox.write_text(f'#!/bin/sh\necho "tox $*" >> {log}\n')
    tox.chmod(0o755)
    subprocess.run(["/bin/sh", "-c", _readme_commands()[1]], env={"PATH": str(tmp_path / "bin")}, check=True)
    assert [line.rstrip() for line in log.read_text().splitlines()] == ["tox"]
