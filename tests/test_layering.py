"""DESIGN.md's dependency rules: annotating must not need torch, and the layers stay apart."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO, run_python

CHECK_IMPORTS = """
import sys
import {module}
heavy = sorted(m for m in sys.modules if m.split('.')[0] in {{'torch', 'transformers'}})
print(','.join(heavy))
"""


@pytest.mark.parametrize("module", ["labelmill", "labelmill.cache", "labelmill.engine", "labelmill.cli"])
def test_importing_never_loads_torch_or_transformers(module: str) -> None:
    result = run_python(CHECK_IMPORTS.format(module=module))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_the_cli_and_replay_start_without_the_http_client() -> None:
    # aiohttp costs about 0.1 s to import (it builds TLS contexts): only a run that talks to a
    # teacher loads it, so `labelmill replay` and `--help` start faster.
    result = run_python("import sys, labelmill.cli\nprint('aiohttp' in sys.modules)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def imported_modules(package: Path) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for source in package.rglob("*.py"):
        tree = ast.parse(source.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update((str(source), alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add((str(source), node.module))
    return found


def forbidden(package: str, prefixes: tuple[str, ...]) -> list[tuple[str, str]]:
    return [
        (src, mod)
        for src, mod in imported_modules(REPO / "labelmill" / package)
        if any(mod == p or mod.startswith(p + ".") for p in prefixes)
    ]


def test_cache_imports_neither_engine_nor_trainer_nor_torch() -> None:
    prefixes = ("labelmill.engine", "labelmill.trainer", "torch", "transformers")
    assert forbidden("cache", prefixes) == []


def test_engine_never_imports_trainer_torch_or_transformers() -> None:
    assert forbidden("engine", ("labelmill.trainer", "torch", "transformers")) == []


def test_trainer_never_imports_engine() -> None:
    assert forbidden("trainer", ("labelmill.engine",)) == []
