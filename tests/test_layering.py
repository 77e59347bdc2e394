"""The layer rules of ARCHITECTURE.md: annotating needs no torch, and the layers stay apart."""

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


@pytest.mark.parametrize(
    "module", ["labelmill", "labelmill.cache", "labelmill.engine", "labelmill.cli", "labelmill.apps"]
)
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
                # `from package import _module` reaches a private module too
                found.update((str(source), f"{node.module}.{a.name}") for a in node.names if a.name.startswith("_"))
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


# The engine's rooms, bottom first: a room imports only the rooms before it.
ENGINE_ROOMS = ["tasks", "money", "teacher", "selection", "run"]


@pytest.mark.parametrize("position", range(len(ENGINE_ROOMS)))
def test_each_engine_room_imports_only_the_rooms_below_it(position: int) -> None:
    room = ENGINE_ROOMS[position]
    above = [f"labelmill.engine.{name}" for name in ENGINE_ROOMS[position + 1 :]]
    if room != "run":  # the run's settings sit at the engine's root, above every room but the run
        above.append("labelmill.engine._config")
    found = imported_modules(REPO / "labelmill" / "engine" / room)
    bad = [(s, m) for s, m in found if m == "labelmill.engine" or any(m == a or m.startswith(a + ".") for a in above)]
    assert bad == []  # (importing the engine's own surface would be a cycle too)


def test_the_engine_imports_nothing_built_on_it() -> None:
    assert forbidden("engine", ("labelmill.cli", "labelmill.apps", "labelmill.testing", "labelmill._api")) == []


def test_nothing_outside_the_engine_imports_its_private_modules() -> None:
    def private(module: str) -> bool:
        parts = module.split(".")
        return parts[:2] == ["labelmill", "engine"] and any(part.startswith("_") for part in parts[2:])

    # The one exception: the parser's hand-written scanners are checked against the plain regex
    # searches they stand for, which only a test of the private module can do.
    allowed = {(str(REPO / "tests" / "test_parse.py"), "labelmill.engine.tasks._parse")}
    found = set()
    for folder in (REPO / "labelmill", REPO / "tests", REPO / "benchmarks"):
        for source, module in imported_modules(folder):
            if private(module) and "/labelmill/engine/" not in source:
                found.add((source, module))
    assert sorted(found - allowed) == []


def test_the_library_touches_no_process_state() -> None:
    # Signal handlers, the GIL switch interval, gc.freeze and exit codes belong to the CLI.
    calls = ("add_signal_handler", "setswitchinterval", "gc.freeze", "signal.signal", "sys.exit")
    for folder in ("engine", "cache", "apps", "trainer"):
        for source in (REPO / "labelmill" / folder).rglob("*.py"):
            text = source.read_text(encoding="utf-8")
            assert not [call for call in calls if call in text], source
