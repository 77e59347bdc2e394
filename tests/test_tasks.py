from pathlib import Path

import pytest

from labelmill._exceptions import TaskError
from labelmill.engine import BUILTIN_TASKS, VARIANT_LABEL, VARIANT_RATIONALE, load_task

ROW = {"id": "q1", "question": "Where do apples grow?", "choices": ["trees", "sea"], "answer": "trees"}


def test_cqa_renders_student_text_and_prompts() -> None:
    task = BUILTIN_TASKS["cqa"]
    example = task.render(ROW, 0)
    assert example.id == "q1" and example.gold == "trees" and example.choices == ["trees", "sea"]
    assert example.text == "Where do apples grow?\nAnswer choices: (a) trees (b) sea"
    prompt = task.messages(example, VARIANT_RATIONALE)[0]["content"]
    assert "Question: Where do apples grow?" in prompt and "Choices: (a) trees (b) sea" in prompt
    assert "Rationale:" in prompt
    assert "Rationale:" not in task.messages(example, VARIANT_LABEL)[0]["content"]


def test_missing_field_and_id_fallback() -> None:
    task = BUILTIN_TASKS["cqa"]
    with pytest.raises(ValueError, match="missing field 'choices'"):
        task.render({"question": "q"}, 3)
    assert task.render({k: v for k, v in ROW.items() if k != "id"}, 7).id == "7"


TOML = """
name = "sentiment"
id_field = "rid"
text = "{review}"
labels = ["positive", "negative"]
gold_field = "stars"
[aliases]
good = "positive"
bad = "negative"
[prompts.label_rationale]
template = "Review: {review}\\nLabels: {labels}\\nRationale: <why>\\nAnswer: <label>"
max_tokens = 64
[prompts.label]
template = "Review: {review}\\nLabels: {labels}\\nAnswer: <label>"
max_tokens = 8
"""


def test_toml_task_with_aliases(tmp_path: Path) -> None:
    path = tmp_path / "sentiment.toml"
    path.write_text(TOML, encoding="utf-8")
    task = load_task(str(path))
    example = task.render({"rid": 9, "review": "Loved it", "stars": "good"}, 0)
    assert example.id == "9" and example.gold == "positive" and example.text == "Loved it"
    assert task.normalise_label("Bad", None) == "negative"
    assert task.prompts[VARIANT_LABEL].max_tokens == 8
    assert task.prompt_tag(VARIANT_LABEL).startswith("sentiment/label@")


def test_prompt_version_is_a_hash_of_the_prompt_text(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(TOML, encoding="utf-8")
    before = load_task(str(path)).prompt_tag(VARIANT_LABEL)
    path.write_text(TOML.replace('Answer: <label>"\nmax_tokens = 8', 'Answer only: <label>"\nmax_tokens = 8'))
    assert load_task(str(path)).prompt_tag(VARIANT_LABEL) != before


def test_bad_task_specs_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match="built-in task"):
        load_task("nope")
    path = tmp_path / "bad.toml"
    path.write_text('text = "{x}"\nlabels = ["a"]\n')
    with pytest.raises(TaskError, match=r"\[prompts\]"):
        load_task(str(path))


@pytest.mark.parametrize("select", ["random", "uncertainty"])
@pytest.mark.parametrize("shots", [0, 2])
def test_request_keys_are_the_keys_of_the_bodies_sent(tmp_path: Path, select: str, shots: int) -> None:
    from labelmill.cache import request_key
    from labelmill.engine import AnnotateConfig
    from labelmill.engine.run import Requests
    from labelmill.engine.selection import FixedRate
    from labelmill.engine.tasks import iter_rows
    from labelmill.testing import cqa_rows, write_jsonl

    rows = [{**row, "abstractive_explanation": "because"} for row in cqa_rows(6)]
    rows[3]["question"] = 'Une "question" en français? \u00e9\U0001f600\n\t\\'
    source = write_jsonl(iter(rows), tmp_path / "in.jsonl")
    config = AnnotateConfig(source=str(source), task=load_task("cqa"), out_dir=tmp_path / "o",
                            cache_dir=tmp_path / "c", shots=shots, select=select, replay=True)  # fmt: skip
    requests = Requests(config, FixedRate(1.0, seed=0))
    made = [
        requests.make(row, config.task.render(row.data or {}, row.index), variant)
        for row in iter_rows(str(source))
        for variant in (VARIANT_RATIONALE, VARIANT_LABEL)
    ]
    assert len({r.key for r in made}) == len(made) == 12
    assert all(r.key == request_key(r.body, r.tag) for r in made)
