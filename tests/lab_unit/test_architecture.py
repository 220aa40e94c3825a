"""The shape docs/architecture.md promises: short functions in lab/, no import circles."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MAX_LINES = 60
#: A longer function says why in its docstring with these words.
REASON = "Long because"


def test_no_function_in_lab_is_over_60_lines_without_saying_why() -> None:
    long = []
    for path in sorted((REPO / "lab").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            if lines > MAX_LINES and REASON not in (ast.get_docstring(node) or ""):
                long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({lines} lines)")
    assert long == []


def _cycles() -> list[str]:
    """Import cycles among the modules of lab/ and netboot/ (imports inside functions count)."""
    modules = {}
    for package in ("lab", "netboot"):
        for path in (REPO / package).rglob("*.py"):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rsplit(".", 1)[0] if "." in target else ""
                if target and target != name and not name.startswith(target + "."):
                    edges[name].add(target)
    found, stack, seen = [], [], set()

    def visit(node: str) -> None:
        if node in stack:
            found.append(" -> ".join(stack[stack.index(node) :] + [node]))
            return
        if node in seen:
            return
        seen.add(node)
        stack.append(node)
        for nxt in sorted(edges[node]):
            visit(nxt)
        stack.pop()

    for module in sorted(edges):
        visit(module)
    return found


def test_lab_and_netboot_have_no_import_circle() -> None:
    sys.setrecursionlimit(10000)
    assert _cycles() == []


def test_the_import_layers_hold() -> None:
    """lint-imports (tox -e lint) checks the layers of pyproject.toml; run it here too when installed."""
    import pytest

    pytest.importorskip("importlinter", reason="import-linter is not installed here (tox -e lint has it)")
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports())"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:]
    assert "0 broken" in done.stdout
