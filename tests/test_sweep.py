"""`bench distill`: the sweep's settings, pricing, report files and resume."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from labelmill.cache import ShardRecord, Usage
from labelmill.trainer import Setting, SweepConfig
from labelmill.trainer._sweep import annotation_costs, cheapest_near_best
from tests.test_trainer import toy_records, write_shards

PRICE_IN, PRICE_OUT = 0.15e-6, 0.60e-6


def priced(record: ShardRecord, prompt: int, completion: int) -> ShardRecord:
    return dataclasses.replace(
        record, usage=Usage(prompt, completion), cost_usd=PRICE_IN * prompt + PRICE_OUT * completion
    )


def test_the_sweep_trains_every_rate_label_only_and_each_rationale_length() -> None:
    config = SweepConfig(shards="s", out_dir="o", rates=(0.0, 0.5), rationale_words=(8,))
    assert config.settings() == [
        Setting(0.0),
        Setting(0.5),
        Setting(0.0, label_only=True),
        Setting(1.0, rationale_words=8),
    ]
    assert [s.name for s in config.settings()] == ["rate 0", "rate 0.5", "label-only", "rate 1, 8 words"]


def test_costs_come_from_label_only_records_when_the_shards_have_them() -> None:
    records = toy_records(8, rationale_every=2)
    records = [priced(r, 50, 30 if r.rationale else 4) for r in records]
    costs = annotation_costs(records)
    assert costs.label == pytest.approx(PRICE_IN * 50 + PRICE_OUT * 4) and not costs.label_estimated
    assert costs.rationale == pytest.approx(PRICE_IN * 50 + PRICE_OUT * 30)
    explained, plain = PRICE_IN * 50 + PRICE_OUT * 30, PRICE_IN * 50 + PRICE_OUT * 4
    assert costs.per_1k(0.25) == pytest.approx(1000 * (0.25 * explained + 0.75 * plain))


def test_without_label_only_records_their_cost_is_estimated_from_fitted_prices() -> None:
    records = [priced(r, 40 + 7 * i, 20 + (i * 5) % 11) for i, r in enumerate(toy_records(12, rationale_every=1))]
    costs = annotation_costs(records)
    assert costs.label_estimated
    expected = sum(PRICE_IN * r.usage.prompt_tokens + PRICE_OUT * math.ceil(len("Answer: " + r.label) / 4)
                   for r in records) / len(records)  # fmt: skip
    assert costs.label == pytest.approx(expected, rel=1e-6)
    unpriced = annotation_costs([dataclasses.replace(r, cost_usd=None) for r in records])
    assert unpriced.per_1k(0.5) is None


def test_bench_distill_writes_the_report_and_a_rerun_trains_nothing(tmp_path: Path) -> None:
    records = [priced(r, 30, 12 if r.rationale else 3) for r in toy_records(80, rationale_every=2)]
    shards = write_shards(records, tmp_path / "run")
    out = tmp_path / "report"
    args = [sys.executable, "-m", "labelmill", "bench", "distill", str(shards), "--out", str(out), "--rates", "0,1",
            "--seeds", "2", "--rationale-words", "3", "--max-steps", "6", "--json"]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    first = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    rows = json.loads(first.stdout)["rows"]
    assert [(r["explanation_rate"], r["label_only"], r["rationale_words"]) for r in rows] == [
        (0.0, False, None), (1.0, False, None), (0.0, True, None), (1.0, False, 3)]  # fmt: skip
    (train_dir,) = (out / "data").glob("train-*")  # no --sizes: one size, the whole pool
    trained_on = [json.loads(line) for line in (train_dir / "shards/part-00000.jsonl").read_text().splitlines()]
    for row in rows:
        assert row["seeds"] == 2 and row["examples"] == len(trained_on)
        assert 0 <= row["accuracy_mean"] <= 1 and row["accuracy_std"] >= 0
        assert {"explanation_rate", "label_only", "accuracy_mean", "accuracy_std", "dollars_per_1k", "dollars"} <= set(
            row
        )
    with_rationale = sum(r["rationale"] is not None for r in trained_on) / len(trained_on)
    assert rows[0]["explained"] == 0 and 0.3 < rows[1]["explained"] < 0.7  # rate 1 keeps every rationale there is
    assert rows[1]["explained"] == pytest.approx(with_rationale, abs=0.1)  # (less the validation slice)
    assert rows[1]["dollars_per_1k"] > rows[0]["dollars_per_1k"] == rows[2]["dollars_per_1k"]
    report = json.loads((out / "report.json").read_text())
    test_ids = {r.id for r in records} - {r["id"] for r in trained_on}
    assert report["test_rows"] == len(test_ids) > 0  # held out by id, never trained on
    assert (out / "accuracy.png").stat().st_size > 0 and "| label-only |" in (out / "report.md").read_text()
    assert "run 8/8" in first.stderr
    runs = (out / "runs.jsonl").read_text()
    again = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout)["rows"] == rows and "run 1/8" not in again.stderr
    assert (out / "runs.jsonl").read_text() == runs


def test_sizes_train_each_setting_on_nested_subsets_and_price_what_each_bought(tmp_path: Path) -> None:
    records = [priced(r, 40 + 7 * i, 20 + (i * 5) % 11) for i, r in enumerate(toy_records(60, rationale_every=1))]
    shards = write_shards(records, tmp_path / "run")
    out = tmp_path / "report"
    args = [sys.executable, "-m", "labelmill", "bench", "distill", str(shards), "--out", str(out), "--rates", "1",
            "--seeds", "1", "--sizes", "10,30", "--max-steps", "3", "--json"]  # fmt: skip
    done = subprocess.run(
        args, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONWARNINGS": "ignore"}
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout)["rows"]
    assert [(r["examples"], r["name"]) for r in rows] == [
        (10, "rate 1"), (10, "label-only"), (30, "rate 1"), (30, "label-only")]  # fmt: skip
    ids = {
        n: {
            json.loads(line)["id"]
            for line in (out / f"data/train-{n}/shards/part-00000.jsonl").read_text().splitlines()
        }
        for n in (10, 30)
    }
    assert len(ids[10]) == 10 and len(ids[30]) == 30 and ids[10] < ids[30]  # a smaller size is a subset
    for row in rows:  # dollars spent = what the size's annotation implies
        assert row["dollars"] == pytest.approx(row["dollars_per_1k"] * row["examples"] / 1000, abs=1e-6)
    report = (out / "report.md").read_text()
    assert "| rate 1 | 30 |" in report and "Cheapest within one std of the best" in report
    too_big = subprocess.run([*args[:-1], "--sizes", "5,10000"], capture_output=True, text=True, timeout=600)
    assert too_big.returncode != 0 and "each size must be 2 to" in too_big.stderr


def row(name: str, examples: int, mean: float, std: float, dollars: float) -> dict[str, object]:
    return {"name": name, "examples": examples, "accuracy_mean": mean, "accuracy_std": std, "dollars": dollars}


def test_the_cheapest_setting_within_one_std_of_the_best_is_named() -> None:
    rows = [row("rate 1", 100, 0.70, 0.02, 0.40), row("label-only", 300, 0.69, 0.01, 0.30),
            row("label-only", 100, 0.50, 0.01, 0.10), row("rate 1", 300, 0.72, 0.03, 1.20)]  # fmt: skip
    pick = cheapest_near_best(rows)
    assert pick is not None and (pick["name"], pick["examples"], pick["best_examples"]) == ("label-only", 300, 300)
    assert cheapest_near_best([row("rate 1", 10, 0.5, 0.0, 0.0) | {"dollars": None}]) is None  # unpriced
