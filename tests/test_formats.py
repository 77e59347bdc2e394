"""`--output-format`: a strict schema whose label is one of the task's options, and `auto`, which
goes on in text when the server refuses the schema; against the mock honouring, refusing or
ignoring `response_format`, with a share of its text replies off-format."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import pytest

from labelmill._api import replay_config
from labelmill._exceptions import TaskError, UsageError
from labelmill.cache import iter_records
from labelmill.engine import RunResult, annotate, load_task
from labelmill.engine.money import token_upper_bound
from labelmill.engine.tasks import VARIANT_LABEL, VARIANT_RATIONALE, task_from_dict
from labelmill.testing import MockConfig, MockTeacher, cqa_rows, make_cqa
from tests.test_pipeline import config

OFF_FORMAT = 0.1


def shard_bytes(out: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted((out / "shards").glob("*.jsonl")))


async def run(tmp_path: Path, name: str, source: Path, mock: MockConfig, **overrides: Any) -> RunResult:
    async with MockTeacher(mock) as teacher:
        settings = {"out_dir": tmp_path / name, "cache_dir": tmp_path / f"{name}-cache", "rationale_rate": 0.5}
        result = await annotate(config(tmp_path, source, teacher.base_url, **{**settings, **overrides}))
        result.summary["server_answers"] = teacher.stats.ok
        return result


def labels(out: Path) -> dict[str, str]:
    return {r.id: r.label for r in iter_records(out)}


def test_the_schema_is_strict_its_label_an_enum_of_the_options_and_it_is_part_of_the_key() -> None:
    cqa, nli = load_task("cqa"), load_task("nli")
    example = cqa.render(next(cqa_rows(1)), 0)
    explained = cqa.response_format(VARIANT_RATIONALE, example)["json_schema"]
    assert explained["strict"] is True
    assert (
        explained["schema"]["properties"]["answer"]["enum"] == ["a", "b", "c", "d", "e"][: len(example.choices or [])]
    )
    assert explained["schema"]["required"] == ["rationale", "answer"]
    assert explained["schema"]["additionalProperties"] is False
    label_only = nli.response_format(VARIANT_LABEL, nli.render({"premise": "p", "hypothesis": "h"}, 0))
    assert label_only["json_schema"]["schema"]["properties"] == {
        "answer": {"type": "string", "enum": ["entailment", "neutral", "contradiction"]}
    }
    body: dict[str, Any] = {"model": "m", "messages": cqa.messages(example, VARIANT_LABEL), "max_tokens": 24}
    with_schema = {**body, "response_format": cqa.response_format(VARIANT_LABEL, example)}
    assert token_upper_bound(with_schema) > token_upper_bound(body)  # the schema is prompt a server may bill
    with pytest.raises(TaskError, match="output_format is one of"):
        task_from_dict({"text": "{t}", "labels": ["x", "y"], "output_format": "yaml",
                        "prompts": {"label": {"template": "{t}"}, "label_rationale": {"template": "{t}"}}})  # fmt: skip


async def test_with_off_format_replies_the_schema_loses_no_row_where_text_does(tmp_path: Path) -> None:
    n = 300
    source = make_cqa(n, tmp_path / "in.jsonl")
    truth = await run(tmp_path, "truth", source, MockConfig(), output_format="text")
    assert truth.summary["records"] == n
    text = await run(tmp_path, "text", source, MockConfig(off_format_rate=OFF_FORMAT), output_format="text")
    schema = await run(tmp_path, "schema", source, MockConfig(off_format_rate=OFF_FORMAT), output_format="json_schema")
    expected = labels(tmp_path / "truth")
    text_wrong = sum(label != expected[i] for i, label in labels(tmp_path / "text").items())
    # About 10% of the text replies are off-format: each becomes a failed row or a wrong label.
    assert text.summary["failures"] + text_wrong > n * OFF_FORMAT / 2
    assert text.summary["failures"] > 0 and text_wrong > 0
    assert schema.summary["failures"] == 0 and labels(tmp_path / "schema") == expected
    assert schema.summary["output_format"] == {"asked": "json_schema", "used": "json_schema", "schema_refusals": 0}
    explained = [r for r in iter_records(tmp_path / "schema") if r.rationale is not None]
    assert explained and all(r.rationale and not r.rationale.startswith("{") for r in explained)


async def test_auto_goes_on_in_text_when_the_schema_is_refused_losing_nothing_and_paying_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    n = 200
    source = make_cqa(n, tmp_path / "in.jsonl")
    with caplog.at_level(logging.WARNING, logger="labelmill"):
        result = await run(tmp_path, "auto", source, MockConfig(response_format="refuse"), concurrency=16)
    assert result.summary["records"] == n and result.summary["failures"] == 0
    assert result.summary["server_answers"] == n  # every example answered once, in text
    report = result.summary["output_format"]
    assert report["asked"] == "auto" and report["used"] == "text" and 1 <= report["schema_refusals"] <= 32
    assert sum("refuses structured outputs" in r.message for r in caplog.records) == 1
    # Replay asks as the run ended up asking: byte-identical, from the store alone.
    shutil.copytree(tmp_path / "auto", tmp_path / "before")
    replayed = await annotate(replay_config(source, task="cqa", out=tmp_path / "auto", cache=tmp_path / "auto-cache"))
    assert replayed.summary["cache_hits"] == n
    assert shard_bytes(tmp_path / "auto") == shard_bytes(tmp_path / "before")


async def test_auto_on_a_server_with_the_schema_reuses_answers_bought_in_text(tmp_path: Path) -> None:
    n = 120
    source = make_cqa(n, tmp_path / "in.jsonl")
    await run(tmp_path, "first", source, MockConfig(), output_format="text")
    async with MockTeacher() as teacher:
        again = await annotate(config(tmp_path, source, teacher.base_url, out_dir=tmp_path / "again",
                                      cache_dir=tmp_path / "first-cache", rationale_rate=0.5))  # fmt: skip
        assert teacher.stats.requests == 0  # nothing paid twice: the text answers will do
    assert again.summary["cache_hits"] == n and labels(tmp_path / "again") == labels(tmp_path / "first")


async def test_json_schema_on_a_server_that_refuses_it_stops_with_what_to_do(tmp_path: Path) -> None:
    source = make_cqa(50, tmp_path / "in.jsonl")
    with pytest.raises(UsageError, match=r"refuses structured outputs.*--output-format auto or text"):
        await run(tmp_path, "strict", source, MockConfig(response_format="refuse"), output_format="json_schema")


async def test_a_server_that_ignores_the_schema_is_parsed_as_text(tmp_path: Path) -> None:
    source = make_cqa(80, tmp_path / "in.jsonl")
    result = await run(tmp_path, "ignored", source, MockConfig(response_format="ignore"), output_format="json_schema")
    assert result.summary["records"] == 80 and result.summary["failures"] == 0


def test_the_mock_refuses_a_schema_that_breaks_the_strict_rules() -> None:
    mock = MockTeacher()
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    loose = {"type": "json_schema", "json_schema": {"name": "x", "strict": True, "schema": {
        "type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}}}  # fmt: skip
    refused = mock.refusal({**body, "response_format": loose})
    assert refused is not None and refused[0] == 400 and "additionalProperties" in refused[1]["error"]["message"]
    task = load_task("cqa")
    strict = task.response_format(VARIANT_LABEL, task.render(next(cqa_rows(1)), 0))
    assert mock.refusal({**body, "response_format": strict}) is None
