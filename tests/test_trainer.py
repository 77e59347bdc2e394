"""The trainer on tiny scratch models (CPU, seconds each)."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import Seq2SeqTrainingArguments, TrainerCallback, TrainerControl, TrainerState

from labelmill._exceptions import ShardFormatError, UsageError
from labelmill.cache import ShardRecord, ShardWriter, TeacherRef, Usage
from labelmill.trainer import Student, TrainConfig, multitask_loss, to_rows, train, train_tokenizer
from labelmill.trainer._data import TASK_LABEL, TASK_RATIONALE, Row, split
from labelmill.trainer._distill import Collator, DistillTrainer, Rows
from labelmill.trainer._student import scratch_model
from labelmill.trainer._train import weights_digest

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


TOKENIZER_SCRIPT = """
import sys
from labelmill.trainer import train_tokenizer
texts = [line for line in sys.stdin.read().splitlines()]
print(train_tokenizer(texts, 200).backend_tokenizer.to_str())
"""


def test_tokenizer_training_is_deterministic_across_processes() -> None:
    # Hash maps iterate in another order in each process (Rust seeds them at random), so two calls
    # in one process prove nothing: train in two processes and compare the whole tokenizer.
    texts = "\n".join([r.text for r in toy_records(50)] + COLORS + ["a planet; Neptune is a planet, so it fits."] * 3)
    runs = [subprocess.run([sys.executable, "-c", TOKENIZER_SCRIPT], input=texts, capture_output=True, text=True,
                           check=True).stdout for _ in range(2)]  # fmt: skip
    assert runs[0] == runs[1]
    tokenizer = train_tokenizer(texts.splitlines(), 200)
    assert tokenizer.convert_ids_to_tokens(tokenizer("the paint is red")["input_ids"]) == [
        "▁the", "▁paint", "▁is", "▁red", "</s>"]  # fmt: skip  # words seen twice are one piece each
    assert tokenizer.decode(tokenizer("Neptune is a planet, so it fits.")["input_ids"], skip_special_tokens=True) == (
        "Neptune is a planet, so it fits.")  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    root = tmp_path_factory.mktemp("train")
    shards = write_shards(toy_records(160), root / "shards")
    config = TrainConfig(shards=str(shards), out_dir=str(root / "model"), max_steps=150, batch_size=32, eval_steps=30,
                         learning_rate=3e-3)  # fmt: skip
    probe = Probe([f"[label] the paint is {c} today" for c in COLORS])
    return root, {**train(config, callbacks=[probe]), "probe": probe.seen, "probe_rows": probe.rows}


def test_training_reduces_loss_and_saves_config(trained: tuple[Path, dict[str, Any]]) -> None:
    root, summary = trained
    assert summary["steps"] == 150
    assert float(summary["last_loss"]) < 0.5 * float(summary["first_loss"])
    saved = json.loads((root / "model" / "labelmill.json").read_text())
    assert saved["alpha"] == 0.5 and saved["student"] == "scratch:tiny" and saved["max_steps"] == 150
    # What the trainer trained on, read from its data loader: in the toy corpus only red and blue
    # records have rationales, so each red or blue label row has one rationale row, and no other does.
    trained_on = summary["probe_rows"]
    label_rows = [color for task, color in trained_on if task == TASK_LABEL]
    rationale_rows = [color for task, color in trained_on if task == TASK_RATIONALE]
    assert sorted(rationale_rows) == sorted(c for c in label_rows if c in ("red", "blue")) and rationale_rows
    assert len(trained_on) == summary["train_rows"] and len(rationale_rows) == summary["rationale_rows"]
    assert summary["validation_rows"] > 0 and len(label_rows) + summary["validation_rows"] == 160


class Probe(TrainerCallback):
    """At every evaluation: the step, its validation accuracy, a digest of the weights in memory and
    what the model generates for `sources` then."""

    def __init__(self, sources: list[str]) -> None:
        self.sources = sources
        self.seen: dict[int, tuple[float, str, list[str]]] = {}
        self.rows: list[tuple[int, str]] = []

    def on_train_begin(self, args: Any, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        """The (task, color) of every row the trainer was given."""
        tokenizer, dataset = kwargs["processing_class"], kwargs["train_dataloader"].dataset
        texts = tokenizer.batch_decode([item["input_ids"] for item in dataset], skip_special_tokens=True)
        colors = [next(c for c in COLORS if c in text) for text in texts]
        self.rows = [(item["task"], color) for item, color in zip(dataset, colors, strict=True)]

    def on_evaluate(self, args: Any, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        model, tokenizer = kwargs["model"], kwargs["processing_class"]
        encoded = tokenizer(self.sources, return_tensors="pt", padding=True)
        with torch.no_grad():
            out = model.generate(**encoded, max_new_tokens=16, do_sample=False)
        generated = [t.strip() for t in tokenizer.batch_decode(out, skip_special_tokens=True)]
        accuracy = kwargs["metrics"]["eval_accuracy"]
        self.seen[state.global_step] = (accuracy, weights_digest(model), generated)


def test_the_saved_model_is_the_best_checkpoint_with_its_tied_weights(trained: tuple[Path, Any]) -> None:
    root, summary = trained
    seen = summary["probe"]
    best_step = summary["best_step"]
    assert len(seen) == 5 and best_step in seen
    assert seen[best_step][0] == summary["best_validation_accuracy"] == max(acc for acc, _, _ in seen.values())
    student = Student(str(root / "model"))
    model: Any = student.model
    assert model.lm_head.weight.data_ptr() == model.shared.weight.data_ptr()  # tied, as trained
    assert weights_digest(student.model) == seen[best_step][1] == summary["weights_sha256"]
    assert student.generate([f"[label] the paint is {c} today" for c in COLORS]) == seen[best_step][2]
    assert float(summary["best_validation_accuracy"]) >= 0.5


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


def test_the_same_command_gives_the_same_student_in_another_process(tmp_path: Path) -> None:
    shards = write_shards(toy_records(80), tmp_path / "shards")
    digests = []
    for run in ("a", "b"):
        done = labelmill("train", str(shards), "--out", str(tmp_path / run), "--max-steps", "12", "--eval-steps", "6",
                         "--json")  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        digests.append(json.loads(done.stdout)["weights_sha256"])
    assert digests[0] == digests[1]
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tmp_path / "b" / "tokenizer.json").read_bytes()


def test_training_leaves_the_processs_torch_settings_as_it_found_them(tmp_path: Path) -> None:
    shards = write_shards(toy_records(40), tmp_path / "shards")
    before = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    seen: list[int] = []

    class Threads(TrainerCallback):
        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            seen.append(torch.get_num_threads())

    train(TrainConfig(shards=str(shards), out_dir=str(tmp_path / "m"), max_steps=2, eval_steps=2, threads=1),
          callbacks=[Threads()])  # fmt: skip
    assert seen == [1, 1]
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == before


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


def test_a_small_corpus_never_validates_on_its_training_rows() -> None:
    records = toy_records(3)
    train_records, valid_records, note = split(records, 1e-6)  # a slice that comes out empty
    assert len(valid_records) == 1 and len(train_records) == 2
    assert not {r.id for r in train_records} & {r.id for r in valid_records}
    assert note is not None and "validating on 1 held-out record" in note
    with pytest.raises(UsageError, match="too few"):
        split(records[:1], 0.1)


def gradients(
    batch_size: int, accumulation: int, rows: list[Row], student: tuple[Any, Any], tmp_path: Path
) -> dict[str, torch.Tensor]:
    """The gradient one optimizer step of the trainer would apply, accumulated over micro-batches."""
    initial, tokenizer = student
    model = copy.deepcopy(initial)
    args = Seq2SeqTrainingArguments(output_dir=str(tmp_path / f"b{batch_size}"), per_device_train_batch_size=batch_size,
                                    gradient_accumulation_steps=accumulation, use_cpu=True, report_to="none",
                                    remove_unused_columns=False)  # fmt: skip
    collate = Collator(int(tokenizer.pad_token_id))
    dataset = Rows(rows, tokenizer, 64, 64)
    trainer = DistillTrainer(model=model, args=args, data_collator=collate, alpha=0.3, train_dataset=dataset,
                             processing_class=tokenizer)  # fmt: skip
    micro = iter([collate([dataset[i] for i in range(k, k + batch_size)]) for k in range(0, len(rows), batch_size)])
    batches, counts = trainer.get_batch_samples(micro, accumulation, torch.device("cpu"))
    model.zero_grad()
    for batch in batches:
        trainer.training_step(model, batch, counts)
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_gradient_accumulation_gives_the_gradient_of_the_whole_batch(tmp_path: Path) -> None:
    # Rationale rows are uneven between the two halves (6 in the first, 1 in the second), so
    # per-micro-batch means would weigh them differently from the whole batch.
    records = toy_records(16, rationale_every=1)
    rows = [r for r in to_rows(records, "teacher", 1.0) if r.task == TASK_LABEL]
    explained = [r for r in to_rows(records, "teacher", 1.0) if r.task == TASK_RATIONALE]
    rows = rows[:2] + explained[:6] + rows[2:9] + explained[6:7]
    assert len(rows) == 16
    torch.manual_seed(0)
    tokenizer = train_tokenizer([r.source for r in rows] + [r.target for r in rows], 200)
    student = (scratch_model("scratch:tiny", tokenizer), tokenizer)
    whole, halves = gradients(16, 1, rows, student, tmp_path), gradients(8, 2, rows, student, tmp_path)
    assert whole.keys() == halves.keys() and len(whole) > 10
    for name in whole:
        torch.testing.assert_close(halves[name], whole[name], rtol=1e-4, atol=1e-6)


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


@pytest.mark.slow
def test_two_processes_train_one_model_and_only_the_main_one_writes(tmp_path: Path) -> None:
    shards = write_shards(toy_records(72), tmp_path / "shards")
    args = ["-m", "labelmill", "train", str(shards), "--out", str(tmp_path / "m"), "--epochs", "1",
            "--batch-size", "4", "--explanation-rate", "0", "--json"]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([*TORCHRUN, *args], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout  # one summary, from the main process
    summary = json.loads(lines[0])
    assert summary["world_size"] == 2 and summary["global_batch_size"] == 8
    train_rows = summary["train_rows"]  # label rows only: 72 minus the validation slice
    assert summary["steps"] == -(-train_rows // 8)  # one epoch of the global batch: both processes took part
    saved = json.loads((tmp_path / "m" / "labelmill.json").read_text())
    assert saved["world_size"] == 2
    assert summary["weights_sha256_by_process"] == [summary["weights_sha256"]] * 2  # rank 1 holds the same model
    assert weights_digest(Student(str(tmp_path / "m")).model) == summary["weights_sha256"]
    assert not list(tmp_path.glob("m/tokenizer*/")), "the tokenizer is saved once, in the model directory"


def test_the_cli_shows_the_library_defaults() -> None:
    from labelmill.cli._student import _DEFAULTS

    fields = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    assert {name: fields[name] for name in _DEFAULTS} == _DEFAULTS
