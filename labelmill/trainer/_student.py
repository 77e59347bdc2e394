"""The student: a Hugging Face seq2seq model (id or local path), or a T5 built from a config.

`scratch:tiny` / `scratch:small` need no network: a BPE tokenizer is trained on the shards'
text with the `tokenizers` library and saved with the model.
"""

from __future__ import annotations

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
    """A BPE tokenizer on `texts`; the same texts give the same tokenizer, in any process.

    BPE, not Unigram: on a corpus of a few thousand rows the Unigram trainer stopped at a few hundred
    pieces and spelled most words letter by letter ("Neptune" as 7 pieces), so the student had to
    learn each word's meaning from its letters and copy answers out piece by piece. BPE merges every
    word seen twice into one piece (up to `vocab_size`); its merges are ordered by count, then by
    the pair, so the result does not depend on hash-map order. Punctuation is split off words, so
    "planet;" and "planet" share a piece."""
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation()])
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIALS, show_progress=False)
    tokenizer.train_from_iterator(list(texts), trainer=trainer)
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
