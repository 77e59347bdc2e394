"""The default recipe learns a task it was not tuned on: the `nature` world of the generated corpus
(other categories, items and question frames than the demo's), end to end through the CLI.

Slow (a few CPU minutes): it is the check that `labelmill train` with no flags gives a student
that learns, the outcome the trainer exists for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from labelmill.cache import iter_records
from labelmill.testing import make_cqa
from tests.mockproc import mock_teacher_process

ROWS, HELD_OUT = 1600, 300


def labelmill(*args: str) -> dict[str, object]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-m", "labelmill", *args, "--json"], capture_output=True, text=True,
                          timeout=900, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary: dict[str, object] = json.loads(done.stdout)
    return summary


def accuracy(run: Path) -> float:
    records = list(iter_records(run))
    return sum(r.label == r.gold for r in records) / len(records)


@pytest.mark.slow
def test_the_default_recipe_learns_an_unseen_generated_task(tmp_path: Path) -> None:
    corpus = make_cqa(ROWS, tmp_path / "corpus.jsonl", world="nature")
    held_out = make_cqa(HELD_OUT, tmp_path / "held-out.jsonl", seed=1, world="nature")
    common = ["--task", "cqa", "--cache", str(tmp_path / "cache")]
    with mock_teacher_process() as (url, _):
        labelmill("annotate", str(corpus), "--out", str(tmp_path / "run"), "--rationale-rate", "1", "--base-url", url,
                  *common)  # fmt: skip
        labelmill("annotate", str(held_out), "--out", str(tmp_path / "teacher"), "--rationale-rate", "0",
                  "--base-url", url, *common)  # fmt: skip
    teacher = accuracy(tmp_path / "teacher")
    assert 0.6 < teacher < 0.9  # the mock answers at random about a quarter of the time
    labelmill("train", str(tmp_path / "run"), "--out", str(tmp_path / "student"))
    student = labelmill("evaluate", str(tmp_path / "student"), str(held_out), "--task", "cqa")
    assert student["with_gold"] == HELD_OUT
    # Measured at this size: 0.69 generated, 0.79 ranked, teacher 0.767 (README). Generated labels sit
    # at the 0.9 x goal itself, so the test holds them to 0.8 x and rank classification to 0.9 x;
    # chance is 0.2.
    assert float(student["accuracy"]) >= 0.8 * teacher, (student, teacher)  # type: ignore[arg-type]
    assert float(student["rank_accuracy"]) >= 0.9 * teacher, (student, teacher)  # type: ignore[arg-type]
