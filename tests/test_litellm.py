"""A server we did not write: LiteLLM's proxy, its models answering by `mock_response`.

The proxy lives in its own environment (`make .venv-litellm`, the `litellm` extra), since its
dependencies are not ours; LABELMILL_LITELLM names another `litellm` executable.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from labelmill.cache import iter_records
from labelmill.testing import make_cqa
from tests.conftest import REPO

pytestmark = pytest.mark.slow

MASTER_KEY = "sk-labelmill-test"
CONFIG = """
model_list:
  - model_name: teacher
    litellm_params:
      model: openai/teacher
      api_key: sk-unused
      mock_response: "The first choice fits the question best. So the answer is (a)."
  - model_name: forwarded
    litellm_params:
      model: openai/mock-teacher
      api_base: http://127.0.0.1:{forwarded}/v1
      api_key: sk-unused
  - model_name: refusing
    litellm_params:
      model: openai/mock-teacher
      api_base: http://127.0.0.1:{refusing}/v1
      api_key: sk-unused
"""


def litellm_executable() -> str:
    path = os.environ.get("LABELMILL_LITELLM") or str(REPO / ".venv-litellm" / "bin" / "litellm")
    assert Path(path).is_file(), f"no LiteLLM proxy at {path}: run `make .venv-litellm` (or set LABELMILL_LITELLM)"
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The proxy's root URL, started for this module and stopped after it."""
    folder = tmp_path_factory.mktemp("litellm")
    # Two models that forward to mock teachers: one honours `response_format`, one refuses it.
    forwarded, refusing = free_port(), free_port()
    (folder / "config.yaml").write_text(CONFIG.format(forwarded=forwarded, refusing=refusing), encoding="utf-8")
    port = free_port()
    env = {**os.environ, "LITELLM_MASTER_KEY": MASTER_KEY, "LITELLM_TELEMETRY": "False", "NO_DOCS": "True"}
    mocks = [subprocess.Popen([sys.executable, "-m", "labelmill", "mock-teacher", "--port", str(mock_port), *flags],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for mock_port, flags in ((forwarded, ()), (refusing, ("--response-format", "refuse")))]  # fmt: skip
    with contextlib.ExitStack() as stack, open(folder / "proxy.log", "w") as log:
        for mock in mocks:
            stack.callback(mock.wait, 30)
            stack.callback(mock.terminate)
        proc = subprocess.Popen(
            [litellm_executable(), "--config", str(folder / "config.yaml"), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=folder,
        )  # fmt: skip
        try:
            root = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                try:
                    with urllib.request.urlopen(f"{root}/health/liveliness", timeout=2):
                        break
                except OSError:
                    log_text = (folder / "proxy.log").read_text(errors="replace")[-2000:]
                    assert proc.poll() is None and time.monotonic() < deadline, f"LiteLLM did not start:\n{log_text}"
                    time.sleep(0.5)
            yield root
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def labelmill(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPENAI_API_KEY": MASTER_KEY}
    return subprocess.run([sys.executable, "-m", "labelmill", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)  # fmt: skip


def annotate(tmp_path: Path, n: int, base_url: str, *more: str) -> subprocess.CompletedProcess[str]:
    source = make_cqa(n, tmp_path / "in.jsonl")
    return labelmill("annotate", str(source), "--task", "cqa", "--out", str(tmp_path / "out"),
                     "--cache", str(tmp_path / "cache"), "--base-url", base_url, "--json", *more)  # fmt: skip


def test_a_run_through_litellm_writes_a_record_for_every_row(proxy: str, tmp_path: Path) -> None:
    result = annotate(tmp_path, 60, f"{proxy}/v1", "--model", "teacher", "--rationale-rate", "0.5")
    assert result.returncode == 0, result.stderr
    records = list(iter_records(tmp_path / "out"))
    assert len(records) == 60 and all(r.label == r.choices[0] for r in records if r.choices)
    assert sum(r.rationale is not None for r in records) > 10


def test_a_404_on_every_request_stops_a_large_run_within_seconds(proxy: str, tmp_path: Path) -> None:
    started = time.monotonic()
    result = annotate(tmp_path, 300, f"{proxy}/wrong", "--model", "teacher", "--rationale-rate", "0")
    assert result.returncode == 1 and "HTTP 404" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 30


def test_an_unknown_model_is_a_usage_error_that_names_the_reason(proxy: str, tmp_path: Path) -> None:
    started = time.monotonic()
    result = annotate(tmp_path, 200, f"{proxy}/v1", "--model", "nosuch", "--rationale-rate", "0")
    assert result.returncode == 2, result.stderr
    assert "Invalid model name" in result.stderr and "--model" in result.stderr
    assert time.monotonic() - started < 30


@pytest.mark.parametrize(("model", "used"), [("forwarded", "json_schema"), ("refusing", "text")])
def test_auto_output_format_through_litellm_whether_the_server_takes_the_schema_or_refuses_it(
    proxy: str, tmp_path: Path, model: str, used: str
) -> None:
    result = annotate(tmp_path, 60, f"{proxy}/v1", "--model", model, "--rationale-rate", "0.5")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["records"] == 60 and summary["failures"] == 0
    assert summary["output_format"]["used"] == used and (summary["output_format"]["schema_refusals"] > 0) == (
        used == "text"
    )
    records = list(iter_records(tmp_path / "out"))
    assert all(r.label in (r.choices or []) for r in records) and sum(r.rationale is not None for r in records) > 10
