"""The engine's goals W1-W6, end to end against the mock teacher in its own process.

    .venv/bin/python benchmarks/engine.py [--quick] [--full] [--only W5,W6] [--matrix] [--json]

Each workload runs a real `labelmill annotate` (or `replay`) process pinned to core 0, with the mock
teacher pinned to core 1, and includes store writes, parsing and shards. W1-W3 run `--repeat` times
(default 3) and report the median run and the range: on a shared virtual machine one run can be
off by a few percent either way. `--quick` shrinks the corpora (a smoke run, not the goals);
`--full` adds the 1M-example replay for the memory check. `--matrix` runs W3, W5 and W6 against
every way the mock can count a limit (`--limit-model`) and with another client using 30% of the key
(medians of `--repeat`), and prints the matrix.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from labelmill.testing import Workload, make_cqa, mock_process, run_labelmill, run_replay, run_workload

GOALS = {
    "W1": "3,000 req, 0 ms, c=64: >= 2,500 req/s, <= 0.35 CPU-s/1k, RSS <= 120 MB",
    "W2": "2,000 req, 200 ms, c=100: >= 0.97 of 500 req/s",
    "W3": "server 6,000 RPM (1 s burst window), 50 ms, 1,500 req, --rpm 6000: >= 0.97 of 100 req/s, < 1% 429s",
    "W4": "replay 3,000: process < 1.5 s; replay 100,000: >= 30,000 records/s; memory flat 10k -> 1M",
    "W5": "server 600,000 TPM (1 s window), 50 ms, 1,500 label+rationale req, c=100, --tpm 600000: "
          ">= 0.95 of the allowance, < 1% 429s",
    "W6-TPM": "W5's server, no --rpm/--tpm (limits from headers only): >= 0.90 of the limit, < 2% 429s",
    "W6-RPM": "the same with a 6,000 RPM limit instead: >= 0.90 of the limit, < 2% 429s",
}  # fmt: skip
RATIONALES = ("--rationale-rate", "1")


def fill_store(workdir: Path, n: int) -> tuple[Path, Path, Path]:
    """Annotate n generated examples through the mock (the store a replay reads)."""
    corpus = make_cqa(n, workdir / f"replay-{n}.jsonl")
    out, cache = workdir / f"replay-{n}-out", workdir / f"replay-{n}-cache"
    with mock_process() as url:
        run_labelmill(["annotate", str(corpus), "--task", "cqa", "--out", str(out), "--cache", str(cache),
                       "--base-url", url, "--concurrency", "64", "--rationale-rate", "0.5"])  # fmt: skip
    return corpus, cache, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small corpora: a smoke run, not the goals")
    parser.add_argument("--full", action="store_true", help="also replay 1,000,000 examples")
    parser.add_argument("--repeat", type=int, default=3, help="runs of W1-W3; the median is reported")
    parser.add_argument("--only", help="comma-separated workloads to run (W1..W6)")
    parser.add_argument("--matrix", action="store_true", help="W3, W5, W6 on every server model")
    parser.add_argument("--models", help="with --matrix: server models separated by ';' (default: all)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.matrix:
        models = [model.strip() for model in args.models.split(";")] if args.models else list(SERVER_MODELS)
        if unknown := set(models) - SERVER_MODELS.keys():
            parser.error(f"unknown server models {sorted(unknown)}; known: {', '.join(SERVER_MODELS)}")
        matrix(args.repeat, 10 if args.quick else 1, args.json, models)
        return
    scale = 10 if args.quick else 1
    results: dict[str, Any] = {}
    only = set(args.only.split(",")) if args.only else None
    with tempfile.TemporaryDirectory(prefix="labelmill-bench-", dir=".") as tmp:
        workdir = Path(tmp)
        for workload in (
            Workload("W1", 3000 // scale, 0, 64),
            Workload("W2", 2000 // scale, 200, 100),
            Workload("W3", 1500 // scale, 50, 64, server_rpm=6000, client_rpm=6000),
            Workload("W5", 1500 // scale, 50, 100, server_tpm=600_000, client_tpm=600_000, extra_args=RATIONALES),
            Workload("W6-TPM", 1500 // scale, 50, 100, server_tpm=600_000, extra_args=RATIONALES),
            Workload("W6-RPM", 1500 // scale, 50, 100, server_rpm=6000, extra_args=RATIONALES),
        ):
            if only is None or workload.name.split("-")[0] in only or workload.name in only:
                by = "limit_share" if workload.name.startswith(("W5", "W6")) else "req_s"
                results[workload.name] = median_run(workload, workdir, args.repeat, by)
        if only is not None and "W4" not in only:
            print(json.dumps(results, indent=2) if args.json else report(results))
            return
        big = 100_000 // scale
        corpus, cache, out = fill_store(workdir, big)
        results["W4"] = {
            f"replay_{name}": median_replay(name, workdir, corpus, cache, out, limit, args.repeat)
            for name, limit in (("3k", 3000 // scale), ("10k", 10_000 // scale), ("100k", None))
        }
        if args.full:
            corpus, cache, out = fill_store(workdir, 1_000_000)
            results["W4"]["replay_1m"] = run_replay("r1m", workdir, corpus, cache, out, limit=None)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(report(results))


SERVER_MODELS = {
    "1 s bucket": ("--limit-model", "bucket"),
    "minute bucket": ("--limit-model", "minute-bucket"),
    "60 s sliding": ("--limit-model", "sliding"),
    "calendar minute": ("--limit-model", "fixed"),
    "no headers": ("--no-limit-headers",),
    **{f"{name}, other client 30%": (*args, "--other-share", "0.3") for name, args in (
        ("1 s bucket", ("--limit-model", "bucket")), ("minute bucket", ("--limit-model", "minute-bucket")),
        ("60 s sliding", ("--limit-model", "sliding")), ("calendar minute", ("--limit-model", "fixed")))},
}  # fmt: skip
OTHER_SHARE = 0.3  # rows with another client report their share of what it leaves (1 - 0.3 of the limit)


def matrix(repeat: int, scale: int, as_json: bool, models: list[str]) -> None:
    """Share of the limit (of what another client leaves, where there is one) and 429s of W3, W5, W6
    on every server model; each the median of `repeat` runs."""
    out: dict[str, dict[str, Any]] = {}
    if not as_json:
        names = MATRIX_WORKLOADS
        print("| server model | " + " | ".join(names) + " |\n|---|" + "---:|" * len(names), flush=True)
    with tempfile.TemporaryDirectory(prefix="labelmill-bench-", dir=".") as tmp:
        for model in models:
            server_args = SERVER_MODELS[model]
            for workload in (
                Workload("W3", 1500 // scale, 50, 64, server_rpm=6000, client_rpm=6000, server_args=server_args),
                Workload("W5", 1500 // scale, 50, 100, server_tpm=600_000, client_tpm=600_000, extra_args=RATIONALES,
                         server_args=server_args),
                Workload("W6-TPM", 1500 // scale, 50, 100, server_tpm=600_000, extra_args=RATIONALES,
                         server_args=server_args),
                Workload("W6-RPM", 1500 // scale, 50, 100, server_rpm=6000, extra_args=RATIONALES,
                         server_args=server_args),
            ):  # fmt: skip
                workdir = Path(tmp) / f"{model}-{workload.name}".replace(" ", "_").replace(",", "").replace("%", "")
                workdir.mkdir()
                run = median_run(workload, workdir, repeat, "limit_share")
                left = 1 - OTHER_SHARE if "--other-share" in server_args else 1.0
                out.setdefault(model, {})[workload.name] = {
                    "share_of_left": round(run["limit_share"] / left, 3),
                    "runs_share_of_left": [round(share / left, 3) for share in run["runs_limit_share"]],
                    "rate_limited_share": run["rate_limited_share"],
                }
            if not as_json:  # a row as soon as it is done: a matrix cut short keeps what it measured
                print(_matrix_row(model, out[model]), flush=True)
    if as_json:
        print(json.dumps(out, indent=2))


MATRIX_WORKLOADS = ["W3", "W5", "W6-TPM", "W6-RPM"]


def _matrix_row(model: str, runs: dict[str, Any]) -> str:
    return (
        f"| {model} | "
        + " | ".join(f"{runs[n]['share_of_left']} ({runs[n]['rate_limited_share']:.1%} 429s)" for n in MATRIX_WORKLOADS)
        + " |"
    )


def median_run(workload: Workload, workdir: Path, repeat: int, by: str = "req_s") -> dict[str, Any]:
    """The run with the median `by` (request rate, or share of the server's limit) of `repeat`
    runs, with every run's value beside it."""
    runs = []
    for i in range(max(1, repeat)):
        run_dir = workdir / f"{workload.name}-{i}"
        run_dir.mkdir()
        runs.append(run_workload(workload, run_dir))
    runs.sort(key=lambda run: float(run[by]))
    return {**runs[len(runs) // 2], f"runs_{by}": [run[by] for run in runs]}


def median_replay(
    name: str, workdir: Path, corpus: Path, cache: Path, out: Path, limit: int | None, repeat: int
) -> dict[str, Any]:
    """The replay with the median rate of `repeat` runs; the peak RSS is the largest seen."""
    runs = sorted(
        (run_replay(f"r{name}-{i}", workdir, corpus, cache, out, limit) for i in range(max(1, repeat))),
        key=lambda run: float(run["records_per_s"]),
    )
    largest_rss = max(run["peak_rss_mb"] for run in runs)
    return {
        **runs[len(runs) // 2],
        "peak_rss_mb": largest_rss,
        "runs_records_per_s": [r["records_per_s"] for r in runs],
    }


def spread(result: dict[str, Any], runs: str = "runs_req_s", unit: str = "req/s") -> str:
    rates = result.get(runs, [])
    return f" (median of {len(rates)}: {rates[0]:,.1f}-{rates[-1]:,.1f} {unit})" if len(rates) > 1 else ""


def report(results: dict[str, Any]) -> str:
    rows = [row for row in _engine_rows(results) if row[0] in results]
    for name in ("W5", "W6-TPM", "W6-RPM"):
        if name in results:
            run = results[name]
            shares = run["runs_limit_share"]
            rows.append((name, f"{run['limit_share']} of {run['limit']}, {run['rate_limited_share']:.2%} 429s, "
                               f"{run['req_s']:,.1f} req/s (median of {len(shares)}: {shares[0]}-{shares[-1]})",
                         GOALS[name]))  # fmt: skip
    shown = {name for name, _, _ in rows}
    rows += [(name, f"`{json.dumps(run)}`", GOALS.get(name, "")) for name, run in results.items() if name not in shown]
    lines = ["| workload | measured | goal |", "|---|---|---|"]
    lines += [f"| {name} | {measured} | {goal} |" for name, measured, goal in rows]
    return "\n".join(lines)


def _engine_rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    if not {"W1", "W2", "W3", "W4"} <= results.keys():
        return []
    w1, w2, w3, w4 = results["W1"], results["W2"], results["W3"], results["W4"]
    return [
        ("W1", f"{w1['req_s']:,.0f} req/s, {w1['cpu_s_per_1k']} CPU-s/1k, {w1['peak_rss_mb']} MB" + spread(w1),
         GOALS["W1"]),
        ("W2", f"{w2['req_s']:,.1f} req/s = {w2['ratio_to_ideal']} of ideal" + spread(w2), GOALS["W2"]),
        ("W3", f"{w3['req_s']:,.1f} req/s = {w3['ratio_to_ideal']} of ideal, {w3['rate_limited_share']:.2%} 429s"
               + spread(w3), GOALS["W3"]),
        ("W4", f"3k: {w4['replay_3k']['process_wall_s']} s whole process; "
               f"100k: {w4['replay_100k']['records_per_s']:,.0f} records/s"
               + spread(w4["replay_100k"], "runs_records_per_s", "records/s") + "; "
               f"RSS 10k {w4['replay_10k']['peak_rss_mb']} MB, 100k {w4['replay_100k']['peak_rss_mb']} MB"
               + (f", 1M {w4['replay_1m']['peak_rss_mb']} MB" if "replay_1m" in w4 else ""), GOALS["W4"]),
    ]  # fmt: skip


if __name__ == "__main__":
    main()
