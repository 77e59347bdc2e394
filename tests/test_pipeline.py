"""The annotation pipeline against the mock teacher on 127.0.0.1 (real sockets, one process)."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from labelmill._exceptions import TeacherStatusError
from labelmill.cache import ResponseStore, iter_records, read_manifest
from labelmill.engine import AnnotateConfig, RetryPolicy, RunResult, RunStatus, annotate, load_task
from labelmill.engine.money import Prices
from labelmill.testing import MockConfig, MockTeacher, cqa_rows, make_cqa, write_jsonl

FAST_RETRY = RetryPolicy(attempts=8, backoff_base_s=0.01, backoff_cap_s=0.05, retry_after_cap_s=0.2)


@pytest.fixture
async def mock() -> AsyncIterator[MockTeacher]:
    async with MockTeacher() as teacher:
        yield teacher


def config(tmp_path: Path, source: Path | str, base_url: str, **overrides: Any) -> AnnotateConfig:
    settings: dict[str, Any] = {
        "source": str(source),
        "task": load_task("cqa"),
        "out_dir": tmp_path / "out",
        "cache_dir": tmp_path / "cache",
        "base_url": base_url,
        "api_key": "sk-test-SECRET-123",
        "concurrency": 8,
        "retry": FAST_RETRY,
        "progress": False,
        "prices": Prices(0.15, 0.60),
        **overrides,
    }
    return AnnotateConfig(**settings)


def failures(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]


async def test_happy_path_writes_every_example_in_input_order(tmp_path: Path, mock: MockTeacher) -> None:
    source = make_cqa(120, tmp_path / "in.jsonl")
    result = await annotate(config(tmp_path, source, mock.base_url, shard_size=50, rationale_rate=0.5))
    assert result.status is RunStatus.COMPLETE
    records = list(iter_records(tmp_path / "out"))
    assert [r.index for r in records] == list(range(120))
    assert all(r.label in (r.choices or []) for r in records)
    explained = sum(r.rationale is not None for r in records)
    assert 40 <= explained <= 80 and result.summary["rationale_rate"] == pytest.approx(explained / 120, abs=1e-4)
    assert result.summary["requests"] == 120 == mock.stats.ok
    manifest = read_manifest(tmp_path / "out")
    assert manifest["complete"] and [s["records"] for s in manifest["shards"]] == [50, 50, 20]
    assert manifest["settings"]["rationale_rate"] == 0.5
    with ResponseStore(tmp_path / "cache") as store:
        assert len(store) == 120 and store.verify().ok
    server_cost = (mock.stats.prompt_tokens * 0.15 + mock.stats.completion_tokens * 0.60) / 1e6
    assert result.summary["dollars"] == pytest.approx(server_cost)


async def test_rerun_pays_nothing_and_writes_identical_shards(tmp_path: Path, mock: MockTeacher) -> None:
    source = make_cqa(60, tmp_path / "in.jsonl")
    await annotate(config(tmp_path, source, mock.base_url, rationale_rate=0.3))
    first = (tmp_path / "out" / "shards" / "part-00000.jsonl").read_bytes()
    served = mock.stats.requests
    again = await annotate(config(tmp_path, source, mock.base_url, rationale_rate=0.3))
    assert mock.stats.requests == served
    assert again.summary["cache_hits"] == 60 and again.summary["dollars"] == 0
    assert (tmp_path / "out" / "shards" / "part-00000.jsonl").read_bytes() == first


async def test_raising_the_rationale_rate_only_pays_for_new_rationales(tmp_path: Path, mock: MockTeacher) -> None:
    source = make_cqa(100, tmp_path / "in.jsonl")
    low = await annotate(config(tmp_path, source, mock.base_url, rationale_rate=0.2))
    high = await annotate(config(tmp_path, source, mock.base_url, rationale_rate=0.5))
    # The subset at 0.2 is inside the subset at 0.5: its rationales are reused.
    low_explained = round(low.summary["rationale_rate"] * 100)
    assert high.summary["cache_hits"] == 100 - (round(high.summary["rationale_rate"] * 100) - low_explained)


def forbid_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("replay opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(asyncio.base_events.BaseEventLoop, "create_connection", refuse)


async def test_replay_is_byte_identical_and_opens_no_socket(
    tmp_path: Path, mock: MockTeacher, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = make_cqa(80, tmp_path / "in.jsonl")
    await annotate(config(tmp_path, source, mock.base_url, rationale_rate=0.4, shard_size=30))
    forbid_sockets(monkeypatch)
    replayed = await annotate(
        config(tmp_path, source, "http://127.0.0.1:9/v1", out_dir=tmp_path / "re", rationale_rate=0.4, shard_size=30,
               replay=True)
    )  # fmt: skip
    assert replayed.status is RunStatus.COMPLETE and replayed.summary["requests"] == 0
    for name in ("part-00000.jsonl", "part-00001.jsonl", "part-00002.jsonl"):
        assert (tmp_path / "re/shards" / name).read_bytes() == (tmp_path / "out/shards" / name).read_bytes()


async def test_replay_marks_missing_examples_not_cached(tmp_path: Path, mock: MockTeacher) -> None:
    source = make_cqa(30, tmp_path / "in.jsonl")
    await annotate(config(tmp_path, source, mock.base_url, limit=20))
    result = await annotate(config(tmp_path, source, "http://127.0.0.1:9/v1", out_dir=tmp_path / "re", replay=True))
    assert result.status is RunStatus.PARTIAL
    assert result.summary["records"] == 20
    rows = failures(tmp_path / "re")
    assert [r["index"] for r in rows] == list(range(20, 30)) and {r["reason"] for r in rows} == {"not_cached"}


async def test_429_storm_with_retry_after(tmp_path: Path) -> None:
    source = make_cqa(40, tmp_path / "in.jsonl")
    # 20 per 1 s burst window, and no x-ratelimit headers to learn the limit from: a storm of 429s
    async with MockTeacher(MockConfig(rpm=1200, retry_after_s=0.05, limit_headers=False)) as mock:
        result = await annotate(config(tmp_path, source, mock.base_url, concurrency=16,
                                       retry=RetryPolicy(attempts=100, retry_after_cap_s=0.05)))  # fmt: skip
    assert result.status is RunStatus.COMPLETE and result.summary["records"] == 40
    assert result.summary["rate_limited_429"] == mock.stats.rate_limited > 0
    assert result.summary["retries"] >= mock.stats.rate_limited


async def test_server_errors_and_dropped_connections_are_retried(tmp_path: Path) -> None:
    source = make_cqa(80, tmp_path / "in.jsonl")
    async with MockTeacher(MockConfig(error_rate=0.2, drop_rate=0.15, seed=3)) as mock:
        result = await annotate(config(tmp_path, source, mock.base_url))
    assert result.status is RunStatus.COMPLETE and result.summary["records"] == 80
    assert mock.stats.server_errors > 0 and mock.stats.dropped > 0
    assert result.summary["server_errors"] == mock.stats.server_errors
    assert result.summary["retries"] == mock.stats.server_errors + mock.stats.dropped


async def test_timeouts_give_up_as_failure_rows(tmp_path: Path) -> None:
    source = make_cqa(4, tmp_path / "in.jsonl")
    async with MockTeacher(MockConfig(latency_ms=400)) as mock:
        result = await annotate(config(tmp_path, source, mock.base_url, timeout_s=0.05,
                                       retry=RetryPolicy(attempts=2, backoff_base_s=0.01)))  # fmt: skip
    assert result.status is RunStatus.PARTIAL
    rows = failures(tmp_path / "out")
    assert len(rows) == 4 and {r["reason"] for r in rows} == {"gave_up"}
    assert "did not answer in time" in rows[0]["detail"]


async def test_too_long_example_is_a_refused_row_and_not_retried(tmp_path: Path) -> None:
    rows = list(cqa_rows(5))
    rows[2]["question"] = "word " * 3000
    source = write_jsonl(iter(rows), tmp_path / "in.jsonl")
    async with MockTeacher(MockConfig(context_tokens=2000)) as mock:
        result = await annotate(config(tmp_path, source, mock.base_url))
    assert result.status is RunStatus.PARTIAL and result.summary["records"] == 4
    (row,) = failures(tmp_path / "out")
    assert row["index"] == 2 and row["reason"] == "refused" and "maximum context length" in row["detail"]
    assert mock.stats.rejected == 1  # sent once, never retried


async def test_bad_api_key_stops_the_run_with_the_server_message(tmp_path: Path) -> None:
    source = make_cqa(10, tmp_path / "in.jsonl")
    async with MockTeacher(MockConfig(api_key="sk-right")) as mock:
        with pytest.raises(TeacherStatusError, match="401: Incorrect API key"):
            await annotate(config(tmp_path, source, mock.base_url))
        assert mock.stats.requests <= 8  # no retries: at most the first wave
    # A run that fails keeps what an earlier run wrote (none here) and leaves nothing of its own.
    assert [p.name for p in (tmp_path / "out").rglob("*")] == []


async def test_circuit_breaker_ends_a_run_of_only_errors(tmp_path: Path) -> None:
    source = make_cqa(40, tmp_path / "in.jsonl")
    async with MockTeacher(MockConfig(error_rate=1.0)) as mock:
        result: RunResult = await annotate(
            config(tmp_path, source, mock.base_url, breaker_s=0.2, retry=RetryPolicy(attempts=1000, backoff_base_s=0.01,
                   backoff_cap_s=0.02))
        )  # fmt: skip
    assert result.status is RunStatus.PARTIAL
    assert any("only errors" in note for note in result.notes)
    rows = failures(tmp_path / "out")
    assert len(rows) == 40 and {r["reason"] for r in rows} == {"not_attempted"}


async def test_bad_lines_and_duplicate_ids_become_failure_rows(tmp_path: Path, mock: MockTeacher) -> None:
    good = [json.dumps(r) for r in cqa_rows(4)]
    dup = json.loads(good[1])
    lines = [good[0], "{not json", good[1], '{"id": "x", "question": "no choices"}', good[2], json.dumps(dup), good[3]]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = await annotate(config(tmp_path, source, mock.base_url))
    assert result.status is RunStatus.PARTIAL
    assert [r.id for r in iter_records(tmp_path / "out")] == ["gen-000000", "gen-000001", "gen-000002", "gen-000003"]
    rows = failures(tmp_path / "out")
    assert [(r["line"], r["reason"]) for r in rows] == [(2, "bad_input"), (4, "bad_input"), (6, "duplicate_id")]
    assert "line 6 repeats line 3" in rows[2]["detail"] and "missing field 'choices'" in rows[1]["detail"]


async def test_replay_in_worker_processes_matches_the_run_byte_for_byte(tmp_path: Path, mock: MockTeacher) -> None:
    rows = [json.dumps(r) for r in cqa_rows(2300)]
    # a bad line, a duplicate id in a later batch than its first line, and rows never annotated
    lines = [*rows[:700], "{not json", *rows[700:1200], rows[3], *rows[1200:]]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    await annotate(config(tmp_path, source, mock.base_url, rationale_rate=0.4, shard_size=1000, limit=2000))
    outputs = {}
    for workers in (0, 2):
        out = tmp_path / f"re-{workers}"
        replayed = await annotate(
            config(tmp_path, source, "http://127.0.0.1:9/v1", out_dir=out, rationale_rate=0.4, shard_size=1000,
                   replay=True, replay_workers=workers)
        )  # fmt: skip
        assert replayed.status is RunStatus.PARTIAL and replayed.summary["cache_hits"] == 1998
        assert replayed.summary["failure_reasons"] == {"bad_input": 1, "duplicate_id": 1, "not_cached": 302}
        outputs[workers] = [(out / name).read_bytes() for name in ("failures.jsonl", *shard_names(out))]
    annotated = [(tmp_path / "out" / name).read_bytes() for name in shard_names(tmp_path / "out")]
    assert outputs[2] == outputs[0] and outputs[2][1:] == annotated


def shard_names(out: Path) -> list[str]:
    return [f"shards/{s['path'].split('/')[-1]}" for s in read_manifest(out)["shards"]]


async def test_unicode_survives_end_to_end(tmp_path: Path, mock: MockTeacher) -> None:
    row = {"id": "ü-1", "question": "Où pousse la café ☕?", "choices": ["arbre 🌳", "mer"], "answer": "arbre 🌳"}
    source = write_jsonl(iter([row]), tmp_path / "in.jsonl")
    await annotate(config(tmp_path, source, mock.base_url))
    (record,) = iter_records(tmp_path / "out")
    assert record.id == "ü-1" and "☕" in record.text and record.label in row["choices"]


async def test_empty_input_is_a_clean_exit(tmp_path: Path, mock: MockTeacher) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("")
    result = await annotate(config(tmp_path, source, mock.base_url))
    assert result.status is RunStatus.COMPLETE and result.summary["examples"] == 0
    assert any("no rows" in note for note in result.notes)


async def test_csv_and_parquet_inputs(tmp_path: Path, mock: MockTeacher) -> None:
    import csv

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = list(cqa_rows(6))
    with open(tmp_path / "in.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "question", "choices", "answer"])
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "choices": "|".join(row["choices"])})
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet")
    for name in ("in.csv", "in.parquet"):
        out = tmp_path / name.replace(".", "_")
        result = await annotate(config(tmp_path, tmp_path / name, mock.base_url, out_dir=out))
        assert result.status is RunStatus.COMPLETE
        assert [r.gold for r in iter_records(out)] == [r["answer"] for r in rows]


async def test_api_key_never_lands_on_disk(tmp_path: Path) -> None:
    source = make_cqa(20, tmp_path / "in.jsonl")
    async with MockTeacher(MockConfig(api_key="sk-test-SECRET-123", error_rate=0.2)) as mock:
        await annotate(config(tmp_path, source, mock.base_url))
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert b"SECRET" not in path.read_bytes(), path


def test_progress_line_shows_counts_dollars_and_budget() -> None:
    from labelmill.engine.run import RunStats
    from labelmill.engine.teacher import TeacherCounters

    stats = RunStats(total=10, done=4, cache_hits=1, teacher=TeacherCounters(retries=2, rate_limited=1), dollars=0.0123)
    line = stats.line(show_dollars=True, budget=0.5)
    for part in ("4/10 done", "1 cached", "2 retries", "1 429s", "$0.0123 of $0.50", "ETA"):
        assert part in line


async def test_the_cli_process_settings_shorten_the_switch_interval_and_restore_it() -> None:
    from labelmill.cli._runtime import SWITCH_INTERVAL_S, process_settings

    before = sys.getswitchinterval()
    with pytest.raises(RuntimeError), process_settings(lambda: None):
        assert sys.getswitchinterval() <= SWITCH_INTERVAL_S
        raise RuntimeError("the run failed")
    assert sys.getswitchinterval() == before


async def test_a_fatal_status_on_an_input_larger_than_the_queue_stops_the_run(
    tmp_path: Path, mock: MockTeacher
) -> None:
    # Every request gets 404. The workers stop on the first; the producer must not then wait
    # forever to hand end-of-input marks to a full queue that nobody reads.
    source = make_cqa(300, tmp_path / "in.jsonl")
    wrong = mock.base_url.removesuffix("/v1") + "/wrong"
    with pytest.raises(TeacherStatusError, match="404"):
        await asyncio.wait_for(annotate(config(tmp_path, source, wrong, concurrency=4)), timeout=30)
