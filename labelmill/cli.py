"""The `labelmill` command line: parses options, calls the library, prints.

Data goes to stdout (`--json`); progress and logs go to stderr. Exit codes: 0 done, 1 error,
2 usage error, 3 finished partially, 130 interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Callable, Coroutine, Iterator
from functools import wraps
from pathlib import Path
from typing import Any, NoReturn, ParamSpec, TypeVar

import click

from labelmill._exceptions import LabelmillError, UsageError
from labelmill._version import __version__
from labelmill.cache import ResponseStore, read_manifest
from labelmill.engine import (
    DEFAULT_BASE_URL,
    DEFAULT_MODEL,
    AnnotateConfig,
    RetryPolicy,
    RunResult,
    Task,
    load_task,
)
from labelmill.engine import annotate as annotate_corpus
from labelmill.engine._budget import Prices, resolve_prices
from labelmill.engine._config import DEFAULT_CONCURRENCY

P = ParamSpec("P")
R = TypeVar("R")

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3

DEFAULT_CACHE = ".labelmill-cache"


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"labelmill: error: {message}", err=True)
    sys.exit(code)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn library errors into a one-line message and the contract's exit code."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except UsageError as exc:
            _fail(str(exc), EXIT_USAGE)
        except LabelmillError as exc:
            _fail(str(exc), EXIT_ERROR)

    return wrapper


def run_async(coroutine: Coroutine[Any, Any, R]) -> R:
    """Run on uvloop where it is installed (less CPU per request), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, sort_keys=True))


def _not_built(name: str, issue: int) -> Callable[..., None]:
    def command(**_: Any) -> None:
        _fail(f"`labelmill {name}` is not built yet (issue {issue})", EXIT_USAGE)

    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="labelmill")
def main() -> None:
    """Annotate a corpus with a teacher LLM under a dollar budget, cache every response,
    and distil a small student model from the result."""


# -- cache ----------------------------------------------------------------------------------------
@main.group()
def cache() -> None:
    """Inspect the response store."""


cache_option = click.option(
    "--cache", "cache_dir", default=DEFAULT_CACHE, show_default=True, help="Response store directory."
)


@cache.command("stats")
@cache_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@handle_errors
def cache_stats(cache_dir: str, as_json: bool) -> None:
    """Entries and bytes in the store."""
    from labelmill.cache import ResponseStore

    with ResponseStore(cache_dir) as store:
        stats = store.stats()
    if as_json:
        print_json({"entries": stats.entries, "bytes": stats.bytes, "path": stats.path})
    else:
        click.echo(f"{stats.path}: {stats.entries} entries, {stats.bytes} bytes")


@cache.command("verify")
@cache_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@handle_errors
def cache_verify(cache_dir: str, as_json: bool) -> None:
    """Re-read every entry: it must parse and hash to its key. Exit 1 if any does not."""
    from labelmill.cache import ResponseStore

    with ResponseStore(cache_dir) as store:
        report = store.verify()
    if as_json:
        print_json({"checked": report.checked, "bad": [{"key": k, "error": e} for k, e in report.bad]})
    else:
        for key, error in report.bad:
            click.echo(f"{key}: {error}", err=True)
        click.echo(f"checked {report.checked} entries, {len(report.bad)} bad")
    if not report.ok:
        sys.exit(EXIT_ERROR)


# -- annotate / replay / mock-teacher -------------------------------------------------------------
def _setup_logging(quiet: bool) -> None:
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING if quiet else logging.INFO, format="labelmill: %(message)s"
    )


def _finish(result: RunResult, as_json: bool) -> None:
    for note in result.notes:
        click.echo(f"labelmill: {note}", err=True)
    if as_json:
        print_json(result.summary)
    else:
        s = result.summary
        click.echo(
            f"{s['examples']} examples: {s['records']} records, {s['failures']} failures, "
            f"{s['cache_hits']} from the store, {s['requests']} requests ({s['retries']} retries, "
            f"{s['rate_limited_429']} 429s), rationale rate {s['rationale_rate']:.2f}, "
            f"${s['dollars']:.4f} paid, {s['seconds']:.1f}s",
            err=True,
        )
    sys.exit(result.exit_code)


