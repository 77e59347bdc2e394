"""bench predict: what a trained student costs to run, beside what its teacher charged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from labelmill.cli._base import handle_errors, print_json
from labelmill.cli._student import _items
from labelmill.cli._tools import bench

_CPU_HOUR_USD = 0.0504  # labelmill.trainer._bench_predict.CPU_HOUR_USD, without importing torch for --help


@bench.command("predict")
@click.argument("model_dir", metavar="MODEL", type=click.Path(exists=True, file_okay=False))
@click.argument("source", metavar="INPUT")  # rows to render, or an annotate output directory
@click.option("--task", "task_spec", default=None, help="Render INPUT with a task (default: its `text` field).")
@click.option(
    "--teacher-run",
    type=click.Path(exists=True),
    default=None,
    help="Shards whose cost_usd prices the teacher (default: INPUT, when it is an annotate output).",
)
@click.option(
    "--cpu-hour-usd",
    type=click.FloatRange(0, min_open=True),
    default=_CPU_HOUR_USD,
    show_default=True,
    help="Price of one vCPU-hour (default: AWS m7i.large on demand, per vCPU).",
)
@click.option("--batch-size", type=click.IntRange(1), default=128, show_default=True)
@click.option(
    "--baseline-items",
    type=click.IntRange(1),
    default=100,
    show_default=True,
    help="Items the plain one-at-a-time loop runs on.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@handle_errors
def bench_predict(model_dir: str, source: str, task_spec: str | None, teacher_run: str | None, cpu_hour_usd: float,
                  batch_size: int, baseline_items: int, as_json: bool) -> None:  # fmt: skip
    """Predictions/s, CPU-seconds per 1,000, peak memory and dollars per 1M predictions of MODEL on
    INPUT (generated labels and rank classification), fast path against a plain generate loop."""
    from labelmill.trainer import Item, load_records
    from labelmill.trainer import bench_predict as run_bench

    if Path(source).is_dir():  # an annotate output: its records' texts, gold labels and choices
        items = [Item(r.id, r.text, r.gold, r.choices) for r in load_records(source)]
    else:
        items = list(_items(source, task_spec))
    if not items:
        raise click.UsageError(f"{source} holds no rows to predict on")
    teacher_source = teacher_run or (source if Path(source).is_dir() else None)
    records = load_records(teacher_source) if teacher_source else None
    report = run_bench(model_dir, items, records, cpu_hour_usd, baseline_items, batch_size)
    if as_json:
        print_json(report)
    else:
        click.echo(_table(report))


def _table(report: dict[str, Any]) -> str:
    lines = [f"{report['items']} items, batch {report['batch_size']}, {report['threads']} threads, "
             f"peak RSS {report['peak_rss_mib']} MiB, CPU at ${report['cpu_hour_usd']}/vCPU-hour",
             "| mode | path | predictions/s | CPU-s / 1k | $ / 1M |", "|---|---|---:|---:|---:|"]  # fmt: skip
    lines += [f"| {r['mode']} | {r['path']} | {r['predictions_per_s']} | {r['cpu_seconds_per_1k']} | "
              f"${r['usd_per_1m']} |" for r in report["rows"]]  # fmt: skip
    lines.append("speedup of the fast path: " + ", ".join(f"{m} {x}x" for m, x in report["speedup"].items()))
    teacher = report["teacher"]
    if teacher:
        prices = ", ".join(f"{k.removesuffix('_usd_per_1m')} ${v}" for k, v in teacher.items() if k.endswith("_1m"))
        lines.append(f"teacher {teacher['model']} per 1M predictions ({teacher['records']} records): {prices}")
    return "\n".join(lines)
