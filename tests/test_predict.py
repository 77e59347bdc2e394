"""The student's fast path gives what the plain one gives, and `bench predict` prices both."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from labelmill.trainer import Item, Student, TrainConfig, train
from labelmill.trainer._decode import greedy
from labelmill.trainer._student import load_student
from tests.test_trainer import COLORS, toy_records, write_shards

TEXTS = ["the paint is red today", "the paint is a very deep and rich gold today", "blue", "the paint is green"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("predict")
    records = [dataclasses.replace(r, cost_usd=2e-5 if r.rationale else 1e-5) for r in toy_records(80)]
    shards = write_shards(records, root / "shards")
    train(TrainConfig(shards=str(shards), out_dir=str(root / "model"), max_steps=30, batch_size=16, learning_rate=3e-3))
    return root / "model"


def test_choices_scored_in_one_pass_match_one_forward_pass_per_choice(model_dir: Path) -> None:
    student = Student(str(model_dir))
    choices = [COLORS, COLORS[:2], [*COLORS, "a colour of the sunset"], ["red"]]
    batched = student.choice_scores(TEXTS, choices)
    for text, options, scores in zip(TEXTS, choices, batched, strict=True):
        encoded = student.tokenizer("[label] " + text, return_tensors="pt")
        with torch.no_grad():
            one_by_one = [
                -student.model(
                    **encoded, labels=student.tokenizer(text_target=c, return_tensors="pt")["input_ids"]
                ).loss
                * len(student.tokenizer(text_target=c)["input_ids"])
                for c in options
            ]
        assert torch.allclose(scores, torch.stack(one_by_one), atol=1e-4)


def test_the_greedy_loop_gives_what_generate_gives(model_dir: Path) -> None:
    student = Student(str(model_dir))  # eager attention, where from_pretrained gives the default one
    reference, _ = load_student(str(model_dir))
    sources = ["[label] " + t for t in TEXTS] + ["[rationale] " + t for t in TEXTS]  # padded, short and long
    encoded = student.tokenizer(sources, return_tensors="pt", padding=True)
    for limit in (1, 3, 128):
        ours = greedy(student.model, encoded["input_ids"], encoded["attention_mask"], limit)
        with torch.no_grad():
            theirs = reference.generate(**encoded, max_new_tokens=limit, do_sample=False, num_beams=1)  # type: ignore[operator]
        decode = student.tokenizer.batch_decode
        assert decode(ours, skip_special_tokens=True) == decode(theirs, skip_special_tokens=True), limit


def test_batched_predictions_keep_input_order_and_match_one_at_a_time(model_dir: Path) -> None:
    student = Student(str(model_dir), batch_size=3)  # a window sorted by length, split in uneven batches
    items = [Item(f"q{i}", text, choices=COLORS if i % 2 else None) for i, text in enumerate(TEXTS * 3)]
    rows = list(student.predict(items, explain=True))
    assert [r["id"] for r in rows] == [i.id for i in items]
    for item, row in zip(items, rows, strict=True):
        assert row["label"] == student.generate(["[label] " + item.text])[0]
        assert row["rationale"] == student.generate(["[rationale] " + item.text])[0]
        assert ("ranked_label" in row) == bool(item.choices)
        if item.choices:
            assert row["ranked_label"] == student.rank([item.text], [item.choices])[0]


def test_bench_predict_reports_both_paths_and_the_teachers_price(model_dir: Path, tmp_path: Path) -> None:
    shards = model_dir.parent / "shards"
    args = [sys.executable, "-m", "labelmill", "bench", "predict", str(model_dir), str(shards), "--baseline-items",
            "8", "--cpu-hour-usd", "0.05", "--json"]  # fmt: skip
    done = subprocess.run(
        args, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"}
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(done.stdout)
    assert [(r["mode"], r["path"]) for r in report["rows"]] == [
        ("generate", "fast"), ("generate", "plain"), ("rank", "fast"), ("rank", "plain")]  # fmt: skip
    for row in report["rows"]:
        assert row["predictions"] == (80 if row["path"] == "fast" else 8) and row["predictions_per_s"] > 0
        assert row["usd_per_1m"] == pytest.approx(row["cpu_seconds_per_1k"] * 1000 / 3600 * 0.05, rel=0.01, abs=1e-4)
    assert set(report["speedup"]) == {"generate", "rank"} and report["peak_rss_mib"] > 0
    assert report["teacher"] == {
        "model": "m",
        "records": 80,
        "label_usd_per_1m": 10.0,
        "label_rationale_usd_per_1m": 20.0,
    }
    table = subprocess.run(args[:-1], capture_output=True, text=True, timeout=300)
    assert table.returncode == 0 and "| rank | fast |" in table.stdout and "label_rationale $20.0" in table.stdout
