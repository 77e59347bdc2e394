"""Start `labelmill mock-teacher` in its own process on a free port (tests and benchmarks)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def mock_teacher_process(*args: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Yields (base_url, process); the server is stopped on exit."""
    command = [sys.executable, "-m", "labelmill", "mock-teacher", "--port", "0", *args]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"mock teacher did not start: {line}{proc.stderr.read() if proc.stderr else ''}")
        yield line.rsplit(" ", 1)[1].strip(), proc
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def mock_stats(base_url: str) -> dict[str, Any]:
    url = base_url.removesuffix("/v1") + "/stats"
    with urllib.request.urlopen(url, timeout=5) as response:
        data: dict[str, Any] = json.load(response)
    return data
