"""The run's parts on their own: resolve, the id registry, ordered output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labelmill.cache import ResponseStore, ShardWriter, make_entry
from labelmill.engine import AnnotateConfig, load_task
from labelmill.engine.money import Prices, Spending
from labelmill.engine.run import (
    Done,
    Failure,
    FailureLog,
    IdRegistry,
    OrderedOutput,
    Request,
    Requests,
    Resolver,
    RunStats,
    selection_for,
)
from labelmill.engine.tasks import VARIANT_LABEL, VARIANT_RATIONALE, Row
from labelmill.testing import cqa_rows

ROWS = list(cqa_rows(4))


def reply(content: str) -> dict[str, Any]:
    return {"choices": [{"message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 9}}  # fmt: skip


def resolver(tmp_path: Path, store: ResponseStore, **overrides: Any) -> Resolver:
    settings_: dict[str, Any] = {"source": str(tmp_path / "in.jsonl"), "task": load_task("cqa"),
                                 "out_dir": tmp_path / "out", "cache_dir": tmp_path / "cache", **overrides}  # fmt: skip
    config = AnnotateConfig(**settings_)
    spending = Spending(config.prices, config.budget, plan=config.auto_rate)
    return Resolver(config, Requests(config, selection_for(config, spending)), store)


def rows(*data: dict[str, Any] | None) -> list[Row]:
    return [Row(i, "in.jsonl", i + 1, d, None if d is not None else "invalid JSON") for i, d in enumerate(data)]


def store_answer(store: ResponseStore, request: Request, content: str) -> None:
    store.put(make_entry(request.body, request.tag, reply(content), 0.001))


def test_resolve_turns_rows_into_failures_records_and_requests(tmp_path: Path) -> None:
    with ResponseStore(tmp_path / "cache") as store:
        resolve = resolver(tmp_path, store, rationale_rate=1.0)
        known, unknown = ROWS[0], ROWS[1]
        first = resolve.resolve(rows(known))
        assert isinstance(first.items[0], Request) and first.hits == set()
        store_answer(store, first.items[0], f"Rationale: it is.\nAnswer: {known['answer']}")
        missing_text = {k: v for k, v in ROWS[2].items() if k != "question"}
        resolved = resolve.resolve(rows(None, known, unknown, missing_text))
    bad_json, record, request, bad_row = resolved.items
    assert isinstance(bad_json, Failure) and bad_json.reason == "bad_input" and bad_json.line == 1
    assert isinstance(record, Done) and record.rationale and resolved.hits == {1}
    assert json.loads(record.line)["label"] == known["answer"]
    assert isinstance(request, Request) and request.example.id == unknown["id"] and request.fallback is None
    assert isinstance(bad_row, Failure) and bad_row.reason == "bad_input" and "question" in bad_row.detail
    # the duplicate-id check needs every rendered row's id, in order, and only those
    assert [(r.position, r.id) for r in resolved.rendered] == [(1, known["id"]), (2, unknown["id"])]


def test_under_a_plan_a_stored_label_answer_will_do_and_unknowns_keep_both_options(tmp_path: Path) -> None:
    with ResponseStore(tmp_path / "cache") as store:
        plan = resolver(tmp_path, store, auto_rate=True, budget=1.0, prices=Prices(0.15, 0.6))
        first = plan.resolve(rows(ROWS[0], ROWS[1]))
        pending = first.items[0]
        assert isinstance(pending, Request) and pending.variant == VARIANT_RATIONALE
        assert pending.fallback is not None and pending.fallback.variant == VARIANT_LABEL
        store_answer(store, pending.fallback, f"Answer: {ROWS[0]['answer']}")
        again = plan.resolve(rows(ROWS[0], ROWS[1]))
    done, still = again.items
    assert isinstance(done, Done) and not done.rationale and again.hits == {0}
    assert isinstance(still, Request) and still.fallback is not None


def test_replay_of_an_unstored_answer_is_a_not_cached_failure(tmp_path: Path) -> None:
    with ResponseStore(tmp_path / "cache") as store:
        (missing,) = resolver(tmp_path, store, replay=True).resolve(rows(ROWS[0])).items
    assert isinstance(missing, Failure) and missing.reason == "not_cached" and missing.key is not None


def test_uncertainty_wants_the_rationale_for_the_examples_it_chose(tmp_path: Path) -> None:
    chosen = frozenset({ROWS[0]["id"]})
    with ResponseStore(tmp_path / "cache") as store:
        pass_two = resolver(tmp_path, store, explain_ids=chosen, select="uncertainty", budget=1.0,
                            prices=Prices(0.15, 0.6))  # fmt: skip
        request = pass_two.resolve(rows(ROWS[0])).items[0]
        assert isinstance(request, Request) and request.fallback is not None
        store_answer(store, request.fallback, f"Answer: {ROWS[0]['answer']}")  # pass one's label answer
        (still,) = pass_two.resolve(rows(ROWS[0])).items
    assert isinstance(still, Request) and still.variant == VARIANT_RATIONALE  # the label answer does not do


def test_the_id_registry_names_the_first_line_across_batches_and_cleans_up(tmp_path: Path) -> None:
    registry = IdRegistry(tmp_path)
    first = [(f"id{i}", i + 1) for i in range(1200)]  # past one 500-id query
    assert registry.first_lines(first) == {}
    batch = [("new", 1201), ("id7", 1202), ("new", 1203), ("id1100", 1204)]
    assert registry.first_lines(batch) == {1: 8, 2: 1201, 3: 1101}
    assert registry.first_lines([("new", 1300)]) == {0: 1201}
    registry.close()
    assert list(tmp_path.iterdir()) == []


def outcome(seq: int, fails: bool) -> Done | Failure:
    if fails:
        return Failure(seq, f"q{seq}", "in.jsonl", seq + 1, "parse_error", "no answer")
    return Done(json.dumps({"id": f"q{seq}", "index": seq}), seq % 2 == 0, 10, 2)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(failing=st.lists(st.booleans(), min_size=1, max_size=60), order=st.randoms(use_true_random=False))
def test_ordered_output_writes_in_input_order_whatever_the_arrival_order(
    tmp_path_factory: Any, failing: list[bool], order: Any
) -> None:
    arrivals = list(range(len(failing)))
    order.shuffle(arrivals)  # first: a lazily drawn random may end the example early
    out = tmp_path_factory.mktemp("ordered")
    shards, failures, stats = ShardWriter(out, shard_size=7), FailureLog(out), RunStats()
    freed: list[int] = []
    output = OrderedOutput(shards, failures, stats, on_written=lambda: freed.append(stats.done))
    for seq in arrivals:
        output.put(seq, outcome(seq, failing[seq]))
        assert stats.done == len(freed)  # a place is freed exactly when an outcome is written
    shards.close()
    failures.close()
    ok = [i for i, fails in enumerate(failing) if not fails]
    written = [json.loads(line)["index"] for part in sorted((out / "shards").glob("*.jsonl"))
               for line in part.read_text().splitlines()]  # fmt: skip
    assert written == ok
    assert [json.loads(line)["index"] for line in (out / "failures.jsonl").read_text().splitlines()] == [
        i for i, fails in enumerate(failing) if fails
    ]
    assert (stats.records, stats.failures, stats.done) == (len(ok), len(failing) - len(ok), len(failing))
    assert stats.rationales == sum(i % 2 == 0 for i in ok) and stats.record_prompt_tokens == 10 * len(ok)
