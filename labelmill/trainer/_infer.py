"""Evaluate and predict with a trained student."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.modeling_outputs import BaseModelOutput

from labelmill.trainer._allocator import keep_freed_memory
from labelmill.trainer._data import LABEL_PREFIX, RATIONALE_PREFIX
from labelmill.trainer._decode import greedy
from labelmill.trainer._student import load_student


@dataclass(frozen=True, slots=True)
class Item:
    id: str
    text: str
    gold: str | None = None
    choices: list[str] | None = None


class Student:
    """A trained student, on the fast path: batches sorted by length (little padding), no grad,
    greedy decoding with the KV cache in a loop of its own (`_decode.py`), and every choice of a
    batch scored in one decoder pass over the batch's encoder states (each text is encoded once,
    not once per choice). Making one tunes the process's allocator (`_allocator.py`)."""

    def __init__(self, model_dir: str, batch_size: int = 128, max_new_tokens: int = 128) -> None:
        keep_freed_memory()
        self.model: PreTrainedModel
        self.tokenizer: PreTrainedTokenizerBase
        self.model, self.tokenizer = load_student(model_dir)
        self.model.eval()
        # T5's attention adds a relative position bias. Under sdpa that bias is expanded into a
        # batch x heads x length x length mask, made contiguous, in every layer: at a student's
        # sizes that costs more than eager's matmuls (demo student: 1.3x the predictions/s eager).
        self.model.set_attn_implementation("eager")
        # A saved generation_config.json spells out every default, max_length 20 among them, and
        # generate() then warns on each call that max_new_tokens overrides it: bound by that alone.
        self.model.generation_config.max_length = None
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens

    @torch.inference_mode()
    def generate(self, sources: list[str]) -> list[str]:
        encoded = self.tokenizer(sources, return_tensors="pt", padding=True, truncation=True, max_length=512)
        output = greedy(self.model, encoded["input_ids"], encoded["attention_mask"], self.max_new_tokens)
        return [s.strip() for s in self.tokenizer.batch_decode(output, skip_special_tokens=True)]

    @torch.inference_mode()
    def choice_scores(self, texts: list[str], choices: list[list[str]]) -> list[torch.Tensor]:
        """Each choice's summed log-likelihood as the label of its text, for a batch of texts."""
        encoded = self.tokenizer([LABEL_PREFIX + t for t in texts], return_tensors="pt", padding=True,
                                 truncation=True, max_length=512)  # fmt: skip
        states = self.model.get_encoder()(**encoded).last_hidden_state
        counts = torch.tensor([len(c) for c in choices])
        owner = torch.repeat_interleave(torch.arange(len(texts)), counts)
        targets = self.tokenizer(text_target=[c for cs in choices for c in cs], return_tensors="pt", padding=True)
        labels = targets["input_ids"].masked_fill(targets["input_ids"] == self.tokenizer.pad_token_id, -100)
        logits = self.model(encoder_outputs=BaseModelOutput(last_hidden_state=states[owner]),
                            attention_mask=encoded["attention_mask"][owner], labels=labels).logits  # fmt: skip
        logp = torch.log_softmax(logits.float(), dim=-1)
        picked = logp.gather(2, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * (labels != -100)
        return list(picked.sum(dim=1).split(counts.tolist()))

    def rank(self, texts: list[str], choices: list[list[str]]) -> list[str]:
        """The most likely choice of each text (rank classification), all of a batch in one pass."""
        if not texts:
            return []
        scores = self.choice_scores(texts, choices)
        return [options[int(score.argmax())] for options, score in zip(choices, scores, strict=True)]

    def predict(self, items: Iterable[Item], explain: bool) -> Iterator[dict[str, Any]]:
        """Predictions in input order; items are read a window at a time and batched by length."""
        window = self.batch_size * 16
        pending: list[Item] = []
        for item in items:
            pending.append(item)
            if len(pending) == window:
                yield from self._predict_window(pending, explain)
                pending = []
        if pending:
            yield from self._predict_window(pending, explain)

    def _predict_window(self, items: list[Item], explain: bool) -> Iterator[dict[str, Any]]:
        order = sorted(range(len(items)), key=lambda i: len(items[i].text))
        done: dict[int, dict[str, Any]] = {}
        for start in range(0, len(order), self.batch_size):
            picked = order[start : start + self.batch_size]
            for i, row in zip(picked, self._predict_batch([items[i] for i in picked], explain), strict=True):
                done[i] = row
        return (done[i] for i in range(len(items)))

    def _predict_batch(self, batch: list[Item], explain: bool) -> list[dict[str, Any]]:
        labels = self.generate([LABEL_PREFIX + item.text for item in batch])
        rationales = self.generate([RATIONALE_PREFIX + item.text for item in batch]) if explain else None
        with_choices = [i for i, item in enumerate(batch) if item.choices]
        ranked = self.rank([batch[i].text for i in with_choices], [batch[i].choices or [] for i in with_choices])
        ranked_of = dict(zip(with_choices, ranked, strict=True))
        rows = []
        for i, item in enumerate(batch):
            out: dict[str, Any] = {"id": item.id, "label": labels[i]}
            if rationales is not None:
                out["rationale"] = rationales[i]
            if item.choices:
                out["ranked_label"] = ranked_of[i]
            if item.gold is not None:
                out["gold"] = item.gold
            rows.append(out)
        return rows


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
