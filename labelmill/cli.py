"""The `labelmill` command line: parses options, calls the library, prints.

Data goes to stdout (`--json`); progress and logs go to stderr. Exit codes: 0 done, 1 error,
2 usage error, 3 finished partially, 130 interrupted.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, NoReturn, ParamSpec, TypeVar

import click

from labelmill._exceptions import LabelmillError, UsageError
from labelmill._version import __version__

P = ParamSpec("P")
R = TypeVar("R")

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3

DEFAULT_CACHE = ".labelmill-cache"


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"labelmill: error: {message}", err=True)
    sys.exit(code)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn library errors into a one-line message and the contract's exit code."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except UsageError as exc:
            _fail(str(exc), EXIT_USAGE)
        except LabelmillError as exc:
            _fail(str(exc), EXIT_ERROR)

    return wrapper


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, sort_keys=True))


def _not_built(name: str, issue: int) -> Callable[..., None]:
    def command(**_: Any) -> None:
        _fail(f"`labelmill {name}` is not built yet (issue {issue})", EXIT_USAGE)

    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="labelmill")
def main() -> None:
    """Annotate a corpus with a teacher LLM under a dollar budget, cache every response,
    and distil a small student model from the result."""


# -- cache ----------------------------------------------------------------------------------------
@main.group()
def cache() -> None:
    """Inspect the response store."""


cache_option = click.option(
    "--cache", "cache_dir", default=DEFAULT_CACHE, show_default=True, help="Response store directory."
)


@cache.command("stats")
@cache_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@handle_errors
def cache_stats(cache_dir: str, as_json: bool) -> None:
    """Entries and bytes in the store."""
    from labelmill.cache import ResponseStore

    with ResponseStore(cache_dir) as store:
        stats = store.stats()
    if as_json:
        print_json({"entries": stats.entries, "bytes": stats.bytes, "path": stats.path})
    else:
        click.echo(f"{stats.path}: {stats.entries} entries, {stats.bytes} bytes")


@cache.command("verify")
@cache_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@handle_errors
def cache_verify(cache_dir: str, as_json: bool) -> None:
    """Re-read every entry: it must parse and hash to its key. Exit 1 if any does not."""
    from labelmill.cache import ResponseStore

    with ResponseStore(cache_dir) as store:
        report = store.verify()
    if as_json:
        print_json({"checked": report.checked, "bad": [{"key": k, "error": e} for k, e in report.bad]})
    else:
        for key, error in report.bad:
            click.echo(f"{key}: {error}", err=True)
        click.echo(f"checked {report.checked} entries, {len(report.bad)} bad")
    if not report.ok:
        sys.exit(EXIT_ERROR)


# -- commands of later issues ---------------------------------------------------------------------
_PENDING = {
    "annotate": ("Annotate INPUT with a teacher LLM into shards.", 3),
    "replay": ("Rebuild shards from the store alone, offline.", 3),
    "mock-teacher": ("Serve a local OpenAI-compatible mock teacher.", 3),
    "train": ("Distil a T5 student from shards.", 5),
    "evaluate": ("Evaluate a student on labelled input.", 5),
    "predict": ("Predict labels (and rationales) with a student.", 5),
    "optimize-prompt": ("Tune the zero-shot prompts with OPRO.", 6),
}


def _register_pending(group: click.Group, table: dict[str, tuple[str, int]]) -> None:
    for name, (help_text, issue) in table.items():
        if name in group.commands:
            continue
        group.add_command(
            click.Command(
                name,
                callback=_not_built(name, issue),
                help=f"{help_text} (not built yet)",
                context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
                params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)],
            )
        )


@main.group()
def bench() -> None:
    """Benchmarks: annotation cost per example, engine speed."""


_register_pending(bench, {"cost": ("Tokens and dollars per example.", 4), "engine": ("Engine speed.", 3)})
_register_pending(main, _PENDING)
