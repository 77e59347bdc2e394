"""`labelmill bench cost`: tokens and dollars per 1,000 examples, as report.md, report.json, cost.png."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from labelmill.engine.money import FEW_SHOT, Estimate, Planner
from labelmill.engine.tasks import VARIANT_LABEL, VARIANT_RATIONALE

SWEEP = (0.0, 0.15, 0.33, 0.5, 0.66, 0.85, 1.0)


def sweep(estimate: Estimate) -> list[dict[str, Any]]:
    """Cost per 1,000 examples when a fraction r of them get the label+rationale prompt."""
    label = estimate.variants[VARIANT_LABEL].per_1k()
    rationale = estimate.variants[VARIANT_RATIONALE].per_1k()
    rows = []
    for rate in SWEEP:
        row: dict[str, Any] = {"rationale_rate": rate}
        for field in ("prompt_tokens", "completion_tokens", "dollars", "dollars_cached"):
            low, high = label[field], rationale[field]
            row[field] = None if low is None or high is None else round(low * (1 - rate) + high * rate, 6)
        rows.append(row)
    return rows


def routes(estimate: Estimate, budget_per_1k: float | None) -> dict[str, Any] | None:
    """Online against batch: dollars per 1,000 examples over the rate sweep, and the explanation
    rate a fixed budget buys on each route (the planner's rate, at each route's prices)."""
    prices = estimate.prices
    label, rationale = estimate.variants[VARIANT_LABEL].per_1k(), estimate.variants[VARIANT_RATIONALE].per_1k()
    if prices is None or label["dollars"] is None or rationale["dollars"] is None:
        return None
    discount = prices.batch_discount
    rows = [{"rationale_rate": row["rationale_rate"], "online_dollars": row["dollars"],
             "batch_dollars": round(row["dollars"] * discount, 6), "online_dollars_cached": row["dollars_cached"],
             "batch_dollars_cached": round(row["dollars_cached"] * discount, 6)}
            for row in sweep(estimate)]  # fmt: skip
    if budget_per_1k is None:  # a budget that buys a third of the rationales online
        budget_per_1k = round(label["dollars"] + 0.33 * (rationale["dollars"] - label["dollars"]), 6)
    bought = {}
    for route, factor in (("online", 1.0), ("batch", discount)):
        planner = Planner(label["dollars"] * factor / 1000, rationale["dollars"] * factor / 1000)
        bought[route] = round(planner.rate(budget_per_1k, 1000), 4)
    return {"batch_discount": discount, "sweep": rows, "budget_per_1000": budget_per_1k, "rate_bought": bought}


def zero_vs_few(per_1k: dict[str, Any], discount: float) -> dict[str, Any] | None:
    """Zero-shot against few-shot label+rationale, dollars per 1,000 examples: without and with a
    warm prefix cache, online and in batches (the batch discount applied to cached input too)."""
    zero, few = per_1k[VARIANT_RATIONALE], per_1k[FEW_SHOT]
    if zero["dollars"] is None or few["dollars"] is None:
        return None
    out: dict[str, Any] = {}
    for route, factor in (("online", 1.0), ("batch", discount)):
        for cache, field in (("no_cache", "dollars"), ("warm_cache", "dollars_cached")):
            z, f = zero[field] * factor, few[field] * factor
            out[f"{route}_{cache}"] = {"zero_shot": round(z, 6), "few_shot": round(f, 6),
                                       "cheaper": "zero-shot" if z <= f else "few-shot"}  # fmt: skip
    return out


def write_report(estimate: Estimate, out_dir: Path, model: str, shots: int,
                 budget_per_1k: float | None = None) -> dict[str, Any]:  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {"model": model, "shots": shots, **estimate.to_dict(), "sweep_per_1000_examples": sweep(estimate),
            "routes": routes(estimate, budget_per_1k)}  # fmt: skip
    per_1k = data["per_1000_examples"]
    if FEW_SHOT in per_1k:
        few, zero = per_1k[FEW_SHOT]["prompt_tokens"], per_1k[VARIANT_RATIONALE]["prompt_tokens"]
        data["zero_vs_few_shot_input_tokens_saved"] = round(1 - zero / few, 4) if few else None
        data["zero_vs_few_shot_dollars"] = zero_vs_few(
            per_1k, estimate.prices.batch_discount if estimate.prices else 1.0
        )
    (out_dir / "report.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    (out_dir / "report.md").write_text(_markdown(data), encoding="utf-8")
    _plot(data, out_dir / "cost.png")
    return data


def _money(value: float | None) -> str:
    return "n/a" if value is None else f"${value:,.4f}"


def _markdown(data: dict[str, Any]) -> str:
    lines = [
        f"# Annotation cost: {data['examples']} examples, model {data['model']}",
        "",
        f"Prompt tokens: {data['token_counting']}. Completion tokens from: "
        + ", ".join(f"{k}: {v}" for k, v in data["completion_tokens_from"].items()) + ".",
        "",
        "| prompt | input tokens / 1k ex. | of them cached (warm cache) | output tokens / 1k ex. | "
        "dollars / 1k ex. | with the cache |",
        "|---|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for name, row in data["per_1000_examples"].items():
        label = f"{data['shots']}-shot label+rationale" if name == FEW_SHOT else f"zero-shot {name}"
        lines.append(f"| {label} | {row['prompt_tokens']:,.0f} | {row['cached_prompt_tokens']:,.0f} | "
                     f"{row['completion_tokens']:,.0f} | {_money(row['dollars'])} | "
                     f"{_money(row['dollars_cached'])} |")  # fmt: skip
    if data.get("zero_vs_few_shot_input_tokens_saved") is not None:
        lines += ["", f"Zero-shot uses {data['zero_vs_few_shot_input_tokens_saved']:.0%} fewer input tokens than "
                      f"{data['shots']}-shot prompts."]  # fmt: skip
    if data.get("zero_vs_few_shot_dollars"):
        lines += _zero_vs_few_markdown(data["zero_vs_few_shot_dollars"])
    lines += ["", "## Explanation rate sweep (zero-shot)", "", "| rationale rate | input tokens / 1k | "
              "output tokens / 1k | dollars / 1k |", "|---:|---:|---:|---:|"]  # fmt: skip
    for row in data["sweep_per_1000_examples"]:
        lines.append(f"| {row['rationale_rate']:.2f} | {row['prompt_tokens']:,.0f} | {row['completion_tokens']:,.0f} | "
                     f"{_money(row['dollars'])} |")  # fmt: skip
    if data.get("routes"):
        lines += _routes_markdown(data["routes"])
    return "\n".join(lines) + "\n"


SETTINGS = {
    "online_no_cache": "online, no cache",
    "online_warm_cache": "online, warm cache",
    "batch_no_cache": "batch, no cache",
    "batch_warm_cache": "batch, warm cache",
}


def _zero_vs_few_markdown(rows: dict[str, Any]) -> list[str]:
    lines = ["", "| label+rationale, dollars / 1k ex. | zero-shot | few-shot | cheaper |", "|---|---:|---:|---|"]
    for name, row in rows.items():
        lines.append(
            f"| {SETTINGS[name]} | {_money(row['zero_shot'])} | {_money(row['few_shot'])} | {row['cheaper']} |"
        )
    return [
        *lines,
        "",
        "A warm cache bills a prompt's shared prefix (instruction and demonstrations, 1,024+ "
        "tokens in steps of 128, as OpenAI counts it) at the cached rate; a shorter prefix is never cached.",
    ]


def _routes_markdown(routes: dict[str, Any]) -> list[str]:
    lines = ["", f"## Online against the Batch API (batch price: {routes['batch_discount']:.0%} of online)", "",
             "| rationale rate | online dollars / 1k | batch dollars / 1k |", "|---:|---:|---:|"]  # fmt: skip
    for row in routes["sweep"]:
        lines.append(f"| {row['rationale_rate']:.2f} | {_money(row['online_dollars'])} | "
                     f"{_money(row['batch_dollars'])} |")  # fmt: skip
    bought = routes["rate_bought"]
    lines += ["", f"A budget of {_money(routes['budget_per_1000'])} per 1,000 examples explains "
                  f"{bought['online']:.0%} of them online and {bought['batch']:.0%} through batches."]  # fmt: skip
    return lines


def _plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = data["sweep_per_1000_examples"]
    dollars = [r["dollars"] for r in rows]
    key = "dollars" if None not in dollars else "prompt_tokens"
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot([r["rationale_rate"] for r in rows], [r[key] for r in rows], marker="o", label="zero-shot, online")
    if key == "dollars" and data.get("routes"):
        batch = data["routes"]["sweep"]
        axis.plot([r["rationale_rate"] for r in batch], [r["batch_dollars"] for r in batch], marker="s",
                  label="zero-shot, Batch API")  # fmt: skip
    few = data["per_1000_examples"].get(FEW_SHOT)
    if few is not None and few.get(key) is not None:
        axis.axhline(few[key], color="tab:red", linestyle="--", label=f"{data['shots']}-shot, rationale for all")
    axis.set_xlabel("rationale rate")
    axis.set_ylabel("USD per 1,000 examples" if key == "dollars" else "input tokens per 1,000 examples")
    axis.set_title(f"Annotation cost, {data['model']}")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
