"""Distil a seq2seq student on label + rationale rows with the Hugging Face Trainer (transformers v5).

One forward pass per batch over label and rationale rows together (the reference recipe runs two,
one per task, over inputs padded to a fixed length); dynamic padding, length-grouped batches, label
padding -100, bf16 on CUDA. The best checkpoint is chosen by validation label accuracy (generated
labels, exact match), never by the test set, and reloaded with `from_pretrained`, which re-ties the
shared embeddings.

Several processes: under `torchrun --nproc-per-node N` or `accelerate launch` the Trainer runs DDP
(gloo on CPU, nccl on GPU) as one logical run with a global batch of `batch_size x N`. The main
process trains a scratch student's tokenizer and the others load it; only the main process writes
the model, `labelmill.json` and the summary.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import torch
from transformers import (
    AutoModelForSeq2SeqLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PrinterCallback,
    Seq2SeqTrainingArguments,
    TrainerCallback,
    set_seed,
)
from transformers.utils import logging as hf_logging

from labelmill._exceptions import UsageError
from labelmill.trainer._data import TASK_LABEL, TASK_RATIONALE, Row, keeps_rationale, load_records, split, to_rows
from labelmill.trainer._distill import Collator, DistillTrainer, LogToStderr, Rows, accuracy_metric
from labelmill.trainer._student import SCRATCH, build_student, load_tokenizer, scratch_model

log = logging.getLogger("labelmill")
CONFIG_FILE = "labelmill.json"


@dataclass(slots=True)
class TrainConfig:
    """Everything a training run depends on; saved as MODEL_DIR/labelmill.json.

    The defaults are the recipe that learns the generated tasks from scratch on a CPU (see the
    README's trainer section for what they were measured on); for a pretrained student, the paper's
    5e-5 learning rate replaces the scratch one."""

    shards: str
    out_dir: str
    student: str = "scratch:tiny"
    alpha: float = 0.5
    labels: str = "teacher"  # or "gold"
    explanation_rate: float = 1.0
    rationale_words: int | None = None  # cut rationales to their first N words
    rationale_filter: str = "all"  # or "consistent": leave out rationales that contradict their label
    max_steps: int = -1  # -1: train `epochs` epochs
    epochs: float = 10.0
    batch_size: int = 16  # per process; the global batch is this x processes x grad_accumulation
    grad_accumulation: int = 1
    learning_rate: float | None = None  # None: 5e-5 (the paper's) for pretrained students, 1e-3 from scratch
    warmup: float = 0.02  # fraction of the steps spent warming the learning rate up
    weight_decay: float = 0.0
    eval_split: str | None = None  # shards to validate on; default: a 10% slice of SHARDS by id
    validation_fraction: float = 0.1
    eval_steps: int | None = None  # None: about 10 evaluations over the run
    max_source_tokens: int = 512
    max_target_tokens: int = 128
    seed: int = 0
    # CPU threads for torch while training. Part of the recipe: a float sum split over another
    # number of threads rounds differently, so the same seed gives the same student only at the
    # same count. None: leave torch's setting alone.
    threads: int | None = 2
    resume: bool = False

    def lr(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 1e-3 if self.student in SCRATCH else 5e-5


def train(config: TrainConfig, callbacks: list[TrainerCallback] | None = None) -> dict[str, Any]:
    """Train, reload the best checkpoint by validation accuracy, save model + tokenizer + config.

    Returns the run's summary on every process; `summary["main_process"]` says which one should
    report it."""
    with recipe_settings(config.threads):
        return _train(config, callbacks)


def _train(config: TrainConfig, callbacks: list[TrainerCallback] | None) -> dict[str, Any]:
    started = time.monotonic()
    set_seed(config.seed)
    train_rows, valid_rows, notes = prepare_rows(config)
    model_dir = Path(config.out_dir)
    args = training_arguments(config, model_dir, len(train_rows))
    model, tokenizer = make_student(config, args, train_rows, model_dir)
    trainer = DistillTrainer(
        model=model,
        args=args,
        train_dataset=Rows(train_rows, tokenizer, config.max_source_tokens, config.max_target_tokens),
        eval_dataset=Rows(valid_rows, tokenizer, config.max_source_tokens, config.max_target_tokens),
        data_collator=Collator(int(tokenizer.pad_token_id)),
        processing_class=tokenizer,
        compute_metrics=accuracy_metric(tokenizer),
        callbacks=callbacks,
        alpha=config.alpha,
    )
    trainer.remove_callback(PrinterCallback)  # it prints to stdout, which belongs to --json
    trainer.add_callback(LogToStderr())
    resume = config.resume and any((model_dir / "checkpoints").glob("checkpoint-*"))
    result = trainer.train(resume_from_checkpoint=True if resume else None)
    best = restore_best(trainer)
    digests = every_process(weights_digest(best), args.world_size)
    if trainer.is_world_process_zero():
        save(best, tokenizer, config, model_dir, args.world_size)
    history = [h for h in trainer.state.log_history if "loss" in h]
    return {
        "main_process": trainer.is_world_process_zero(),
        "process_index": args.process_index,
        "world_size": args.world_size,
        "global_batch_size": config.batch_size * config.grad_accumulation * args.world_size,
        "steps": trainer.state.global_step,
        "train_rows": len(train_rows),
        "rationale_rows": sum(r.task == TASK_RATIONALE for r in train_rows),
        "validation_rows": len(valid_rows),
        "first_loss": history[0]["loss"] if history else None,
        "last_loss": history[-1]["loss"] if history else None,
        "train_loss": result.training_loss,
        "best_step": trainer.state.best_global_step,
        "best_validation_accuracy": trainer.state.best_metric,
        "seconds": round(time.monotonic() - started, 2),
        "examples_per_s": round(result.metrics.get("train_samples_per_second", 0.0), 1),
        "peak_gpu_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1)
        if torch.cuda.is_available()
        else None,
        "weights_sha256": digests[args.process_index],
        "weights_sha256_by_process": digests,  # one value repeated: every process holds the same model
        "model_dir": str(model_dir),
        "notes": notes,
    }


@contextmanager
def recipe_settings(threads: int | None) -> Iterator[None]:
    """For the block: torch's intra-op thread count, on a CPU deterministic kernels (free there; on
    CUDA some ops have none, and it would fail them), and no HF progress bars. All are restored
    after it: they are the process's settings, not ours."""
    before = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    bars = hf_logging.is_progress_bar_enabled()
    if threads is not None:
        torch.set_num_threads(threads)
    if not torch.cuda.is_available():
        torch.use_deterministic_algorithms(True)
    hf_logging.disable_progress_bar()  # progress goes to our own stderr lines
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        torch.use_deterministic_algorithms(before[1])
        if bars:
            hf_logging.enable_progress_bar()


