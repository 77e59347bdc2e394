"""cache stats|verify, bench engine|cost, optimize-prompt."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from labelmill._exceptions import UsageError
from labelmill.cache import ResponseStore
from labelmill.cli._base import EXIT_ERROR, cache_option, handle_errors, main, print_json, run_async, setup_logging
from labelmill.engine import (
    DEFAULT_BASE_URL,
    DEFAULT_MODEL,
    load_task,
)
from labelmill.engine.money import resolve_prices


# -- cache ----------------------------------------------------------------------------------------
@main.group()
def cache() -> None:
    """Inspect the response store."""


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
    from labelmill.apps import OproConfig, Optimizer, write_outputs

    setup_logging(as_json)
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

    from labelmill.testing import Workload, run_workload

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
@click.option("--batch-discount", type=float, default=None, help="Batch price as a share of online (default 0.5).")
@click.option(
    "--budget-per-1k",
    type=float,
    default=None,
    help="USD per 1,000 examples to compare the rates each route buys (default: a third online).",
)
@click.option("--json", "as_json", is_flag=True, help="Print report.json on stdout too.")
@handle_errors
def bench_cost(source: str, task_spec: str, model: str, shots: int, out_dir: str, limit: int | None, cache_dir: str,
               price_in: float | None, price_out: float | None, batch_discount: float | None,
               budget_per_1k: float | None, as_json: bool) -> None:  # fmt: skip
    """Tokens and dollars per 1,000 examples: zero-shot label-only, label+rationale, few-shot; a rate sweep."""
    from labelmill.apps import write_report
    from labelmill.engine.money import estimate_corpus

    task = load_task(task_spec)
    if shots and not task.rationale_field:
        raise UsageError(f"task {task.name!r} names no rationale_field for few-shot demonstrations: use --shots 0")
    prices = resolve_prices(model, price_in, price_out, batch_discount=batch_discount)
    store = ResponseStore(cache_dir) if Path(cache_dir).is_dir() else None
    try:
        estimate = estimate_corpus(source, task, prices, store=store, shots=shots, limit=limit)
    finally:
        if store is not None:
            store.close()
    data = write_report(estimate, Path(out_dir), model, shots, budget_per_1k)
    if as_json:
        print_json(data)
    else:
        click.echo((Path(out_dir) / "report.md").read_text(encoding="utf-8"))
