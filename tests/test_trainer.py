"""The trainer on tiny scratch models (CPU, seconds each)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from labelmill._exceptions import ShardFormatError, UsageError
from labelmill.cache import ShardRecord, ShardWriter, TeacherRef, Usage
from labelmill.trainer import Student, TrainConfig, multitask_loss, to_rows, train, train_tokenizer
from labelmill.trainer._data import TASK_LABEL, TASK_RATIONALE, split

COLORS = ["red", "green", "blue", "gold"]


def toy_records(n: int, rationale_every: int = 2) -> list[ShardRecord]:
    """A learnable toy task: the label is the color word the text names."""
    records = []
    for i in range(n):
        color = COLORS[i % len(COLORS)]
        records.append(
            ShardRecord(
                id=f"t{i}", index=i, text=f"the paint is {color} today", label=color,
                rationale=f"the text says {color}" if i % rationale_every == 0 else None,
                choices=COLORS, gold=color, teacher=TeacherRef("m", "toy/label@1", f"sha256:{i:064x}"),
                usage=Usage(10, 2), cost_usd=None,
            )
        )  # fmt: skip
    return records


def write_shards(records: list[ShardRecord], out: Path) -> Path:
    with ShardWriter(out, shard_size=50) as writer:
        for record in records:
            writer.write(record)
    return out


def test_masked_loss_matches_a_hand_computation() -> None:
    torch.manual_seed(0)
    logits = torch.randn(4, 3, 7)
    labels = torch.tensor([[1, 2, -100], [3, -100, -100], [4, 5, 6], [0, 1, -100]])
    task = torch.tensor([TASK_LABEL, TASK_LABEL, TASK_RATIONALE, TASK_LABEL])
    logp = torch.log_softmax(logits, dim=-1)

    def row(i: int) -> float:
        tokens = [(t, int(labels[i, t])) for t in range(3) if labels[i, t] != -100]
        return -sum(float(logp[i, t, c]) for t, c in tokens) / len(tokens)

    label_loss = (row(0) + row(1) + row(3)) / 3
    rationale_loss = row(2)  # only the row that has a rationale: nothing is trained on empty targets
    got = multitask_loss(logits, labels, task, alpha=0.3)
    assert float(got) == pytest.approx(0.3 * label_loss + 0.7 * rationale_loss, rel=1e-5)
    assert float(multitask_loss(logits, labels, task, alpha=1.0)) == pytest.approx(label_loss, rel=1e-5)


def test_rows_respect_explanation_rate_and_gold_labels() -> None:
    records = toy_records(40, rationale_every=1)
    assert sum(r.task == TASK_RATIONALE for r in to_rows(records, "teacher", 0.0)) == 0
    half = sum(r.task == TASK_RATIONALE for r in to_rows(records, "teacher", 0.5))
    assert 10 <= half <= 30
    assert to_rows(records, "teacher", 0.5) == to_rows(records, "teacher", 0.5)  # deterministic
    missing = [dataclasses.replace(r, gold=None) for r in records[:3]] + records[3:]
    with pytest.raises(UsageError, match="3 of 40 have none"):
        to_rows(missing, "gold", 1.0)


def test_tokenizer_training_is_deterministic() -> None:
    texts = [r.text for r in toy_records(50)] + COLORS
    first, second = train_tokenizer(texts, 200), train_tokenizer(texts, 200)
    assert first.get_vocab() == second.get_vocab()
    assert first("the paint is red")["input_ids"] == second("the paint is red")["input_ids"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    root = tmp_path_factory.mktemp("train")
    shards = write_shards(toy_records(160), root / "shards")
    config = TrainConfig(shards=str(shards), out_dir=str(root / "model"), max_steps=150, batch_size=32, eval_steps=75,
                         learning_rate=3e-3)  # fmt: skip
    return root, train(config)


def test_training_reduces_loss_and_saves_config(trained: tuple[Path, dict[str, object]]) -> None:
    root, summary = trained
    assert summary["steps"] == 150
    assert float(summary["last_loss"]) < 0.5 * float(summary["first_loss"])  # type: ignore[arg-type]
    saved = json.loads((root / "model" / "labelmill.json").read_text())
    assert saved["alpha"] == 0.5 and saved["student"] == "scratch:tiny" and saved["max_steps"] == 150
    train_records, valid_records = split(toy_records(160), 0.1)
    assert len(valid_records) > 0
    explained = sum(r.rationale is not None for r in train_records)
    assert summary["rationale_rows"] == explained  # every kept rationale, and no row for the others
    assert summary["train_rows"] == len(train_records) + explained


def test_save_load_gives_identical_predictions_and_learns_the_toy_task(trained: tuple[Path, dict[str, object]]) -> None:
    root, summary = trained
    sources = [f"[label] the paint is {c} today" for c in COLORS]
    first, second = Student(str(root / "model")), Student(str(root / "model"))
    assert first.generate(sources) == second.generate(sources)
    assert summary["best_validation_accuracy"] is not None
    assert float(summary["best_validation_accuracy"]) >= 0.5  # type: ignore[arg-type]


def labelmill(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "labelmill", *args], capture_output=True, text=True, timeout=300,
                          env=env)  # fmt: skip


def test_evaluate_and_predict_on_a_toy_set(trained: tuple[Path, dict[str, object]], tmp_path: Path) -> None:
    root, _ = trained
    toy = tmp_path / "toy.jsonl"
    toy.write_text("".join(json.dumps({"id": f"q{i}", "text": f"the paint is {c} today", "gold": c, "choices": COLORS})
                           + "\n" for i, c in enumerate(COLORS)))  # fmt: skip
    predicted = labelmill("predict", str(root / "model"), str(toy), "--explain")
    assert predicted.returncode == 0, predicted.stderr
    rows = [json.loads(line) for line in predicted.stdout.splitlines()]
    assert [r["id"] for r in rows] == ["q0", "q1", "q2", "q3"] and all("rationale" in r for r in rows)
    task = tmp_path / "toy.toml"
    task.write_text('text = "{text}"\nchoices_field = "choices"\ngold_field = "gold"\n[prompts.label_rationale]\n'
                    'template = "{text}"\n[prompts.label]\ntemplate = "{text}"\n')  # fmt: skip
    evaluated = labelmill("evaluate", str(root / "model"), str(toy), "--task", str(task), "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    summary = json.loads(evaluated.stdout)
    assert summary["examples"] == 4 and 0 <= summary["accuracy"] <= 1 and "rank_accuracy" in summary
    assert len(Path(summary["predictions"]).read_text().splitlines()) == 4


def test_shards_without_rationales_train_label_only_with_a_note(tmp_path: Path) -> None:
    shards = write_shards(toy_records(40, rationale_every=10**9)[1:], tmp_path / "shards")
    summary = train(TrainConfig(shards=str(shards), out_dir=str(tmp_path / "m"), max_steps=4, eval_steps=4,
                                batch_size=16))  # fmt: skip
    assert summary["rationale_rows"] == 0
    assert any("label task alone" in note for note in summary["notes"])
    assert not math.isnan(float(summary["last_loss"]))


def test_bad_shards_name_file_and_line(tmp_path: Path) -> None:
    shards = write_shards(toy_records(5), tmp_path / "shards")
    part = shards / "shards" / "part-00000.jsonl"
    lines = part.read_text().splitlines()
    lines[2] = lines[2].replace('"label"', '"labl"')
    part.write_text("\n".join(lines) + "\n")
    with pytest.raises(ShardFormatError, match=r"part-00000\.jsonl:3: missing field 'label'"):
        train(TrainConfig(shards=str(part), out_dir=str(tmp_path / "m"), max_steps=1))
