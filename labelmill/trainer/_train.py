"""Distil a seq2seq student on label + rationale rows with the Hugging Face Trainer (transformers v5).

One forward pass per batch over label and rationale rows together (the reference recipe runs two,
one per task, over inputs padded to a fixed length); dynamic padding, length-grouped batches, label
padding -100, bf16 on CUDA; the best checkpoint is chosen by validation label accuracy (generated
labels, exact match), never by the test set. Under `torchrun` or `accelerate launch` the Trainer's
own distributed support runs the same command on several GPUs.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch.utils.data import Dataset
from transformers import (
    EvalPrediction,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PrinterCallback,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    TrainerCallback,
    TrainerControl,
    TrainerState,
)
from transformers.utils import logging as hf_logging

from labelmill.trainer._data import TASK_LABEL, TASK_RATIONALE, Row, load_records, split, to_rows
from labelmill.trainer._loss import multitask_loss
from labelmill.trainer._student import SCRATCH, build_student

log = logging.getLogger("labelmill")
hf_logging.disable_progress_bar()
CONFIG_FILE = "labelmill.json"


@dataclass(slots=True)
class TrainConfig:
    """Everything a training run depends on; saved as MODEL_DIR/labelmill.json."""

    shards: str
    out_dir: str
    student: str = "scratch:tiny"
    alpha: float = 0.5
    labels: str = "teacher"  # or "gold"
    explanation_rate: float = 1.0
    max_steps: int = -1  # -1: train `epochs` epochs
    epochs: float = 3.0
    batch_size: int = 64
    grad_accumulation: int = 1
    learning_rate: float | None = None  # None: 5e-5 (the paper's) for pretrained students, 1e-3 from scratch
    eval_split: str | None = None  # shards to validate on; default: a 10% slice of SHARDS by id
    validation_fraction: float = 0.1
    eval_steps: int = 200
    max_source_tokens: int = 512
    max_target_tokens: int = 128
    seed: int = 0
    resume: bool = False

    def lr(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 1e-3 if self.student in SCRATCH else 5e-5


class Rows(Dataset[dict[str, Any]]):
    """Tokenized rows; padding happens per batch in `collate`."""

    def __init__(self, rows: list[Row], tokenizer: PreTrainedTokenizerBase, config: TrainConfig) -> None:
        encoded = tokenizer(
            [r.source for r in rows],
            text_target=[r.target for r in rows],
            truncation=True,
            max_length=config.max_source_tokens,
        )
        targets = tokenizer(text_target=[r.target for r in rows], truncation=True, max_length=config.max_target_tokens)
        self.items = [
            {"input_ids": ids, "labels": target, "task": row.task}
            for ids, target, row in zip(encoded["input_ids"], targets["input_ids"], rows, strict=True)
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.items[index]


class Collator:
    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        source_len = max(len(b["input_ids"]) for b in batch)
        target_len = max(len(b["labels"]) for b in batch)
        input_ids = torch.full((len(batch), source_len), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), target_len), -100, dtype=torch.long)
        for i, item in enumerate(batch):
            input_ids[i, : len(item["input_ids"])] = torch.tensor(item["input_ids"])
            labels[i, : len(item["labels"])] = torch.tensor(item["labels"])
        return {
            "input_ids": input_ids,
            "attention_mask": (input_ids != self.pad_id).long(),
            "labels": labels,
            "task": torch.tensor([b["task"] for b in batch], dtype=torch.long),
        }


class DistillTrainer(Seq2SeqTrainer):
    """Seq2SeqTrainer with the masked multi-task loss."""

    def __init__(self, *args: Any, alpha: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.alpha = alpha

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        # The loss is a mean per task, so `num_items_in_batch` (a token count for sum-reduced
        # losses under gradient accumulation) does not apply.
        task = inputs.pop("task")
        outputs = model(**inputs)
        loss = multitask_loss(outputs.logits, inputs["labels"], task, self.alpha)
        return (loss, outputs) if return_outputs else loss

    def prediction_step(  # type: ignore[override]  # Trainer and Seq2SeqTrainer disagree on the loss type
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
        **gen_kwargs: Any,
    ) -> tuple[float | None, torch.Tensor | None, torch.Tensor | None]:
        inputs = {k: v for k, v in inputs.items() if k != "task"}  # generate() must not see it
        return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys, **gen_kwargs)


class LogToStderr(TrainerCallback):
    """Training logs to the `labelmill` logger (stderr), not stdout."""

    def on_log(self, args: Any, state: TrainerState, control: TrainerControl, logs: Any = None, **kwargs: Any) -> None:
        if logs:
            log.info("step %d: %s", state.global_step, ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else
                                                                  f"{k} {v}" for k, v in logs.items()))  # fmt: skip


def accuracy_metric(tokenizer: PreTrainedTokenizerBase) -> Any:
    def compute(prediction: EvalPrediction) -> dict[str, float]:
        predicted = np.asarray(prediction.predictions)
        gold = np.asarray(prediction.label_ids)
        predicted = np.where(predicted < 0, tokenizer.pad_token_id, predicted)
        gold = np.where(gold < 0, tokenizer.pad_token_id, gold)
        guesses = tokenizer.batch_decode(predicted, skip_special_tokens=True)
        answers = tokenizer.batch_decode(gold, skip_special_tokens=True)
        hits = sum(g.strip() == a.strip() for g, a in zip(guesses, answers, strict=True))
        return {"accuracy": hits / max(1, len(answers))}

    return compute


def train(config: TrainConfig) -> dict[str, Any]:
    """Train, keep the best checkpoint by validation accuracy, save model + tokenizer + config."""
    started = time.monotonic()
    records = load_records(config.shards)
    if config.eval_split:
        train_records, valid_records = records, load_records(config.eval_split)
    else:
        train_records, valid_records = split(records, config.validation_fraction)
    rows = to_rows(train_records, config.labels, config.explanation_rate)
    valid_rows = [r for r in to_rows(valid_records, config.labels, 0.0) if r.task == TASK_LABEL]
    rationale_rows = sum(r.task == TASK_RATIONALE for r in rows)
    notes = []
    if rationale_rows == 0:
        notes.append("no record has a kept rationale: training the label task alone")
        log.info(notes[-1])
    texts = [r.source for r in rows] + [r.target for r in rows]
    model, tokenizer = build_student(config.student, texts)
    model_dir = Path(config.out_dir)
    args = training_arguments(config, model_dir)
    trainer = DistillTrainer(
        model=model,
        args=args,
        train_dataset=Rows(rows, tokenizer, config),
        eval_dataset=Rows(valid_rows, tokenizer, config),
        data_collator=Collator(int(tokenizer.pad_token_id)),
        processing_class=tokenizer,
        compute_metrics=accuracy_metric(tokenizer),
        alpha=config.alpha,
    )
    trainer.remove_callback(PrinterCallback)  # it prints to stdout, which belongs to --json
    trainer.add_callback(LogToStderr())
    resume = config.resume and any((model_dir / "checkpoints").glob("checkpoint-*"))
    result = trainer.train(resume_from_checkpoint=True if resume else None)
    final = trainer.evaluate()
    save(cast(PreTrainedModel, trainer.model), tokenizer, config, model_dir)
    seconds = time.monotonic() - started
    history = [h for h in trainer.state.log_history if "loss" in h]
    return {
        "steps": trainer.state.global_step,
        "train_rows": len(rows),
        "rationale_rows": rationale_rows,
        "first_loss": history[0]["loss"] if history else None,
        "last_loss": history[-1]["loss"] if history else None,
        "train_loss": result.training_loss,
        "best_validation_accuracy": trainer.state.best_metric,
        "validation_accuracy": final.get("eval_accuracy"),
        "seconds": round(seconds, 2),
        "examples_per_s": round(result.metrics.get("train_samples_per_second", 0.0), 1),
        "model_dir": str(model_dir),
        "notes": notes,
    }


def training_arguments(config: TrainConfig, model_dir: Path) -> Seq2SeqTrainingArguments:
    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return Seq2SeqTrainingArguments(
        output_dir=str(model_dir / "checkpoints"),
        max_steps=config.max_steps,
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accumulation,
        learning_rate=config.lr(),
        seed=config.seed,
        bf16=bf16,
        eval_strategy="steps",
        eval_steps=config.eval_steps,
        save_strategy="steps",
        save_steps=config.eval_steps,
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model="accuracy",
        greater_is_better=True,
        predict_with_generate=True,
        generation_max_length=config.max_target_tokens,
        train_sampling_strategy="group_by_length",
        remove_unused_columns=False,
        logging_steps=max(1, min(50, config.eval_steps // 4)),
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
    )


def save(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, config: TrainConfig, model_dir: Path) -> None:
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    (model_dir / CONFIG_FILE).write_text(json.dumps(asdict(config), indent=2) + "\n", encoding="utf-8")
