"""The pieces the Hugging Face Trainer is given: tokenized rows, the collator, the multi-task trainer.

`DistillTrainer` is a `Seq2SeqTrainer` with two changes: the masked multi-task loss (`_loss.py`),
normalised over the rows of the whole optimizer step (all micro-batches, all ranks), and a
prediction step that keeps the `task` column away from `generate()`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from transformers import (
    EvalPrediction,
    PreTrainedTokenizerBase,
    Seq2SeqTrainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
)

from labelmill.trainer._data import Row
from labelmill.trainer._loss import multitask_loss, task_counts

log = logging.getLogger("labelmill")


class Rows(Dataset[dict[str, Any]]):
    """Tokenized rows; padding happens per batch in `Collator`."""

    def __init__(self, rows: list[Row], tokenizer: PreTrainedTokenizerBase, max_source: int, max_target: int) -> None:
        sources = tokenizer([r.source for r in rows], truncation=True, max_length=max_source)["input_ids"]
        targets = tokenizer(text_target=[r.target for r in rows], truncation=True, max_length=max_target)["input_ids"]
        self.items = [
            {"input_ids": ids, "labels": target, "task": row.task}
            for ids, target, row in zip(sources, targets, rows, strict=True)
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.items[index]


class Collator:
    """Pads sources with the pad id and targets with -100 (ignored by the loss), per batch."""

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
    """Seq2SeqTrainer with the masked multi-task loss, normalised per optimizer step."""

    def __init__(self, *args: Any, alpha: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.alpha = alpha
        # compute_loss returns each micro-batch's share of the step's loss (see get_batch_samples),
        # so training_step must not divide it by the accumulation steps again.
        self.loss_is_scaled_for_ga = True

    def get_batch_samples(
        self, epoch_iterator: Iterator[Any], num_batches: int, device: torch.device
    ) -> tuple[list[Any], torch.Tensor | int | None]:
        """The step's micro-batches, and in place of a token count: the rows of each task over the
        whole step, summed over every rank."""
        batches, _ = super().get_batch_samples(epoch_iterator, num_batches, device)
        if not batches:
            return batches, None
        counts = task_counts(batches).to(device)
        if self.args.world_size > 1:
            counts = self.accelerator.reduce(counts, reduction="sum")
        return batches, counts

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        task = inputs.pop("task")
        outputs = model(**inputs)
        step_counts = num_items_in_batch if isinstance(num_items_in_batch, torch.Tensor) else None
        if step_counts is not None and step_counts.numel() != 2:
            step_counts = None  # an evaluation call: a token count, not ours; use the batch's own means
        loss = multitask_loss(outputs.logits, inputs["labels"], task, self.alpha, step_counts)
        if step_counts is not None and self.args.world_size > 1:
            loss = loss * self.args.world_size  # DDP averages gradients over ranks; the counts are global
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
    """Training logs to the `labelmill` logger (stderr), not stdout; only the main process logs."""

    def on_log(self, args: Any, state: TrainerState, control: TrainerControl, logs: Any = None, **kwargs: Any) -> None:
        if logs and state.is_world_process_zero:
            shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in logs.items())
            log.info("step %d/%d: %s", state.global_step, state.max_steps, shown)


def accuracy_metric(tokenizer: PreTrainedTokenizerBase) -> Any:
    """Exact match of generated labels against the validation rows' targets."""

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
