"""The batch route: the Batch API at its price, the same store and shards, nothing lost or paid twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from labelmill._exceptions import UsageError
from labelmill.cache import read_manifest
from labelmill.engine import AnnotateConfig, RunStatus, annotate, load_task, manage_batches
from labelmill.engine.money import Prices
from labelmill.testing import MockConfig, MockTeacher, make_cqa, mock_process

PRICES = Prices(0.15, 0.60)  # batch: half of each


def run_config(tmp_path: Path, source: Path, url: str, name: str, **overrides: Any) -> AnnotateConfig:
    settings: dict[str, Any] = {"source": str(source), "task": load_task("cqa"), "out_dir": tmp_path / name,
                                "cache_dir": tmp_path / f"{name}-cache", "base_url": url, "progress": False,
                                "prices": PRICES, "rationale_rate": 0.5, "batch_poll_s": 0.1, **overrides}  # fmt: skip
    return AnnotateConfig(**settings)


def shard_bytes(out: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted((out / "shards").glob("*.jsonl")))


def server_dollars(mock: MockTeacher, prices: Prices) -> float:
    return prices.cost(mock.stats.prompt_tokens, mock.stats.completion_tokens)


async def test_the_batch_route_writes_the_online_shards_at_half_the_price(tmp_path: Path) -> None:
    source = make_cqa(60, tmp_path / "in.jsonl")
    async with MockTeacher() as online_mock:
        online = await annotate(run_config(tmp_path, source, online_mock.base_url, "online"))
        online_cost = server_dollars(online_mock, PRICES)
    async with MockTeacher(MockConfig(batch_latency_s=0.2)) as mock:
        batch = await annotate(run_config(tmp_path, source, mock.base_url, "batch", route="batch"))
        assert mock.stats.requests == 0  # nothing online
        assert mock.batches.stats.batches_created == 1
        batch_cost = server_dollars(mock, PRICES.batch())
    assert online.status is batch.status is RunStatus.COMPLETE
    assert shard_bytes(tmp_path / "batch") == shard_bytes(tmp_path / "online")  # records do not say the route
    assert read_manifest(tmp_path / "batch")["settings"]["route"] == "batch"
    assert batch.summary["money"]["paid_batch"] == pytest.approx(batch_cost, abs=1e-8)
    assert batch_cost == pytest.approx(0.5 * online_cost)  # the same tokens, at batch prices
    assert batch.summary["batches"]["answered"] == 60 and batch.summary["cache_hits"] == 60
    replayed = await annotate(run_config(tmp_path, source, "http://127.0.0.1:9/v1", "replay", replay=True,
                                         cache_dir=tmp_path / "batch-cache"))  # fmt: skip
    assert replayed.status is RunStatus.COMPLETE and shard_bytes(tmp_path / "replay") == shard_bytes(tmp_path / "batch")


async def test_a_create_whose_answer_was_lost_makes_one_batch_paid_once(tmp_path: Path) -> None:
    source = make_cqa(300, tmp_path / "in.jsonl")
    async with MockTeacher(MockConfig(batch_latency_s=0.2, batch_lost_creates=2)) as mock:
        result = await annotate(run_config(tmp_path, source, mock.base_url, "out", route="batch"))
        created, uploads = mock.batches.stats.batches_created, mock.batches.stats.batch_uploads
        server_cost = server_dollars(mock, PRICES.batch())
        answered = mock.stats.ok
    assert result.status is RunStatus.COMPLETE and result.summary["records"] == 300
    assert created == 1 and max(uploads.values()) == 1 and answered == 300  # the 504s made no second batch
    money = result.summary["money"]
    assert money["paid"] == money["paid_batch"] == pytest.approx(server_cost, abs=1e-8)  # paid: batches included
    assert money["dollars_per_example"] == pytest.approx(server_cost / 300, rel=1e-4)


async def test_expired_and_failed_lines_are_resubmitted_and_every_example_accounted_for(tmp_path: Path) -> None:
    source = make_cqa(80, tmp_path / "in.jsonl")
    flags = MockConfig(batch_latency_s=0.2, batch_expire_fraction=0.5, batch_line_error_rate=0.1)
    async with MockTeacher(flags) as mock:
        result = await annotate(run_config(tmp_path, source, mock.base_url, "out", route="batch"))
        answered_by_server = mock.stats.ok
        uploads = mock.batches.stats.batch_uploads
    summary = result.summary
    assert summary["records"] + summary["failures"] == 80  # every example: a record or a failure row
    assert summary["records"] == answered_by_server  # each answer bought once, each in a record
    assert summary["batches"]["batches"] == 3 and summary["batches"]["resubmitted"] > 0  # three submissions
    assert set(summary["failure_reasons"]) <= {"gave_up"} and max(uploads.values()) <= 3
    rows = [json.loads(line) for line in (tmp_path / "out" / "failures.jsonl").read_text().splitlines()]
    assert all("batch" in row["detail"] or "HTTP 500" in row["detail"] for row in rows)
    assert summary["batches"]["reserved_usd"] == 0


async def test_auto_buys_online_what_the_batches_could_not(tmp_path: Path) -> None:
    source = make_cqa(40, tmp_path / "in.jsonl")
    async with MockTeacher(MockConfig(batch_latency_s=0.1, batch_expire_fraction=0.5)) as mock:
        result = await annotate(run_config(tmp_path, source, mock.base_url, "out", route="auto", batch_attempts=1))
        online_requests = mock.stats.requests
    assert result.status is RunStatus.COMPLETE and result.summary["records"] == 40
    assert online_requests == 20 == result.summary["requests"]  # the half the expired batch left


async def test_a_batch_that_fails_validation_or_is_too_large_is_handled(tmp_path: Path) -> None:
    source = make_cqa(30, tmp_path / "in.jsonl")
    async with MockTeacher(MockConfig(batch_latency_s=0.1, batch_fail_validation=True)) as mock:
        # every line refused for the same reason: a usage error that names it, as online, with the rows kept
        with pytest.raises(UsageError, match="failed validation"):
            await annotate(run_config(tmp_path, source, mock.base_url, "bad", route="batch"))
    assert len((tmp_path / "bad" / "failures.jsonl").read_text().splitlines()) == 30
    assert json.loads((tmp_path / "bad" / "batches.json").read_text())["batches"][0]["status"] == "collected"
    async with MockTeacher(MockConfig(batch_latency_s=0.1, batch_enqueued_tokens=2500)) as mock:
        split = await annotate(run_config(tmp_path, source, mock.base_url, "split", route="batch"))
    assert split.summary["records"] + split.summary["failures"] == 30
    assert split.summary["batches"]["batches"] > 2  # refused whole, then resubmitted in halves


def over_long_rows(count: int) -> str:
    """JSONL rows `long-0`.. the same length, past a 600-token context: refused with one same message."""
    long = {"question": "Pick the tool from the list. " + "Think about it carefully. " * 150,
            "choices": ["rabbit", "screwdriver", "France", "violin", "lemon"], "answer": "screwdriver"}  # fmt: skip
    return "".join(json.dumps({"id": f"long-{i}", **long}) + "\n" for i in range(count))


async def test_refused_lines_among_answered_ones_become_failure_rows_and_stop_nothing(tmp_path: Path) -> None:
    source = make_cqa(40, tmp_path / "in.jsonl")
    with source.open("a") as more:  # eight the same length: refused with one same message, as a batch's 400s are
        more.write(over_long_rows(8))
    async with MockTeacher(MockConfig(batch_latency_s=0.1, context_tokens=600)) as mock:
        result = await annotate(run_config(tmp_path, source, mock.base_url, "out", route="batch", rationale_rate=0))
    summary = result.summary
    assert summary["records"] == 40 and summary["failure_reasons"] == {"refused": 8}
    rows = [json.loads(line) for line in (tmp_path / "out" / "failures.jsonl").read_text().splitlines()]
    assert {row["id"] for row in rows} == {f"long-{i}" for i in range(8)} and len({r["detail"] for r in rows}) == 1
    assert len(shard_bytes(tmp_path / "out").splitlines()) == 40


async def test_rows_the_budget_left_unbought_keep_their_reason_beside_refused_ones(tmp_path: Path) -> None:
    short = make_cqa(200, tmp_path / "short.jsonl").read_text()
    source = tmp_path / "in.jsonl"  # the refused ones first, so the budget runs out on the short ones after them
    source.write_text(over_long_rows(8) + short)
    budget = 0.001  # about 130 of the 200 short ones at the batch price
    async with MockTeacher(MockConfig(batch_latency_s=0.1, context_tokens=600)) as mock:
        result = await annotate(run_config(tmp_path, source, mock.base_url, "out", route="batch", rationale_rate=0,
                                           budget=budget))  # fmt: skip
        assert server_dollars(mock, PRICES.batch()) <= budget
    reasons = result.summary["failure_reasons"]
    assert reasons["refused"] == 8 and reasons["budget_exhausted"] > 20
    assert result.summary["records"] + reasons["budget_exhausted"] == 200
    rows = [json.loads(line) for line in (tmp_path / "out" / "failures.jsonl").read_text().splitlines()]
    by_reason = {row["id"]: row["reason"] for row in rows}
    assert {i for i, reason in by_reason.items() if reason == "refused"} == {f"long-{i}" for i in range(8)}


async def test_spend_with_batches_in_flight_never_exceeds_the_budget(tmp_path: Path) -> None:
    source = make_cqa(120, tmp_path / "in.jsonl")
    async with MockTeacher(MockConfig(batch_latency_s=0.1)) as mock:
        probe = await annotate(run_config(tmp_path, source, mock.base_url, "probe", route="batch", rationale_rate=1.0))
        all_explained = server_dollars(mock, PRICES.batch())
    assert probe.status is RunStatus.COMPLETE
    budget = 0.6 * all_explained
    async with MockTeacher(MockConfig(batch_latency_s=0.1)) as mock:
        planned = await annotate(run_config(tmp_path, source, mock.base_url, "plan", route="batch", budget=budget,
                                            auto_rate=True, rationale_rate=1.0))  # fmt: skip
        spent = server_dollars(mock, PRICES.batch())
    assert spent <= budget
    # a mix of labels and rationales (0.17 measured: the schema each request carries makes a label
    # a larger share of the cost than in text, where it measured 0.27)
    assert planned.summary["records"] == 120 and 0.1 < planned.summary["rationale_rate"] < 0.9


def wait_for(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def batch_status(out: Path) -> set[str]:
    try:
        return {b["status"] for b in json.loads((out / "batches.json").read_text())["batches"]}
    except (OSError, ValueError, KeyError):
        return set()


@pytest.mark.slow
def test_kill_9_while_polling_then_rerun_uploads_no_key_twice(tmp_path: Path) -> None:
    source = make_cqa(150, tmp_path / "in.jsonl")
    out = tmp_path / "out"
    args = [sys.executable, "-m", "labelmill", "annotate", str(source), "--task", "cqa", "--out", str(out),
            "--cache", str(tmp_path / "cache"), "--route", "batch", "--rationale-rate", "0.5",
            "--batch-poll-s", "0.2", "--json"]  # fmt: skip
    with mock_process("--batch-latency-s", "3") as url:
        first = subprocess.Popen([*args, "--base-url", url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: batch_status(out) & {"validating", "in_progress"})
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        second = subprocess.run([*args, "--base-url", url], capture_output=True, text=True, timeout=120)
        with __import__("urllib.request").request.urlopen(url.rsplit("/v1", 1)[0] + "/stats") as answer:
            served = json.loads(answer.read())
    assert second.returncode == 0, second.stderr[-2000:]
    summary = json.loads(second.stdout)
    assert summary["records"] == 150 and served["batch"]["max_uploads_per_key"] == 1
    assert served["batch"]["batches_created"] == 1 and served["ok"] == 150  # one batch, each answer bought once


async def test_detach_then_collect_then_rerun_finishes_the_job(tmp_path: Path) -> None:
    source = make_cqa(20, tmp_path / "in.jsonl")
    async with MockTeacher(MockConfig(batch_latency_s=0.3)) as mock:
        config = run_config(tmp_path, source, mock.base_url, "out", route="batch", detach=True)
        detached = await annotate(config)
        assert detached.status is RunStatus.PARTIAL and detached.summary["batches"]["by_status"] != {"collected": 1}
        status = await manage_batches("status", tmp_path / "out", tmp_path / "out-cache", PRICES, None)
        assert len(status["live"]) == 1
        time.sleep(0.35)
        collected = await manage_batches("collect", tmp_path / "out", tmp_path / "out-cache", PRICES, None)
        assert collected["answered"] == 20 and collected["by_status"] == {"collected": 1}
        finished = await annotate(run_config(tmp_path, source, mock.base_url, "out", route="batch"))
        assert mock.batches.stats.batches_created == 1 and mock.stats.ok == 20
    assert finished.status is RunStatus.COMPLETE and finished.summary["records"] == 20


class Crash(Exception):
    """Stands for `kill -9` at one moment of a batch's submission."""


