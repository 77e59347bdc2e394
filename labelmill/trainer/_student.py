"""The student: a Hugging Face seq2seq model (id or local path), or a T5 built from a config.

`scratch:tiny` / `scratch:small` need no network: a Unigram tokenizer is trained on the shards'
text with the `tokenizers` library and saved with the model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
)

from labelmill._exceptions import UsageError

SPECIALS = ["<pad>", "</s>", "<unk>"]


@dataclass(frozen=True, slots=True)
class ScratchSize:
    d_model: int
    d_ff: int
    layers: int
    heads: int
    vocab: int
    dropout: float = 0.1


SCRATCH = {
    # Sized to learn a generated task of a couple of thousand rows in a few CPU minutes (README,
    # "Distil a student"). Without dropout: on rows this few it slowed learning more than it
    # curbed memorising, in our measurements.
    "scratch:tiny": ScratchSize(d_model=128, d_ff=256, layers=2, heads=16, vocab=2000, dropout=0.0),
    "scratch:small": ScratchSize(d_model=512, d_ff=2048, layers=6, heads=8, vocab=16000),  # about t5-small
}


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A Unigram tokenizer on `texts`; the same texts give the same tokenizer."""
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS, unk_token="<unk>", show_progress=False
    )
    tokenizer.train_from_iterator(list(texts), trainer=trainer)
    # The trainer orders pieces of equal score as its hash maps iterate, which differs run to run:
    # renumber them by (score, piece) so the same texts always give the same ids.
    pieces = json.loads(tokenizer.to_str())["model"]["vocab"]
    specials = [p for p in pieces if p[0] in SPECIALS]
    ordered = specials + sorted((p for p in pieces if p[0] not in SPECIALS), key=lambda p: (-p[1], p[0]))
    tokenizer.model = models.Unigram([(piece, score) for piece, score in ordered], unk_id=SPECIALS.index("<unk>"))
    eos = tokenizer.token_to_id("</s>")
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", eos)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def build_student(student: str, texts: Iterable[str]) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A new scratch T5 with a tokenizer trained on `texts`, or a pretrained model and its tokenizer."""
    if student in SCRATCH:
        tokenizer = train_tokenizer(texts, SCRATCH[student].vocab)
        return scratch_model(student, tokenizer), tokenizer
    if student.startswith("scratch:"):
        raise UsageError(f"unknown scratch student {student!r}: use {', '.join(SCRATCH)} or a model id or path")
    return load_student(student)


def scratch_model(student: str, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    """A freshly initialised T5 of the `student` size over `tokenizer`'s vocabulary."""
    size = SCRATCH[student]
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=size.d_model,
        d_ff=size.d_ff,
        d_kv=size.d_model // size.heads,
        num_layers=size.layers,
        num_decoder_layers=size.layers,
        num_heads=size.heads,
        dropout_rate=size.dropout,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config.decoder_start_token_id = tokenizer.pad_token_id  # T5's convention
    return T5ForConditionalGeneration(config)


def load_tokenizer(path: str) -> PreTrainedTokenizerBase:
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot load a tokenizer from {path!r}: {exc}") from exc


def load_student(path: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSeq2SeqLM.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot load a seq2seq model from {path!r}: {exc}") from exc
    return model, tokenizer