def prepare_rows(config: TrainConfig) -> tuple[list[Row], list[Row], list[str]]:
    """The training rows (both tasks) and the validation rows (label task only), with notes."""
    records = load_records(config.shards)
    notes: list[str] = []
    if config.eval_split:
        train_records, valid_records = records, load_records(config.eval_split)
    else:
        train_records, valid_records, note = split(records, config.validation_fraction)
        if note:
            notes.append(note)
    if config.rationale_filter not in ("all", "consistent"):
        raise UsageError(f"--rationale-filter is all or consistent, not {config.rationale_filter!r}")
    consistent = config.rationale_filter == "consistent"
    train_rows = to_rows(train_records, config.labels, config.explanation_rate, config.rationale_words, consistent)
    if consistent:
        dropped = sum(1 for r in train_records if r.rationale and r.rationale_agrees is False
                      and keeps_rationale(r.id, config.explanation_rate))  # fmt: skip
        notes.append(f"--rationale-filter consistent left out {dropped} rationales that contradict their label")
    valid_rows = [r for r in to_rows(valid_records, config.labels, 0.0) if r.task == TASK_LABEL]
    if not any(r.task == TASK_RATIONALE for r in train_rows):
        notes.append("no record has a kept rationale: training the label task alone")
    for note in notes:
        log.info(note)
    return train_rows, valid_rows, notes


