"""train, evaluate, predict and bench distill (torch and transformers are imported only inside them)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from labelmill._exceptions import UsageError
from labelmill.cli._base import handle_errors, main, print_json, setup_logging
from labelmill.cli._tools import bench
from labelmill.engine import (
    load_task,
)

_DEFAULTS: dict[str, Any] = {  # TrainConfig's defaults, without importing torch for --help
    "epochs": 10.0, "batch_size": 16, "warmup": 0.02, "threads": 2,
}  # fmt: skip


def train_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The training options `train` and `bench distill` share."""
    options = [
        click.option("--student", default="scratch:tiny", show_default=True,
                     help="scratch:tiny|scratch:small|HF id|path"),
        click.option("--max-steps", type=int, default=-1, show_default=True, help="-1: train --epochs epochs."),
        click.option("--epochs", type=click.FloatRange(min=0, min_open=True), default=_DEFAULTS["epochs"],
                     show_default=True),
        click.option("--batch-size", type=click.IntRange(1), default=_DEFAULTS["batch_size"], show_default=True,
                     help="Per process; the global batch is this x processes x --grad-accumulation."),
        click.option("--grad-accumulation", type=click.IntRange(1), default=1, show_default=True),
        click.option("--lr", "learning_rate", type=float, default=None, help="Default: 5e-5, or 1e-3 from scratch."),
        click.option("--warmup", type=click.FloatRange(0, 1, max_open=True), default=_DEFAULTS["warmup"],
                     show_default=True, help="Fraction of the steps that warm the learning rate up."),
        click.option("--eval-steps", type=click.IntRange(1), default=None,
                     help="Validate and checkpoint every N steps (default: about 10 times a run)."),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


@main.command()
@click.argument("shards", metavar="SHARDS")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Model directory.")
@click.option("--alpha", type=click.FloatRange(0, 1), default=0.5, show_default=True, help="Weight of the label loss.")
@click.option("--labels", type=click.Choice(["teacher", "gold"]), default="teacher", show_default=True)
@click.option("--explanation-rate", type=click.FloatRange(0, 1), default=1.0, show_default=True,
              help="Keep rationales for this deterministic fraction of the records.")  # fmt: skip
@click.option("--rationale-words", type=click.IntRange(1), default=None, help="Cut rationales to N words.")
@click.option("--rationale-filter", type=click.Choice(["all", "consistent"]), default="all", show_default=True,
              help="consistent: leave out rationales whose stated conclusion contradicts their label.")  # fmt: skip
@train_options
@click.option("--eval-split", type=click.Path(exists=True), default=None, help="Validation shards.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint in --out.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary on stdout.")
@handle_errors
def train(shards: str, out_dir: str, as_json: bool, **options: Any) -> None:
    """Distil a T5 student on labels and rationales from SHARDS (distilling step-by-step).

    Several processes: run it under `torchrun --nproc-per-node N -m labelmill train ...` or
    `accelerate launch -m labelmill train ...`; only the main process writes and prints."""
    from labelmill.trainer import TrainConfig
    from labelmill.trainer import train as train_student

    setup_logging(as_json)
    summary = train_student(TrainConfig(shards=shards, out_dir=out_dir, **options))
    if not summary["main_process"]:
        return
    for note in summary["notes"]:
        click.echo(f"labelmill: note: {note}", err=True)
    if as_json:
        print_json(summary)
    else:
        click.echo(f"{summary['steps']} steps, loss {summary['first_loss']} -> {summary['last_loss']}, "
                   f"best validation accuracy {summary['best_validation_accuracy']} (step {summary['best_step']}), "
                   f"{summary['seconds']} s; saved to {out_dir}")  # fmt: skip


def _floats(value: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r}: give comma-separated numbers, e.g. 0,0.1,0.33,1") from None


def _ints(value: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        message = f"{value!r}: give comma-separated whole numbers, e.g. 100,300"
        raise click.BadParameter(message, param_hint=option) from None


@bench.command("distill")
@click.argument("shards", metavar="RUN")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Report directory.")
@click.option("--rates", default="0,0.1,0.33,1", show_default=True, help="Explanation rates to train at.")
@click.option("--seeds", type=click.IntRange(1), default=3, show_default=True, help="Seeds per setting.")
@click.option("--rationale-words", default="", help="Also train on rationales cut to these word counts, e.g. 10,20.")
@click.option("--sizes", default="", help="Train each setting on the first N examples (by id hash), e.g. 100,300.")
@click.option("--consistent", is_flag=True, help="Also rate 1 without rationales that contradict their label.")
@click.option("--eval-split", type=click.Path(exists=True), default=None,
              help="Held-out test shards (default: a 20% slice of RUN by id, never trained on).")  # fmt: skip
@click.option("--alpha", type=click.FloatRange(0, 1), default=0.5, show_default=True)
@train_options
@click.option("--keep-models", is_flag=True, help="Keep every trained student under DIR/runs/.")
@click.option("--json", "as_json", is_flag=True, help='Print {"rows": [...]} on stdout.')
@handle_errors
def bench_distill(shards: str, out_dir: str, rates: str, seeds: int, rationale_words: str, sizes: str,
                  consistent: bool, eval_split: str | None, alpha: float, student: str, keep_models: bool,
                  as_json: bool, **train: Any) -> None:  # fmt: skip
    """Held-out accuracy against annotation dollars: several explanation rates, label-only, seeds."""
    from labelmill.trainer import SweepConfig, run_sweep

    setup_logging(False)
    words = _ints(rationale_words, "--rationale-words")
    config = SweepConfig(shards=shards, out_dir=out_dir, student=student, rates=_floats(rates), seeds=seeds,
                         rationale_words=words, eval_split=eval_split, alpha=alpha, train=train,
                         keep_models=keep_models, sizes=_ints(sizes, "--sizes"), consistent=consistent)  # fmt: skip
    report = run_sweep(config)
    if as_json:
        print_json({"rows": report["rows"]})
    else:
        click.echo((Path(out_dir) / "report.md").read_text(encoding="utf-8"))


def _items(source: str, task_spec: str | None) -> Iterator[Any]:
    """Rows as student inputs: rendered by --task, or taken from a `text` field (shard records)."""
    from labelmill.engine.tasks import iter_rows
    from labelmill.trainer import Item

    task = load_task(task_spec) if task_spec else None
    for row in iter_rows(source):
        if row.data is None:
            raise UsageError(f"{row.file}:{row.line}: {row.error}")
        if task is not None:
            try:
                example = task.render(row.data, row.index)
            except ValueError as exc:
                raise UsageError(f"{row.file}:{row.line}: {exc}") from None
            yield Item(example.id, example.text, example.gold, example.choices)
        elif isinstance(row.data.get("text"), str):
            gold = row.data.get("gold")
            yield Item(str(row.data.get("id", row.index)), row.data["text"], gold, row.data.get("choices"))
        else:
            raise UsageError(f"{row.file}:{row.line}: no `text` field: give --task to render the rows")


@main.command()
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("source", metavar="INPUT")
@click.option("--task", "task_spec", required=True, help="Built-in task or TOML file, to render INPUT and its gold.")
@click.option("--explain", is_flag=True, help="Also generate rationales.")
@click.option("--predictions", type=click.Path(dir_okay=False), default=None,
              help="Where to write predictions JSONL (default: MODEL_DIR/predictions.jsonl).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary on stdout.")
@handle_errors
def evaluate(model_dir: str, source: str, task_spec: str, explain: bool, predictions: str | None,
             as_json: bool) -> None:  # fmt: skip
    """Exact-match label accuracy on INPUT's gold labels (plus rank classification for multiple choice)."""
    from labelmill.trainer import evaluate as evaluate_student

    summary, rows = evaluate_student(model_dir, _items(source, task_spec), explain)
    target = Path(predictions or Path(model_dir) / "predictions.jsonl")
    target.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    summary["predictions"] = str(target)
    if as_json:
        print_json(summary)
    else:
        click.echo(" ".join(f"{k}={v}" for k, v in summary.items()))


@main.command()
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("source", metavar="INPUT")
@click.option("--task", "task_spec", default=None, help="Render rows with a task (default: their `text` field).")
@click.option("--explain", is_flag=True, help="Also generate rationales.")
@handle_errors
def predict(model_dir: str, source: str, task_spec: str | None, explain: bool) -> None:
    """JSONL of labels (and rationales with --explain) on stdout, streamed."""
    from labelmill.trainer import Student

    for row in Student(model_dir).predict(_items(source, task_spec), explain):
        click.echo(json.dumps(row, ensure_ascii=False))
