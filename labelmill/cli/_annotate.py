"""annotate, replay and mock-teacher."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import click

from labelmill._api import Select, annotate_config, replay_config
from labelmill.cache import ResponseStore
from labelmill.cli._base import (
    cache_option,
    handle_errors,
    main,
    output_format_option,
    print_json,
    run_async,
    setup_logging,
)
from labelmill.cli._runtime import EXIT_CODES, annotate_in_process
from labelmill.engine import (
    DEFAULT_BASE_URL,
    DEFAULT_CONCURRENCY,
    DEFAULT_MODEL,
    Prices,
    RunResult,
    Task,
    estimate_corpus,
    load_task,
    resolve_prices,
)


def _finish(result: RunResult, as_json: bool) -> None:
    for note in result.notes:
        click.echo(f"labelmill: {note}", err=True)
    code = EXIT_CODES[result.status]
    if as_json:
        print_json({**result.summary, "exit_code": code})
    elif "examples" not in result.summary:  # a detached batch run: nothing written yet
        click.echo(_batches_line(result.summary["batches"]), err=True)
    else:
        s = result.summary
        if "batches" in s:
            click.echo(_batches_line(s["batches"]), err=True)
        paid = "cost unknown" if s["dollars"] is None else f"${s['dollars']:.4f} paid"
        failures = ", ".join(f"{n} {reason}" for reason, n in s["failure_reasons"].items())
        click.echo(
            f"{s['examples']} examples: {s['records']} records, {s['failures']} failures"
            + (f" ({failures})" if failures else "")
            + f", {s['cache_hits']} from the store, {s['requests']} requests ({s['retries']} retries, "
            f"{s['rate_limited_429']} 429s), rationale rate {s['rationale_rate']:.2f}, {paid}, {s['seconds']:.1f}s",
            err=True,
        )
    sys.exit(code)


def _batches_line(batches: dict[str, Any]) -> str:
    from labelmill.engine.batch import progress_line

    return progress_line(batches)


@main.command()
@click.argument("action", type=click.Choice(["status", "collect", "cancel"]))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="The run's output directory.")
@cache_option
@click.option("--base-url", default=None, help="Default: the one the batches were sent to.")
@click.option("--api-key", envvar="OPENAI_API_KEY", default=None, help="Default: $OPENAI_API_KEY.")
@click.option("--prices", "prices_file", type=click.Path(dir_okay=False, exists=True), default=None)
@click.option("--batch-discount", type=float, default=None)
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def batches(action: str, out_dir: str, cache_dir: str, base_url: str | None, api_key: str | None,
            prices_file: str | None, batch_discount: float | None, as_json: bool) -> None:  # fmt: skip
    """What a batch run has in flight (status); collect the finished batches without submitting
    anything (collect); cancel the live ones, keeping what they answered (cancel)."""
    import json as _json

    from labelmill.engine import manage_batches

    setup_logging(as_json)
    state_file = Path(out_dir) / "batches.json"
    model = _json.loads(state_file.read_text())["model"] if state_file.exists() else DEFAULT_MODEL
    prices = resolve_prices(model, None, None, prices_file, batch_discount)
    summary = run_async(manage_batches(action, Path(out_dir), Path(cache_dir), prices, api_key, base_url))
    if as_json:
        print_json(summary)
    else:
        click.echo(_batches_line(summary))
        for live in summary.get("live", []):
            click.echo(f"  {live['name']}  {live['batch_id'] or '-'}  {live['status']}  {live['requests']} requests")


@main.group()
def batch() -> None:
    """Batches run by hand (vllm run-batch, a provider's console): export the requests, import the answers."""


@batch.command("export")
@click.argument("source", metavar="INPUT")
@click.option("--task", "task_spec", required=True, help="Built-in task (cqa, nli, classify) or a TOML file.")
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False), help="The JSONL to write.")
@click.option("--model", default=DEFAULT_MODEL, show_default=True)
@cache_option
@click.option("--rationale-rate", type=click.FloatRange(0, 1), default=1.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--max-tokens", type=click.IntRange(1), default=None)
@click.option("--limit", type=click.IntRange(0), default=None)
@click.option("--shots", type=click.IntRange(0), default=0, show_default=True)
@output_format_option
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def batch_export(source: str, task_spec: str, out_file: str, cache_dir: str, as_json: bool, **options: Any) -> None:
    """Write INPUT's requests that the store cannot answer as Batch API input lines."""
    from labelmill.engine import export_requests

    setup_logging(as_json)
    config = annotate_config(source, task=task_spec, out=Path(out_file).parent, cache=cache_dir, **options)
    summary = export_requests(config, Path(out_file))
    print_json(summary) if as_json else click.echo(f"{summary['requests']} requests in {summary['file']}", err=True)


@batch.command("import")
@click.argument("results", metavar="RESULTS.jsonl")
@cache_option
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help="Prices the answers (list prices).")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def batch_import(results: str, cache_dir: str, model: str, as_json: bool) -> None:
    """Store the answers of a batch run by hand under their request keys (checked against the export)."""
    from labelmill.engine import import_results

    setup_logging(as_json)
    counts = import_results(Path(results), Path(cache_dir), resolve_prices(model, None, None))
    print_json(counts) if as_json else click.echo(", ".join(f"{n} {name}" for name, n in counts.items()), err=True)


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
@click.option("--tokenizer", type=click.Path(exists=True), default=None,
              help="A local tokenizer.json (or its folder) that counts prompts exactly for --tpm pacing.")  # fmt: skip
