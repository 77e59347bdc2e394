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
ENGINE_ROOMS = ["tasks", "money", "teacher", "selection", "run", "batch"]


@pytest.mark.parametrize("position", range(len(ENGINE_ROOMS)))
def test_each_engine_room_imports_only_the_rooms_below_it(position: int) -> None:
    room = ENGINE_ROOMS[position]
    above = [f"labelmill.engine.{name}" for name in ENGINE_ROOMS[position + 1 :]]
    if room not in ("run", "batch"):  # the run's settings sit at the engine's root, below those two
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


# Process state belongs to the CLI: signal handlers, the GIL switch interval, gc.freeze, exit codes,
# the event loop's policy, logging's root. Calls that set it are forbidden anywhere in the library;
# calls that set a library's global knobs are forbidden at import (inside a function, a test of its
# own shows they are restored: `recipe_settings`).
NEVER = ("add_signal_handler", "sys.setswitchinterval", "gc.freeze", "signal.signal", "sys.exit", "os._exit",
         "uvloop.install", "set_event_loop_policy", "logging.basicConfig")  # fmt: skip
NOT_AT_IMPORT = ("disable_progress_bar", "enable_progress_bar", "set_num_threads", "use_deterministic_algorithms",
                 "set_verbosity", "setLevel", "set_event_loop")  # fmt: skip


def dotted(node: ast.expr) -> str:
    """`a.b.c` for a call's function, as far as names and attributes spell it."""
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else "?"


def calls(tree: ast.AST, at_import: bool) -> list[str]:
    """Every call under `tree`; with `at_import`, only those run when the module is imported."""
    found: list[str] = []
    for child in ast.iter_child_nodes(tree):
        if at_import and isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if isinstance(child, ast.Call):
            found.append(dotted(child.func))
        found += calls(child, at_import)
    return found


def matches(name: str, patterns: tuple[str, ...]) -> list[str]:
    return [p for p in patterns if name == p or name.endswith("." + p)]


def test_the_library_touches_no_process_state() -> None:
    for folder in ("engine", "cache", "apps", "trainer", "testing"):
        for source in (REPO / "labelmill" / folder).rglob("*.py"):
            tree = ast.parse(source.read_text(encoding="utf-8"))
            anywhere = [c for c in calls(tree, at_import=False) if matches(c, NEVER)]
            at_import = [c for c in calls(tree, at_import=True) if matches(c, NOT_AT_IMPORT)]
            assert anywhere == at_import == [], source


def test_the_process_state_check_sees_what_it_forbids() -> None:
    module = ast.parse("import os, uvloop\nuvloop.install()\nhf.disable_progress_bar()\n"
                       "def f():\n    os._exit(1)\n    torch.set_num_threads(2)\n")  # fmt: skip
    assert [c for c in calls(module, at_import=False) if matches(c, NEVER)] == ["uvloop.install", "os._exit"]
    assert [c for c in calls(module, at_import=True) if matches(c, NOT_AT_IMPORT)] == ["hf.disable_progress_bar"]
