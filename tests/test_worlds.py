"""The generated worlds and what the mock teacher says about them: the lore world's rationale must
carry knowledge the label does not (the category of every choice), with a real teacher's mistakes."""

from __future__ import annotations

import re
from collections import Counter

from labelmill.engine import BUILTIN_TASKS, VARIANT_LABEL, VARIANT_RATIONALE
from labelmill.testing import LORE, MockTeacher, believed_category, cqa_rows
from labelmill.testing._corpus import CATEGORIES, NATURE

FACT = re.compile(r"(\w+) is a (\w+)")


def teacher_says(row: dict[str, object], variant: str) -> str:
    task = BUILTIN_TASKS["cqa"]
    prompt = task.messages(task.render(row, 0), variant)[0]["content"]
    return MockTeacher().answer(prompt)


def test_lore_names_give_nothing_away() -> None:
    names = [name for items in LORE.values() for name in items]
    assert len(names) == len(set(names)) == 96
    known = {w for items in [*CATEGORIES.values(), *NATURE.values()] for w in items}
    assert not known & set(names)
    for row in cqa_rows(200, world="lore"):
        asked = next(c for c in LORE if f" {c}" in str(row["question"]))
        in_category = [c for c in row["choices"] if c in LORE[asked]]
        assert in_category == [row["answer"]]


def test_the_lore_rationale_names_every_choices_category_as_the_teacher_believes_it() -> None:
    for row in cqa_rows(60, world="lore"):
        reply = teacher_says(row, VARIANT_RATIONALE)
        rationale = reply.split("\nAnswer:")[0]
        facts = dict(FACT.findall(rationale.split(". The question")[0]))
        assert facts == {choice: believed_category(choice) for choice in row["choices"]}
        assert "Answer:" not in teacher_says(row, VARIANT_LABEL).split("Answer:", 1)[1]


def test_the_teacher_holds_a_few_wrong_beliefs_and_holds_them_consistently() -> None:
    truth = {name: category for category, items in LORE.items() for name in items}
    wrong = [name for name in truth if believed_category(name) != truth[name]]
    assert 3 <= len(wrong) <= 20  # about 1 in 10 of 96
    assert all(believed_category(name) in LORE for name in wrong)
    assert believed_category("apple") is None  # not a lore item: the teacher claims no lore belief


def test_the_lore_teacher_is_right_often_but_not_always() -> None:
    rows = list(cqa_rows(300, world="lore"))
    hits = Counter(teacher_says(row, VARIANT_LABEL).endswith(f" {row['answer']}") for row in rows)
    accuracy = hits[True] / len(rows)
    assert 0.5 < accuracy < 0.85  # the label is noisy, so a student has something to average out