@click.option("--max-tokens", type=click.IntRange(1), default=None, help="Override the prompts' max_tokens.")
@click.option("--price-in", type=float, default=None, help="USD per 1M prompt tokens.")
@click.option("--price-out", type=float, default=None, help="USD per 1M completion tokens.")
@click.option("--price-cached-in", type=float, default=None,
              help="USD per 1M prompt tokens reported as cached (default: the table's, else --price-in).")  # fmt: skip
@click.option("--prices", "prices_file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="TOML: [models.NAME] input = .. output = .. (USD per 1M tokens).")  # fmt: skip
@click.option("--limit", type=click.IntRange(0), default=None, help="Annotate only the first N rows.")
@click.option("--shard-size", type=click.IntRange(1), default=10_000, show_default=True)
@click.option("--timeout", "timeout_s", type=float, default=60.0, show_default=True, help="Seconds per attempt.")
@click.option(
    "--attempts",
    type=click.IntRange(1),
    default=6,
    show_default=True,
    help="Attempts per request on 5xx, timeouts and dropped connections (a 429 is a wait).",
)
@click.option(
    "--shots",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Few-shot label+rationale prompts: demonstrations from INPUT's gold answers and rationales.",
)
@output_format_option
@click.option("--route", type=click.Choice(["online", "batch", "auto"]), default="online", show_default=True,
              help="batch: the Batch API at its price (answers within 24 h); auto: batch, then online for "
                   "what the batches could not answer.")  # fmt: skip
@click.option("--detach", is_flag=True, help="Batch route: submit, collect what is finished, exit 3; rerun later.")
@click.option("--batch-discount", type=float, default=None,
              help="Batch price as a share of the online one (default 0.5, or the prices file's).")  # fmt: skip
@click.option("--batch-poll-s", type=click.FloatRange(0.01), default=60.0, show_default=True,
              help="The longest wait between two polls of the batches in flight.")  # fmt: skip
@click.option("--batch-max-requests", type=click.IntRange(1), default=50_000, show_default=True,
              help="Lines of one batch input file.")  # fmt: skip
@click.option("--batch-max-mb", type=click.FloatRange(0.001), default=200.0, show_default=True,
              help="Size of one batch input file.")  # fmt: skip
@click.option("--estimate", is_flag=True, help="Price the corpus without sending anything.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary on stdout.")
@handle_errors
def annotate(source: str, task_spec: str, out_dir: str, cache_dir: str, rate_text: str, select: Select,
             budget: float | None, estimate: bool, as_json: bool, timeout_s: float, attempts: int,
             price_in: float | None, price_out: float | None, price_cached_in: float | None, prices_file: str | None,
             **options: Any) -> None:  # fmt: skip
    """Annotate INPUT (.jsonl, .csv, .parquet or - for stdin) with a teacher LLM into shards."""
    setup_logging(as_json)
    prices = resolve_prices(options["model"], price_in, price_out, prices_file, options["batch_discount"],
                            price_cached_in)  # fmt: skip
    if estimate:
        task = load_task(task_spec)
        structured = (options["output_format"] or task.output_format or "auto") != "text"
        _print_estimate(source, task, prices, cache_dir, options["limit"], budget, as_json, structured)
        return
    config = annotate_config(
        source, task=task_spec, out=out_dir, cache=cache_dir, rationale_rate=rate_text, select=select,
        budget=budget, prices=prices_file, price_in=price_in, price_out=price_out, price_cached_in=price_cached_in,
        timeout=timeout_s,
        attempts=attempts, progress=not as_json, **options,
    )  # fmt: skip
    _finish(run_async(annotate_in_process(config)), as_json)


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
@click.option("--workers", type=click.IntRange(0, 64), default=None,
              help="Processes that resolve a JSONL input (0: none). Default: one per core past 4 MB.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary on stdout.")
@handle_errors
def replay(source: str, task_spec: str, out_dir: str, cache_dir: str, from_dir: str | None, model: str | None,
           rate_text: str | None, seed: int | None, max_tokens: int | None, limit: int | None, shard_size: int,
           workers: int | None, as_json: bool) -> None:  # fmt: skip
    """Rebuild shards from the store alone, offline: opens no socket."""
    setup_logging(as_json)
    config = replay_config(
        source, task=task_spec, out=out_dir, cache=cache_dir, from_=from_dir, model=model, rationale_rate=rate_text,
        seed=seed, max_tokens=max_tokens, limit=limit, shard_size=shard_size, workers=workers, progress=not as_json,
    )  # fmt: skip
    _finish(run_async(annotate_in_process(config)), as_json)


def _print_estimate(source: str, task: Task, prices: Prices | None, cache_dir: str, limit: int | None,
                    budget: float | None, as_json: bool, structured: bool) -> None:  # fmt: skip
    """`annotate --estimate`: price the corpus; opens no socket."""
    store = ResponseStore(cache_dir) if Path(cache_dir).is_dir() else None
    try:
        result = estimate_corpus(source, task, prices, store=store, limit=limit, budget=budget,
                                 structured=structured).to_dict()  # fmt: skip
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


@main.command("mock-teacher")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8089, show_default=True, help="0 picks a free port.")
@click.option("--latency-ms", type=float, default=0.0, show_default=True)
@click.option("--jitter-ms", type=float, default=0.0, show_default=True)
@click.option("--rpm", type=int, default=None)
@click.option("--tpm", type=int, default=None)
@click.option("--burst-s", type=float, default=1.0, show_default=True,
              help="The limits allow bursts of this many seconds' worth.")  # fmt: skip