@pytest.mark.parametrize(
    "moment", ["after the upload, before its id is saved", "after the upload is saved", "between upload and create"]
)
async def test_a_crash_while_submitting_reuses_the_upload_on_the_rerun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moment: str
) -> None:
    from labelmill.engine.batch import BatchRoute
    from labelmill.engine.teacher import BatchAPI

    source = make_cqa(30, tmp_path / "in.jsonl")
    upload = BatchAPI.upload

    async def upload_then_crash(self: BatchAPI, *args: Any) -> dict[str, Any]:
        await upload(self, *args)
        raise Crash

    async def crash(self: BatchAPI, *args: Any) -> dict[str, Any]:
        raise Crash

    async with MockTeacher(MockConfig(batch_latency_s=0.1)) as mock:
        if moment == "after the upload, before its id is saved":
            monkeypatch.setattr(BatchAPI, "upload", upload_then_crash)
        elif moment == "after the upload is saved":  # the state says `uploaded`, nothing says `creating`
            monkeypatch.setattr(BatchRoute, "_until_processed", crash)
        else:
            monkeypatch.setattr(BatchAPI, "create", crash)
        with pytest.raises(Crash):
            await annotate(run_config(tmp_path, source, mock.base_url, "out", route="batch"))
        monkeypatch.undo()
        result = await annotate(run_config(tmp_path, source, mock.base_url, "out", route="batch"))
        assert mock.batches.stats.files_uploaded == 1 and max(mock.batches.stats.batch_uploads.values()) == 1
        assert mock.batches.stats.batches_created == 1
    assert result.status is RunStatus.COMPLETE and result.summary["records"] == 30


