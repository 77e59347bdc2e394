"""The default recipe learns a task it was not tuned on: the `nature` world of the generated corpus
(other categories, items and question frames than the demo's), end to end through the CLI.

Slow (three trainings of about 2.5 CPU minutes each): it is the check that `labelmill train` with no
flags gives a student that learns, the outcome the trainer exists for."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from labelmill.cache import iter_records
from labelmill.testing import make_cqa
from tests.mockproc import mock_teacher_process

ROWS, HELD_OUT = 1600, 300
SEEDS = (0, 1, 2)  # the recipe's spread between seeds is real: assert on their mean


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
    students = []
    for seed in SEEDS:
        out = str(tmp_path / f"student-{seed}")
        labelmill("train", str(tmp_path / "run"), "--out", out, "--seed", str(seed))
        students.append(labelmill("evaluate", out, str(held_out), "--task", "cqa"))
    assert all(s["with_gold"] == HELD_OUT for s in students)
    generated = statistics.fmean(float(s["accuracy"]) for s in students)  # type: ignore[arg-type]
    ranked = statistics.fmean(float(s["rank_accuracy"]) for s in students)  # type: ignore[arg-type]
    # Measured (README): generated labels about 1.1 x the teacher, ranked about 1.1 x, the seeds
    # within a few points of each other. The bars sit well below that: the mean of 3 seeds must reach
    # 0.9 x on generated labels (the goal) and 0.95 x ranked; chance is 0.2.
    assert generated >= 0.9 * teacher, (students, teacher)
    assert ranked >= 0.95 * teacher, (students, teacher)