@click.option(
    "--limit-headers/--no-limit-headers",
    default=True,
    show_default=True,
    help="Send x-ratelimit-* headers with every answer.",
)
@click.option(
    "--limit-model",
    type=click.Choice(["bucket", "minute-bucket", "sliding", "fixed"]),
    default="bucket",
    show_default=True,
    help="How the limits count: a 1 s bucket, a whole-minute bucket, a 60 s sliding "
    "window or a calendar-minute window.",
)
@click.option("--other-share", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="Another client on the same key uses this share of each limit.")  # fmt: skip
@click.option("--batch-latency-s", type=float, default=0.5, show_default=True, help="How long a batch takes.")
@click.option("--batch-expire-fraction", type=click.FloatRange(0, 1), default=None,
              help="Batches expire with this share of their lines done.")  # fmt: skip
@click.option("--batch-line-error-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True)
@click.option("--batch-fail-validation", is_flag=True)
@click.option("--batch-enqueued-tokens", type=int, default=None, help="Fail larger batches (token_limit_exceeded).")
@click.option("--prompt-cache", type=click.Choice(["openai", "anthropic"]), default=None,
              help="Report cached prompt prefixes of 1,024+ tokens, in this provider's usage field.")  # fmt: skip
@click.option("--batch-lost-creates", type=int, default=0, show_default=True,
              help="The first N batch creates make the batch, then answer 504.")  # fmt: skip
@click.option("--response-format", type=click.Choice(["honour", "refuse", "ignore"]), default="honour",
              show_default=True, help="What a request's response_format gets: JSON that follows its schema, "
              "a 400 that names it, or text anyway.")  # fmt: skip
@click.option("--off-format-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="The share of text replies said off the expected format.")  # fmt: skip
@click.option("--contradict-percent", type=click.IntRange(0, 100), default=0, show_default=True,
              help="How often a rationale concludes another choice than its answer.")  # fmt: skip
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
    from labelmill.testing import MockConfig, load_answers, serve

    config = MockConfig(api_key=require_key, answers=load_answers(answers) if answers else [], **options)
    with contextlib.suppress(KeyboardInterrupt):
        run_async(serve(config, host, port))
