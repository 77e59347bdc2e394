"""The `labelmill` command line: parses options, calls the library, prints."""

from labelmill.cli import _annotate, _predict, _student, _tools  # noqa: F401  (they register their commands)
from labelmill.cli._base import main

__all__ = ["main"]