async def test_uncertainty_on_the_batch_route_labels_first_then_explains_the_least_confident(tmp_path: Path) -> None:
    from labelmill.cache import iter_records

    source = make_cqa(60, tmp_path / "in.jsonl")
    async with MockTeacher(MockConfig(batch_latency_s=0.1)) as mock:
        await annotate(run_config(tmp_path, source, mock.base_url, "probe", route="batch", rationale_rate=1.0))
        explain_all = server_dollars(mock, PRICES.batch())
    budget = 0.6 * explain_all
    async with MockTeacher(MockConfig(batch_latency_s=0.1)) as mock:
        result = await annotate(run_config(tmp_path, source, mock.base_url, "out", route="batch", budget=budget,
                                           select="uncertainty"))  # fmt: skip
        paid_to_server = server_dollars(mock, PRICES.batch())
        assert paid_to_server <= budget
        # waves of batches (worst cases are reserved whole), no key twice, nothing online
        assert max(mock.batches.stats.batch_uploads.values()) == 1 and mock.stats.requests == 0
    assert result.status is RunStatus.COMPLETE and result.summary["records"] == 60
    money = result.summary["money"]  # both passes' batches, in paid and against the one budget
    assert money["paid"] == money["paid_batch"] == money["spent"] == pytest.approx(paid_to_server, abs=1e-7)
    assert money["budget"] == budget
    records = list(iter_records(tmp_path / "out"))
    explained = [r.confidence or 0.0 for r in records if r.rationale]
    unexplained = [r.confidence or 0.0 for r in records if not r.rationale]
    assert explained and unexplained and max(explained) <= min(unexplained)


