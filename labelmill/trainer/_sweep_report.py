"""The files of `bench distill`: report.json, report.md and accuracy.png (accuracy vs dollars)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("labelmill")


def write_report(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (out / "report.md").write_text(markdown(report), encoding="utf-8")
    if not plot(report, out / "accuracy.png"):
        log.warning("matplotlib is not installed: no accuracy.png (pip install 'labelmill[report]')")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def markdown(report: dict[str, Any]) -> str:
    costs = report["costs"]
    lines = [
        "# What a rationale buys",
        "",
        f"Student `{report['student']}`, {report['test_rows']} held-out test rows, scored against "
        f"{report['scored_against']}. Teacher accuracy on them: {_pct(report['teacher_accuracy'])}; "
        f"chance: {_pct(report['chance'])}. Training options: {json.dumps(report['train_options']) or '{}'}.",
        "",
        "| setting | examples | explained | seeds | accuracy (mean ± std) | rank accuracy (mean ± std) "
        "| $ / 1k examples | $ spent |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["rows"]:
        per_1k = "n/a" if row["dollars_per_1k"] is None else f"${row['dollars_per_1k']:.4f}"
        spent = "n/a" if row["dollars"] is None else f"${row['dollars']:.4f}"
        lines.append(
            f"| {row['name']} | {row['examples']} | {row['explained']:.2f} | {row['seeds']} | "
            f"{_pct(row['accuracy_mean'])} ± {_pct(row['accuracy_std'])} | {_pct(row['rank_accuracy_mean'])} ± "
            f"{_pct(row['rank_accuracy_std'])} | {per_1k} | {spent} |"
        )
    lines += ["", _cheapest_line(report.get("cheapest_near_best"))]
    lines += ["", "Dollars per 1,000 examples are the annotation each setting implies: "
              f"${_money(costs['rationale_usd'])} per label+rationale example, ${_money(costs['label_usd'])} per "
              "label-only one" + (" (estimated from prices fitted to the records' usage: the shards hold no "
              "label-only record)" if costs["label_estimated"] else "") + ". Rationales cut to N words are "
              "priced as the full rationales they were cut from.", ""]  # fmt: skip
    return "\n".join(lines)


def _cheapest_line(cheapest: dict[str, Any] | None) -> str:
    if cheapest is None:
        return "No setting is both scored and priced, so none is named the cheapest."
    return (
        f"**Cheapest within one std of the best:** {cheapest['name']} on {cheapest['examples']} examples, "
        f"{_pct(cheapest['accuracy_mean'])} for ${cheapest['dollars']:.4f} (the best: {cheapest['best']} on "
        f"{cheapest['best_examples']} examples, {_pct(cheapest['best_accuracy_mean'])} ± "
        f"{_pct(cheapest['best_accuracy_std'])})."
    )


def _money(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.6f}"


def plot(report: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = [r for r in report["rows"] if r["accuracy_mean"] is not None]
    priced = all(r["dollars"] is not None for r in rows)
    sizes = {r["examples"] for r in rows}
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name in dict.fromkeys(r["name"] for r in rows):  # a curve per setting, over the sizes
        mine = sorted((r for r in rows if r["name"] == name), key=lambda r: r["examples"])
        xs = [r["dollars"] if priced else (r["examples"] if len(sizes) > 1 else r["explained"]) for r in mine]
        ys, errors = [r["accuracy_mean"] for r in mine], [r["accuracy_std"] or 0.0 for r in mine]
        ax.errorbar(xs, ys, yerr=errors, fmt="o-", capsize=4, label=name)
        if len(sizes) == 1:
            ax.annotate(name, (xs[0], ys[0]), textcoords="offset points", xytext=(6, 4), fontsize=8)
    if report["teacher_accuracy"] is not None:
        ax.axhline(report["teacher_accuracy"], linestyle="--", color="gray", label="teacher")
    if report["chance"] is not None:
        ax.axhline(report["chance"], linestyle=":", color="gray", label="chance")
    unpriced = "training examples" if len(sizes) > 1 else "fraction of examples explained"
    ax.set_xlabel("annotation dollars spent" if priced else unpriced)
    ax.set_ylabel("held-out accuracy (generated labels)")
    ax.set_title(f"What a rationale buys ({report['student']}, mean ± std over seeds)")
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