def _rate(value: str) -> float:
    if value == "auto":
        return 1.0  # without a budget, "auto" explains every example
    try:
        rate = float(value)
    except ValueError:
        raise UsageError(f"--rationale-rate must be 'auto' or a number in [0, 1], not {value!r}") from None
    if not 0 <= rate <= 1:
        raise UsageError(f"--rationale-rate must be between 0 and 1, not {rate}")
    return rate


@main.command()
@click.argument("source", metavar="INPUT")
@click.option("--task", "task_spec", required=True, help="Built-in task (cqa, nli, classify) or a TOML file.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help="Teacher model.")
@click.option("--base-url", envvar="OPENAI_BASE_URL", default=DEFAULT_BASE_URL, show_default=True)
@click.option("--api-key", envvar="OPENAI_API_KEY", default=None, help="Default: $OPENAI_API_KEY.")
@cache_option
@click.option("--budget", type=click.FloatRange(0), default=None, help="USD; spend never exceeds it.")
@click.option("--rationale-rate", "rate_text", default="auto", show_default=True,
              help="R in [0, 1], or auto: with --budget, the rate that spends it; without, 1.")  # fmt: skip
@click.option("--select", type=click.Choice(["random", "uncertainty"]), default="random", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--concurrency", type=click.IntRange(1, 4096), default=DEFAULT_CONCURRENCY, show_default=True)
@click.option("--rpm", type=float, default=None, help="Requests per minute the account allows.")
@click.option("--tpm", type=float, default=None, help="Tokens per minute the account allows.")
@click.option("--max-tokens", type=click.IntRange(1), default=None, help="Override the prompts' max_tokens.")
@click.option("--price-in", type=float, default=None, help="USD per 1M prompt tokens.")
@click.option("--price-out", type=float, default=None, help="USD per 1M completion tokens.")
@click.option("--prices", "prices_file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="TOML: [models.NAME] input = .. output = .. (USD per 1M tokens).")  # fmt: skip
@click.option("--limit", type=click.IntRange(0), default=None, help="Annotate only the first N rows.")
@click.option("--shard-size", type=click.IntRange(1), default=10_000, show_default=True)
@click.option("--timeout", "timeout_s", type=float, default=60.0, show_default=True, help="Seconds per attempt.")
@click.option("--attempts", type=click.IntRange(1), default=6, show_default=True, help="Attempts per request.")
@click.option(
    "--shots",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Few-shot label+rationale prompts: demonstrations from INPUT's gold answers and rationales.",
)
@click.option("--estimate", is_flag=True, help="Price the corpus without sending anything (issue 4).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary on stdout.")
@handle_errors
def annotate(source: str, task_spec: str, out_dir: str, cache_dir: str, rate_text: str, select: str,
             budget: float | None, estimate: bool, as_json: bool, timeout_s: float, attempts: int,
             price_in: float | None, price_out: float | None, prices_file: str | None,
             **options: Any) -> None:  # fmt: skip
    """Annotate INPUT (.jsonl, .csv, .parquet or - for stdin) with a teacher LLM into shards."""
    _setup_logging(as_json)
    prices = resolve_prices(options["model"], price_in, price_out, prices_file)
    if estimate:
        _print_estimate(source, load_task(task_spec), prices, cache_dir, options["limit"], budget, as_json)
        return
    auto = rate_text == "auto" and budget is not None
    config = AnnotateConfig(
        source=source, task=load_task(task_spec), out_dir=Path(out_dir), cache_dir=Path(cache_dir),
        rationale_rate=1.0 if auto else _rate(rate_text), auto_rate=auto and select == "random", budget=budget,
        prices=prices, select=select,
        timeout_s=timeout_s, retry=RetryPolicy(attempts=attempts), progress=not as_json, **options,
    )  # fmt: skip
    _finish(run_async(annotate_corpus(config)), as_json)


@main.command()
@click.argument("source", metavar="INPUT")
@click.option("--task", "task_spec", required=True, help="Built-in task (cqa, nli, classify) or a TOML file.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory.")
@cache_option
@click.option("--from", "from_dir", type=click.Path(file_okay=False), default=None,
              help="Take the request settings from this run's manifest (default: --out's, if any).")  # fmt: skip
@click.option("--model", default=None, help="Default: the manifest's, else " + DEFAULT_MODEL)
@click.option("--rationale-rate", "rate_text", default=None, help="Default: the manifest's, else 1.")
@click.option("--seed", type=int, default=None)
@click.option("--max-tokens", type=click.IntRange(1), default=None)
@click.option("--limit", type=click.IntRange(0), default=None, help="Replay only the first N rows.")
@click.option("--shard-size", type=click.IntRange(1), default=10_000, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary on stdout.")
@handle_errors
def replay(source: str, task_spec: str, out_dir: str, cache_dir: str, from_dir: str | None, model: str | None,
           rate_text: str | None, seed: int | None, max_tokens: int | None, limit: int | None, shard_size: int,
           as_json: bool) -> None:  # fmt: skip
    """Rebuild shards from the store alone, offline: opens no socket."""
    _setup_logging(as_json)
    settings = _manifest_settings(Path(from_dir or out_dir))
    config = AnnotateConfig(
        source=source, task=load_task(task_spec), out_dir=Path(out_dir), cache_dir=Path(cache_dir),
        model=model or settings.get("model") or DEFAULT_MODEL,
        rationale_rate=_rate(rate_text) if rate_text else float(settings.get("rationale_rate", 1.0)),
        seed=seed if seed is not None else int(settings.get("seed", 0)),
        max_tokens=max_tokens or settings.get("max_tokens"),
        auto_rate=rate_text is None and settings.get("selection") == "auto",
        select="uncertainty" if rate_text is None and settings.get("selection") == "uncertainty" else "random",
        temperature=float(settings.get("temperature", 0.0)),
        shard_size=shard_size, limit=limit, replay=True, progress=not as_json, shots=int(settings.get("shots", 0)),
    )  # fmt: skip
    _finish(run_async(annotate_corpus(config)), as_json)


def _print_estimate(source: str, task: Task, prices: Prices | None, cache_dir: str, limit: int | None,
                    budget: float | None, as_json: bool) -> None:  # fmt: skip
    """`annotate --estimate`: price the corpus; opens no socket."""
    from labelmill.engine._estimate import estimate_corpus

    store = ResponseStore(cache_dir) if Path(cache_dir).is_dir() else None
    try:
        result = estimate_corpus(source, task, prices, store=store, limit=limit, budget=budget).to_dict()
    finally:
        if store is not None:
            store.close()
    if as_json:
        print_json(result)
        return
    click.echo(f"{result['examples']} examples ({result['token_counting']})")
    for name, total in result["totals"].items():
        dollars = "unknown price" if total["dollars"] is None else f"${total['dollars']:.4f}"
        click.echo(f"  {name:>16}: {total['prompt_tokens']:,} prompt + {total['completion_tokens']:,} completion "
                   f"tokens, {dollars}")  # fmt: skip
    if result["plan"]:
        plan = result["plan"]
        click.echo(f"  auto plan for ${plan['budget']}: rationale rate {plan['rationale_rate']:.2f}, "
                   f"about ${plan['expected_dollars']:.4f}")  # fmt: skip


def _manifest_settings(out_dir: Path) -> dict[str, Any]:
    try:
        settings = read_manifest(out_dir).get("settings", {})
    except (OSError, ValueError):
        return {}
    return settings if isinstance(settings, dict) else {}


@main.command("mock-teacher")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8089, show_default=True, help="0 picks a free port.")
@click.option("--latency-ms", type=float, default=0.0, show_default=True)
@click.option("--jitter-ms", type=float, default=0.0, show_default=True)
@click.option("--rpm", type=int, default=None)
@click.option("--tpm", type=int, default=None)
@click.option("--error-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True)
@click.option("--drop-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True)
@click.option("--context-tokens", type=int, default=16_384, show_default=True)
@click.option("--rationale-words", type=int, default=24, show_default=True)
@click.option("--wrong-percent", type=click.IntRange(0, 100), default=15, show_default=True,
              help="On generated corpora, how often to answer at random.")  # fmt: skip
@click.option("--api-key", "require_key", default=None, help="Answer 401 to any other key.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--answers", type=click.Path(dir_okay=False, exists=True), default=None,
              help="JSONL of {\"contains\": ..., \"content\": ...} to replay real outputs.")  # fmt: skip
def mock_teacher(host: str, port: int, answers: str | None, require_key: str | None, **options: Any) -> None:
    """Serve a local OpenAI-compatible mock teacher (for tests, benchmarks and the demo)."""
    from labelmill.engine._mock import MockConfig, load_answers, serve

    config = MockConfig(api_key=require_key, answers=load_answers(answers) if answers else [], **options)
    with contextlib.suppress(KeyboardInterrupt):
        run_async(serve(config, host, port))


# -- commands of later issues ---------------------------------------------------------------------
@main.command("optimize-prompt")
@click.option("--task", "task_spec", required=True, help="Built-in task or TOML file whose prompt to tune.")
@click.option("--dev", required=True, type=click.Path(dir_okay=False, exists=True), help="Labelled dev rows (~25).")
@click.option("--rounds", type=click.IntRange(1), default=3, show_default=True)
@click.option("--candidates", type=click.IntRange(1), default=4, show_default=True, help="Proposals per round.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The best prompt, as a task TOML.")
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help="The scorer (teacher) model.")
@click.option("--base-url", envvar="OPENAI_BASE_URL", default=DEFAULT_BASE_URL, show_default=True)
@click.option("--optimizer-model", default=None, help="Default: --model.")
@click.option("--optimizer-base-url", default=None, help="Default: --base-url.")
@click.option("--api-key", envvar="OPENAI_API_KEY", default=None, help="Default: $OPENAI_API_KEY.")
@cache_option
@click.option("--budget", type=click.FloatRange(0), default=None, help="USD for the whole loop.")
@click.option("--price-in", type=float, default=None)
@click.option("--price-out", type=float, default=None)
@click.option("--cost-penalty", type=float, default=0.05, show_default=True, help="Score points per output token.")
@click.option("--length-target", type=float, default=25.0, show_default=True, help="Rationale words aimed at.")
@click.option("--length-penalty", type=float, default=0.5, show_default=True, help="Points per word off target.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary on stdout.")
@handle_errors
def optimize_prompt(task_spec: str, out: str, cache_dir: str, budget: float | None, price_in: float | None,
                    price_out: float | None, as_json: bool, **options: Any) -> None:  # fmt: skip
    """Tune the zero-shot label+rationale prompt with OPRO, weighing accuracy against cost."""
    from labelmill.engine._opro import OproConfig, Optimizer, write_outputs

    _setup_logging(as_json)
    prices = resolve_prices(options["model"], price_in, price_out)
    if budget is not None and prices is None:
        raise UsageError(f"a budget needs prices for {options['model']!r}: give --price-in and --price-out")
    config = OproConfig(task=load_task(task_spec), out=Path(out), cache_dir=Path(cache_dir), budget=budget,
                        prices=prices, **options)  # fmt: skip
    summary = write_outputs(config, run_async(Optimizer(config).run()))
    if as_json:
        print_json(summary)
    else:
        best = summary["best"]
        click.echo(f"best score {best['score']} (seed {summary['seed_score']}), accuracy {best['accuracy']}: "
                   f"{best['instruction']!r}\nwritten to {out}; history in {summary['history']}")  # fmt: skip


_PENDING: dict[str, tuple[str, int]] = {}


# -- train / evaluate / predict (torch and transformers are imported only here) ---------------------
@main.command()
@click.argument("shards", metavar="SHARDS")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Model directory.")
@click.option("--student", default="scratch:tiny", show_default=True, help="scratch:tiny|scratch:small|HF id|path")
@click.option("--alpha", type=click.FloatRange(0, 1), default=0.5, show_default=True, help="Weight of the label loss.")
@click.option("--labels", type=click.Choice(["teacher", "gold"]), default="teacher", show_default=True)
@click.option("--explanation-rate", type=click.FloatRange(0, 1), default=1.0, show_default=True,
              help="Keep rationales for this deterministic fraction of the records.")  # fmt: skip
@click.option("--max-steps", type=int, default=-1, show_default=True, help="-1: train --epochs epochs.")
@click.option("--epochs", type=float, default=3.0, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@click.option("--grad-accumulation", type=click.IntRange(1), default=1, show_default=True)
@click.option("--lr", "learning_rate", type=float, default=None, help="Default: 5e-5, or 1e-3 from scratch.")
@click.option("--eval-split", type=click.Path(exists=True), default=None, help="Validation shards.")
@click.option("--eval-steps", type=click.IntRange(1), default=200, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint in --out.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary on stdout.")
@handle_errors
def train(shards: str, out_dir: str, as_json: bool, **options: Any) -> None:
    """Distil a T5 student on labels and rationales from SHARDS (distilling step-by-step)."""
    from labelmill.trainer import TrainConfig
    from labelmill.trainer import train as train_student

    _setup_logging(as_json)
    summary = train_student(TrainConfig(shards=shards, out_dir=out_dir, **options))
    for note in summary["notes"]:
        click.echo(f"labelmill: note: {note}", err=True)
    if as_json:
        print_json(summary)
    else:
        click.echo(f"{summary['steps']} steps, loss {summary['first_loss']} -> {summary['last_loss']}, "
                   f"best validation accuracy {summary['best_validation_accuracy']}, {summary['seconds']} s; "
                   f"saved to {out_dir}")  # fmt: skip


def _items(source: str, task_spec: str | None) -> Iterator[Any]:
    """Rows as student inputs: rendered by --task, or taken from a `text` field (shard records)."""
    from labelmill.engine._input import iter_rows
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


def _register_pending(group: click.Group, table: dict[str, tuple[str, int]]) -> None:
    for name, (help_text, issue) in table.items():
        if name in group.commands:
            continue
        group.add_command(
            click.Command(
                name,
                callback=_not_built(name, issue),
                help=f"{help_text} (not built yet)",
                context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
                params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)],
            )
        )


@main.group()
def bench() -> None:
    """Benchmarks: annotation cost per example, engine speed."""


@bench.command("engine")
@click.option("--n", type=click.IntRange(1), default=3000, show_default=True, help="Requests.")
@click.option("--latency-ms", type=float, default=0.0, show_default=True, help="Mock teacher latency.")
@click.option("--concurrency", type=click.IntRange(1), default=64, show_default=True)
@click.option("--rpm", type=int, default=None, help="Server limit; the engine is told the same.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@handle_errors
def bench_engine(n: int, latency_ms: float, concurrency: int, rpm: int | None, as_json: bool) -> None:
    """Run `annotate` against a mock teacher in its own process; report req/s, CPU and memory."""
    import tempfile

    from labelmill.engine._bench import Workload, run_workload

    workload = Workload("engine", n, latency_ms, concurrency, server_rpm=rpm, client_rpm=rpm)
    with tempfile.TemporaryDirectory(prefix="labelmill-bench-") as tmp:
        result = run_workload(workload, Path(tmp))
    if as_json:
        print_json(result)
    else:
        for name, value in result.items():
            click.echo(f"{name:>20}: {value}")


@bench.command("cost")
@click.argument("source", metavar="INPUT")
@click.option("--task", "task_spec", required=True, help="Built-in task (cqa, nli, classify) or a TOML file.")
@click.option("--model", default=DEFAULT_MODEL, show_default=True)
@click.option("--shots", type=click.IntRange(0), default=6, show_default=True,
              help="Demonstrations in the few-shot prompt, from the input's gold answers and rationales.")  # fmt: skip
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--limit", type=click.IntRange(1), default=None, help="Price only the first N rows.")
@cache_option
@click.option("--price-in", type=float, default=None)
@click.option("--price-out", type=float, default=None)
@click.option("--json", "as_json", is_flag=True, help="Print report.json on stdout too.")
@handle_errors
def bench_cost(source: str, task_spec: str, model: str, shots: int, out_dir: str, limit: int | None, cache_dir: str,
               price_in: float | None, price_out: float | None, as_json: bool) -> None:  # fmt: skip
    """Tokens and dollars per 1,000 examples: zero-shot label-only, label+rationale, few-shot; a rate sweep."""
    from labelmill.engine._costreport import write_report
    from labelmill.engine._estimate import estimate_corpus

    task = load_task(task_spec)
    if shots and not task.rationale_field:
        raise UsageError(f"task {task.name!r} names no rationale_field for few-shot demonstrations: use --shots 0")
    prices = resolve_prices(model, price_in, price_out)
    store = ResponseStore(cache_dir) if Path(cache_dir).is_dir() else None
    try:
        estimate = estimate_corpus(source, task, prices, store=store, shots=shots, limit=limit)
    finally:
        if store is not None:
            store.close()
    data = write_report(estimate, Path(out_dir), model, shots)
    if as_json:
        print_json(data)
    else:
        click.echo((Path(out_dir) / "report.md").read_text(encoding="utf-8"))


_register_pending(main, _PENDING)
