"""Evaluate and predict with a trained student."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from labelmill.trainer._data import LABEL_PREFIX, RATIONALE_PREFIX
from labelmill.trainer._student import load_student


@dataclass(frozen=True, slots=True)
class Item:
    id: str
    text: str
    gold: str | None = None
    choices: list[str] | None = None


class Student:
    def __init__(self, model_dir: str, batch_size: int = 32, max_new_tokens: int = 128) -> None:
        self.model: PreTrainedModel
        self.tokenizer: PreTrainedTokenizerBase
        self.model, self.tokenizer = load_student(model_dir)
        self.model.eval()
        # A saved generation_config.json spells out every default, max_length 20 among them, and
        # generate() then warns on each call that max_new_tokens overrides it: bound by that alone.
        self.model.generation_config.max_length = None
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens

    @torch.no_grad()
    def generate(self, sources: list[str]) -> list[str]:
        encoded = self.tokenizer(sources, return_tensors="pt", padding=True, truncation=True, max_length=512)
        model: Any = self.model
        output = model.generate(**encoded, max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1)
        return [s.strip() for s in self.tokenizer.batch_decode(output, skip_special_tokens=True)]

    @torch.no_grad()
    def rank(self, text: str, choices: list[str]) -> str:
        """The choice with the highest log-likelihood as the label of `text` (rank classification)."""
        encoded = self.tokenizer([LABEL_PREFIX + text] * len(choices), return_tensors="pt", padding=True)
        targets = self.tokenizer(text_target=choices, return_tensors="pt", padding=True)["input_ids"]
        targets = targets.masked_fill(targets == self.tokenizer.pad_token_id, -100)
        logits = self.model(**encoded, labels=targets).logits
        logp = torch.log_softmax(logits.float(), dim=-1)
        picked = logp.gather(2, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1) * (targets != -100)
        return choices[int(picked.sum(dim=1).argmax())]

    def predict(self, items: Iterable[Item], explain: bool) -> Iterator[dict[str, Any]]:
        batch: list[Item] = []
        for item in items:
            batch.append(item)
            if len(batch) == self.batch_size:
                yield from self._predict_batch(batch, explain)
                batch = []
        if batch:
            yield from self._predict_batch(batch, explain)

    def _predict_batch(self, batch: list[Item], explain: bool) -> Iterator[dict[str, Any]]:
        labels = self.generate([LABEL_PREFIX + item.text for item in batch])
        rationales = self.generate([RATIONALE_PREFIX + item.text for item in batch]) if explain else None
        for i, item in enumerate(batch):
            out: dict[str, Any] = {"id": item.id, "label": labels[i]}
            if rationales is not None:
                out["rationale"] = rationales[i]
            if item.choices:
                out["ranked_label"] = self.rank(item.text, item.choices)
            if item.gold is not None:
                out["gold"] = item.gold
            yield out


def evaluate(
    model_dir: str, items: Iterable[Item], explain: bool = False
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Exact-match accuracy of generated labels (and of rank classification for multiple choice)."""
    student = Student(model_dir)
    predictions = list(student.predict(items, explain))
    scored = [p for p in predictions if "gold" in p]
    summary: dict[str, Any] = {"examples": len(predictions), "with_gold": len(scored)}
    if scored:
        summary["accuracy"] = sum(p["label"] == p["gold"] for p in scored) / len(scored)
        ranked = [p for p in scored if "ranked_label" in p]
        if ranked:
            summary["rank_accuracy"] = sum(p["ranked_label"] == p["gold"] for p in ranked) / len(ranked)
    return summary, predictions
