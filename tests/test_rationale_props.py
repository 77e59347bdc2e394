"""A rationale's properties: its word count and whether its stated conclusion agrees with its
label, kept in each record and summed up in the summary; a length a task asks for; and a trainer
that can leave out the rationales that contradict their label."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from labelmill._exceptions import TaskError
from labelmill.cache import iter_records
from labelmill.engine import annotate, load_task
from labelmill.engine.tasks import VARIANT_LABEL, VARIANT_RATIONALE, agrees_with_label, task_from_dict
from labelmill.testing import MockConfig, MockTeacher, make_cqa
from labelmill.trainer import to_rows
from labelmill.trainer._data import TASK_RATIONALE
from tests.test_pipeline import config

OPTIONS = ["store", "home", "park"]


@pytest.mark.parametrize(
    ("rationale", "agrees"),
    [
        ("You keep food at home, so the answer is (b) home.", True),
        ("People shop there. The answer is store.", False),
        ("home is the best fit because beds are there.", True),
        ("It could be a store; park is the best choice here.", False),
        ("Beds are found where people sleep.", None),  # reasons, states no pick
        ("So the answer is the moon.", None),  # a conclusion that names no option
    ],
)
def test_a_rationale_agrees_when_its_stated_conclusion_is_the_label(rationale: str, agrees: bool | None) -> None:
    assert agrees_with_label(rationale, "home", OPTIONS, {}) is agrees


async def test_records_keep_each_rationales_length_and_agreement_and_the_summary_adds_them_up(tmp_path: Path) -> None:
    n = 400
    source = make_cqa(n, tmp_path / "in.jsonl", world="lore")
    async with MockTeacher(MockConfig(contradict_percent=20)) as mock:
        result = await annotate(config(tmp_path, source, mock.base_url, rationale_rate=1.0))
    records = list(iter_records(tmp_path / "out"))
    assert len(records) == n and all(r.rationale for r in records)
    assert all(r.rationale_words == len((r.rationale or "").split()) for r in records)
    contradicting = sum(r.rationale_agrees is False for r in records)
    assert 0.12 * n < contradicting < 0.28 * n  # the mock argues for another choice in 20% of them
    agreement = result.summary["rationales"]["agreement"]
    assert agreement["contradict"] == contradicting and agreement["agree"] + contradicting + agreement["unstated"] == n
    assert agreement["rate"] == pytest.approx(agreement["agree"] / (agreement["agree"] + contradicting), abs=1e-4)
    words = result.summary["rationales"]["words"]
    assert words["min"] <= words["median"] <= words["p90"] <= words["max"]
    label_only = [r for r in to_rows(records, "teacher", 1.0, consistent_only=True) if r.task == TASK_RATIONALE]
    assert len(label_only) == n - contradicting  # the consistent filter leaves out exactly the contradicting ones


async def test_a_task_can_ask_for_a_rationale_length(tmp_path: Path) -> None:
    cqa = load_task("cqa")
    data: dict[str, Any] = {
        "name": "cqa_long", "text": cqa.text, "choices_field": "choices", "gold_field": "answer",
        "rationale_words": [30, 40],
        "prompts": {"label_rationale": {"template": cqa.prompts[VARIANT_RATIONALE].template},
                    "label": {"template": cqa.prompts[VARIANT_LABEL].template}},
    }  # fmt: skip
    task = task_from_dict(data)
    assert task.prompts[VARIANT_RATIONALE].template.endswith("Write the rationale in 30 to 40 words.")
    assert task.prompts[VARIANT_RATIONALE].version() != cqa.prompts[VARIANT_RATIONALE].version()  # a new key
    source = make_cqa(60, tmp_path / "in.jsonl")
    async with MockTeacher() as mock:
        result = await annotate(config(tmp_path, source, mock.base_url, task=task, rationale_rate=1.0))
    assert 30 <= result.summary["rationales"]["words"]["median"] <= 40
    for bad in ([40, 30], [20], "20-40"):
        with pytest.raises(TaskError, match="rationale_words"):
            task_from_dict({**data, "rationale_words": bad})
