"""The CLI as users run it: subprocesses, a mock teacher in its own process, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from labelmill.cache import ResponseStore, iter_records, read_manifest
from labelmill.testing import make_cqa
from tests.mockproc import mock_stats, mock_teacher_process


def labelmill(*args: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPENAI_API_KEY": "sk-cli-SECRET"}
    return subprocess.run(
        [sys.executable, "-m", "labelmill", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=timeout,
        env=env,
    )


def start(args: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "OPENAI_API_KEY": "sk-cli-SECRET"}
    return subprocess.Popen(
        [sys.executable, "-m", "labelmill", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def wait_for(condition: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_annotate_json_summary_then_replay_from_stdin(tmp_path: Path) -> None:
    source = make_cqa(50, tmp_path / "in.jsonl")
    out, cache = tmp_path / "out", tmp_path / "cache"
    with mock_teacher_process() as (url, _):
        done = labelmill("annotate", str(source), "--task", "cqa", "--out", str(out), "--cache", str(cache),
                         "--base-url", url, "--rationale-rate", "0.5", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["records"] == 50 and summary["requests"] == 50
    replayed = labelmill("replay", "-", "--task", "cqa", "--out", str(tmp_path / "re"), "--cache", str(cache),
                         "--from", str(out), "--json", stdin=source.read_text())  # fmt: skip
    assert replayed.returncode == 0, replayed.stderr
    assert json.loads(replayed.stdout)["cache_hits"] == 50
    assert (tmp_path / "re/shards/part-00000.jsonl").read_bytes() == (out / "shards/part-00000.jsonl").read_bytes()
    # Worker processes forked by a fresh CLI process (the in-process test spawns them instead).
    forked = labelmill("replay", str(source), "--task", "cqa", "--out", str(tmp_path / "fk"), "--cache", str(cache),
                       "--from", str(out), "--workers", "2", "--json")  # fmt: skip
    assert forked.returncode == 0, forked.stderr
    assert (tmp_path / "fk/shards/part-00000.jsonl").read_bytes() == (out / "shards/part-00000.jsonl").read_bytes()


def test_kill_9_mid_run_then_rerun_repays_at_most_the_calls_in_flight(tmp_path: Path) -> None:
    n, concurrency = 400, 8
    source = make_cqa(n, tmp_path / "in.jsonl")
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = ["annotate", str(source), "--task", "cqa", "--out", str(out), "--cache", str(cache),
            "--concurrency", str(concurrency), "--shard-size", "50", "--json"]  # fmt: skip
    with mock_teacher_process("--latency-ms", "20") as (url, _):
        run = start([*args, "--base-url", url])
        wait_for(lambda: mock_stats(url)["ok"] >= 150)
        run.send_signal(signal.SIGKILL)
        run.communicate(timeout=10)
        before_kill = mock_stats(url)["requests"]
        with ResponseStore(cache) as store:
            stored = len(store)
        assert 0 < stored < n
        rerun = labelmill(*args, "--base-url", url)
        assert rerun.returncode == 0, rerun.stderr
        total = mock_stats(url)["requests"]
    # In flight = sent and not yet committed to the store: requests awaiting an answer plus answers
    # awaiting their batched commit, 2 x concurrency at most together. Only those can be paid twice.
    in_flight_bound = 2 * concurrency
    assert before_kill - stored <= in_flight_bound
    assert total <= n + in_flight_bound
    assert json.loads(rerun.stdout)["cache_hits"] == stored
    ids = [r.id for r in iter_records(out)]
    assert ids == [f"gen-{i:06d}" for i in range(n)]  # every example exactly once, in order


def test_ctrl_c_flushes_what_is_done_and_exits_130(tmp_path: Path) -> None:
    source = make_cqa(300, tmp_path / "in.jsonl")
    out = tmp_path / "out"
    with mock_teacher_process("--latency-ms", "50") as (url, _):
        run = start(["annotate", str(source), "--task", "cqa", "--out", str(out), "--cache", str(tmp_path / "c"),
                     "--base-url", url, "--concurrency", "4", "--json"])  # fmt: skip
        wait_for(lambda: mock_stats(url)["ok"] >= 20)
        run.send_signal(signal.SIGINT)
        stdout, _ = run.communicate(timeout=30)
    assert run.returncode == 130
    summary = json.loads(stdout)
    manifest = read_manifest(out)
    assert manifest["complete"] is False
    records = list(iter_records(out))
    assert 20 <= len(records) == summary["records"] < 300
    assert [r.index for r in records] == list(range(len(records)))


def test_usage_errors_exit_2_and_missing_input_exits_1(tmp_path: Path) -> None:
    bad_rate = labelmill("annotate", "x.jsonl", "--task", "cqa", "--out", str(tmp_path), "--rationale-rate", "2")
    assert bad_rate.returncode == 2 and "between 0 and 1" in bad_rate.stderr
    missing = labelmill("annotate", str(tmp_path / "nope.jsonl"), "--task", "cqa", "--out", str(tmp_path / "o"),
                        "--cache", str(tmp_path / "c"), "--base-url", "http://127.0.0.1:9/v1")  # fmt: skip
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    listed = labelmill("--help").stdout
    for command in ("annotate", "replay", "train", "evaluate", "predict", "bench", "optimize-prompt", "mock-teacher",
                    "cache"):  # fmt: skip
        assert command in listed


def test_cache_stats_and_verify(tmp_path: Path) -> None:
    source = make_cqa(10, tmp_path / "in.jsonl")
    with mock_teacher_process() as (url, _):
        labelmill("annotate", str(source), "--task", "cqa", "--out", str(tmp_path / "o"), "--cache",
                  str(tmp_path / "c"), "--base-url", url)  # fmt: skip
    stats = labelmill("cache", "stats", "--cache", str(tmp_path / "c"), "--json")
    assert json.loads(stats.stdout)["entries"] == 10
    verify = labelmill("cache", "verify", "--cache", str(tmp_path / "c"))
    assert verify.returncode == 0 and "10 entries, 0 bad" in verify.stdout


def test_a_missing_input_is_a_clear_error_that_leaves_nothing_behind(tmp_path: Path) -> None:
    for command in ("annotate", "replay"):
        out = tmp_path / command
        result = labelmill(command, str(tmp_path / "missing.jsonl"), "--task", "cqa", "--out", str(out),
                           "--cache", str(tmp_path / "cache"), timeout=60)  # fmt: skip
        assert result.returncode == 1, result.stderr
        assert "missing.jsonl does not exist" in result.stderr and "Traceback" not in result.stderr
        assert not out.exists() or list(out.rglob("*")) == []