def make_student(
    config: TrainConfig, args: Seq2SeqTrainingArguments, rows: list[Row], model_dir: Path
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The student and its tokenizer. A scratch tokenizer is trained once, by the main process, and
    saved to MODEL_DIR; the other processes wait for it and load it (as a resumed run does)."""
    resume = config.resume and (model_dir / "tokenizer.json").exists()
    texts = [r.source for r in rows] + [r.target for r in rows]
    if config.student not in SCRATCH or (args.world_size == 1 and not resume):
        return build_student(config.student, texts)
    with args.main_process_first(local=False, desc="the scratch student's tokenizer"):
        if args.process_index == 0 and not resume:
            model, tokenizer = build_student(config.student, texts)
            model_dir.mkdir(parents=True, exist_ok=True)
            tokenizer.save_pretrained(model_dir)
            return model, tokenizer
        tokenizer = load_tokenizer(str(model_dir))
    return scratch_model(config.student, tokenizer), tokenizer


def restore_best(trainer: DistillTrainer) -> PreTrainedModel:
    """The model of the best checkpoint, loaded the way a user loads it (ties re-made), else the last."""
    checkpoint = trainer.state.best_model_checkpoint
    model = cast(PreTrainedModel, trainer.model)
    if checkpoint is None or not Path(checkpoint).is_dir():
        return model
    log.info("best validation accuracy %.4f at step %s: restoring %s", trainer.state.best_metric or 0.0,
             trainer.state.best_global_step, checkpoint)  # fmt: skip
    best = AutoModelForSeq2SeqLM.from_pretrained(checkpoint)
    return cast(PreTrainedModel, best.to(model.device))


def every_process(value: str, world_size: int) -> list[str]:
    """`value` as each process has it, in process order."""
    if world_size == 1:
        return [value]
    gathered: list[Any] = [None] * world_size
    torch.distributed.all_gather_object(gathered, value)
    return [str(v) for v in gathered]


def weights_digest(model: PreTrainedModel) -> str:
    """sha256 over the model's tensors in name order: equal digests, equal weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def training_arguments(config: TrainConfig, model_dir: Path, train_rows: int) -> Seq2SeqTrainingArguments:
    cuda = torch.cuda.is_available()
    if config.eval_steps is not None and config.eval_steps < 1:
        raise UsageError("--eval-steps must be at least 1")
    interval = config.eval_steps or eval_interval(config, train_rows)
    return Seq2SeqTrainingArguments(
        output_dir=str(model_dir / "checkpoints"),
        max_steps=config.max_steps,
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=max(config.batch_size, 64),
        gradient_accumulation_steps=config.grad_accumulation,
        learning_rate=config.lr(),
        warmup_steps=config.warmup,
        weight_decay=config.weight_decay,
        seed=config.seed,
        bf16=cuda and torch.cuda.is_bf16_supported(),
        # Without this, accelerate on a CPU-only machine opens a gloo group under torchrun but
        # reports no distributed mode, and every process trains alone.
        use_cpu=not cuda,
        ddp_backend="gloo" if not cuda and launched_processes() > 1 else None,
        ddp_find_unused_parameters=False,  # a T5 uses every parameter on every step
        eval_strategy="steps",
        eval_steps=interval,
        save_strategy="steps",
        save_steps=interval,
        save_total_limit=2,  # the best checkpoint is always kept besides the last
        metric_for_best_model="accuracy",
        greater_is_better=True,
        predict_with_generate=True,
        generation_max_length=config.max_target_tokens,
        train_sampling_strategy="group_by_length",
        remove_unused_columns=False,
        logging_steps=max(1, min(25, planned_steps(config, train_rows) // 4)),
        logging_first_step=True,  # the summary's first_loss
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=cuda,
    )


def launched_processes() -> int:
    """How many processes torchrun or accelerate launched (their WORLD_SIZE; the group is not up yet)."""
    return max(1, int(os.environ.get("WORLD_SIZE", "1")))


def planned_steps(config: TrainConfig, train_rows: int) -> int:
    if config.max_steps > 0:
        return config.max_steps
    per_epoch = -(-train_rows // (config.batch_size * config.grad_accumulation * launched_processes()))
    return max(1, int(per_epoch * config.epochs))


def eval_interval(config: TrainConfig, train_rows: int) -> int:
    """About ten evaluations (and checkpoints) over the run, and never fewer than 20 steps apart."""
    steps = planned_steps(config, train_rows)
    return max(20, steps // 10) if steps >= 40 else steps


def save(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, config: TrainConfig, model_dir: Path, world_size: int
) -> None:
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    saved = {**asdict(config), "world_size": world_size}
    (model_dir / CONFIG_FILE).write_text(json.dumps(saved, indent=2) + "\n", encoding="utf-8")
