"""The run through a fake sender (no sockets): stop reasons, failed reruns, the public API."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import labelmill
from labelmill._exceptions import BudgetExhausted, RequestRejected, UsageError
from labelmill.cache import StoredResponse, read_manifest
from labelmill.engine import AnnotateConfig, RunStatus, annotate, load_task
from labelmill.engine.money import Commitment, Prices, Spending
from labelmill.engine.run import Request, Stop, StopReason
from labelmill.engine.selection import FixedRate
from labelmill.engine.tasks import VARIANT_RATIONALE
from labelmill.engine.teacher import TeacherCounters
from labelmill.testing import MockConfig, MockTeacher, make_cqa


class FakeSender:
    """Answers every request with the right choice, once `hold` (an event) is set if given;
    raises `error` instead for every request after the first `fail_from`."""

    def __init__(self, hold: asyncio.Event | None = None, fail_from: int | None = None,
                 error: Exception | None = None) -> None:  # fmt: skip
        self.counters = TeacherCounters()
        self.hold, self.fail_from, self.error = hold, fail_from, error
        self.sent: list[str] = []

    async def send(self, request: Request, commitment: Commitment | None) -> StoredResponse:
        self.sent.append(request.example.id)
        self.counters.requests += 1
        if self.hold is not None:
            await self.hold.wait()
        if self.fail_from is not None and len(self.sent) > self.fail_from:
            assert self.error is not None
            raise self.error
        gold = request.example.gold or "a"
        content = f"Because it fits. So the answer is {gold}." if request.variant == "rationale" else gold
        response = {
            "choices": [{"message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5},
        }
        return StoredResponse(request.key, request.body, request.tag, response, None)


def config(tmp_path: Path, n: int = 30, **overrides: Any) -> AnnotateConfig:
    source = make_cqa(n, tmp_path / "in.jsonl")
    settings: dict[str, Any] = {"progress": False, "concurrency": 4, **overrides}
    return AnnotateConfig(str(source), load_task("cqa"), tmp_path / "out", tmp_path / "cache", **settings)


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


async def test_a_run_through_a_fake_sender_writes_every_row_in_order(tmp_path: Path) -> None:
    sender = FakeSender()
    result = await annotate(config(tmp_path), sender=lambda spending: sender)
    assert result.status is RunStatus.COMPLETE and result.summary["records"] == 30
    assert len(sender.sent) == 30
    records = list(labelmill.read_records(tmp_path / "out"))
    assert [r["index"] for r in records] == list(range(30))
    assert all(r["label"] == r["gold"] for r in records)
    with pytest.raises(labelmill.UsageError, match="no shards"):  # in the tree, not a bare FileNotFoundError
        list(labelmill.read_records(tmp_path / "nowhere" / "*.jsonl"))


def test_the_first_stop_reason_wins() -> None:
    stop = Stop()
    assert stop.set(StopReason.INTERRUPTED, "interrupted")
    assert not stop.set(StopReason.BUDGET_EXHAUSTED, "the budget is spent")
    assert stop.reason is StopReason.INTERRUPTED and stop.halts


async def test_ctrl_c_while_the_budget_runs_out_stays_an_interrupt(tmp_path: Path) -> None:
    # The requests in flight run into the budget during the grace period after Ctrl-C. The run
    # must stay interrupted: no producer restart, no rows drained as failures, status INTERRUPTED.
    hold, interrupt = asyncio.Event(), asyncio.Event()
    sender = FakeSender(hold=hold, fail_from=0, error=BudgetExhausted("$0.01 needed, $0.00 left of $1"))
    cfg = config(tmp_path, n=200, grace_s=2.0)
    run = asyncio.create_task(annotate(cfg, interrupt=interrupt, sender=lambda spending: sender))
    while len(sender.sent) < 4:  # noqa: ASYNC110  (every worker holds a request in flight)
        await asyncio.sleep(0.01)
    interrupt.set()
    await asyncio.sleep(0.3)  # the supervisor sees the interrupt
    hold.set()
    result = await asyncio.wait_for(run, timeout=10)
    assert result.status is RunStatus.INTERRUPTED and result.summary["complete"] is False
    assert result.summary["examples"] < 200  # the rest is left for the rerun, not drained
    assert len(sender.sent) <= 8
    assert read_manifest(tmp_path / "out")["complete"] is False


async def test_the_same_refusal_on_the_first_answers_stops_the_run_as_a_usage_error(tmp_path: Path) -> None:
    sender = FakeSender(fail_from=0, error=RequestRejected(400, "Invalid model name passed in model=nosuch."))
    with pytest.raises(UsageError, match=r"Invalid model name.*check --model"):
        await annotate(config(tmp_path, n=200), sender=lambda spending: sender)
    assert len(sender.sent) < 20
    assert files_under(tmp_path / "out") == []


async def test_an_unknown_model_on_a_real_socket_stops_within_seconds(tmp_path: Path) -> None:
    async with MockTeacher(MockConfig(models=("teacher",))) as mock:
        cfg = config(tmp_path, n=300, base_url=mock.base_url, model="nosuch")
        with pytest.raises(UsageError, match="Invalid model name"):
            await asyncio.wait_for(annotate(cfg), timeout=20)
        assert mock.stats.requests < 20


async def test_a_failed_rerun_keeps_the_complete_earlier_set(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    await annotate(cfg, sender=lambda spending: FakeSender())
    manifest = read_manifest(tmp_path / "out")
    shards = [p.read_bytes() for p in sorted((tmp_path / "out" / "shards").iterdir())]
    failures = (tmp_path / "out" / "failures.jsonl").read_bytes()
    # Rerun with a new seed and rate (so requests are new), and the teacher breaks mid-run.
    broken = FakeSender(fail_from=5, error=RuntimeError("the sender broke"))
    with pytest.raises(RuntimeError, match="broke"):
        await annotate(AnnotateConfig(**{**_fields(cfg), "seed": 7, "rationale_rate": 0.5}),
                       sender=lambda spending: broken)  # fmt: skip
    assert read_manifest(tmp_path / "out") == manifest
    assert [p.read_bytes() for p in sorted((tmp_path / "out" / "shards").iterdir())] == shards
    assert (tmp_path / "out" / "failures.jsonl").read_bytes() == failures
    assert files_under(tmp_path / "out") == ["failures.jsonl", "manifest.json", "shards", "shards/part-00000.jsonl"]


def _fields(cfg: AnnotateConfig) -> dict[str, Any]:
    return {name: getattr(cfg, name) for name in AnnotateConfig.__dataclass_fields__}


async def test_an_unpriced_model_reads_as_unknown_cost_not_free(tmp_path: Path) -> None:
    result = await annotate(config(tmp_path, model="teacher"), sender=lambda spending: FakeSender())
    money = result.summary["money"]
    assert result.summary["dollars"] is None and money["paid"] is None and money["dollars_per_example"] is None
    assert any("cost is unknown" in note and "'teacher'" in note for note in result.notes)


async def test_a_budget_message_tells_the_amounts_apart(tmp_path: Path) -> None:
    spending = Spending(Prices(0.15, 0.6), budget=0.001, plan=False)
    spending.answered(await spending.reserve(0.0009581), None, False, None)  # no usage: all of it is spent
    with pytest.raises(BudgetExhausted) as raised:
        await spending.reserve(0.0000423)
    needed, left = (part.split()[0] for part in str(raised.value).split(", ")[:2])
    assert needed != left and float(needed.strip("$")) > float(left.split()[0].strip("$"))


# -- the public API ------------------------------------------------------------------------------
def test_the_sync_api_annotates_replays_and_reads_records(tmp_path: Path) -> None:
    source = make_cqa(12, tmp_path / "in.jsonl")
    with MockProcess() as base_url:
        result = labelmill.annotate(source, task="cqa", out=tmp_path / "run", cache=tmp_path / "cache",
                                    base_url=base_url, rationale_rate=0.5, model="teacher")  # fmt: skip
    assert result.status is labelmill.RunStatus.COMPLETE
    replayed = labelmill.replay(source, task="cqa", out=tmp_path / "again", cache=tmp_path / "cache",
                                from_=tmp_path / "run")  # fmt: skip
    assert replayed.status is labelmill.RunStatus.COMPLETE and replayed.summary["requests"] == 0
    assert list(labelmill.read_records(tmp_path / "run")) == list(labelmill.read_records(tmp_path / "again"))


async def test_the_async_api_runs_inside_a_running_loop_and_the_sync_one_says_what_to_do(tmp_path: Path) -> None:
    source = make_cqa(12, tmp_path / "in.jsonl")
    async with MockTeacher() as mock:
        result = await labelmill.annotate_async(source, task="cqa", out=tmp_path / "run", cache=tmp_path / "c",
                                                base_url=mock.base_url, model="teacher")  # fmt: skip
    assert result.status is labelmill.RunStatus.COMPLETE and result.summary["records"] == 12
    with pytest.raises(UsageError, match="annotate_async"):
        labelmill.annotate(source, task="cqa", out=tmp_path / "x", cache=tmp_path / "c")


async def test_the_library_leaves_the_hosts_sigint_handler_alone(tmp_path: Path) -> None:
    import signal

    def host_handler(signum: int, frame: object) -> None:
        pass

    previous = signal.signal(signal.SIGINT, host_handler)
    try:
        await annotate(config(tmp_path), sender=lambda spending: FakeSender())
        assert signal.getsignal(signal.SIGINT) is host_handler
    finally:
        signal.signal(signal.SIGINT, previous)


def test_every_error_labelmill_raises_on_purpose_is_a_labelmill_error() -> None:
    for name in ("BudgetExhausted", "RetryableError", "RequestRejected", "UsageError", "InputError", "TeacherError"):
        assert issubclass(getattr(labelmill, name), labelmill.LabelmillError)


class MockProcess:
    """The mock teacher in a thread of its own, for the sync API (which runs its own loop)."""

    def __enter__(self) -> str:
        import threading

        started = threading.Event()
        self.loop = asyncio.new_event_loop()

        async def serve() -> None:
            self.mock = MockTeacher()
            await self.mock.__aenter__()
            started.set()

        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(serve(), self.loop).result(timeout=10)
        started.wait(10)
        return self.mock.base_url

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.mock.__aexit__(None, None, None), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


def test_json_of_the_api_result_matches_the_cli_contract(tmp_path: Path) -> None:
    result = asyncio.run(annotate(config(tmp_path), sender=lambda spending: FakeSender()))
    summary = json.loads(json.dumps(result.summary))
    assert summary["status"] == "complete" and summary["records"] == 30


@settings(max_examples=200, deadline=None)
@given(ids=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=50, unique=True),
       seed=st.integers(0, 2**31), low=st.floats(0, 1), high=st.floats(0, 1))  # fmt: skip
def test_raising_the_rationale_rate_only_adds_rationales(ids: list[str], seed: int, low: float, high: float) -> None:
    low, high = min(low, high), max(low, high)
    explained_low = {i for i in ids if FixedRate(low, seed).variants(i) == (VARIANT_RATIONALE,)}
    explained_high = {i for i in ids if FixedRate(high, seed).variants(i) == (VARIANT_RATIONALE,)}
    assert explained_low <= explained_high