async def test_a_batch_run_by_hand_exports_and_imports_the_same_requests(tmp_path: Path) -> None:
    from labelmill.engine import export_requests, import_results

    source = make_cqa(25, tmp_path / "in.jsonl")
    async with MockTeacher() as online_mock:
        await annotate(run_config(tmp_path, source, online_mock.base_url, "online"))
    cache = tmp_path / "hand-cache"
    config = run_config(tmp_path, source, "http://127.0.0.1:9/v1", "hand", cache_dir=cache)
    assert export_requests(config, tmp_path / "requests.jsonl")["requests"] == 25
    # What `vllm run-batch` would write: each line answered as the online endpoint answers its body.
    hand = MockTeacher()
    lines = [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()]
    answers = [{"id": f"r{i}", "custom_id": line["custom_id"], "error": None,
                "response": {"status_code": 200, "body": hand.completion(line["body"])}}
               for i, line in enumerate(lines)]  # fmt: skip
    answers[0]["custom_id"] = "sha256:" + "0" * 64  # a request this cache never exported
    answers[1]["response"] = {"status_code": 500, "body": {"error": {"message": "server error"}}}
    lines[2]["body"]["temperature"] = 0.7  # the file on disk no longer hashes to its custom_id
    (tmp_path / "requests.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(a) + "\n" for a in answers))
    counts = import_results(tmp_path / "results.jsonl", cache, PRICES)
    assert counts == {"stored": 22, "errors": 1, "unknown": 1, "mismatched": 1}
    async with MockTeacher() as mock:
        finished = await annotate(replace(config, base_url=mock.base_url))
        assert mock.stats.requests == 3  # only what the hand-run batch did not answer
    assert finished.status is RunStatus.COMPLETE
    assert shard_bytes(tmp_path / "hand") == shard_bytes(tmp_path / "online")


def test_the_batch_commands_on_the_command_line(tmp_path: Path) -> None:
    def labelmill(*args: str, exit_code: int = 0) -> dict[str, Any]:
        done = subprocess.run([sys.executable, "-m", "labelmill", *args, "--json"], capture_output=True, text=True,
                              timeout=120)  # fmt: skip
        assert done.returncode == exit_code, done.stderr
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    source, cache = make_cqa(10, tmp_path / "in.jsonl"), str(tmp_path / "cache")
    assert labelmill("batch", "export", str(source), "--task", "cqa", "--out", str(tmp_path / "req.jsonl"),
                     "--cache", cache)["requests"] == 10  # fmt: skip
    mock = MockTeacher()
    rows = [json.loads(line) for line in (tmp_path / "req.jsonl").read_text().splitlines()]
    results = "".join(json.dumps({"custom_id": row["custom_id"], "response": {"status_code": 200,
                                  "body": mock.completion(row["body"])}}) + "\n" for row in rows)  # fmt: skip
    (tmp_path / "results.jsonl").write_text(results)
    assert labelmill("batch", "import", str(tmp_path / "results.jsonl"), "--cache", cache)["stored"] == 10
    with mock_process("--batch-latency-s", "5") as url:
        detached = labelmill("annotate", str(make_cqa(12, tmp_path / "more.jsonl")), "--task", "cqa", "--out",
                             str(tmp_path / "out"), "--cache", cache, "--route", "batch", "--detach",
                             "--base-url", url, exit_code=3)  # fmt: skip
        assert detached["exit_code"] == 3 and detached["batches"]["batches"] == 1
        status = labelmill("batches", "status", "--out", str(tmp_path / "out"))
        assert [live["requests"] for live in status["live"]] == [2]  # the 10 imported are store hits
        cancelled = labelmill("batches", "cancel", "--out", str(tmp_path / "out"), "--cache", cache)
        assert cancelled["by_status"] == {"collected": 1}


async def test_a_crash_during_the_download_collects_again_and_pays_nothing_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from labelmill.engine.batch import BatchRoute

    source = make_cqa(30, tmp_path / "in.jsonl")
    sort_errors = BatchRoute._sort_errors

    async def crash(self: BatchRoute, *args: Any) -> Any:
        raise Crash  # the answers are in the store; the batch is not marked collected

    async with MockTeacher(MockConfig(batch_latency_s=0.1)) as mock:
        monkeypatch.setattr(BatchRoute, "_sort_errors", crash)
        with pytest.raises(Crash):
            await annotate(run_config(tmp_path, source, mock.base_url, "out", route="batch"))
        assert batch_status(tmp_path / "out") == {"completed"}
        monkeypatch.setattr(BatchRoute, "_sort_errors", sort_errors)
        result = await annotate(run_config(tmp_path, source, mock.base_url, "out", route="batch"))
        assert mock.stats.ok == 30 and mock.batches.stats.batches_created == 1  # answered and paid once
    assert result.status is RunStatus.COMPLETE and result.summary["records"] == 30


async def test_input_files_split_at_the_line_and_size_limits(tmp_path: Path) -> None:
    source = make_cqa(25, tmp_path / "in.jsonl")
    async with MockTeacher(MockConfig(batch_latency_s=0.05)) as mock:
        by_lines = await annotate(run_config(tmp_path, source, mock.base_url, "lines", route="batch",
                                             batch_max_requests=10))  # fmt: skip
        assert mock.batches.stats.batches_created == 3  # 10 + 10 + 5
        by_size = await annotate(run_config(tmp_path, source, mock.base_url, "size", route="batch", rationale_rate=1.0,
                                            batch_max_bytes=4000))  # fmt: skip
        sizes = [len(data) for obj, data in mock.batches.files.values() if obj["purpose"] == "batch"]
    assert by_lines.summary["records"] == by_size.summary["records"] == 25
    assert len(sizes) > 4 and max(sizes[3:]) <= 4000  # every file of the second run within the limit
